"""Leakage guards as properties: whatever happens after t cannot change a feature at t."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from features import DEFAULT_FEATURE_SET, build_features
from features.cross_section import market_rank, sector_rank

FEATURE_SET = DEFAULT_FEATURE_SET
NUMERIC = ["close", *(c for c in FEATURE_SET.feature_columns if c not in FEATURE_SET.categorical_columns)]
# No shrinking: a failing example is reported as found, in seconds rather than minutes of minimising.
PROPERTY = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
)
NUMBERS = ["revenue", "net_income", "eps", "total_assets", "total_liabilities", "shares_outstanding"]


@pytest.fixture(scope="module")
def market(make_prices, make_financials) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    prices = make_prices(n_tickers=4, n_days=FEATURE_SET.min_history + 30, seed=21)
    financials = make_financials(prices, seed=21)
    return prices, financials, build_features(prices, financials)


def assert_unchanged_up_to(t: pd.Timestamp, before: pd.DataFrame, after: pd.DataFrame) -> None:
    before, after = before[before["date"] <= t], after[after["date"] <= t]
    # Rows of a ticker removed after t may leave; the rows up to t must all be there, identical.
    after = after[after["ticker"].isin(before["ticker"].unique())].reset_index(drop=True)
    before = before.reset_index(drop=True)
    assert before[["date", "ticker"]].equals(after[["date", "ticker"]])
    assert before["sector"].equals(after["sector"]) and before["is_warm"].equals(after["is_warm"])
    np.testing.assert_allclose(after[NUMERIC], before[NUMERIC], rtol=1e-12, atol=0, equal_nan=True)


dates_index = st.integers(min_value=0, max_value=FEATURE_SET.min_history + 28)
ticker_subsets = st.lists(st.sampled_from(["T0", "T1", "T2", "T3"]), min_size=1, max_size=4, unique=True)


@PROPERTY
@given(
    t_index=dates_index,
    tickers=ticker_subsets,
    action=st.sampled_from(["scale", "drop", "new_ticker"]),
    seed=st.integers(0, 2**16),
)
def test_price_rows_after_t_do_not_change_features_at_t(market, t_index, tickers, action, seed):
    prices, financials, before = market
    t = prices["date"].drop_duplicates().sort_values().iloc[t_index]
    rng = np.random.default_rng(seed)
    later = (prices["date"] > t) & prices["ticker"].isin(tickers)
    changed = prices.copy()
    if action == "scale":
        factor = rng.uniform(0.5, 2.0, int(later.sum()))
        for name in ("open", "high", "low", "close"):
            changed.loc[later, name] = changed.loc[later, name] * factor
        changed.loc[later, "volume"] = rng.integers(0, 10**6, int(later.sum())).astype(float)
    elif action == "drop":
        changed = changed[~later]
    else:  # a ticker listed after t takes no part in the ranks at t
        newcomer = prices[later & (prices["ticker"] == tickers[0])].assign(ticker="NEW")
        changed = pd.concat([changed, newcomer], ignore_index=True)
    assert_unchanged_up_to(t, before, build_features(changed, financials))


@PROPERTY
@given(
    t_index=dates_index,
    tickers=ticker_subsets,
    action=st.sampled_from(["scale", "drop", "sector", "late_report"]),
    seed=st.integers(0, 2**16),
)
def test_financial_rows_reported_after_t_do_not_change_features_at_t(market, t_index, tickers, action, seed):
    prices, financials, before = market
    t = prices["date"].drop_duplicates().sort_values().iloc[t_index]
    rng = np.random.default_rng(seed)
    later = (financials["report_date"] > t) & financials["ticker"].isin(tickers)
    changed = financials.copy()
    if action == "scale":
        changed.loc[later, NUMBERS] = changed.loc[later, NUMBERS] * rng.uniform(-2.0, 2.0, (int(later.sum()), 6))
    elif action == "drop":
        changed = changed[~later]
    elif action == "sector":
        changed.loc[later, "sector"] = "Utilities"
    else:
        # A report published after t about a quarter that ended before t: known only from its report date.
        known = financials[(financials["report_date"] <= t) & financials["ticker"].isin(tickers)]
        restated = known.groupby("ticker").tail(1).copy()
        restated["period_end"] = restated["period_end"] + pd.Timedelta(days=91)
        restated["report_date"] = t + pd.Timedelta(days=int(rng.integers(1, 30)))
        restated[NUMBERS] = restated[NUMBERS] * 10.0
        changed = pd.concat([changed, restated], ignore_index=True)
    assert_unchanged_up_to(t, before, build_features(prices, changed))


def test_a_report_is_invisible_until_its_report_date(market):
    prices, financials, before = market
    report = financials[financials["report_date"] > prices["date"].iloc[FEATURE_SET.min_history]].iloc[0]
    changed = financials.copy()
    mine = (before["ticker"] == report["ticker"]).to_numpy()
    until = mine & (before["date"] < report["report_date"]).to_numpy()
    from_on = mine & (before["date"] >= report["report_date"]).to_numpy()
    # Net margin: the report's net income over its revenue (EPS itself is not a feature).
    changed.loc[report.name, "net_income"] = report["net_income"] * 3.0 + 1e6
    after = build_features(prices, changed)
    np.testing.assert_array_equal(after.loc[until, "net_margin"], before.loc[until, "net_margin"])
    assert (after.loc[from_on, "net_margin"] != before.loc[from_on, "net_margin"]).any()  # shows from the report on


@PROPERTY
@given(t_index=dates_index, seed=st.integers(0, 2**16))
def test_cross_sectional_features_at_t_use_only_rows_dated_t(market, t_index, seed):
    _, _, features = market
    t = features["date"].drop_duplicates().sort_values().iloc[t_index]
    # Scramble every other date's inputs: the ranks at t must not notice.
    rng = np.random.default_rng(seed)
    frame = features[["date", "ticker", "return_21d", "sector"]].copy()
    others = (frame["date"] != t).to_numpy()
    frame.loc[others, "return_21d"] = rng.normal(size=int(others.sum()))
    frame.loc[others, "sector"] = rng.choice(["Energy", "Utilities"], size=int(others.sum()))
    at_t = (frame["date"] == t).to_numpy()
    for rank in (market_rank, sector_rank):
        scrambled = rank(frame, columns=("return_21d",), min_tickers=2)
        alone = rank(frame[at_t].reset_index(drop=True), columns=("return_21d",), min_tickers=2)
        original = rank(features, columns=("return_21d",), min_tickers=2)
        for name, values in scrambled.items():
            np.testing.assert_array_equal(values[at_t], alone[name])
            np.testing.assert_array_equal(values[at_t], original[name][at_t])
