"""The library behind TrainFlow: one function per step, so the flow only orchestrates.

The steps: plan what to backtest (every candidate, and the current champion re-scored on the same folds) and how to
split the work (shards of tickers, groups of folds) → build each shard's per-ticker rows → join them into the
modelling frame (features + target + the generator's oracle when present) and plan the walk-forward folds → backtest
each item on each group of folds → combine the groups and rank the items, and run the gate → refit the challenger on
its training window (all the data, or a rolling window's last days) → register it with its lineage. Packaging and
promotion follow in ``stockcast.deploy.package.release``.

Splitting changes nothing but the number of tasks: ``build_modelling_data`` is the join of one shard, and
``combine_backtests`` gives every item exactly the evaluation one backtest over all folds gives (``seconds`` aside).

Memory stays bounded as the market grows. A shard task holds its tickers' rows; the join works a month at a time
(cross-sectional ranks compare tickers on one date) and stores the modelling frame by month
(``stockcast.data.monthly``); a backtest task reads its fold's window, and trains on at most
``backtest.max_train_rows`` rows (``stockcast.train.backtest.training_rows``), as the refit does.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from features import (
    FeatureSet,
    build_target,
    build_ticker_features,
    get_feature_set,
    join_ticker_features,
    next_day_target,
)
from features.adjust import apply_renames, renamed_together
from stockcast.core.frames import json_ready
from stockcast.core.registry import ModelRecord
from stockcast.core.storage import ObjectStore
from stockcast.data.calendar import DATA_CALENDAR, trading_days_spanning
from stockcast.data.contract import ORACLE
from stockcast.data.monthly import FrameRows, MonthlyFrame, MonthlyWriter, RowCollector, RowSink, RowSource, read_rows
from stockcast.data.snapshot import Snapshot
from stockcast.train.backtest import (
    ORACLE_COLUMN,
    CandidateEvaluation,
    Fold,
    FoldSizes,
    backtest,
    evaluate_candidate,
    final_training_start,
    leaderboard,
    modelling_columns,
    plan_fold_sizes,
    training_rows,
    walk_forward_folds,
)
from stockcast.train.candidates import CandidateSpec, naive_spec, usable_mask
from stockcast.train.config import BacktestConfig, GateConfig, PlanConfig, TargetConfig, TrainConfig
from stockcast.train.factories import Estimator, fit_candidate
from stockcast.train.gate import GateDecision, as_baseline, as_fallback, compare, decide, served_reference

Role = Literal["candidate", "champion"]


@dataclass(frozen=True)
class ModellingData:
    """The modelling frame of one feature set (in memory, or stored by month for TrainFlow's tasks), what a model
    needs to know about its columns, and the figures the folds and the card need without reading it."""

    rows: RowSource
    feature_set: str
    fingerprint: str
    feature_columns: list[str]
    categorical_columns: list[str]
    usable_dates: pd.DatetimeIndex
    """The dates with at least one usable row (warm, known target): what the walk-forward folds split."""
    usable_rows: int
    dropped_targets: int
    """Targets dropped because the ticker's next row is too many trading days away (``spans_gap``)."""

    def read(self, columns: Sequence[str] | None = None) -> pd.DataFrame:
        """The whole frame (or some ``columns``) in (ticker, date) order: for tests and small markets; tasks read a
        window or a sample."""
        return read_rows(self.rows, columns=columns)


@dataclass(frozen=True)
class BacktestItem:
    """One unit of the flow's ``foreach``: a model spec, the feature set it is trained on, and why it is there."""

    spec: CandidateSpec
    feature_set: str
    role: Role


@dataclass(frozen=True)
class BacktestTask:
    """One unit of the flow's backtest ``foreach``: an item, on a group of the walk-forward folds (by index)."""

    item: BacktestItem
    folds: tuple[int, ...]


@dataclass(frozen=True)
class BacktestPart:
    """A finished backtest task: the item's predictions on its group of folds, and how long they took."""

    task: BacktestTask
    predictions: pd.DataFrame
    seconds: float


@dataclass(frozen=True)
class BacktestResult:
    """An item backtested on every fold: the evaluation, and the seconds its tasks took together."""

    item: BacktestItem
    evaluation: CandidateEvaluation
    seconds: float


@dataclass(frozen=True)
class ShardInputs:
    """The rows of a shard's tickers in each table of a snapshot: all that a shard task reads."""

    prices: pd.DataFrame
    financials: pd.DataFrame
    oracle: pd.DataFrame | None
    actions: pd.DataFrame


@dataclass(frozen=True)
class Selection:
    """The outcome of comparing every candidate: the leaderboard, the challenger and the gate's decision."""

    leaderboard: pd.DataFrame
    challenger: CandidateSpec
    """The model the decision is about: the best-ranked candidate, or naive when it is promoted as the baseline."""
    decision: GateDecision
    challenger_predictions: pd.DataFrame
    naive_predictions: pd.DataFrame
    champion_predictions: pd.DataFrame | None

    @property
    def challenger_metrics(self) -> dict[str, Any]:
        """The challenger's row of the leaderboard, for its registry record."""
        rows = self.leaderboard[self.leaderboard["candidate_id"] == self.challenger.candidate_id]
        return rows.iloc[0].to_dict()


def build_modelling_data(
    prices: pd.DataFrame,
    financials: pd.DataFrame,
    oracle: pd.DataFrame | None,
    feature_set: FeatureSet,
    *,
    actions: pd.DataFrame | None = None,
    calendar: str = DATA_CALENDAR,
    target: TargetConfig | None = None,
) -> ModellingData:
    """Features at each (ticker, date) on prices adjusted for the corporate ``actions``, the next-day target beside
    them (dropped where it spans more missing trading days of ``calendar`` than the target settings allow), and the
    oracle's best prediction when the data came from the generator, in memory. The whole market as one shard: what
    TrainFlow builds in shards (``build_shard_rows``, ``join_modelling_data``) equals it exactly."""
    shard = build_shard_rows(
        prices,
        financials,
        oracle,
        feature_set,
        actions=actions,
        trading_days=trading_days_spanning(calendar, prices["date"]),
        target=target,
    )
    return join_modelling_data([FrameRows(shard)], feature_set, RowCollector())


def build_shard_rows(
    prices: pd.DataFrame,
    financials: pd.DataFrame,
    oracle: pd.DataFrame | None,
    feature_set: FeatureSet,
    *,
    actions: pd.DataFrame | None = None,
    trading_days: pd.DatetimeIndex,
    target: TargetConfig | None = None,
) -> pd.DataFrame:
    """The per-ticker part of the modelling frame for the tickers of the tables given (a shard that holds every
    ticker a rename links to its own, see ``plan_shards``): their features (``build_ticker_features``), the
    next-day target, which counts missing days among the market's ``trading_days``, and the oracle adjusted like
    them. Only the cross-sectional features, which need every ticker, are left for the join."""
    target = target or TargetConfig()
    features = build_ticker_features(prices, financials, actions=actions, feature_set=feature_set)
    targets = next_day_target(features, trading_days=trading_days, max_missing_days=target.max_missing_days)
    rows = pd.concat([features, targets.drop(columns=["date", "ticker"])], axis=1)
    if oracle is None:
        return rows
    return rows.merge(_adjusted_oracle(oracle, prices, actions), on=["date", "ticker"], how="left")


def join_modelling_data(shards: Sequence[RowSource], feature_set: FeatureSet, sink: RowSink) -> ModellingData:
    """The modelling frame of the whole market from its shards' rows (``build_shard_rows``), a month at a time:
    each month's rows of every shard joined, with the cross-sectional ranks (which compare tickers on one date),
    then handed to the ``sink``, so the join holds a month of the market, never its history."""
    dates: list[np.ndarray] = []
    usable_rows = dropped = 0
    shard_of: dict[str, int] = {}
    for month in sorted({month for shard in shards for month in shard.months}):
        pieces = [shard.read_month(month) for shard in shards]
        _check_disjoint(pieces, shard_of)
        rows = join_ticker_features(pieces, feature_set)
        usable = usable_mask(rows)
        dates.append(rows.loc[usable, "date"].unique())
        usable_rows += int(usable.sum())
        dropped += int(rows["spans_gap"].sum())
        sink.add(rows)
    return ModellingData(
        rows=sink.finish(),
        feature_set=feature_set.name,
        fingerprint=feature_set.fingerprint,
        feature_columns=feature_set.feature_columns,
        categorical_columns=feature_set.categorical_columns,
        usable_dates=pd.DatetimeIndex(np.concatenate(dates) if dates else []).unique().sort_values(),
        usable_rows=usable_rows,
        dropped_targets=dropped,
    )


def _check_disjoint(pieces: Sequence[pd.DataFrame], shard_of: dict[str, int]) -> None:
    """Refuse a ticker found in two shards, in any months (a rename split across shards: the old name's rows before
    the rename, the new name's after), remembering in ``shard_of`` which shard each ticker was seen in."""
    for index, piece in enumerate(pieces):
        for ticker in piece["ticker"].unique():
            if shard_of.setdefault(ticker, index) != index:
                raise ValueError(
                    f"ticker {ticker} is in more than one shard of ticker features; shards must not share tickers"
                )


def _adjusted_oracle(oracle: pd.DataFrame, prices: pd.DataFrame, actions: pd.DataFrame | None) -> pd.DataFrame:
    """The oracle's best next close on the adjusted basis of the targets. It forecasts the raw close of the ticker's
    next row, so it takes the adjustment that row's close takes (adjusted next close over raw next close). On a
    ticker's last row that row is not in the data, after every known action: no adjustment, as without actions, so
    a shard without actions gives the rows the whole market gives."""
    best = oracle.rename(columns={ORACLE.columns[-1].name: ORACLE_COLUMN})[["date", "ticker", ORACLE_COLUMN]]
    if actions is None or actions.empty:
        return best
    renames = actions[actions["kind"] == "rename"]
    adjusted = build_target(prices, actions=actions)
    raw = build_target(prices, actions=renames)
    factor = adjusted[["date", "ticker"]].assign(factor=(adjusted["next_close"] / raw["next_close"]).fillna(1.0))
    best = apply_renames(best, actions, "date").merge(factor, on=["date", "ticker"], how="inner")
    return best.assign(**{ORACLE_COLUMN: best[ORACLE_COLUMN] * best["factor"]}).drop(columns="factor")


def plan_backtest_sizes(settings: TrainConfig, n_days: int) -> FoldSizes:
    """The fold sizes for a snapshot of ``n_days`` trading days, checked when a training run starts: a history too
    short for the backtest stops the run there, with one sentence, before any work."""
    feature_set = get_feature_set(settings.feature_set)
    backtest = settings.backtest
    return plan_fold_sizes(
        n_days,
        warm_up_days=feature_set.min_history - 1,
        n_folds=backtest.n_folds,
        test_days=backtest.test_days,
        gap_days=backtest.gap_days,
        min_train_days=backtest.min_train_days,
        adapt=backtest.adapt,
        min_test_total=settings.gate.min_days,
        feature_set=feature_set.name,
    )


def plan_folds(data: ModellingData, backtest: BacktestConfig, sizes: FoldSizes | None = None) -> list[Fold]:
    """The walk-forward folds over the dates that can be trained and scored on; every model uses these. ``sizes``
    (from ``plan_backtest_sizes``) replace the configured fold sizes when the history was too short for them."""
    dates = data.usable_dates
    n_folds, test_days = (sizes.n_folds, sizes.test_days) if sizes else (backtest.n_folds, backtest.test_days)
    min_train_days = sizes.min_train_days if sizes else backtest.min_train_days
    train_days = backtest.train_days
    return walk_forward_folds(
        dates,
        n_folds=n_folds,
        test_days=test_days,
        gap_days=backtest.gap_days,
        window=backtest.window,
        min_train_days=min_train_days,
        train_days=None if train_days is None else max(train_days, min_train_days),
    )


def champion_spec(champion: ModelRecord) -> CandidateSpec:
    """The spec the champion was trained from, so it can be re-scored on today's data and folds."""
    return CandidateSpec(**champion.candidate)


def backtest_items(
    candidates: Sequence[CandidateSpec], feature_set: str, champion: ModelRecord | None
) -> list[BacktestItem]:
    """Every candidate, plus the champion when no candidate is exactly it (same spec and feature set): the
    champion must be judged on the new data and folds, never by the numbers it had when it was promoted."""
    items = [BacktestItem(spec, feature_set, "candidate") for spec in candidates]
    if champion is not None and not any(_is_champion(item, champion) for item in items):
        items.append(BacktestItem(champion_spec(champion), champion.feature_set, "champion"))
    return items


def _is_champion(item: BacktestItem, champion: ModelRecord) -> bool:
    """True when the item trains exactly the champion: same spec, same feature set."""
    return item.spec == champion_spec(champion) and item.feature_set == champion.feature_set


def feature_sets_needed(items: Sequence[BacktestItem]) -> list[FeatureSet]:
    """The feature sets the backtest items are trained on, each once."""
    return [get_feature_set(name) for name in dict.fromkeys(item.feature_set for item in items)]


def plan_backtests(settings: TrainConfig, champion: ModelRecord | None) -> list[BacktestItem]:
    """TrainFlow's ``foreach`` list: every candidate × hyper-parameter setting of the configuration, and the
    champion when none of them is exactly it."""
    return backtest_items(settings.candidate_specs(), settings.feature_set, champion)


def plan_shards(tickers: Iterable[str], actions: pd.DataFrame, plan: PlanConfig) -> list[list[str]]:
    """TrainFlow's shard ``foreach`` list: the tickers in shards of at most ``plan.tickers_per_shard`` (so a
    shard task's memory stays bounded as the market grows, and the number of shards grows with it), every group of
    tickers linked by renames in one shard (a group larger than a shard is a shard of its own)."""
    shards: list[list[str]] = []
    for group in renamed_together(tickers, actions):
        if shards and len(shards[-1]) + len(group) <= plan.tickers_per_shard:
            shards[-1].extend(group)
        else:
            shards.append(list(group))
    return shards


def shard_inputs(snapshot: Snapshot, tickers: Sequence[str]) -> ShardInputs:
    """The rows of ``tickers`` in the snapshot's prices, financials, oracle and corporate actions, read partition by
    partition (``Snapshot.read``): a shard task holds its own tickers' rows, never the whole market."""
    return ShardInputs(
        prices=snapshot.read("prices", tickers),
        financials=snapshot.read("financials", tickers),
        oracle=snapshot.read("oracle", tickers),
        actions=snapshot.read("actions", tickers),
    )


def build_shard(
    snapshot: Snapshot,
    tickers: Sequence[str],
    items: Sequence[BacktestItem],
    *,
    trading_days: pd.DatetimeIndex,
    target: TargetConfig,
    store: ObjectStore,
) -> dict[str, MonthlyFrame]:
    """The body of TrainFlow's shard ``foreach``: a shard's per-ticker rows of every feature set the items use, by
    name, read from its tickers' rows alone and stored by month in ``store``."""
    inputs = shard_inputs(snapshot, tickers)
    shards = {}
    for needed in feature_sets_needed(items):
        rows = build_shard_rows(
            inputs.prices,
            inputs.financials,
            inputs.oracle,
            needed,
            actions=inputs.actions,
            trading_days=trading_days,
            target=target,
        )
        writer = MonthlyWriter(store, f"shard-{needed.name}")
        writer.add(rows)
        shards[needed.name] = writer.finish()
    return shards


def market_trading_days(snapshot: Snapshot) -> pd.DatetimeIndex:
    """The trading days of the snapshot's calendar over its prices (for the ``"data"`` calendar, the dates any
    ticker has): what every shard counts a target's missing days on, so that a shard alone gives its tickers the
    targets the whole market gives them."""
    return trading_days_spanning(snapshot.calendar, pd.Series(snapshot.price_dates))


def join_shards(
    shards: Sequence[Mapping[str, MonthlyFrame]],
    settings: TrainConfig,
    sizes: FoldSizes,
    store: ObjectStore,
) -> tuple[dict[str, ModellingData], list[Fold]]:
    """The modelling frame of every feature set the shards were built for, by name, stored by month in ``store``,
    and the walk-forward folds every model shares (planned on the frame of the configured feature set, with the
    sizes checked when the run started)."""
    modelling = {
        name: join_modelling_data(
            [shard[name] for shard in shards], get_feature_set(name), MonthlyWriter(store, f"modelling-{name}")
        )
        for name in shards[0]
    }
    return modelling, plan_folds(modelling[settings.feature_set], settings.backtest, sizes)


def plan_backtest_tasks(items: Sequence[BacktestItem], n_folds: int, plan: PlanConfig) -> list[BacktestTask]:
    """TrainFlow's backtest ``foreach`` list: every item on every group of ``plan.folds_per_task`` consecutive folds
    of the ``n_folds`` (the last group may be smaller), item by item."""
    groups = [
        tuple(range(start, min(start + plan.folds_per_task, n_folds)))
        for start in range(0, n_folds, plan.folds_per_task)
    ]
    return [BacktestTask(item, group) for item in items for group in groups]


def run_backtest(
    task: BacktestTask, data: ModellingData, folds: Sequence[Fold], *, max_train_rows: int | None, seed: int
) -> BacktestPart:
    """Fit and score the task's item on its group of the ``folds``, timed: the body of TrainFlow's backtest
    ``foreach``. Each fold reads its own window of the frame, and trains on at most ``backtest.max_train_rows``."""
    started = time.perf_counter()
    predictions = backtest(
        task.item.spec,
        data.rows,
        [folds[index] for index in task.folds],
        data.feature_columns,
        data.categorical_columns,
        max_train_rows=max_train_rows,
        seed=seed,
    )
    return BacktestPart(task, predictions, time.perf_counter() - started)


def combine_backtests(parts: Sequence[BacktestPart], folds: Sequence[Fold]) -> list[BacktestResult]:
    """Each item's backtest parts combined into its evaluation over every fold, items in the order they first
    appear: the same predictions and metrics as one backtest over all ``folds``; ``seconds`` add up.

    Raises ``ValueError`` when an item's parts miss a fold or repeat one (a task lost or run twice).
    """
    by_item: list[tuple[BacktestItem, list[BacktestPart]]] = []
    for part in parts:
        found = next((group for item, group in by_item if item == part.task.item), None)
        if found is None:
            by_item.append((part.task.item, [part]))
        else:
            found.append(part)
    expected = sorted(fold.index for fold in folds)
    results = []
    for item, group in by_item:
        covered = sorted(index for part in group for index in part.task.folds)
        if covered != expected:
            raise ValueError(
                f"the backtest tasks of {item.spec.candidate_id} ({item.role}) covered folds {covered}, not each of "
                f"{expected} once"
            )
        evaluation = evaluate_candidate(item.spec.candidate_id, [part.predictions for part in group])
        results.append(BacktestResult(item, evaluation, sum(part.seconds for part in group)))
    return results


def select_and_gate(
    results: Sequence[BacktestResult],
    champion: ModelRecord | None,
    gate: GateConfig,
    *,
    data_version: str = "",
    served: pd.DataFrame | None = None,
) -> Selection:
    """Rank the candidates by mean fold RMSE of the return (row 0 is the challenger) and decide whether it replaces
    the champion: it must beat the naive baseline and the re-scored champion on the same folds. A challenger that is
    the champion's own spec, on data other than the champion's (``data_version``), is a refresh: it must be no worse
    than the champion as it served by more than ``gate.refresh_margin``. ``served`` (the champion's published
    predictions, when the flow has them) judges the challenger against the champion as it served (``gate.decide``).
    A branch without a champion where nothing beats naive gets naive itself as its baseline champion
    (``gate.as_baseline``); a champion that served significantly worse than naive is replaced by naive when the
    challenger is refused, or is a refresh naive also beats on the served days (``gate.as_fallback``)."""
    candidates = [r for r in results if r.item.role == "candidate"]
    board = leaderboard(
        [{**r.evaluation.overall, "train_seconds": r.seconds, "factory": r.item.spec.factory} for r in candidates]
    )
    by_id = {r.item.spec.candidate_id: r for r in candidates}
    challenger = by_id[board.loc[0, "candidate_id"]]
    naive = by_id[naive_spec([r.item.spec for r in candidates]).candidate_id]
    champion_predictions = served_predictions = harm = challenger_harm = None
    refresh = False
    if champion is not None:
        # backtest_items guarantees one item trains the champion; named by version in the gate's reason:
        # "the champion v123 (catboost[depth=4])".
        rescored = next(r for r in results if _is_champion(r.item, champion))
        label = f"{champion.version} ({champion.candidate_id})"
        champion_predictions = rescored.evaluation.predictions.assign(candidate_id=label)
        refresh = (
            gate.refresh_margin > 0
            and _is_champion(challenger.item, champion)
            and data_version != champion.data_version
        )
        if served is not None:
            mine = served[served["model_version"] == champion.version]
            served_predictions = served_reference(challenger.evaluation.predictions, mine, label)
            if not _is_champion(naive.item, champion):
                naive_rows = naive.evaluation.predictions
                harm = compare(
                    naive_rows,
                    served_reference(naive_rows, mine, label),
                    against="served champion",
                    alpha=gate.alpha,
                    min_days=gate.min_days,
                )
                # The challenger's walk-forward predictions of the days the champion served, judged the same way.
                served_rows = challenger.evaluation.predictions.merge(
                    served_predictions[["date", "ticker"]], on=["date", "ticker"]
                )
                challenger_harm = compare(
                    naive_rows, served_rows, against="challenger", alpha=gate.alpha, min_days=gate.min_days
                )
    decision = decide(
        challenger.evaluation.predictions,
        naive.evaluation.predictions,
        champion_predictions,
        alpha=gate.alpha,
        min_days=gate.min_days,
        refresh_margin=gate.refresh_margin if refresh else None,
        served_predictions=served_predictions,
    )
    if champion is None and not decision.promote:
        challenger, decision = naive, as_baseline(decision, naive.item.spec.candidate_id)
    elif harm is not None and harm["passed"] and (not decision.promote or (refresh and challenger_harm["passed"])):
        # A refresh is promoted for being no worse than what the champion served: when that was worse than naive,
        # the bar says nothing, and one that naive beats on the same days does not replace it.
        challenger, decision = naive, as_fallback(decision, naive.item.spec.candidate_id, harm, min_days=gate.min_days)
    return Selection(
        leaderboard=board,
        challenger=challenger.item.spec,
        decision=decision,
        challenger_predictions=challenger.evaluation.predictions,
        naive_predictions=naive.evaluation.predictions,
        champion_predictions=champion_predictions,
    )


def data_notes(data: ModellingData, sizes: FoldSizes, target: TargetConfig, max_train_rows: int | None) -> str:
    """A sentence on how the data shaped the backtest, for the training card: fold sizes, dropped targets, and the
    training sample when the frame has more usable rows than ``backtest.max_train_rows``."""
    notes = (
        f"Folds: {sizes.describe()}. {data.dropped_targets} target(s) dropped: their next row is more than "
        f"{target.max_missing_days} missing trading day(s) away, so they are no next-day return."
    )
    if max_train_rows is not None and data.usable_rows > max_train_rows:
        notes += (
            f" Models train on a sample of at most {max_train_rows:,} of the {data.usable_rows:,} usable rows "
            "(backtest.max_train_rows), the same rows for every model."
        )
    return notes


def refit_challenger(
    selection: Selection, data: ModellingData, folds: Sequence[Fold], backtest: BacktestConfig, *, seed: int
) -> Estimator:
    """The challenger fitted on the usable rows of the modelling frame (all of them, or with a rolling window the last
    dates the ``folds`` each trained on; at most ``backtest.max_train_rows``, sampled as in the backtest), before it
    is registered."""
    rows = training_rows(
        data.rows,
        modelling_columns(data.rows, data.feature_columns),
        since=final_training_start(data.usable_dates, folds, backtest.window),
        max_rows=backtest.max_train_rows,
        seed=seed,
    )
    return fit_candidate(selection.challenger, rows, data.feature_columns, data.categorical_columns)


def model_record(
    *,
    version: str,
    branch: str,
    run_pathspec: str,
    model_task: str,
    spec: CandidateSpec,
    data: ModellingData,
    data_version: str,
    data_end: str,
    snapshot_run: str,
    code_version: str | None,
    metrics: dict[str, Any],
    decision: GateDecision,
) -> ModelRecord:
    """The registry record of a refitted challenger: everything needed to trust, reproduce or serve it."""
    return ModelRecord(
        version=version,
        branch=branch,
        run_pathspec=run_pathspec,
        model_task=model_task,
        candidate=asdict(spec),
        data_version=data_version,
        data_end=data_end,
        snapshot_run=snapshot_run,
        feature_set=data.feature_set,
        feature_fingerprint=data.fingerprint,
        code_version=code_version,
        metrics=json_ready(metrics),
        gate=json_ready(decision.to_dict()),
    )


@dataclass(frozen=True)
class TrainedModel:
    """A challenger trained, gated and refitted in one process: its record (not yet registered), its fitted model and
    whether the gate promotes it."""

    record: ModelRecord
    estimator: Estimator
    promote: bool


def train_and_gate(
    snapshot: Snapshot,
    settings: TrainConfig,
    champion: ModelRecord | None,
    *,
    served: pd.DataFrame | None,
    version: str,
    branch: str,
    run_pathspec: str,
) -> TrainedModel:
    """TrainFlow's steps one after the other in this process, on a snapshot small enough for one machine's memory:
    the folds sized to its history, the whole market's modelling frame, every backtest, the selection and gate
    (``select_and_gate``, with ``served``, the champion's published predictions), the refit. What a replay retrains
    with; TrainFlow spreads the same functions over tasks."""
    sizes = plan_backtest_sizes(settings, snapshot.n_days)
    items = plan_backtests(settings, champion)
    modelling = {
        needed.name: build_modelling_data(
            snapshot.prices,
            snapshot.financials,
            snapshot.oracle,
            needed,
            actions=snapshot.actions,
            calendar=snapshot.calendar,
            target=settings.target,
        )
        for needed in feature_sets_needed(items)
    }
    folds = plan_folds(modelling[settings.feature_set], settings.backtest, sizes)
    max_rows, seed = settings.backtest.max_train_rows, settings.seed
    parts = [
        run_backtest(task, modelling[task.item.feature_set], folds, max_train_rows=max_rows, seed=seed)
        for task in plan_backtest_tasks(items, sizes.n_folds, settings.plan)
    ]
    selection = select_and_gate(
        combine_backtests(parts, folds), champion, settings.gate, data_version=snapshot.version, served=served
    )
    data = modelling[settings.feature_set]
    estimator = refit_challenger(selection, data, folds, settings.backtest, seed=seed)
    from stockcast.train.zoo import as_trained

    record = model_record(
        version=version,
        branch=branch,
        run_pathspec=run_pathspec,
        model_task=run_pathspec,
        spec=as_trained(selection.challenger, estimator),
        data=data,
        data_version=snapshot.version,
        data_end=snapshot.last_day,
        snapshot_run=snapshot.run_pathspec,
        code_version=None,
        metrics=selection.challenger_metrics,
        decision=selection.decision,
    )
    return TrainedModel(record, estimator, selection.decision.promote)
