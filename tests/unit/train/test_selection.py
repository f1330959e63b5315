"""The TrainFlow step functions, without Metaflow: modelling frame, backtest items, selection and the gate."""

from __future__ import annotations

from dataclasses import asdict, replace

import numpy as np
import pytest

from features import PRICES_ONLY_FEATURE_SET, get_feature_set
from stockcast.core.registry import ModelRecord
from stockcast.data.synthetic.generator import MarketSpec, generate_market
from stockcast.train.backtest import ORACLE_COLUMN
from stockcast.train.config import BacktestConfig, GateConfig
from stockcast.train.selection import (
    backtest_items,
    build_modelling_data,
    feature_sets_needed,
    plan_folds,
    run_backtest,
    select_and_gate,
)
from stockcast.train.zoo import CandidateSpec, usable_mask
from tests.factories import make_record

NAIVE = CandidateSpec("naive", "naive", "naive", {}, 0)
DRIFT = CandidateSpec("drift", "drift", "drift", {}, 0)
RIDGE = CandidateSpec("ridge[alpha=10.0]", "ridge", "ridge", {"alpha": 10.0}, 0)
GATE = GateConfig(alpha=0.05, min_days=5)
BACKTEST = BacktestConfig(n_folds=2, test_days=30, gap_days=1, window="expanding", min_train_days=60)


@pytest.fixture(scope="module")
def market():
    return generate_market(MarketSpec(n_tickers=6, start="2024-01-01", end="2024-12-31", seed=3))


@pytest.fixture(scope="module")
def data(market):
    return build_modelling_data(market.prices, market.financials, market.oracle, get_feature_set("full"))


def _champion(spec: CandidateSpec, feature_set: str = "full") -> ModelRecord:
    return make_record("v1", candidate=asdict(spec), feature_set=get_feature_set(feature_set))


def test_modelling_frame_has_target_and_oracle_beside_the_features(data, market):
    frame = data.frame
    assert len(frame) == len(market.prices)
    assert {"next_close", "next_return", ORACLE_COLUMN} <= set(frame.columns)
    assert not {"next_close", "next_return", ORACLE_COLUMN} & set(data.feature_columns)
    one = frame[frame["ticker"] == frame["ticker"].iloc[0]]
    np.testing.assert_allclose(one["next_close"].to_numpy()[:-1], one["close"].to_numpy()[1:])
    assert data.fingerprint == get_feature_set("full").fingerprint


def test_folds_cover_only_usable_dates(data):
    folds = plan_folds(data, BACKTEST)
    first_usable = data.frame.loc[usable_mask(data.frame), "date"].min()
    assert folds[0].train_start == first_usable
    assert folds[-1].test_end == data.frame.loc[usable_mask(data.frame), "date"].max()


def test_the_champion_is_added_only_when_no_candidate_is_exactly_it():
    assert [i.role for i in backtest_items([NAIVE, RIDGE], "full", None)] == ["candidate", "candidate"]
    assert [i.role for i in backtest_items([NAIVE, RIDGE], "full", _champion(RIDGE))] == ["candidate", "candidate"]
    other_params = replace(RIDGE, params={"alpha": 1.0})
    items = backtest_items([NAIVE, RIDGE], "full", _champion(other_params))
    assert [i.role for i in items] == ["candidate", "candidate", "champion"] and items[-1].spec == other_params
    items = backtest_items([NAIVE, RIDGE], "full", _champion(RIDGE, feature_set=PRICES_ONLY_FEATURE_SET.name))
    assert items[-1].feature_set == PRICES_ONLY_FEATURE_SET.name
    assert [fs.name for fs in feature_sets_needed(items)] == ["full", PRICES_ONLY_FEATURE_SET.name]


def _results(data, items):
    folds = plan_folds(data, BACKTEST)
    return [run_backtest(item, data, folds) for item in items]


def test_the_challenger_is_the_argmin_of_mean_fold_return_rmse(data):
    results = _results(data, backtest_items([NAIVE, DRIFT, RIDGE], "full", None))
    selection = select_and_gate(results, _champion(NAIVE), GATE)
    scores = {r.item.spec.candidate_id: r.evaluation.overall["mean_fold_rmse_return"] for r in results}
    assert selection.challenger.candidate_id == min(scores, key=scores.get)
    assert list(selection.leaderboard["candidate_id"]) == sorted(scores, key=scores.get)
    assert selection.challenger_metrics["candidate_id"] == selection.challenger.candidate_id


def test_without_a_champion_naive_is_promoted_as_the_baseline_when_nothing_beats_it(data):
    results = _results(data, backtest_items([NAIVE, DRIFT], "full", None))
    refused = select_and_gate(results, _champion(NAIVE), GATE)
    assert not refused.decision.promote and not refused.decision.baseline  # a champion exists: it stays

    selection = select_and_gate(results, None, GATE)

    assert selection.decision.promote and selection.decision.baseline
    assert selection.challenger == NAIVE and selection.challenger_metrics["candidate_id"] == NAIVE.candidate_id
    assert selection.decision.reason.startswith("Promote naive as the baseline champion: the branch has no champion")
    assert selection.champion_predictions is None


def test_an_identical_champion_is_not_beaten_and_is_named_by_version(data):
    results = _results(data, backtest_items([NAIVE, RIDGE], "full", None))
    challenger = select_and_gate(results, None, GATE).challenger
    selection = select_and_gate(results, _champion(challenger), GATE)
    assert selection.decision.promote is False
    assert f"the champion v1 ({challenger.candidate_id})" in selection.decision.reason
