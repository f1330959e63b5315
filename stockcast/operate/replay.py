"""Production replay: what would this system have done over a stretch of history, day by day, and why?

    stockcast-replay --prices stock_price.csv [--financials financial_info.csv] --from 2025-01-02 --to 2025-12-31 \\
        --out replay/

The input is read and validated once, as IngestFlow would (``stockcast.data.ingest``). The replay then trains a
first champion on the history before ``--from`` (TrainFlow's selection and gate) and, for every trading day of the
window, runs the whole daily loop as of that day's close, with the same library functions the flows call:

1. the day's data arrives: the history cut at the day (``FrameSnapshot.as_of``: prices up to it, reports published
   by then, actions effective by then);
2. BatchPredictFlow: the champion of that moment predicts every ticker, its shadows predict beside it, and it
   decides buy / sell / hold from the positions the previous day left; tables are published once per day and model;
3. MonitorFlow: the champion's earlier predictions and decisions are realised on the closes that followed; alerts,
   the retraining call (with its cooldown) and shadow promotion follow the configured thresholds;
4. TrainFlow, when monitoring calls for it: every candidate backtested walk-forward on the day's history, gated
   against naive, the champion and what the champion served; a promoted model predicts and decides the day again,
   as ``stockcast-day`` does.

It runs on its own ``@project`` branch (``test.<name>``, Metaflow's naming for ``--branch``) of the configured
datastore: its registry and tables never touch another branch's. It writes nothing outside that branch and ``--out``,
and refuses a branch or a folder that already holds a replay, so nothing published is ever overwritten.

The replay does not build Bentos: its champion answers through ``predict_snapshot``, the code path the Bento serves
(proved equal to ``POST /predict`` by the service tests). ``--flows`` runs the real flows instead (``stockcast-day``
over day folders cut from the same input), for a replay that is slower but goes through Metaflow end to end.

Outputs in ``--out`` (``stockcast.operate.replay_report``): ``audit.csv`` (a row per day and ticker served),
``days.csv`` (a row per day: monitoring's figures, alerts, retrains and promotions) and ``report.html``.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from stockcast.core.registry import ModelRecord, Registry
from stockcast.core.storage import ObjectStore
from stockcast.data.config import DataConfig
from stockcast.data.ingest import build_snapshot, load_sources, validate_batch
from stockcast.data.snapshot import FrameSnapshot
from stockcast.operate.config import OperateConfig
from stockcast.operate.decisions import decide_today
from stockcast.operate.shadows import publish_day
from stockcast.operate.tables import held_positions, load_predictions
from stockcast.operate.watch import judge_day, measure, training_data_end
from stockcast.train.config import TrainConfig
from stockcast.train.selection import train_and_gate

REPLAY_FLOW = "replay"
"""The flow name in the run pathspecs a replay records (``replay/<branch>/<day>``): no Metaflow run stands behind it."""
BRANCH_PREFIX = "test."
"""Metaflow's prefix of a ``--branch`` name: a replay's branch is named as a flow run with ``--branch`` would be."""
OUTPUT_FILES = ("audit.csv", "days.csv", "report.html")
"""What a replay writes in ``--out`` (and, with ``--flows``, a ``days`` folder of the files each day brought)."""


class ReplayInputError(ValueError):
    """A replay that cannot start: the message names the argument and what is wrong with it."""


class ReplayInterruptedError(RuntimeError):
    """A replay that failed on a day: the days done before it (``days``) can still be written out."""

    def __init__(self, message: str, days: list[DayRecord]) -> None:
        super().__init__(message)
        self.days = days


@dataclass(frozen=True)
class ReplaySettings:
    """What a replay runs with: the three configurations, and where it publishes."""

    train: TrainConfig = field(default_factory=TrainConfig)
    operate: OperateConfig = field(default_factory=OperateConfig)
    data: DataConfig = field(default_factory=DataConfig)
    branch: str = "test.replay"


@dataclass
class DayRecord:
    """What one replayed day did: the row of ``days.csv``."""

    date: pd.Timestamp
    data_version: str
    model_version: str
    n_predicted: int = 0
    rolling_return_rmse_vs_naive: float = float("nan")
    drifted_share: float = float("nan")
    alerts: str = ""
    retrain: bool = False
    retrained: str = ""
    promoted: str = ""
    promotion: str = ""
    """Why the champion changed that day: the gate's or the shadow scoring's reason (empty when it did not)."""


@dataclass
class Replay:
    """The daily loop over history, on one branch: the models it trained (kept in memory: a replay builds no
    Bento), the positions carried from day to day, and a record per day."""

    history: FrameSnapshot
    settings: ReplaySettings
    store: ObjectStore
    models: dict[str, Any] = field(default_factory=dict)
    held: dict[str, float] = field(default_factory=dict)
    last_trained_on: str | None = None
    days: list[DayRecord] = field(default_factory=list)

    @property
    def registry(self) -> Registry:
        """The replay branch's registry."""
        return Registry(self.settings.branch, self.store)

    def start(self, first_day: pd.Timestamp) -> ModelRecord:
        """Train the first champion on the history before ``first_day`` (a branch without a champion gets naive when
        nothing beats it): what TrainFlow does once before the daily loop of ``make demo``."""
        before = self.history.price_dates[self.history.price_dates < first_day][-1]
        record, _ = self.retrain(self.history.as_of(before))
        return record

    def run_day(self, day: pd.Timestamp) -> DayRecord:
        """One trading day of operation as of ``day``'s close (see the module's description)."""
        snapshot = self.history.as_of(day)
        held_before = dict(self.held)
        champion = self.registry.require_champion()
        record = DayRecord(date=day, data_version=snapshot.version, model_version=champion.version)
        record.n_predicted = self.predict_and_decide(snapshot, champion, held_before)
        monitor = self.settings.operate.monitor
        training_end = training_data_end(champion)
        measured = measure(
            champion,
            snapshot,
            self.store,
            self.settings.branch,
            monitor,
            training_end=training_end,
            cost=self.settings.operate.decisions.cost,
        )
        judged = judge_day(
            measured,
            champion,
            monitor,
            registry=self.registry,
            snapshot=snapshot,
            data_end=snapshot.last_day,
            training_end=training_end,
            today=day,
            last_trained_on=self.last_trained_on,
            run_pathspec=f"{REPLAY_FLOW}/{self.settings.branch}/{day:%Y-%m-%d}",
            promote=_promote_in_registry,
        )
        verdict, shadow_reason = judged.verdict, judged.shadow_promotion
        record.alerts = "; ".join(f"[{alert.kind}] {alert.message}" for alert in verdict.report.alerts)
        record.retrain = verdict.retrain
        if not measured.performance.empty:
            record.rolling_return_rmse_vs_naive = float(measured.performance["rolling_return_rmse_vs_naive"].iloc[-1])
        if not measured.drift.empty:
            record.drifted_share = float(measured.drift["drifted"].mean())
        reasons = [shadow_reason] if shadow_reason else []
        if verdict.retrain:
            trained, promoted = self.retrain(snapshot)
            record.retrained = trained.version
            reasons += [trained.gate["reason"]] if promoted else []
        serving = self.registry.require_champion()
        if serving.version != champion.version:
            # The new champion predicts and decides the day again, from the positions the day started with.
            record.promoted, record.model_version, record.promotion = (
                serving.version,
                serving.version,
                " ".join(reasons),
            )
            record.n_predicted = self.predict_and_decide(snapshot, serving, held_before)
        self.days.append(record)
        return record

    def predict_and_decide(self, snapshot: FrameSnapshot, champion: ModelRecord, held: dict[str, float]) -> int:
        """BatchPredictFlow as of the snapshot's last day: the champion's table and its shadows' published, and the
        day's decisions taken from ``held``; the positions they leave are carried to the next day."""
        from stockcast.serve.batch import predict_snapshot

        branch = self.settings.branch
        table = publish_day(
            predict_snapshot(champion, snapshot, self.models[champion.version]),
            self.registry,
            snapshot,
            load_model=self.model_of,
        ).champion.table
        decided = decide_today(
            table, champion, self.settings.operate.decisions, held=held, branch=branch, store=self.store
        )
        self.held = held_positions(decided.table)
        return len(table)

    def model_of(self, record: ModelRecord) -> Any:
        """The fitted model of a version this replay trained."""
        return self.models[record.version]

    def retrain(self, snapshot: FrameSnapshot) -> tuple[ModelRecord, bool]:
        """TrainFlow on the snapshot, in this process: the challenger registered as ``v<YYYYMMDD>`` of the
        snapshot's last day and promoted when the gate says so; the record, and whether it was promoted."""
        champion = self.registry.champion()
        served = load_predictions(self.store, self.settings.branch) if champion else None
        version = f"v{pd.Timestamp(snapshot.last_day):%Y%m%d}"
        trained = train_and_gate(
            snapshot,
            self.settings.train,
            champion,
            served=served,
            version=version,
            branch=self.settings.branch,
            run_pathspec=f"{REPLAY_FLOW}/{self.settings.branch}/{snapshot.last_day}",
        )
        record = self.registry.register(trained.record)
        self.models[record.version] = trained.estimator
        self.last_trained_on = snapshot.last_day
        if trained.promote:
            self.registry.promote(
                record.version,
                reason=trained.record.gate["reason"],
                expected_champion=champion.version if champion else None,
            )
        return record, trained.promote


