"""Training matrix (a), latest rows for batch prediction (b) and a request's own history (c) agree exactly;
warm-up, gaps, insufficient history and input immutability."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features import (
    DEFAULT_FEATURE_SET,
    PRICES_ONLY_FEATURE_SET,
    InsufficientHistory,
    build_features,
    build_ticker_features,
    features_from_history,
    join_ticker_features,
    latest_feature_rows,
)

FEATURE_SET = DEFAULT_FEATURE_SET
MIN_HISTORY = FEATURE_SET.min_history
NUMERIC = [c for c in FEATURE_SET.feature_columns if c not in FEATURE_SET.categorical_columns]
RANKS = [c for c in FEATURE_SET.feature_columns if c.startswith("rank_")]


@pytest.fixture(scope="module")
def market(make_prices, make_financials) -> tuple[pd.DataFrame, pd.DataFrame]:
    prices = make_prices(n_tickers=6, n_days=MIN_HISTORY + 60, seed=11)
    # A late listing makes the panel ragged: T5 starts 20 days after the others.
    late = (prices["ticker"] == "T5") & (prices["date"] < prices["date"].unique()[20])
    prices = prices[~late].reset_index(drop=True)
    return prices, make_financials(prices, seed=11)


@pytest.fixture(scope="module")
def training(market) -> pd.DataFrame:
    return build_features(*market)


def assert_same_rows(actual: pd.DataFrame, expected: pd.DataFrame) -> None:
    actual, expected = actual.reset_index(drop=True), expected.reset_index(drop=True)
    assert list(actual.columns) == list(expected.columns)
    for name in ("date", "ticker", "sector", "is_warm"):
        pd.testing.assert_series_equal(actual[name], expected[name], check_dtype=False)
    np.testing.assert_allclose(actual[["close", *NUMERIC]], expected[["close", *NUMERIC]], rtol=1e-9, equal_nan=True)


def training_rows(training: pd.DataFrame, ticker: str, dates) -> pd.DataFrame:
    return training[(training["ticker"] == ticker) & training["date"].isin(dates)]


@pytest.mark.parametrize("as_of_index", [-1, -25])
def test_latest_rows_and_request_histories_equal_the_training_matrix(market, training, as_of_index):
    prices, financials = market
    as_of = prices["date"].drop_duplicates().sort_values().iloc[as_of_index]
    latest = latest_feature_rows(prices, financials, as_of=as_of)
    assert sorted(latest["ticker"]) == sorted(prices["ticker"].unique())
    assert (latest["date"] == as_of).all() and latest["is_warm"].all()
    for ticker, row in latest.groupby("ticker"):
        assert_same_rows(row, training_rows(training, ticker, [as_of]))
        history = prices[(prices["ticker"] == ticker) & (prices["date"] <= as_of)].tail(MIN_HISTORY)
        request = features_from_history(
            history,
            financials[financials["ticker"] == ticker],
            context_prices=prices,
            context_financials=financials,
        )
        assert len(request) == 1
        assert_same_rows(request, row)
    # The request ranks are real ranks, not NaN everywhere: otherwise the equality above would say little.
    assert latest[RANKS].notna().all().all()


def test_a_longer_history_gives_one_row_per_day_it_covers(market, training):
    prices, financials = market
    history = prices[prices["ticker"] == "T2"].tail(MIN_HISTORY + 9)
    request = features_from_history(history, context_prices=prices, context_financials=financials)
    assert len(request) == 10
    assert_same_rows(request, training_rows(training, "T2", history["date"].tail(10)))


def test_the_history_replaces_the_ticker_in_the_context(market, training):
    prices, financials = market
    history = prices[prices["ticker"] == "T1"].tail(MIN_HISTORY).copy()
    history["close"] *= 1.5
    history["open"] *= 1.5
    history["high"] *= 1.5
    history["low"] *= 1.5
    request = features_from_history(history, context_prices=prices, context_financials=financials)
    same_day = training_rows(training, "T1", history["date"].tail(1))
    assert request["close"].iloc[0] == pytest.approx(1.5 * same_day["close"].iloc[0])
    # Scale-free features do not change; price-to-earnings does.
    assert request["return_21d"].iloc[0] == pytest.approx(same_day["return_21d"].iloc[0])
    assert request["pe_ratio"].iloc[0] == pytest.approx(1.5 * same_day["pe_ratio"].iloc[0])


def test_without_context_ranks_are_missing_but_own_features_are_exact(market, training):
    prices, financials = market
    history = prices[prices["ticker"] == "T3"].tail(MIN_HISTORY)
    request = features_from_history(history, financials[financials["ticker"] == "T3"])
    expected = training_rows(training, "T3", history["date"].tail(1))
    assert request[RANKS].isna().all().all()
    own = [c for c in NUMERIC if c not in RANKS]
    np.testing.assert_allclose(request[own], expected[own], rtol=1e-9, equal_nan=True)


def test_ranks_are_missing_on_dates_beyond_the_context(market):
    prices, financials = market
    dates = prices["date"].drop_duplicates().sort_values()
    context = prices[prices["date"] <= dates.iloc[-6]]
    history = prices[prices["ticker"] == "T0"].tail(MIN_HISTORY + 9)
    request = features_from_history(history, context_prices=context, context_financials=financials)
    beyond = request["date"] > dates.iloc[-6]
    assert beyond.sum() == 5
    assert request.loc[beyond, RANKS].isna().all().all()
    assert request.loc[~beyond, RANKS].notna().all().all()


def test_too_short_a_history_says_how_many_days_are_needed(market):
    prices, _ = market
    history = prices[prices["ticker"] == "T0"].tail(MIN_HISTORY - 1)
    with pytest.raises(InsufficientHistory) as raised:
        features_from_history(history, feature_set=FEATURE_SET)
    assert raised.value.required == MIN_HISTORY and raised.value.supplied == MIN_HISTORY - 1
    assert f"at least {MIN_HISTORY} trading days" in str(raised.value)
    assert "T0" in str(raised.value)
    assert isinstance(raised.value, ValueError)


def test_a_history_must_hold_one_ticker(market):
    prices, _ = market
    with pytest.raises(ValueError, match="exactly one ticker"):
        features_from_history(prices[prices["ticker"].isin(["T0", "T1"])])


def test_warm_up_rows_are_marked_and_left_missing(training):
    for _, rows in training.groupby("ticker"):
        warm = rows["is_warm"].to_numpy()
        assert not warm[: MIN_HISTORY - 1].any() and warm[MIN_HISTORY - 1 :].all()
        # Not silently zero-filled: the longest windows are still missing just before the warm-up ends.
        assert rows["momentum_126_21"].iloc[: MIN_HISTORY - 1].isna().all()
        assert rows["return_63d"].iloc[:63].isna().all() and rows["return_63d"].iloc[63:].notna().all()


def test_a_gap_in_the_history_makes_rows_cold_until_it_leaves_the_window(make_prices):
    prices = make_prices(n_tickers=1, n_days=2 * MIN_HISTORY + 20, seed=12)
    gap_start = MIN_HISTORY + 10
    prices = prices.drop(index=range(gap_start, gap_start + 10)).reset_index(drop=True)  # two weeks missing
    warm = build_features(prices, feature_set=PRICES_ONLY_FEATURE_SET)["is_warm"].to_numpy()
    assert warm[MIN_HISTORY - 1 : gap_start].all()  # before the gap
    assert not warm[gap_start : gap_start + MIN_HISTORY - 1].any()  # the gap lies inside the look-back
    assert warm[gap_start + MIN_HISTORY - 1 :].all()
    holiday = build_features(prices.drop(index=[50, 51]), feature_set=PRICES_ONLY_FEATURE_SET)  # a 4-day break
    assert holiday["is_warm"].iloc[MIN_HISTORY - 1 : gap_start - 2].all()


def test_inputs_are_never_modified(market):
    prices, financials = market
    shuffled = prices.sample(frac=1.0, random_state=0)
    before = (shuffled.copy(deep=True), financials.copy(deep=True))
    build_features(shuffled, financials)
    latest_feature_rows(shuffled, financials)
    history = shuffled[shuffled["ticker"] == "T0"]
    features_from_history(history, context_prices=shuffled, context_financials=financials)
    pd.testing.assert_frame_equal(shuffled, before[0])
    pd.testing.assert_frame_equal(financials, before[1])


def test_output_layout_and_types(training, market):
    assert list(training.columns) == ["date", "ticker", "close", *FEATURE_SET.feature_columns, "is_warm"]
    assert training["date"].dtype == "datetime64[ns]" and training["is_warm"].dtype == bool
    assert (training[NUMERIC].dtypes == "float64").all()
    assert training.index.equals(pd.RangeIndex(len(training)))
    ordered = training.sort_values(["ticker", "date"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(training, ordered)
    assert len(training) == len(market[0])
    assert not np.isinf(training[NUMERIC].to_numpy()).any()


def test_row_order_of_the_input_does_not_matter(market, training):
    prices, financials = market
    shuffled = build_features(prices.sample(frac=1.0, random_state=1), financials.sample(frac=1.0, random_state=2))
    assert_same_rows(shuffled, training)


def test_as_of_drops_later_rows_and_keeps_earlier_values(market, training):
    prices, financials = market
    as_of = prices["date"].drop_duplicates().sort_values().iloc[-30]
    cut = build_features(prices, financials, as_of=as_of)
    assert cut["date"].max() == as_of
    assert_same_rows(cut, training[training["date"] <= as_of])


def test_duplicate_rows_are_refused(market):
    prices, _ = market
    with pytest.raises(ValueError, match="duplicate"):
        build_features(pd.concat([prices, prices.tail(1)]))


@pytest.mark.parametrize("as_of_index", [None, -30])
def test_ticker_shards_joined_are_exactly_the_training_matrix(market, training, as_of_index):
    prices, financials = market
    as_of = None if as_of_index is None else prices["date"].drop_duplicates().sort_values().iloc[as_of_index]
    # Shards in any order, their ticker ranges interleaved; T5, the late listing, alone.
    shards = [["T5"], ["T1", "T4"], ["T0", "T2", "T3"]]
    built = [
        build_ticker_features(
            prices[prices["ticker"].isin(tickers)], financials[financials["ticker"].isin(tickers)], as_of=as_of
        )
        for tickers in shards
    ]
    assert not set(RANKS) & set(built[0].columns)  # ranks need every ticker: the join computes them

    joined = join_ticker_features(built, FEATURE_SET)

    expected = training if as_of is None else build_features(prices, financials, as_of=as_of)
    pd.testing.assert_frame_equal(joined, expected, check_exact=True)
    assert joined[RANKS].notna().any().all()
    with pytest.raises(ValueError, match="ticker T5 is in more than one shard"):
        join_ticker_features([*built, built[0]], FEATURE_SET)
