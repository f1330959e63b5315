"""The TrainFlow step functions, without Metaflow: modelling frame, backtest items, selection and the gate."""

from __future__ import annotations

from dataclasses import asdict, replace

import numpy as np
import pandas as pd
import pytest

from features import PRICES_ONLY_FEATURE_SET, build_target, get_feature_set
from stockcast.core.registry import ModelRecord
from stockcast.core.storage import LocalStore
from stockcast.data.calendar import trading_days_spanning
from stockcast.data.monthly import FrameRows, MonthlyWriter, RowCollector
from stockcast.data.partitions import partition_table, read_table, write_tables
from stockcast.data.synthetic.generator import MarketSpec, generate_market
from stockcast.train.backtest import ORACLE_COLUMN, backtest, evaluate_candidate, final_training_start
from stockcast.train.candidates import CandidateSpec, usable_mask
from stockcast.train.config import BacktestConfig, GateConfig, PlanConfig
from stockcast.train.selection import (
    backtest_items,
    build_modelling_data,
    build_shard_rows,
    combine_backtests,
    feature_sets_needed,
    join_modelling_data,
    plan_backtest_tasks,
    plan_folds,
    plan_shards,
    refit_challenger,
    run_backtest,
    select_and_gate,
    shard_inputs,
)
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
    frame = data.read()
    assert len(frame) == len(market.prices)
    assert {"next_close", "next_return", ORACLE_COLUMN} <= set(frame.columns)
    assert not {"next_close", "next_return", ORACLE_COLUMN} & set(data.feature_columns)
    one = frame[frame["ticker"] == frame["ticker"].iloc[0]]
    np.testing.assert_allclose(one["next_close"].to_numpy()[:-1], one["close"].to_numpy()[1:])
    assert data.fingerprint == get_feature_set("full").fingerprint
    assert data.usable_rows == usable_mask(frame).sum() and data.dropped_targets == frame["spans_gap"].sum()


def test_folds_cover_only_usable_dates(data):
    folds = plan_folds(data, BACKTEST)
    frame = data.read()
    assert folds[0].train_start == frame.loc[usable_mask(frame), "date"].min()
    assert folds[-1].test_end == frame.loc[usable_mask(frame), "date"].max()


def test_the_champion_is_added_only_when_no_candidate_is_exactly_it():
    assert [i.role for i in backtest_items([NAIVE, RIDGE], "full", None)] == ["candidate", "candidate"]
    assert [i.role for i in backtest_items([NAIVE, RIDGE], "full", _champion(RIDGE))] == ["candidate", "candidate"]
    other_params = replace(RIDGE, params={"alpha": 1.0})
    items = backtest_items([NAIVE, RIDGE], "full", _champion(other_params))
    assert [i.role for i in items] == ["candidate", "candidate", "champion"] and items[-1].spec == other_params
    items = backtest_items([NAIVE, RIDGE], "full", _champion(RIDGE, feature_set=PRICES_ONLY_FEATURE_SET.name))
    assert items[-1].feature_set == PRICES_ONLY_FEATURE_SET.name
    assert [fs.name for fs in feature_sets_needed(items)] == ["full", PRICES_ONLY_FEATURE_SET.name]


def _results(data, items, folds_per_task=BACKTEST.n_folds):
    """The items backtested as TrainFlow does, in tasks of ``folds_per_task`` folds (default: one task per item)."""
    folds = plan_folds(data, BACKTEST)
    tasks = plan_backtest_tasks(items, len(folds), PlanConfig(folds_per_task=folds_per_task))
    return combine_backtests([run_backtest(task, data, folds, max_train_rows=None, seed=0) for task in tasks], folds)


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