def _promote_in_registry(registry: Registry, record: ModelRecord, *, reason: str, expected_champion: str) -> None:
    """A shadow's promotion in a replay: the registry alone (a replay builds no Bento)."""
    registry.promote(record.version, reason=reason, expected_champion=expected_champion)


# --- inputs ---------------------------------------------------------------------------------------------------------


def read_history(
    prices: str, financials: str | None, settings: DataConfig, *, actions: str | None = None
) -> FrameSnapshot:
    """The input files read and validated as IngestFlow reads them, merged into one snapshot held in memory (a
    rejected file raises ``ContractViolationError`` naming it, before any day is replayed)."""
    raw = load_sources(prices, financials, actions)
    content = build_snapshot(None, validate_batch(raw, None, settings=settings), settings)
    return FrameSnapshot(
        version=content.version,
        prices=content.prices,
        financials=content.financials,
        oracle=content.oracle,
        actions=content.actions,
        calendar=settings.calendar,
        ticker_pattern=settings.ticker_pattern,
    )


def replay_window(dates: pd.DatetimeIndex, first: str, last: str) -> pd.DatetimeIndex:
    """The trading days from ``first`` to ``last`` (``YYYY-MM-DD``, both included), checked against the data's
    days (``dates``): both must be days with prices, in order, with history before the first to train on."""
    start, end = _day("from", first), _day("to", last)
    if start > end:
        raise ReplayInputError(f"--from {first} is after --to {last}: the window is reversed")
    span = f"the data's prices run from {dates[0]:%Y-%m-%d} to {dates[-1]:%Y-%m-%d}"
    for name, day, text in (("from", start, first), ("to", end, last)):
        if not dates[0] <= day <= dates[-1]:
            raise ReplayInputError(f"--{name} {text} is outside the data: {span}")
        if day not in dates:
            before, after = dates[dates < day][-1], dates[dates > day][0]
            raise ReplayInputError(
                f"--{name} {text} is not a trading day of the data (no prices that day); the nearest are "
                f"{before:%Y-%m-%d} and {after:%Y-%m-%d}"
            )
    if start == dates[0]:
        raise ReplayInputError(f"--from {first} is the data's first day: the first champion needs history before it")
    return dates[(dates >= start) & (dates <= end)]


