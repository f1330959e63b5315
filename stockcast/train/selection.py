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
from stockcast.core.frames import json_ready
from stockcast.core.registry import ModelRecord
from stockcast.data.contract import ORACLE
from stockcast.data.snapshot import Snapshot
from stockcast.train.backtest import (
    ORACLE_COLUMN,
    CandidateEvaluation,
    Fold,
    evaluate_candidate,
    leaderboard,
    walk_forward_folds,
)
from stockcast.train.config import BacktestConfig, GateConfig, TrainConfig
from stockcast.train.gate import GateDecision, decide
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
    decision: GateDecision
    challenger_predictions: pd.DataFrame
    naive_predictions: pd.DataFrame
    champion_predictions: pd.DataFrame | None


def build_modelling_data(
    prices: pd.DataFrame, financials: pd.DataFrame, oracle: pd.DataFrame | None, feature_set: FeatureSet
) -> ModellingData:
    """Features at each (ticker, date), the next-day target beside them, and the oracle's best prediction when
    the data came from the generator. The target is joined here, after the features were built without it."""
    features = build_features(prices, financials, feature_set=feature_set)
    target = build_target(prices)
    frame = features.merge(target, on=["date", "ticker"], how="left", validate="one_to_one")
    if oracle is not None:
        best = oracle.rename(columns={ORACLE.columns[-1].name: ORACLE_COLUMN})[["date", "ticker", ORACLE_COLUMN]]
        frame = frame.merge(best, on=["date", "ticker"], how="left", validate="one_to_one")
    return ModellingData(
        frame=frame,
        feature_set=feature_set.name,
        fingerprint=feature_set.fingerprint,
        feature_columns=feature_set.feature_columns,
        categorical_columns=feature_set.categorical_columns,
    )


def plan_folds(data: ModellingData, backtest: BacktestConfig) -> list[Fold]:
    """The walk-forward folds over the dates that can be trained and scored on; every model uses these."""
    dates = data.frame.loc[usable_mask(data.frame), "date"]
    return walk_forward_folds(
        dates,
        n_folds=backtest.n_folds,
        test_days=backtest.test_days,
        gap_days=backtest.gap_days,
        window=backtest.window,
        min_train_days=backtest.min_train_days,
        train_days=backtest.train_days,
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
    snapshot: Snapshot, items: Sequence[BacktestItem], backtest: BacktestConfig, feature_set: str
) -> tuple[dict[str, ModellingData], list[Fold]]:
    """The modelling frame of every feature set the items use, by name, and the walk-forward folds every model shares
    (planned on the frame of the configured ``feature_set``)."""
    modelling = {
        needed.name: build_modelling_data(snapshot.prices, snapshot.financials, snapshot.oracle, needed)
        for needed in feature_sets_needed(items)
    }
    return modelling, plan_folds(modelling[feature_set], backtest)


def run_backtest(item: BacktestItem, data: ModellingData, folds: Sequence[Fold]) -> BacktestResult:
    """Fit and score one item on every fold, timed: the body of TrainFlow's ``foreach`` step."""
    started = time.perf_counter()
    evaluation = evaluate_candidate(item.spec, data.frame, folds, data.feature_columns, data.categorical_columns)
    return BacktestResult(item, evaluation, time.perf_counter() - started)


def select_and_gate(results: Sequence[BacktestResult], champion: ModelRecord | None, gate: GateConfig) -> Selection:
    """Rank the candidates by mean fold RMSE (row 0 is the challenger) and decide whether it replaces the
    champion: it must beat the naive baseline and the re-scored champion on the same folds."""
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
    return Selection(
        leaderboard=board,
        challenger=challenger.item.spec,
        decision=decision,
        challenger_predictions=challenger.evaluation.predictions,
        naive_predictions=naive.evaluation.predictions,
        champion_predictions=champion_predictions,
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