def test_an_identical_champion_on_the_same_data_is_not_beaten_and_is_named_by_version(data):
    results = _results(data, backtest_items([NAIVE, RIDGE], "full", None))
    challenger = select_and_gate(results, None, GATE).challenger
    champion = _champion(challenger)
    selection = select_and_gate(results, champion, GATE, data_version=champion.data_version)
    assert selection.decision.promote is False
    assert f"the champion v1 ({challenger.candidate_id})" in selection.decision.reason


def test_a_refit_of_the_champion_on_newer_data_is_judged_as_a_refresh(data):
    """On this market nothing beats naive, so the champion is naive and its refit is naive again: a refresh, judged
    against the champion as it served with the margin (and refused: it does not beat the naive baseline, itself,
    and the champion has served nothing yet)."""
    results = _results(data, backtest_items([NAIVE, DRIFT], "full", None))
    champion = _champion(NAIVE)

    refresh = select_and_gate(results, champion, GATE, data_version="newer")
    same_data = select_and_gate(results, champion, GATE, data_version=champion.data_version)
    never = select_and_gate(results, champion, GateConfig(alpha=0.05, min_days=5, refresh_margin=0.0), data_version="x")

    assert refresh.challenger == NAIVE and refresh.decision.reason.startswith("Do not promote refresh naive: ")
    assert refresh.decision.comparisons[1]["against"] == "served champion"
    assert refresh.decision.comparisons[1]["margin"] == GATE.refresh_margin == 0.05
    for not_a_refresh in (same_data, never):
        assert not_a_refresh.decision.reason.startswith("Do not promote naive: ")
        assert not_a_refresh.decision.comparisons[1]["against"] == "champion"
        assert not_a_refresh.decision.comparisons[1]["margin"] == 0.0


def _with_predictions(result, predicted_return: pd.Series, *, ranked_first: bool = False):
    """A backtest result whose model predicted ``predicted_return`` (on its rows, in order), ranked first if asked."""
    evaluation = result.evaluation
    overall = {**evaluation.overall, "mean_fold_rmse_return": 0.0} if ranked_first else evaluation.overall
    predictions = evaluation.predictions.assign(predicted_return=predicted_return.to_numpy())
    return replace(result, evaluation=replace(evaluation, predictions=predictions, overall=overall))


def test_a_champion_that_served_worse_than_naive_falls_back_to_naive(data):
    """When what the champion served did significantly worse than naive (here: the opposite of every move), naive
    replaces it if the challenger is refused, or is a refresh that naive also beats on the served days; not if the
    refresh does better there. Served as well as naive, or for fewer than ``min_days`` days, the champion stays."""
    results = _results(data, backtest_items([NAIVE, RIDGE], "full", None))
    naive, ridge = (next(r for r in results if r.item.spec == spec) for spec in (NAIVE, RIDGE))
    rows = naive.evaluation.predictions
    served_days = rows["date"] >= sorted(rows["date"].unique())[-8]  # the gate needs min_days = 5 of them
    served = rows.loc[served_days, ["date", "ticker"]].rename(columns={"date": "as_of"}).assign(model_version="v1")
    harmful = served.assign(predicted_return=-rows.loc[served_days, "next_return"].to_numpy())
    moves = ridge.evaluation.predictions["next_return"]
    good = _with_predictions(ridge, moves, ranked_first=True)  # foresees every move: beats naive
    good_until_served = _with_predictions(ridge, moves.where(~served_days.to_numpy(), -moves), ranked_first=True)

    champion = _champion(RIDGE)  # on the same data, its spec is no refresh: whichever ranks first is refused
    refused = select_and_gate([naive, ridge], champion, GATE, data_version=champion.data_version, served=harmful)
    naive_beats_the_refresh = select_and_gate(
        [naive, good_until_served], champion, GATE, data_version="new", served=harmful
    )
    for fallback in (refused, naive_beats_the_refresh):
        assert fallback.decision.promote and fallback.decision.baseline and fallback.challenger == NAIVE
        assert fallback.decision.reason.startswith("Fall back to naive: it beats the served champion v1 (")
        assert fallback.decision.comparisons[-1]["challenger_id"] == NAIVE.candidate_id
    assert "the challenger: Promote refresh ridge[alpha=10.0]" in naive_beats_the_refresh.decision.reason

    better_refresh = select_and_gate([naive, good], champion, GATE, data_version="new", served=harmful)
    assert better_refresh.decision.promote and better_refresh.challenger == RIDGE
    assert better_refresh.decision.reason.startswith("Promote refresh ridge[alpha=10.0]")
    first_days = harmful[harmful["as_of"] < sorted(harmful["as_of"].unique())[3]]
    for stays in (served.assign(predicted_return=0.0), first_days):
        kept = select_and_gate([naive, ridge], champion, GATE, data_version=champion.data_version, served=stays)
        assert not kept.decision.baseline and not kept.decision.reason.startswith("Fall back")


