"""``stockcast-replay``: the daily loop replayed over a window of history (``stockcast.operate.replay``), by the
library in this process or, with ``--flows``, by the real flows (``stockcast-day`` over day folders cut from the same
input); its audit, daily record and report written by ``stockcast.operate.replay_report``.

    stockcast-replay --prices data/demo/stock_price.csv --financials data/demo/financial_info.csv \\
        --from 2025-01-02 --to 2025-12-31 --out replay/
"""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from stockcast.core.registry import Registry
from stockcast.core.runs import FlowFailedError, run_by_pathspec, run_flow
from stockcast.core.storage import datastore_store
from stockcast.data.config import DATA_CONFIG_FILE, load_data_config
from stockcast.data.contract import ACTIONS, FINANCIALS, ORACLE, PRICES
from stockcast.data.snapshot import FrameSnapshot, load_snapshot
from stockcast.operate.config import OPERATE_CONFIG_FILE, load_operate_config
from stockcast.operate.loop import LoopSettings, run_day
from stockcast.operate.replay import (
    BRANCH_PREFIX,
    DayRecord,
    ReplayInterruptedError,
    ReplaySettings,
    check_fresh,
    default_branch_name,
    read_history,
    replay_branch,
    replay_window,
    run_replay,
)
from stockcast.operate.replay_report import write_outputs
from stockcast.train.config import TRAIN_CONFIG_FILE, load_train_config


def run_replay_flows(
    history: FrameSnapshot,
    days: pd.DatetimeIndex,
    settings: ReplaySettings,
    *,
    train_config: str,
    operate_config: str,
    work: Path,
) -> list[DayRecord]:
    """The replay by the real flows: IngestFlow and TrainFlow on the history before the first day, then
    ``stockcast-day``'s ``run_day`` on a folder per day holding what arrived that day, on the replay's branch."""
    loop = LoopSettings(
        branch=settings.branch.removeprefix(BRANCH_PREFIX),
        train_config=train_config,
        operate_config=operate_config,
        show_output=False,
    )
    before = history.price_dates[history.price_dates < days[0]][-1]
    start = write_day_files(history, None, before, work / "history")
    prices, financials = str(start / PRICES.file_name), start / FINANCIALS.file_name
    ingest = run_flow(
        "ingest",
        branch=loop.branch,
        show_output=False,
        prices=prices,
        financials=str(financials) if financials.is_file() else "",
    )
    run_flow("train", branch=loop.branch, config=train_config, show_output=False, snapshot=ingest.pathspec)
    records, previous = [], before
    registry = Registry(settings.branch)
    for day in days:
        serving = registry.require_champion().version
        report = run_day(write_day_files(history, previous, day, work / f"{day:%Y-%m-%d}"), loop)
        monitor = run_by_pathspec(report.monitor).data
        champion = registry.require_champion()
        changed = champion.version != serving  # by the retrain's gate or by shadow scoring
        performance, drift = monitor.performance, monitor.drift
        records.append(
            DayRecord(
                date=day,
                data_version=load_snapshot(report.snapshot).version,
                model_version=champion.version,
                n_predicted=len(run_by_pathspec(report.repredicted or report.predictions).data.predictions),
                rolling_return_rmse_vs_naive=float(performance["rolling_return_rmse_vs_naive"].iloc[-1])
                if not performance.empty
                else float("nan"),
                drifted_share=float(drift["drifted"].mean()) if not drift.empty else float("nan"),
                alerts="; ".join(f"[{alert.kind}] {alert.message}" for alert in monitor.report.alerts),
                retrain=report.retrain,
                retrained=_version(report.training),
                promoted=champion.version if changed else "",
                promotion=registry.history()[-1].reason if changed else "",
            )
        )
        print(f"{day:%Y-%m-%d}: champion {champion.version}", flush=True)
        previous = day
    return records


