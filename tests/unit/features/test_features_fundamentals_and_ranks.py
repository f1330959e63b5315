"""Fundamentals joined as of the report date, cross-sectional ranks and the target, checked by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features import DEFAULT_FEATURE_SET, PRICES_ONLY_FEATURE_SET, FeatureSet, build_features, build_target
from features.cross_section import MARKET_RANK, market_rank, sector_rank
from features.definitions import define
from features.fundamentals import FUNDAMENTALS
from features.price import RETURNS

FUNDAMENTALS_ONLY = FeatureSet("fundamentals_only", (define(FUNDAMENTALS, quarter_gap_days=(80, 100)),))
CLOSE = 50.0


def reports(periods: list[str], quarterly_eps: list[float], *, lag_days: int = 30, ticker: str = "AAA") -> pd.DataFrame:
    period_end = pd.to_datetime(periods).as_unit("ns")
    eps_values = np.asarray(quarterly_eps, dtype=float)
    return pd.DataFrame(
        {
            "ticker": ticker,
            "period_end": period_end,
            "report_date": period_end + pd.Timedelta(days=lag_days),
            # A constant revenue makes the net margin a tenth of the EPS: how the tests see which report is in use
            # (EPS itself is a per-share level, not a feature).
            "revenue": 1e7,
            "net_income": 1e6 * eps_values,
            "eps": eps_values,
            "total_assets": 100.0,
            "total_liabilities": 40.0,
            "shares_outstanding": 1e6,
            "sector": "Technology",
        }
    )


QUARTERS = ["2023-03-31", "2023-06-30", "2023-09-30", "2023-12-31", "2024-03-31"]


@pytest.fixture
def daily(make_bars) -> pd.DataFrame:
    return make_bars(np.full(400, CLOSE), start="2023-01-02")


def on(features: pd.DataFrame, day: str) -> pd.Series:
    return features.set_index("date").loc[pd.Timestamp(day)]


def eps(row: pd.Series) -> float:
    """The EPS of the report in use on a row (see ``reports``)."""
    return round(row["net_margin"] * 10.0, 9)


def eps_ttm(row: pd.Series) -> float:
    """The trailing EPS in use on a row."""
    return row["earnings_yield"] * CLOSE


def test_a_report_counts_from_its_report_date_inclusive_never_from_period_end(daily):
    features = build_features(daily, reports(QUARTERS, [1, 2, 3, 4, 5]), feature_set=FUNDAMENTALS_ONLY)
    # Q1 2023 ends 31 March and is published 30 April (a Sunday): invisible at the period end and until then.
    for day in ("2023-03-31", "2023-04-28"):
        row = on(features, day)
        assert row[FUNDAMENTALS_ONLY.feature_columns].drop("sector").isna().all() and pd.isna(row["sector"])
    # Published figures are known by the close of the report day (here the first trading day on or after it).
    first_report = on(features, "2023-05-01")
    assert eps(first_report) == 1.0 and first_report["sector"] == "Technology"
    assert first_report["days_since_report"] == 1.0  # reported on Sunday 30 April
    q2_report_day = on(features, "2023-07-31")  # Q2 published 30 July, a Sunday; Q3 on 30 October, a Monday
    assert eps(q2_report_day) == 2.0
    assert eps(on(features, "2023-10-27")) == 2.0 and eps(on(features, "2023-10-30")) == 3.0
    assert on(features, "2023-10-30")["days_since_report"] == 0.0


def test_ratios_from_trailing_four_quarters_by_hand(daily):
    features = build_features(daily, reports(QUARTERS, [1, 2, 3, 4, 5]), feature_set=FUNDAMENTALS_ONLY)
    after_q4 = on(features, "2024-02-01")  # Q4 2023 published 30 January 2024
    assert eps_ttm(after_q4) == pytest.approx(10.0)
    assert after_q4["pe_ratio"] == pytest.approx(CLOSE / 10.0)
    assert after_q4["earnings_yield"] == pytest.approx(10.0 / CLOSE)
    # Market cap 50 × 1e6 over trailing revenue 4 × 1e7.
    assert after_q4["price_to_sales"] == pytest.approx(CLOSE * 1e6 / 4e7)
    assert after_q4["net_margin"] == pytest.approx(4e6 / 1e7)
    assert after_q4["leverage"] == pytest.approx(0.4)
    assert np.isnan(after_q4["earnings_growth_yoy"])  # no quarter a year earlier yet
    after_q1 = on(features, "2024-05-01")  # Q1 2024 (eps 5) against Q1 2023 (eps 1)
    assert eps_ttm(after_q1) == pytest.approx(14.0)
    assert after_q1["earnings_growth_yoy"] == pytest.approx(4.0)
    assert after_q1["earnings_surprise"] == pytest.approx(4.0 / CLOSE)


def test_trailing_figures_are_missing_across_a_missing_quarter(daily):
    with_gap = reports([q for q in QUARTERS if q != "2023-09-30"], [1, 2, 4, 5])
    after = on(build_features(daily, with_gap, feature_set=FUNDAMENTALS_ONLY), "2024-05-01")
    assert eps(after) == 5.0
    assert np.isnan(eps_ttm(after)) and np.isnan(after["pe_ratio"]) and np.isnan(after["earnings_growth_yoy"])


def test_ratios_to_losses_are_missing_not_negative(daily):
    losses = on(
        build_features(daily, reports(QUARTERS, [-1, -2, 1, -1, 1]), feature_set=FUNDAMENTALS_ONLY), "2024-02-01"
    )
    assert eps_ttm(losses) == pytest.approx(-3.0)
    assert np.isnan(losses["pe_ratio"]) and losses["earnings_yield"] == pytest.approx(-3.0 / CLOSE)
    assert losses["net_margin"] == pytest.approx(-1e6 / 1e7)  # a loss-making quarter still has a margin


def test_of_two_reports_published_the_same_day_the_later_quarter_is_used(daily):
    same_day = reports(QUARTERS[:2], [1, 2])
    same_day["report_date"] = pd.Timestamp("2023-08-15")
    assert eps(on(build_features(daily, same_day, feature_set=FUNDAMENTALS_ONLY), "2023-08-15")) == 2.0


def test_without_financials_the_fundamentals_are_missing_never_invented(make_prices):
    prices = make_prices(n_tickers=2, n_days=140)
    for financials in (None, reports(QUARTERS, [1, 2, 3, 4, 5], ticker="OTHER")):
        features = build_features(prices, financials)
        fundamentals = [spec.name for spec in FUNDAMENTALS.columns(quarter_gap_days=(80, 100))]
        assert features[fundamentals].isna().all().all()
        assert (
            features[[c for c in DEFAULT_FEATURE_SET.feature_columns if c.startswith("rank_sector")]].isna().all().all()
        )
        assert features["rank_market_return_21d"].notna().any()  # the price features are still there


def test_prices_only_set_needs_no_financials(make_prices):
    prices = make_prices(n_tickers=3, n_days=140)
    features = build_features(prices, feature_set=PRICES_ONLY_FEATURE_SET)
    assert list(features.columns) == ["date", "ticker", "close", *PRICES_ONLY_FEATURE_SET.feature_columns, "is_warm"]
    assert "sector" not in features.columns and PRICES_ONLY_FEATURE_SET.categorical_columns == []
    assert features.loc[features["is_warm"], PRICES_ONLY_FEATURE_SET.feature_columns].notna().all().all()
    assert PRICES_ONLY_FEATURE_SET.fingerprint != DEFAULT_FEATURE_SET.fingerprint


def test_market_rank_is_a_mid_rank_percentile_per_date():
    frame = pd.DataFrame(
        {
            "date": pd.to_datetime(["2024-01-02"] * 4 + ["2024-01-03"] * 3 + ["2024-01-04"]),
            "x": [0.3, 0.1, 0.2, np.nan, 1.0, 1.0, 2.0, 5.0],
        }
    )
    got = market_rank(frame, columns=("x",), min_tickers=2)["rank_market_x"]
    np.testing.assert_allclose(
        got, [2.5 / 3, 0.5 / 3, 1.5 / 3, np.nan, 1.0 / 3, 1.0 / 3, 2.5 / 3, np.nan], equal_nan=True
    )  # ties share rank 1.5; a missing value takes no part; a lone ticker has no rank


def test_sector_rank_ranks_within_sector_and_date():
    frame = pd.DataFrame(
        {
            "date": pd.to_datetime(["2024-01-02"] * 5),
            "x": [0.3, 0.1, 0.2, 0.5, 0.4],
            "sector": ["Energy", "Energy", "Tech", "Tech", np.nan],
        }
    )
    got = sector_rank(frame, columns=("x",), min_tickers=2)["rank_sector_x"]
    np.testing.assert_allclose(got, [0.75, 0.25, 0.25, 0.75, np.nan], equal_nan=True)


def test_ranks_in_the_pipeline_use_the_rows_of_their_date_only(make_prices):
    ranks = FeatureSet(
        "ranks",
        (define(RETURNS, windows=(1,)), define(MARKET_RANK, columns=("return_1d",), min_tickers=2)),
    )
    prices = make_prices(n_tickers=5, n_days=30)
    full = build_features(prices, feature_set=ranks)
    day = prices["date"].iloc[10]
    expected = full[full["date"] == day]["return_1d"].rank().sub(0.5).div(5).to_numpy()
    np.testing.assert_allclose(full[full["date"] == day]["rank_market_return_1d"], expected)


def test_target_is_next_close_and_return_per_ticker(make_bars):
    prices = pd.concat(
        [make_bars([10.0, 11.0, 12.1], ticker="AAA"), make_bars([5.0, 4.0], ticker="BBB")], ignore_index=True
    )
    target = build_target(prices.iloc[::-1])  # input order does not matter
    assert list(target.columns) == ["date", "ticker", "next_close", "next_return", "spans_gap", "next_date"]
    np.testing.assert_allclose(target["next_close"], [11.0, 12.1, np.nan, 4.0, np.nan], equal_nan=True)
    dates = target["date"].tolist()
    assert target["next_date"].tolist()[:2] == dates[1:3] and target["next_date"].iloc[[2, 4]].isna().all()
    np.testing.assert_allclose(target["next_return"], [0.1, 0.1, np.nan, -0.2, np.nan], equal_nan=True)
    assert not set(target.columns) & set(DEFAULT_FEATURE_SET.feature_columns)