def test_a_rolling_window_refits_on_as_many_last_days_as_every_fold_trained_on(data):
    rolling = BacktestConfig(n_folds=2, test_days=30, gap_days=1, window="rolling", min_train_days=60, train_days=60)
    folds = plan_folds(data, rolling)
    assert {fold.n_train_days for fold in folds} == {60}
    start = final_training_start(data.usable_dates, folds, rolling.window)
    assert start == data.usable_dates[-60] and final_training_start(data.usable_dates, folds, "expanding") is None
    results = _results(data, backtest_items([NAIVE, RIDGE], "full", None))
    selection = replace(select_and_gate(results, None, GATE), challenger=RIDGE)
    frame = data.read()
    window = replace(data, rows=FrameRows(frame[frame["date"] >= start]))

    refit = refit_challenger(selection, data, folds, rolling, seed=5)

    on_window = refit_challenger(selection, window, folds, BACKTEST, seed=5)
    on_everything = refit_challenger(selection, data, folds, BACKTEST, seed=5)
    features = frame[data.feature_columns]
    np.testing.assert_array_equal(refit.predict(features), on_window.predict(features))
    assert not np.allclose(refit.predict(features), on_everything.predict(features))


# --- Work split into tasks: shards of tickers, groups of folds ---------------------------------------------------


@pytest.fixture(scope="module")
def quirky_market():
    """Every corporate action of real data, a rename (two tickers, one company) included, and vendor gaps."""
    market = generate_market(MarketSpec(n_tickers=10, start="2024-01-01", end="2024-12-31", seed=3, quirks=True))
    assert (market.actions["kind"] == "rename").any()
    return market


class StoredMarket:
    """A market's tables written as a snapshot's partitions (``stockcast.data.partitions``), read back by ticker the
    way ``Snapshot.read`` reads them for a shard task."""

    def __init__(self, market, root) -> None:
        self.store = LocalStore(root)
        tables = {name: partition_table(name, getattr(market, name)) for name in ("prices", "financials", "oracle")}
        tables["actions"] = partition_table("actions", market.actions)
        self.manifest, _ = write_tables(self.store, tables, None)

    def read(self, table: str, tickers=None):
        return read_table(self.store, self.manifest, table, tickers)


@pytest.fixture(scope="module")
def stored_market(quirky_market, tmp_path_factory):
    return StoredMarket(quirky_market, tmp_path_factory.mktemp("partitions"))


def _shard_rows(stored_market, tickers, feature_set, trading_days, *, oracle=True):
    tables = shard_inputs(stored_market, tickers)
    return build_shard_rows(
        tables.prices,
        tables.financials,
        tables.oracle if oracle else None,
        feature_set,
        actions=tables.actions,
        trading_days=trading_days,
    )