def _day(name: str, text: str) -> pd.Timestamp:
    try:
        return pd.Timestamp(pd.to_datetime(text, format="%Y-%m-%d"))
    except ValueError as exc:
        raise ReplayInputError(f"--{name} must be a date as YYYY-MM-DD, got {text!r}") from exc


def replay_branch(name: str) -> str:
    """The ``@project`` branch of a replay named ``name``: Metaflow's ``test.<name>``, the name reduced to what
    Metaflow accepts in a branch (lower-case letters, digits and underscores)."""
    cleaned = re.sub(r"[^a-z0-9_]+", "_", name.lower()).strip("_")
    if not cleaned:
        raise ReplayInputError(f"--branch {name!r} has no letter or digit to name a branch with")
    return BRANCH_PREFIX + cleaned


def default_branch_name(out: Path) -> str:
    """The branch name of a replay into ``out`` when none is given: the folder's name and a hash of its absolute path
    (two folders of the same name elsewhere replay on two branches)."""
    digest = hashlib.sha256(str(out.resolve()).encode()).hexdigest()[:8]
    return f"replay_{out.resolve().name}_{digest}"


def check_fresh(out: Path, store: ObjectStore, branch: str) -> None:
    """Refuse to replay into a folder or a branch that already holds a replay: nothing published is overwritten."""
    existing = [name for name in (*OUTPUT_FILES, "days") if (out / name).exists()]
    if existing:
        raise ReplayInputError(f"--out {out} already holds a replay ({', '.join(existing)}): choose another folder")
    for prefix in (f"registry/{branch}/", f"predictions/{branch}/"):
        if store.list(prefix):
            raise ReplayInputError(
                f"branch {branch} already has a registry or published tables ({store.url(prefix)}): replay on "
                "another --branch"
            )


# --- the whole run --------------------------------------------------------------------------------------------------


def run_replay(
    history: FrameSnapshot,
    days: pd.DatetimeIndex,
    settings: ReplaySettings,
    store: ObjectStore,
    *,
    progress: Callable[[str], None] | None = None,
) -> Replay:
    """Replay the daily loop over ``days`` (see the module's description); progress lines (day, champion, what
    happened, time left) go to ``progress``."""
    replay = Replay(history, settings, store)
    started = time.perf_counter()
    first = replay.start(days[0])
    if progress:
        progress(f"first champion {first.version} ({first.candidate_id}), trained on data up to {first.data_end}")
    looping = time.perf_counter()
    for number, day in enumerate(days, start=1):
        try:
            record = replay.run_day(day)
        except Exception as exc:
            raise ReplayInterruptedError(
                f"the replay stopped on {day:%Y-%m-%d} ({type(exc).__name__}: {exc}); the {number - 1} day(s) before "
                f"it are written out, and branch {settings.branch} keeps what they published",
                replay.days,
            ) from exc
        if progress:
            now = time.perf_counter()
            left = (now - looping) / number * (len(days) - number)
            happened = [f"retrained {record.retrained}"] if record.retrained else []
            happened += [f"promoted {record.promoted}"] if record.promoted else []
            progress(
                f"[{number:>{len(str(len(days)))}}/{len(days)}] {day:%Y-%m-%d} champion {record.model_version}: "
                f"{', '.join(happened) or 'kept'}; {now - started:.0f} s elapsed, about {left:.0f} s left"
            )
    return replay