def write_day_files(history: FrameSnapshot, after: pd.Timestamp | None, until: pd.Timestamp, folder: Path) -> Path:
    """What arrived after ``after`` (None: from the start) up to ``until``, as contract files in ``folder`` (returned):
    the prices and oracle rows of those days, the reports published and the declared actions effective then."""
    folder.mkdir(parents=True, exist_ok=True)

    def window(frame: pd.DataFrame, column: str) -> pd.DataFrame:
        mask = frame[column] <= until
        return frame[mask if after is None else mask & (frame[column] > after)]

    window(history.prices, "date").to_csv(folder / PRICES.file_name, index=False, date_format="%Y-%m-%d")
    reports = window(history.financials, "report_date")
    if after is None:  # the sectors known throughout come with the history
        reports = pd.concat([reports, history.financials[history.financials["report_date"].isna()]])
    if not reports.empty:
        reports.to_csv(folder / FINANCIALS.file_name, index=False, date_format="%Y-%m-%d")
    if history.oracle is not None:
        window(history.oracle, "date").to_csv(folder / ORACLE.file_name, index=False, date_format="%Y-%m-%d")
    declared = window(history.actions[history.actions["source"] == "declared"], "ex_date")
    if not declared.empty:
        declared[ACTIONS.required_names].to_csv(folder / ACTIONS.file_name, index=False, date_format="%Y-%m-%d")
    return folder


def _version(training: str | None) -> str:
    return f"v{training.rsplit('/', 1)[1]}" if training else ""


def main(argv: Sequence[str] | None = None) -> int:
    """``stockcast-replay``: see the module's description."""
    parser = argparse.ArgumentParser(prog="stockcast-replay", description=__doc__.split("\n\n")[0])
    parser.add_argument("--prices", required=True, help="stock_price.csv or a folder of per-ticker files (as ingest)")
    parser.add_argument("--financials", default="", help="financial_info.csv (optional)")
    parser.add_argument("--actions", default="", help="corporate_actions.csv (default: the one beside the prices)")
    parser.add_argument("--from", dest="first", required=True, help="first trading day replayed (YYYY-MM-DD)")
    parser.add_argument("--to", dest="last", required=True, help="last trading day replayed (YYYY-MM-DD)")
    parser.add_argument("--out", required=True, type=Path, help="folder for audit.csv, days.csv and report.html")
    parser.add_argument("--branch", default=None, help="branch name (default: from --out); runs on test.<name>")
    parser.add_argument("--train-config", default=str(TRAIN_CONFIG_FILE), help="TrainFlow configuration")
    parser.add_argument("--operate-config", default=str(OPERATE_CONFIG_FILE), help="prediction and monitoring")
    parser.add_argument("--data-config", default=str(DATA_CONFIG_FILE), help="calendar and corporate actions")
    parser.add_argument("--flows", action="store_true", help="run the real flows each day (slow: Metaflow runs)")
    args = parser.parse_args(argv)
    try:
        settings = ReplaySettings(
            train=load_train_config(args.train_config),
            operate=load_operate_config(args.operate_config),
            data=load_data_config(args.data_config),
            branch=replay_branch(args.branch or default_branch_name(args.out)),
        )
        store = datastore_store()
        check_fresh(args.out, store, settings.branch)
        history = read_history(args.prices, args.financials or None, settings.data, actions=args.actions or None)
        days = replay_window(history.price_dates, args.first, args.last)
    except (ValueError, OSError) as exc:  # nothing has been replayed or written yet
        print(f"stockcast-replay: {exc}", file=sys.stderr)
        return 1
    print(
        f"Replaying {len(days)} trading days ({days[0]:%Y-%m-%d} to {days[-1]:%Y-%m-%d}) of "
        f"{len(history.tickers)} tickers on branch {settings.branch}",
        flush=True,
    )
    if args.flows:
        try:
            log = run_replay_flows(
                history,
                days,
                settings,
                train_config=args.train_config,
                operate_config=args.operate_config,
                work=args.out / "days",
            )
        except FlowFailedError as exc:
            print(f"stockcast-replay: {exc} (branch {settings.branch})", file=sys.stderr)
            return 1
        paths = write_outputs(args.out, store, settings, history, log)
    else:
        try:
            log = run_replay(history, days, settings, store, progress=lambda line: print(line, flush=True)).days
            interrupted = None
        except ReplayInterruptedError as exc:
            log, interrupted = exc.days, exc
        paths = write_outputs(args.out, store, settings, history, log) if log else []
        if interrupted is not None:
            traceback.print_exception(interrupted.__cause__, file=sys.stderr)
            print(f"stockcast-replay: {interrupted}", file=sys.stderr)
            return 1
    for path in paths:
        print(f"Wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
