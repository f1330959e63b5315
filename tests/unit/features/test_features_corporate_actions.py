"""Corporate actions: a split is not a crash, features are invariant to share units, and adjusting never looks ahead.

The property tests split a random ticker of a random market at a random day with a usual ratio: prices before the
ex-date are multiplied by k, volumes divided by k, and per-share report figures published before it likewise
(what a k-for-1 split looks like in raw data). With the action known, every feature and target of the market
must equal the unsplit market's.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from features import DEFAULT_FEATURE_SET, build_features, build_target, features_from_history, latest_feature_rows
from features.adjust import share_ratio
from tests.factories import with_split
from tests.unit.features.conftest import random_financials, random_prices

USUAL_RATIOS = (2.0, 3.0, 4.0, 1.5, 10.0, 0.5, 0.2, 0.1)
"""New shares per old share: forward splits above 1, reverse splits below."""
PRICES = random_prices(n_tickers=3, n_days=220, seed=7)
FINANCIALS = random_financials(PRICES, seed=7)
DATES = np.sort(PRICES["date"].unique())


def action(ticker: str, ex_date: pd.Timestamp, kind: str, ratio: float = np.nan, new_ticker: str | None = None):
    return {"ticker": ticker, "ex_date": ex_date, "kind": kind, "ratio": ratio, "new_ticker": new_ticker}


def actions_table(*rows: dict) -> pd.DataFrame:
    return pd.DataFrame(list(rows), columns=["ticker", "ex_date", "kind", "ratio", "new_ticker"])


def split_action(ticker: str, ex_date: pd.Timestamp, shares: float) -> dict:
    """The action as a user would write it: a reverse split states old shares per new share."""
    return (
        action(ticker, ex_date, "split", shares) if shares > 1 else action(ticker, ex_date, "reverse_split", 1 / shares)
    )


def assert_frames_close(actual: pd.DataFrame, expected: pd.DataFrame) -> None:
    assert list(actual.columns) == list(expected.columns)
    for name in expected.columns:
        if pd.api.types.is_numeric_dtype(expected[name]) and not pd.api.types.is_bool_dtype(expected[name]):
            np.testing.assert_allclose(actual[name], expected[name], rtol=1e-9, atol=1e-12, err_msg=name)
        else:
            pd.testing.assert_series_equal(actual[name], expected[name], check_names=False, obj=name)


@settings(max_examples=12, deadline=None)
@given(
    ticker=st.sampled_from(["T0", "T1", "T2"]),
    day=st.integers(min_value=1, max_value=len(DATES) - 1),
    shares=st.sampled_from(USUAL_RATIOS),
)
def test_a_known_split_leaves_every_feature_and_target_unchanged(ticker, day, shares):
    ex_date = pd.Timestamp(DATES[day])
    prices, financials = with_split(PRICES, FINANCIALS, ticker, ex_date, shares)
    known = actions_table(split_action(ticker, ex_date, shares))

    assert_frames_close(build_features(prices, financials, actions=known), build_features(PRICES, FINANCIALS))
    assert_frames_close(build_target(prices, actions=known), build_target(PRICES))


def test_every_feature_is_invariant_to_a_tickers_share_units():
    """Why adjusting with every known action never looks ahead: features at t see the history adjusted with the
    actions up to t times one factor common to all its rows (the later actions), and no feature depends on it."""
    prices, financials = with_split(PRICES, FINANCIALS, "T1", pd.Timestamp(DATES[-1]) + pd.Timedelta(days=1), 7.3)
    features = DEFAULT_FEATURE_SET.feature_columns  # the close beside them is a level, and not a feature
    assert_frames_close(build_features(prices, financials)[features], build_features(PRICES, FINANCIALS)[features])


@pytest.mark.parametrize(
    "later_action",
    [split_action("T1", pd.Timestamp(DATES[150]), 2.0), action("T1", pd.Timestamp(DATES[150]), "spinoff", 0.6)],
    ids=["split", "spinoff"],
)
def test_learning_of_an_action_does_not_change_features_before_its_ex_date(later_action):
    """Point in time: the features of any day before the ex-date are what they were before the action was known."""
    ex_date = later_action["ex_date"]
    if later_action["kind"] == "spinoff":
        prices = PRICES.copy()
        prices.loc[(prices["ticker"] == "T1") & (prices["date"] < ex_date), ["open", "high", "low", "close"]] /= 0.6
        financials = FINANCIALS
    else:
        prices, financials = with_split(PRICES, FINANCIALS, "T1", ex_date, 2.0)
    unaware = build_features(prices, financials)
    aware = build_features(prices, financials, actions=actions_table(later_action))
    earlier = unaware["date"] < ex_date
    features = DEFAULT_FEATURE_SET.feature_columns
    assert_frames_close(aware.loc[earlier, features], unaware.loc[earlier, features])
    # ...and it matters after: without it, the ex-date reads as a crash.
    day_after = (aware["ticker"] == "T1") & (aware["date"] == ex_date)
    assert unaware.loc[day_after, "return_1d"].item() < -0.3 < aware.loc[day_after, "return_1d"].item()


def test_a_spinoff_is_not_a_return():
    ex_date = pd.Timestamp(DATES[120])
    prices = PRICES.copy()
    before = (prices["ticker"] == "T2") & (prices["date"] < ex_date)
    prices.loc[before, ["open", "high", "low", "close"]] /= 0.4  # the parent kept 40 % of its value on the ex-date
    known = actions_table(action("T2", ex_date, "spinoff", 0.4))
    adjusted = build_target(prices, actions=known)
    np.testing.assert_allclose(adjusted["next_return"], build_target(PRICES)["next_return"], rtol=1e-9)


def test_a_rename_joins_the_histories_under_the_new_ticker():
    ex_date = pd.Timestamp(DATES[100])
    prices = PRICES.copy()
    prices.loc[(prices["ticker"] == "T0") & (prices["date"] >= ex_date), "ticker"] = "NEW"
    financials = FINANCIALS.copy()
    financials.loc[(financials["ticker"] == "T0") & (financials["report_date"] >= ex_date), "ticker"] = "NEW"
    known = actions_table(action("T0", ex_date, "rename", new_ticker="NEW"))

    joined = build_features(prices, financials, actions=known)
    expected = build_features(PRICES.replace({"ticker": {"T0": "NEW"}}), FINANCIALS.replace({"ticker": {"T0": "NEW"}}))
    assert "T0" not in set(joined["ticker"])
    assert_frames_close(joined, expected.sort_values(["ticker", "date"], ignore_index=True))


def test_a_rename_onto_a_ticker_that_already_traded_is_refused():
    known = actions_table(action("T0", pd.Timestamp(DATES[100]), "rename", new_ticker="T1"))
    with pytest.raises(ValueError, match=r"rename gives T1 two rows on .*fix the corporate action"):
        build_features(PRICES, actions=known)


def test_actions_after_as_of_are_not_applied():
    ex_date = pd.Timestamp(DATES[180])
    prices, financials = with_split(PRICES, FINANCIALS, "T1", ex_date, 3.0)
    known = actions_table(split_action("T1", ex_date, 3.0))
    as_of = pd.Timestamp(DATES[170])
    latest = latest_feature_rows(prices, financials, actions=known, as_of=as_of)
    # Before its ex-date the split is unknown, and the latest close is the raw close of that day.
    raw_close = prices.loc[(prices["ticker"] == "T1") & (prices["date"] == as_of), "close"].item()
    assert latest.loc[latest["ticker"] == "T1", "close"].item() == pytest.approx(raw_close)


def test_a_history_sent_with_a_split_gives_the_features_of_training():
    ex_date = pd.Timestamp(DATES[200])
    prices, financials = with_split(PRICES, FINANCIALS, "T2", ex_date, 2.0)
    known = actions_table(split_action("T2", ex_date, 2.0))
    history = prices[prices["ticker"] == "T2"]
    from_request = features_from_history(history, context_prices=prices, context_financials=financials, actions=known)
    training = build_features(prices, financials, actions=known)
    training = training[training["ticker"] == "T2"].tail(len(from_request)).reset_index(drop=True)
    assert_frames_close(from_request, training)


def test_a_target_across_too_many_missing_trading_days_is_dropped_and_flagged():
    prices = PRICES[~PRICES["date"].isin(DATES[50:55]) | (PRICES["ticker"] != "T0")]  # T0 misses five days
    target = build_target(prices, max_missing_days=2)
    last_before_gap = (target["ticker"] == "T0") & (target["date"] == DATES[49])
    assert target.loc[last_before_gap, "spans_gap"].item()
    assert np.isnan(target.loc[last_before_gap, "next_return"].item())
    assert target["spans_gap"].sum() == 1
    assert not build_target(prices, max_missing_days=5)["spans_gap"].any()


def test_missing_trading_days_are_counted_on_the_exchange_calendar_when_given():
    market_day_off = PRICES[PRICES["date"] != DATES[60]]  # every ticker misses the same day
    assert not build_target(market_day_off, max_missing_days=0)["spans_gap"].any()  # the data cannot see it
    target = build_target(market_day_off, max_missing_days=0, trading_days=pd.DatetimeIndex(DATES))
    assert target["spans_gap"].sum() == 3 and set(target.loc[target["spans_gap"], "date"]) == {DATES[59]}


def test_share_ratio_reads_reverse_splits_as_old_shares_per_new():
    assert share_ratio("split", 2.0) == 2.0
    assert share_ratio("reverse_split", 10.0) == pytest.approx(0.1)
