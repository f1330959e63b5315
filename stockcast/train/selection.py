"""The library behind TrainFlow: one function per step, so the flow only orchestrates.

The steps: plan what to backtest (every candidate, and the current champion re-scored on the same folds) → build the
modelling frame (features + target + the generator's oracle when present) and the walk-forward folds → backtest each
item → rank them and run the gate → refit the challenger on all data → register it with its lineage. Packaging and
promotion follow in ``stockcast.deploy.package.release``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import pandas as pd

from features import FeatureSet, build_features, build_target, get_feature_set
from features.adjust import apply_renames
from stockcast.core.frames import json_ready
from stockcast.core.registry import ModelRecord
from stockcast.data.calendar import DATA_CALENDAR, trading_days_spanning
from stockcast.data.contract import ORACLE
from stockcast.data.snapshot import Snapshot
from stockcast.train.backtest import (
    ORACLE_COLUMN,
    CandidateEvaluation,
    Fold,
    FoldSizes,
    evaluate_candidate,
    leaderboard,
    plan_fold_sizes,
    walk_forward_folds,
)
from stockcast.train.config import BacktestConfig, GateConfig, TargetConfig, TrainConfig
from stockcast.train.gate import GateDecision, as_baseline, decide
from stockcast.train.zoo import CandidateSpec, Estimator, fit_candidate, naive_spec, usable_mask

Role = Literal["candidate", "champion"]


@dataclass(frozen=True)
class ModellingData:
    """The modelling frame of one feature set, and what a model needs to know about its columns."""

    frame: pd.DataFrame
    feature_set: str
    fingerprint: str
    feature_columns: list[str]
    categorical_columns: list[str]


@dataclass(frozen=True)
class BacktestItem:
    """One unit of the flow's ``foreach``: a model spec, the feature set it is trained on, and why it is there."""

    spec: CandidateSpec
    feature_set: str
    role: Role


@dataclass(frozen=True)
class BacktestResult:
    """A finished backtest item: the evaluation and how long it took."""

    item: BacktestItem
    evaluation: CandidateEvaluation
    seconds: float


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
    oracle's best prediction when the data came from the generator. The target is joined after the features."""
    target = target or TargetConfig()
    features = build_features(prices, financials, actions=actions, feature_set=feature_set)
    sessions = trading_days_spanning(calendar, prices["date"])
    targets = build_target(prices, actions=actions, trading_days=sessions, max_missing_days=target.max_missing_days)
    frame = features.merge(targets, on=["date", "ticker"], how="left", validate="one_to_one")
    if oracle is not None:
        frame = frame.merge(_adjusted_oracle(oracle, prices, actions), on=["date", "ticker"], how="left")
    return ModellingData(
        frame=frame,
        feature_set=feature_set.name,
        fingerprint=feature_set.fingerprint,
        feature_columns=feature_set.feature_columns,
        categorical_columns=feature_set.categorical_columns,
    )


def _adjusted_oracle(oracle: pd.DataFrame, prices: pd.DataFrame, actions: pd.DataFrame | None) -> pd.DataFrame:
    """The oracle's best next close on the adjusted basis of the targets. It forecasts the raw close of the ticker's
    next row, so it takes the adjustment that row's close takes (adjusted next close over raw next close)."""
    best = oracle.rename(columns={ORACLE.columns[-1].name: ORACLE_COLUMN})[["date", "ticker", ORACLE_COLUMN]]
    if actions is None or actions.empty:
        return best
    renames = actions[actions["kind"] == "rename"]
    adjusted = build_target(prices, actions=actions)
    raw = build_target(prices, actions=renames)
    factor = adjusted[["date", "ticker"]].assign(factor=adjusted["next_close"] / raw["next_close"])
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
    dates = data.frame.loc[usable_mask(data.frame), "date"]
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


def prepare_modelling(
    snapshot: Snapshot, items: Sequence[BacktestItem], settings: TrainConfig, sizes: FoldSizes
) -> tuple[dict[str, ModellingData], list[Fold]]:
    """The modelling frame of every feature set the items use, by name, and the walk-forward folds every model shares
    (planned on the frame of the configured feature set, with the sizes checked when the run started)."""
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
    return modelling, plan_folds(modelling[settings.feature_set], settings.backtest, sizes)


def run_backtest(item: BacktestItem, data: ModellingData, folds: Sequence[Fold]) -> BacktestResult:
    """Fit and score one item on every fold, timed: the body of TrainFlow's ``foreach`` step."""
    started = time.perf_counter()
    evaluation = evaluate_candidate(item.spec, data.frame, folds, data.feature_columns, data.categorical_columns)
    return BacktestResult(item, evaluation, time.perf_counter() - started)


def select_and_gate(results: Sequence[BacktestResult], champion: ModelRecord | None, gate: GateConfig) -> Selection:
    """Rank the candidates by mean fold RMSE of the return (row 0 is the challenger) and decide whether it replaces
    the champion: it must beat the naive baseline and the re-scored champion on the same folds. A branch without a
    champion where nothing beats naive gets naive itself as its baseline champion (``gate.as_baseline``)."""
    candidates = [r for r in results if r.item.role == "candidate"]
    board = leaderboard(
        [{**r.evaluation.overall, "train_seconds": r.seconds, "factory": r.item.spec.factory} for r in candidates]
    )
    by_id = {r.item.spec.candidate_id: r for r in candidates}
    challenger = by_id[board.loc[0, "candidate_id"]]
    naive = by_id[naive_spec([r.item.spec for r in candidates]).candidate_id]
    champion_predictions = None
    if champion is not None:
        # backtest_items guarantees one item trains the champion; named by version in the gate's reason:
        # "the champion v123 (catboost[depth=4])".
        rescored = next(r for r in results if _is_champion(r.item, champion))
        label = f"{champion.version} ({champion.candidate_id})"
        champion_predictions = rescored.evaluation.predictions.assign(candidate_id=label)
    decision = decide(
        challenger.evaluation.predictions,
        naive.evaluation.predictions,
        champion_predictions,
        alpha=gate.alpha,
        min_days=gate.min_days,
    )
    if champion is None and not decision.promote:
        challenger, decision = naive, as_baseline(decision, naive.item.spec.candidate_id)
    return Selection(
        leaderboard=board,
        challenger=challenger.item.spec,
        decision=decision,
        challenger_predictions=challenger.evaluation.predictions,
        naive_predictions=naive.evaluation.predictions,
        champion_predictions=champion_predictions,
    )


def data_notes(data: ModellingData, sizes: FoldSizes, target: TargetConfig) -> str:
    """A sentence on how the data shaped the backtest, for the training card: fold sizes and dropped targets."""
    dropped = int(data.frame["spans_gap"].sum())
    return (
        f"Folds: {sizes.describe()}. {dropped} target(s) dropped: their next row is more than "
        f"{target.max_missing_days} missing trading day(s) away, so they are no next-day return."
    )


def refit_challenger(selection: Selection, data: ModellingData) -> Estimator:
    """The challenger fitted on every usable row of the modelling frame, before it is registered."""
    return fit_candidate(selection.challenger, data.frame, data.feature_columns, data.categorical_columns)


def model_record(
    *,
    version: str,
    branch: str,
    run_pathspec: str,
    model_task: str,
    spec: CandidateSpec,
    data: ModellingData,
    data_version: str,
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
        snapshot_run=snapshot_run,
        feature_set=data.feature_set,
        feature_fingerprint=data.fingerprint,
        code_version=code_version,
        metrics=json_ready(metrics),
        gate=json_ready(decision.to_dict()),
    )