# One ticker per shard on the data calendar (every shard's dates differ), four on the exchange's.
@pytest.mark.parametrize(("tickers_per_shard", "calendar"), [(1, "data"), (4, "XNYS")])
def test_a_market_built_in_shards_is_exactly_the_market_built_at_once(
    quirky_market, stored_market, calendar, tickers_per_shard, tmp_path
):
    market, feature_set = quirky_market, get_feature_set("full")
    whole = build_modelling_data(
        market.prices, market.financials, market.oracle, feature_set, actions=market.actions, calendar=calendar
    )
    shards = plan_shards(
        market.prices["ticker"].unique(), market.actions, PlanConfig(tickers_per_shard=tickers_per_shard)
    )
    assert len(shards) > 2
    store = LocalStore(tmp_path)
    # As TrainFlow does it: each shard's rows stored by month, then joined a month at a time into a stored frame.
    sessions = trading_days_spanning(calendar, pd.Series(stored_market.read("prices")["date"].unique()))
    built = []
    for tickers in reversed(shards):  # shard tasks finish in any order
        writer = MonthlyWriter(store, "shard")
        writer.add(_shard_rows(stored_market, tickers, feature_set, sessions))
        built.append(writer.finish())

    joined = join_modelling_data(built, feature_set, MonthlyWriter(store, "modelling"))

    frame = whole.read()
    pd.testing.assert_frame_equal(joined.read(), frame, check_exact=True)
    assert (joined.usable_rows, joined.dropped_targets) == (whole.usable_rows, whole.dropped_targets)
    pd.testing.assert_index_equal(joined.usable_dates, whole.usable_dates)
    # Features, ranks, targets (gaps dropped on the market's calendar) and the oracle are all there to compare.
    assert frame["rank_market_return_21d"].notna().any() and frame["spans_gap"].any()
    assert frame[ORACLE_COLUMN].notna().any()
    # The target of the joined rows is the feature library's target of the whole market.
    sessions = trading_days_spanning(calendar, market.prices["date"])
    target = build_target(market.prices, actions=market.actions, trading_days=sessions, max_missing_days=3)
    pd.testing.assert_frame_equal(frame[target.columns], target, check_exact=True)
    assert frame["next_date"].notna().sum() == len(frame) - frame["ticker"].nunique()


def test_renamed_tickers_share_a_shard_and_shards_are_bounded(quirky_market):
    actions = quirky_market.actions
    tickers = sorted(quirky_market.prices["ticker"].unique())
    (rename,) = actions[actions["kind"] == "rename"].itertuples()

    shards = plan_shards(tickers, actions, PlanConfig(tickers_per_shard=3))

    assert sorted(ticker for shard in shards for ticker in shard) == tickers
    assert all(len(shard) <= 3 for shard in shards) and len(shards) == 4
    assert any({rename.ticker, rename.new_ticker} <= set(shard) for shard in shards)
    singles = plan_shards(tickers, actions, PlanConfig(tickers_per_shard=1))
    assert len(singles) == len(tickers) - 1 and sorted([rename.ticker, rename.new_ticker]) in singles


def test_a_rename_split_across_shards_is_refused_at_the_join(quirky_market, stored_market):
    market, feature_set = quirky_market, get_feature_set("full")
    (rename,) = market.actions[market.actions["kind"] == "rename"].itertuples()
    sessions = pd.DatetimeIndex(market.prices["date"].unique())
    built = [  # the old name's rows are carried by the new name
        FrameRows(_shard_rows(stored_market, tickers, feature_set, sessions, oracle=False))
        for tickers in ([rename.ticker], [rename.new_ticker])
    ]
    with pytest.raises(ValueError, match=f"ticker {rename.new_ticker} is in more than one shard"):
        join_modelling_data(built, feature_set, RowCollector())


def test_a_shard_reads_only_its_tickers_rows(quirky_market, stored_market):
    tickers = sorted(quirky_market.prices["ticker"].unique())[:3]
    tables = shard_inputs(stored_market, tickers)
    for name in ("prices", "financials", "oracle"):
        shard, whole = getattr(tables, name), getattr(quirky_market, name)
        assert set(shard["ticker"]) == set(tickers) and len(shard) == whole["ticker"].isin(tickers).sum()
    assert set(tables.actions["ticker"]) <= set(tickers)


