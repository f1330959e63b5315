"""The daily loop on one machine: each day's files go through ingest → batch prediction → monitoring, and TrainFlow
(with its deploy step) runs when monitoring calls for it.

    stockcast-day data/demo/days/2025-12-24 data/demo/days/2025-12-29 ...

Each argument is a folder named after its day (``YYYY-MM-DD``, the date treated as today) holding that day's
``stock_price.csv`` and, when reports were published that day, ``financial_info.csv``; ``stockcast-generate
--daily N`` writes such folders. Days run in date order; the first flow that fails stops the loop, naming it.

This is the laptop equivalent of the deployed chain, where a ``data_arrived`` event starts IngestFlow,
BatchPredictFlow and MonitorFlow follow with ``@trigger_on_finish``, and MonitorFlow's ``retrain`` event starts
TrainFlow.
Here the same flows are started one after the other with ``metaflow.Runner``, on the same project branch.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd

from stockcast.core.runs import FlowFailedError, run_flow
from stockcast.data.contract import FINANCIALS, PRICES
from stockcast.operate.config import OPERATE_CONFIG_FILE, load_operate_config
from stockcast.train.config import TRAIN_CONFIG_FILE, load_train_config


@dataclass(frozen=True)
class DayReport:
    """What one day of operation did: the runs it made and what monitoring decided."""

    today: str
    snapshot: str
    predictions: str
    monitor: str
    alerts: list[str]
    retrain: bool
    training: str | None = None
    promoted: bool | None = None
    repredicted: str | None = None
    """The BatchPredictFlow run that predicted again with the new champion, when one was promoted (by the retrain or
    by shadow scoring)."""

    def lines(self) -> list[str]:
        """The report for people, one line per fact."""
        lines = [f"{self.today}: ingested {self.snapshot}, predicted {self.predictions}, monitored {self.monitor}"]
        lines += [f"  alert: {alert}" for alert in self.alerts]
        if self.training:
            verdict = f"promoted; predicted again: {self.repredicted}" if self.promoted else "not promoted"
            lines.append(f"  retrained: {self.training} ({verdict})")
        if self.repredicted and not self.promoted:
            lines.append(f"  a shadow replaced the champion; predicted again: {self.repredicted}")
        return lines


@dataclass(frozen=True)
class LoopSettings:
    """Options shared by every flow the loop runs: the project branch and the configuration files."""

    branch: str | None = None
    production: bool = False
    train_config: str | None = None
    operate_config: str | None = None
    max_workers: int = 4
    show_output: bool = True
    env: dict[str, str] | None = None


def day_folder(folder: str | Path) -> tuple[str, str, str]:
    """The day (``YYYY-MM-DD``), prices file and financials file (``""`` when absent) of a day folder."""
    path = Path(folder)
    try:
        day = pd.Timestamp(pd.to_datetime(path.name, format="%Y-%m-%d"))
    except ValueError as exc:
        raise ValueError(f"{path}: a day folder is named after its day as YYYY-MM-DD") from exc
    prices = path / PRICES.file_name
    if not prices.is_file():
        raise ValueError(f"{path}: no {PRICES.file_name} in the day folder")
    financials = path / FINANCIALS.file_name
    return f"{day:%Y-%m-%d}", str(prices), str(financials) if financials.is_file() else ""


def run_day(folder: str | Path, settings: LoopSettings) -> DayReport:
    """One day of operation for the files in ``folder``; retrains (and so redeploys) when monitoring says so, then
    predicts again when the champion changed (by the retrain's gate or by monitoring's shadow scoring), so that the
    table and decisions for the next day come from the new champion."""
    today, prices, financials = day_folder(folder)
    ingest = _run("ingest", settings, prices=prices, financials=financials, today=today)
    predict = _run("predict", settings, config=settings.operate_config, snapshot=ingest.pathspec)
    monitor = _run("monitor", settings, config=settings.operate_config, snapshot=ingest.pathspec, today=today)
    day = DayReport(
        today=today,
        snapshot=ingest.pathspec,
        predictions=predict.pathspec,
        monitor=monitor.pathspec,
        alerts=[f"[{alert.kind}] {alert.message}" for alert in monitor.data.report.alerts],
        retrain=monitor.data.retrain,
    )
    changed = bool(monitor.data.shadow_promotion)
    if day.retrain:
        training = _run(
            "train", settings, config=settings.train_config, snapshot=ingest.pathspec, max_workers=settings.max_workers
        )
        day = replace(day, training=training.pathspec, promoted=training.data.promoted)
        changed = changed or training.data.promoted
    if changed:
        repredicted = _run("predict", settings, config=settings.operate_config, snapshot=ingest.pathspec).pathspec
        day = replace(day, repredicted=repredicted)
    return day


def _run(flow: str, settings: LoopSettings, *, config: str | None = None, **params: Any):  # -> metaflow.Run
    """Run ``flows/<flow>.py`` to the end on the loop's branch; its Client ``Run``, or ``FlowFailedError``."""
    return run_flow(
        flow,
        branch=settings.branch,
        production=settings.production,
        config=config,
        env=settings.env,
        show_output=settings.show_output,
        **params,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """``stockcast-day``: run the daily loop over one or more day folders, in order."""
    parser = argparse.ArgumentParser(prog="stockcast-day", description=__doc__.split("\n\n")[0])
    parser.add_argument("days", nargs="+", help="day folders named YYYY-MM-DD (see stockcast-generate --daily)")
    parser.add_argument("--branch", default=None, help="@project branch (default: your user branch)")
    parser.add_argument("--production", action="store_true", help="run on the project's production branch")
    parser.add_argument("--train-config", default=None, help="TrainFlow configuration (default configs/train.toml)")
    parser.add_argument("--operate-config", default=None, help="prediction and monitoring configuration")
    parser.add_argument("--max-workers", type=int, default=4, help="parallel tasks of a retraining run")
    args = parser.parse_args(argv)
    settings = LoopSettings(
        branch=args.branch,
        production=args.production,
        train_config=args.train_config,
        operate_config=args.operate_config,
        max_workers=args.max_workers,
    )
    try:
        # Every input is checked before the first flow runs: a bad file found on day 3 would leave two days done.
        folders = sorted(args.days, key=lambda folder: day_folder(folder)[0])
        load_train_config(settings.train_config or TRAIN_CONFIG_FILE)
        load_operate_config(settings.operate_config or OPERATE_CONFIG_FILE)
        for folder in folders:
            print("\n".join(run_day(folder, settings).lines()), flush=True)
    except (ValueError, OSError, FlowFailedError) as exc:
        print(f"stockcast-day: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