def test_backtests_in_candidate_x_fold_tasks_combine_into_exactly_one_backtest_per_item(data):
    items = backtest_items([NAIVE, DRIFT, RIDGE], "full", _champion(replace(RIDGE, params={"alpha": 1.0})))
    folds = plan_folds(data, BACKTEST)
    tasks = plan_backtest_tasks(items, len(folds), PlanConfig(folds_per_task=1))
    assert [(task.item.spec.candidate_id, task.folds) for task in tasks[:3]] == [
        ("naive", (0,)),
        ("naive", (1,)),
        ("drift", (0,)),
    ]
    assert len(tasks) == len(items) * len(folds)

    parts = [run_backtest(task, data, folds, max_train_rows=None, seed=0) for task in tasks]
    combined = combine_backtests(parts[::-1], folds)  # the parts, in any order

    assert sorted(result.item.role for result in combined) == ["candidate"] * 3 + ["champion"]
    for result in combined:
        whole = evaluate_candidate(
            result.item.spec.candidate_id,
            [backtest(result.item.spec, data.read(), folds, data.feature_columns, data.categorical_columns)],
        )
        pd.testing.assert_frame_equal(result.evaluation.predictions, whole.predictions, check_exact=True)
        pd.testing.assert_frame_equal(result.evaluation.per_fold, whole.per_fold, check_exact=True)
        pd.testing.assert_series_equal(pd.Series(result.evaluation.overall), pd.Series(whole.overall), check_exact=True)
    grouped = select_and_gate(_results(data, items, folds_per_task=1), None, GATE)
    at_once = select_and_gate(_results(data, items), None, GATE)
    pd.testing.assert_frame_equal(
        grouped.leaderboard.drop(columns="train_seconds"), at_once.leaderboard.drop(columns="train_seconds")
    )
    assert grouped.decision == at_once.decision

    with pytest.raises(ValueError, match=r"tasks of naive \(candidate\) covered folds \[1\], not each of \[0, 1\]"):
        combine_backtests(parts[1:], folds)


def test_a_stored_frame_backtests_and_refits_exactly_like_the_frame_in_memory(data, tmp_path):
    """Memory bound: the stored frame is read a fold window at a time and trained on a sample of at most
    ``max_train_rows`` rows; both give what the frame in memory gives, and the sample is what the cap says."""
    writer = MonthlyWriter(LocalStore(tmp_path), "modelling")
    stored = join_modelling_data([data.rows], get_feature_set("full"), writer)
    folds = plan_folds(data, BACKTEST)
    cap = 200
    assert data.usable_rows > 3 * cap  # the cap binds on every fold and the refit
    for task in plan_backtest_tasks(backtest_items([RIDGE], "full", None), len(folds), PlanConfig(folds_per_task=1)):
        in_memory = run_backtest(task, data, folds, max_train_rows=cap, seed=5).predictions
        pd.testing.assert_frame_equal(
            run_backtest(task, stored, folds, max_train_rows=cap, seed=5).predictions, in_memory, check_exact=True
        )
        uncapped = run_backtest(task, data, folds, max_train_rows=None, seed=5).predictions
        assert not np.allclose(in_memory["predicted_return"], uncapped["predicted_return"])  # the cap did bind
    selection = select_and_gate(_results(data, backtest_items([NAIVE, RIDGE], "full", None)), None, GATE)
    selection = replace(selection, challenger=RIDGE)
    refits = [
        refit_challenger(selection, source, folds, BACKTEST.model_copy(update={"max_train_rows": cap}), seed=5)
        for source in (data, stored)
    ]
    frame = data.read()
    np.testing.assert_array_equal(
        refits[0].predict(frame[data.feature_columns]), refits[1].predict(frame[data.feature_columns])
    )
