"""The synthetic market generator: contract, determinism, real-market statistics, the oracle, quirks and CLI.

The statistical bands are facts about daily data of S&P 500 constituents (one panel of 100 tickers × 8 years,
generated once for the module), wide enough to hold for any seed, narrow enough to fail for a random walk.
"""

from __future__ import annotations

import io
import re
import subprocess
import sys
from contextlib import redirect_stdout
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from stockcast.data.contract import FINANCIALS, ORACLE, PRICES
from stockcast.data.synthetic.generator import (
    MAX_TICKERS,
    SECTORS,
    MarketData,
    MarketSpec,
    _ticker_symbols,
    generate_market,
    main,
    split_days,
    write_days,
    write_market,
)
from stockcast.data.validation import read_csv_text, validate_financials, validate_oracle, validate_prices

PANEL = MarketSpec(n_tickers=100, start="2016-01-04", end="2023-12-29", seed=7)
QUIRK_BASE = MarketSpec(n_tickers=40, start="2019-01-01", end="2021-12-31", seed=11)
TRADING_DAYS = 252


# ------------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def panel() -> MarketData:
    return generate_market(PANEL)


@pytest.fixture(scope="module")
def log_returns(panel: MarketData) -> pd.DataFrame:
    """Daily log returns of close, days × tickers."""
    close = panel.prices.pivot(index="date", columns="ticker", values="close")
    return np.log(close).diff().iloc[1:]


@pytest.fixture(scope="module")
def report_day_returns(panel: MarketData, log_returns: pd.DataFrame) -> pd.DataFrame:
    """One row per report published on a trading day with a return: its figures and that day's log return."""
    returns = log_returns.stack().rename("log_return").reset_index()
    financials = panel.financials.assign(margin_change=lambda f: (f.net_income / f.revenue).groupby(f.ticker).diff())
    return financials.merge(returns, left_on=["report_date", "ticker"], right_on=["date", "ticker"])


@pytest.fixture(scope="module")
def oracle_rows(panel: MarketData) -> pd.DataFrame:
    """Oracle rows joined to today's and the next trading day's realised close."""
    return _with_next_close(panel)


@pytest.fixture(scope="module")
def quirk_base() -> MarketData:
    return generate_market(QUIRK_BASE)


def _with_next_close(data: MarketData) -> pd.DataFrame:
    prices = data.prices.assign(next_close=data.prices.groupby("ticker").close.shift(-1))
    joined = data.oracle.merge(prices[["date", "ticker", "close", "next_close"]], on=["date", "ticker"])
    return joined.dropna(subset=["next_close"])


def _lag1_autocorrelation(frame: pd.DataFrame) -> pd.Series:
    return frame.corrwith(frame.shift(1))


def _predictive_r2(rows: pd.DataFrame) -> float:
    """Share of the variance of realised next-day returns explained by the oracle's predicted return."""
    predicted = rows.expected_next_close / rows.close - 1
    realised = rows.next_close / rows.close - 1
    return float(1 - ((realised - predicted) ** 2).sum() / ((realised - realised.mean()) ** 2).sum())


def _mean_pairwise_correlation(returns: pd.DataFrame) -> float:
    correlation = returns.corr().to_numpy()
    return float(correlation[np.triu_indices_from(correlation, k=1)].mean())


# ------------------------------------------------------------------------------------ contract, determinism
def test_same_spec_gives_identical_frames_and_another_seed_does_not(panel: MarketData) -> None:
    again = generate_market(PANEL)
    for name in ("prices", "financials", "oracle"):
        pd.testing.assert_frame_equal(getattr(panel, name), getattr(again, name))
    other = generate_market(replace(PANEL, seed=PANEL.seed + 1))
    assert not np.array_equal(other.prices.close.to_numpy()[:1000], panel.prices.close.to_numpy()[:1000])


def test_frames_follow_the_contract_columns_dtypes_order_and_keys(panel: MarketData) -> None:
    prices, financials, oracle = panel.prices, panel.financials, panel.oracle
    assert list(prices.columns) == PRICES.required_names
    assert list(financials.columns) == FINANCIALS.required_names
    assert list(oracle.columns) == ORACLE.required_names
    for frame, date_columns in ((prices, ["date"]), (financials, ["period_end", "report_date"]), (oracle, ["date"])):
        assert isinstance(frame.index, pd.RangeIndex)
        assert frame.index.start == 0
        for column in date_columns:
            assert frame[column].dtype == "datetime64[ns]"
            assert (frame[column] == frame[column].dt.normalize()).all()
        for column in frame.columns.difference([*date_columns, "ticker", "sector"]):
            assert frame[column].dtype == "float64", column
        assert pd.api.types.is_string_dtype(frame.ticker)
    assert pd.api.types.is_string_dtype(financials.sector)
    for frame, key in (
        (prices, ["ticker", "date"]),
        (oracle, ["ticker", "date"]),
        (financials, ["ticker", "period_end"]),
    ):
        assert not frame.duplicated(key).any()
    pd.testing.assert_frame_equal(prices, prices.sort_values(["ticker", "date"], ignore_index=True))
    pd.testing.assert_frame_equal(financials, financials.sort_values(["ticker", "report_date"], ignore_index=True))


def test_every_ticker_trades_every_trading_day_of_the_calendar(panel: MarketData) -> None:
    calendar = PANEL.trading_days()
    # With unique (ticker, date) keys, a full count of calendar days means no day is missing.
    assert panel.prices.date.isin(calendar).all()
    assert (panel.prices.groupby("ticker").size() == len(calendar)).all()
    assert panel.prices.date.max() <= pd.Timestamp.today()
    assert panel.financials.report_date.max() <= pd.Timestamp(PANEL.end)


def test_tickers_are_readable_unique_symbols_and_sectors_are_named(panel: MarketData) -> None:
    tickers = pd.Series(panel.prices.ticker.unique())
    assert len(tickers) == PANEL.n_tickers
    assert tickers.str.fullmatch(r"[A-Z]{3,4}").all()
    sectors = panel.financials.groupby("ticker").sector.unique()
    assert (sectors.str.len() == 1).all()  # a ticker stays in its sector
    assert set(panel.financials.sector) == set(SECTORS[: PANEL.n_sectors])


def test_ohlc_is_consistent_and_strictly_positive(panel: MarketData) -> None:
    p = panel.prices
    assert (p[["open", "high", "low", "close"]] > 0).all().all()
    assert (p.low <= p[["open", "close"]].min(axis=1)).all()
    assert (p[["open", "close"]].max(axis=1) <= p.high).all()
    assert (p.volume >= 0).all()


# ------------------------------------------------------------------------------------ return statistics
def test_log_returns_are_fat_tailed(log_returns: pd.DataFrame) -> None:
    """S&P 500 stocks: excess kurtosis of daily log returns mostly 3–10, rarely outside 1–20 (normal: 0)."""
    kurtosis = log_returns.kurt()
    assert 1 <= kurtosis.median() <= 20
    assert (kurtosis > 0.5).mean() >= 0.9


def test_volatility_clusters(log_returns: pd.DataFrame) -> None:
    """Lag-1 autocorrelation of squared daily returns: about 0.05–0.35 for stocks (0 without clustering)."""
    assert 0.05 <= _lag1_autocorrelation(log_returns**2).median() <= 0.35


def test_returns_are_nearly_uncorrelated_in_time(log_returns: pd.DataFrame) -> None:
    """Lag-1 autocorrelation of daily returns: within ±0.1 for large stocks (weak short-term reversal)."""
    autocorrelation = _lag1_autocorrelation(log_returns)
    assert abs(autocorrelation.median()) <= 0.1
    assert autocorrelation.abs().quantile(0.9) <= 0.15


def test_a_market_factor_correlates_stocks(log_returns: pd.DataFrame) -> None:
    """Mean pairwise correlation of daily returns of S&P 500 stocks: about 0.2–0.5 depending on the period."""
    assert 0.2 <= _mean_pairwise_correlation(log_returns) <= 0.5


def test_betas_spread_from_defensive_to_aggressive(log_returns: pd.DataFrame) -> None:
    """Betas of S&P 500 stocks: p10 about 0.5, p90 about 1.5 (here against the equal-weighted panel)."""
    market = log_returns.mean(axis=1)
    beta = (
        log_returns.sub(log_returns.mean()).mul(market - market.mean(), axis=0).sum()
        / ((market - market.mean()) ** 2).sum()
    )
    assert 0.3 <= beta.quantile(0.1) <= 0.75
    assert 1.25 <= beta.quantile(0.9) <= 1.9


def test_annualised_volatility_matches_large_caps(log_returns: pd.DataFrame) -> None:
    """Annualised volatility of S&P 500 stocks: median about 0.30, p10–p90 about 0.19–0.47."""
    volatility = log_returns.std() * np.sqrt(TRADING_DAYS)
    assert 0.22 <= volatility.median() <= 0.40
    assert 0.13 <= volatility.quantile(0.1) <= 0.26
    assert 0.35 <= volatility.quantile(0.9) <= 0.65


def test_daily_range_is_about_two_percent(panel: MarketData) -> None:
    """Median (high − low) / close of S&P 500 stocks: about 2 %."""
    daily_range = (panel.prices.high - panel.prices.low) / panel.prices.close
    assert 0.012 <= daily_range.median() <= 0.035


def test_volume_is_persistent_and_higher_on_large_moves(panel: MarketData, log_returns: pd.DataFrame) -> None:
    """Log volume is strongly autocorrelated (about 0.5–0.8 at lag 1) and rises with |return| (Karpoff 1987)."""
    log_volume = np.log(panel.prices.pivot(index="date", columns="ticker", values="volume"))
    assert _lag1_autocorrelation(log_volume).median() >= 0.3
    assert log_returns.abs().corrwith(log_volume.iloc[1:]).median() >= 0.1


# ------------------------------------------------------------------------------------------- financials
def test_reports_come_15_to_70_days_after_quarter_end_on_business_days(panel: MarketData) -> None:
    """US filers: 10-Q within 40–45 days, 10-K within 60–90; earnings releases mostly 3–6 weeks after quarter end."""
    financials = panel.financials
    lag_days = (financials.report_date - financials.period_end).dt.days
    assert lag_days.between(15, 70).all()
    assert 25 <= lag_days.median() <= 40
    assert (financials.report_date.dt.day_of_week < 5).all()
    assert (financials.period_end == financials.period_end + pd.offsets.QuarterEnd(0)).all()
    assert (financials.groupby("ticker").period_end.diff().dropna().dt.days.between(89, 92)).all()


def test_about_a_tenth_of_firms_make_losses(panel: MarketData) -> None:
    """About 10 % of S&P 500 firms report a loss in a typical quarter."""
    loss_making = panel.financials.groupby("ticker").net_income.median() < 0
    assert 0.05 <= loss_making.mean() <= 0.2
    assert (panel.financials.revenue > 0).all()
    assert (panel.financials.total_liabilities < panel.financials.total_assets).all()


def test_eps_is_net_income_per_share(panel: MarketData) -> None:
    f = panel.financials
    np.testing.assert_allclose(f.eps, f.net_income / f.shares_outstanding, atol=1e-4)


def test_revenue_growth_is_seasonal(panel: MarketData) -> None:
    """Calendar quarter explains much of quarter-on-quarter revenue growth (retail Q4, travel Q3...); with no
    seasonality it would explain about 3/36 of it by chance."""
    f = panel.financials.assign(quarter=lambda x: x.period_end.dt.quarter)
    f["growth"] = np.log(f.revenue).groupby(f.ticker).diff()
    f = f.dropna(subset=["growth"])
    within_quarter = f.growth - f.groupby(["ticker", "quarter"]).growth.transform("mean")
    around_mean = f.growth - f.groupby("ticker").growth.transform("mean")
    explained = 1 - (within_quarter**2).groupby(f.ticker).sum() / (around_mean**2).groupby(f.ticker).sum()
    assert explained.median() >= 0.3


def test_report_days_move_prices_more_than_ordinary_days(
    log_returns: pd.DataFrame, report_day_returns: pd.DataFrame
) -> None:
    """Earnings days: typical absolute move about 2–4 × an ordinary day's."""
    ordinary = log_returns.abs().stack().median()
    ratio = report_day_returns.log_return.abs().median() / ordinary
    assert 1.5 <= ratio <= 5


def test_report_day_return_follows_the_earnings_surprise(report_day_returns: pd.DataFrame) -> None:
    """The jump is proportional to the surprise; the margin change is mostly surprise, so they co-move."""
    rows = report_day_returns.dropna(subset=["margin_change"])
    assert rows.margin_change.corr(rows.log_return, method="spearman") >= 0.3


# ------------------------------------------------------------------------------------------------ oracle
def test_oracle_has_a_row_for_every_price_row(panel: MarketData) -> None:
    pd.testing.assert_frame_equal(panel.oracle[["date", "ticker"]], panel.prices[["date", "ticker"]])
    assert (panel.oracle.expected_next_close > 0).all()


def test_oracle_beats_the_naive_forecast(oracle_rows: pd.DataFrame) -> None:
    oracle_rmse = np.sqrt(((oracle_rows.expected_next_close - oracle_rows.next_close) ** 2).mean())
    naive_rmse = np.sqrt(((oracle_rows.close - oracle_rows.next_close) ** 2).mean())
    assert oracle_rmse < naive_rmse


def test_oracle_explains_a_few_percent_of_next_day_return_variance(oracle_rows: pd.DataFrame) -> None:
    """Daily stock returns are barely predictable: short-term reversal, post-earnings drift and value explain
    a few per cent at most."""
    assert 0.005 <= _predictive_r2(oracle_rows) <= 0.08


def test_oracle_is_unbiased(oracle_rows: pd.DataFrame) -> None:
    """The unpredictable part has mean zero: the mean forecast error is within 4 standard errors of zero.
    Errors are averaged per day first, because the market factor correlates them across tickers."""
    error = (oracle_rows.next_close - oracle_rows.expected_next_close) / oracle_rows.close
    daily = error.groupby(oracle_rows.date).mean()
    assert abs(daily.mean()) <= 4 * daily.std() / np.sqrt(len(daily))


def test_oracle_errors_are_uncorrelated_with_todays_return(panel: MarketData, oracle_rows: pd.DataFrame) -> None:
    """Today's return is known at the close, so the best forecast leaves nothing of it in its errors; the naive
    forecast's errors do carry it (the reversal), which shows the check has the power to fail. Both are taken
    relative to the day's cross-section (the market factor would otherwise dominate) and ranked (fat tails)."""
    today_return = panel.prices.close / panel.prices.groupby("ticker").close.shift(1) - 1
    rows = oracle_rows.merge(panel.prices.assign(today_return=today_return)[["date", "ticker", "today_return"]])
    rows = rows.dropna(subset=["today_return"])

    def relative_to_the_day(values: pd.Series) -> pd.Series:
        return values - values.groupby(rows.date).transform("mean")

    today = relative_to_the_day(rows.today_return)
    oracle_error = relative_to_the_day(rows.next_close / rows.expected_next_close - 1)
    naive_error = relative_to_the_day(rows.next_close / rows.close - 1)
    assert abs(oracle_error.corr(today, method="spearman")) < 0.012
    assert naive_error.corr(today, method="spearman") < -0.015


def test_without_the_predictable_component_only_the_drift_is_predictable() -> None:
    spec = replace(PANEL, reversal_speed=0.0, overreaction_share=0.0, earnings_drift_share=0.0, valuation_pull=0.0)
    rows = _with_next_close(generate_market(spec))
    predicted = rows.expected_next_close / rows.close - 1
    assert predicted.between(0, 0.0015).all()  # beta × a 7 % a year drift, for betas up to ~2.2 plus rounding
    assert _predictive_r2(rows) <= 0.002


# ------------------------------------------------------------------------------------------------ quirks
def test_listings_give_ragged_but_gapless_histories(quirk_base: MarketData) -> None:
    ragged = generate_market(replace(QUIRK_BASE, listings=True))
    calendar = QUIRK_BASE.trading_days()
    spans = ragged.prices.groupby("ticker").date.agg(["min", "max", "count"])
    assert (spans["min"] > calendar[0]).sum() >= 1
    assert (spans["max"] < calendar[-1]).sum() >= 1
    assert (spans["count"] < len(calendar)).sum() >= 2
    # One row per business day while listed, and the same values as without the quirk: it only hides rows.
    business_days = calendar.searchsorted(spans["max"], side="right") - calendar.searchsorted(spans["min"])
    np.testing.assert_array_equal(spans["count"], business_days)
    kept = quirk_base.prices.merge(ragged.prices[["date", "ticker"]], on=["date", "ticker"])
    pd.testing.assert_frame_equal(kept, ragged.prices)
    # Reports from a year before listing (a prospectus) to delisting; no forecast on a delisting day.
    reports = ragged.financials.merge(spans, left_on="ticker", right_index=True)
    assert (reports.report_date <= reports["max"]).all()
    assert (reports.report_date >= reports["min"] - pd.Timedelta(days=366)).all()
    delisted = spans[spans["max"] < calendar[-1]]
    last_days = pd.MultiIndex.from_arrays([delisted["max"], delisted.index])
    assert not pd.MultiIndex.from_frame(ragged.oracle[["date", "ticker"]]).isin(last_days).any()
    assert len(ragged.oracle) == len(ragged.prices) - len(delisted)


@pytest.fixture(scope="module")
def split_market() -> MarketData:
    return generate_market(replace(QUIRK_BASE, splits=True))


def test_splits_change_raw_prices_and_keep_adj_close_continuous(
    quirk_base: MarketData, split_market: MarketData
) -> None:
    raw, plain = split_market.prices, quirk_base.prices
    assert list(raw.columns) == [*PRICES.required_names, "adj_close"]
    ratio = (plain.close / raw.close).round(3)  # the split ratio in effect on each day
    split_tickers = raw.ticker[ratio != 1].unique()
    assert 1 <= len(split_tickers) <= 0.25 * QUIRK_BASE.n_tickers
    assert set(ratio.unique()) <= {1.0, 2.0, 3.0}
    # adj_close is the close in the share units of the last day: times the total ratio, the unsplit close.
    total_ratio = ratio.groupby(raw.ticker).transform("last")
    np.testing.assert_allclose(raw.adj_close * total_ratio, plain.close, rtol=1e-6)
    np.testing.assert_allclose(raw.volume, plain.volume * ratio)
    assert (raw.low <= raw[["open", "close"]].min(axis=1)).all()
    assert (raw[["open", "close"]].max(axis=1) <= raw.high).all()
    # On a split day the raw close jumps by about the ratio, far more than the adjusted close moves.
    day_change = raw.groupby("ticker")[["close", "adj_close"]].pct_change()
    split_day = ratio.groupby(raw.ticker).diff().fillna(0) != 0
    assert (day_change.adj_close.abs() < day_change.close.abs())[split_day].all()


def test_split_per_share_figures_use_report_day_units(quirk_base: MarketData, split_market: MarketData) -> None:
    raw, plain = split_market.financials, quirk_base.financials
    pd.testing.assert_series_equal(raw.net_income, plain.net_income)
    ratio = (raw.shares_outstanding / plain.shares_outstanding).round(6)
    assert set(ratio.unique()) <= {1.0, 2.0, 3.0}
    assert (ratio > 1).any()
    # eps is rounded to 4 decimals in each market: the difference is within the two roundings.
    assert ((raw.eps * ratio - plain.eps).abs() <= 5e-5 * (ratio + 1) + 1e-9).all()


def test_oracle_refers_to_the_raw_close_across_splits(quirk_base: MarketData, split_market: MarketData) -> None:
    """Same paths with and without splits: the forecast of a raw close is the unsplit forecast divided by the
    ratio in effect on the forecast day (a split is announced in advance)."""
    ratio = (quirk_base.prices.close / split_market.prices.close).round(3)
    ratio_next_day = ratio.groupby(split_market.prices.ticker).shift(-1).fillna(ratio)
    assert (ratio_next_day != ratio).any()  # some forecasts cross a split
    np.testing.assert_allclose(
        split_market.oracle.expected_next_close * ratio_next_day, quirk_base.oracle.expected_next_close, rtol=1e-5
    )
    rows = _with_next_close(split_market)
    naive_rmse = np.sqrt(((rows.close - rows.next_close) ** 2).mean())
    assert np.sqrt(((rows.expected_next_close - rows.next_close) ** 2).mean()) < naive_rmse


REGIME_BASE = MarketSpec(n_tickers=60, start="2018-01-01", end="2021-12-31", seed=3)
REGIME_DATE = "2020-01-01"


def _before_and_after_regime_date(spec: MarketSpec) -> tuple[pd.DataFrame, pd.DataFrame]:
    close = generate_market(spec).prices.pivot(index="date", columns="ticker", values="close")
    returns = np.log(close).diff().iloc[1:]
    return returns[returns.index < REGIME_DATE], returns[returns.index >= REGIME_DATE]


def test_regime_shift_makes_returns_more_volatile() -> None:
    """Same seed with and without the shift: the volatility ratio after/before grows by about the multiplier
    (a little less: earnings jumps are not scaled)."""
    shifted = replace(REGIME_BASE, regime_shift_date=REGIME_DATE, regime_vol_multiplier=2.0)
    before, after = _before_and_after_regime_date(shifted)
    plain_before, plain_after = _before_and_after_regime_date(REGIME_BASE)
    shifted_ratio = (after.std() / before.std()).median()
    assert shifted_ratio >= 1.5
    assert 1.7 <= shifted_ratio / (plain_after.std() / plain_before.std()).median() <= 2.1


def test_regime_beta_shift_raises_correlations() -> None:
    shifted = replace(REGIME_BASE, regime_shift_date=REGIME_DATE, regime_vol_multiplier=1.0, regime_beta_shift=0.5)
    before, after = _before_and_after_regime_date(shifted)
    plain_before, plain_after = _before_and_after_regime_date(REGIME_BASE)
    shifted_change = _mean_pairwise_correlation(after) - _mean_pairwise_correlation(before)
    plain_change = _mean_pairwise_correlation(plain_after) - _mean_pairwise_correlation(plain_before)
    assert shifted_change >= plain_change + 0.08


def test_regime_reversal_scale_turns_reversal_into_momentum_from_the_shift_on() -> None:
    """A change of factor loadings: with a strong reversal, next-day returns move against the last one before the
    shift and with it after (same seed, same paths up to the shift)."""
    strong = replace(REGIME_BASE, reversal_speed=0.5, overreaction_share=1.0)
    shifted = replace(strong, regime_shift_date=REGIME_DATE, regime_vol_multiplier=1.0, regime_reversal_scale=-1.0)
    before, after = _before_and_after_regime_date(shifted)
    plain_before, plain_after = _before_and_after_regime_date(strong)
    pd.testing.assert_frame_equal(before, plain_before)
    assert _lag1_autocorrelation(before).median() < -0.05 and _lag1_autocorrelation(plain_after).median() < -0.05
    assert _lag1_autocorrelation(after).median() > 0.05
    # The oracle knows the schedule: the forecast made the day before the shift is the first to change.
    oracles = [generate_market(spec).oracle.set_index(["date", "ticker"]).iloc[:, -1] for spec in (shifted, strong)]
    dates = oracles[0].index.get_level_values("date").unique()
    eve = dates[dates < REGIME_DATE][-1]
    until_eve = oracles[0].index.get_level_values("date") < eve
    pd.testing.assert_series_equal(oracles[0][until_eve], oracles[1][until_eve])
    assert (oracles[0].xs(eve) != oracles[1].xs(eve)).all()


# ------------------------------------------------------------------------------------------- files, CLI
def test_written_files_round_trip_exactly_and_pass_validation(tmp_path: Path, split_market: MarketData) -> None:
    paths = write_market(split_market, tmp_path / "out")
    assert {name: path.name for name, path in paths.items()} == {
        "prices": PRICES.file_name,
        "financials": FINANCIALS.file_name,
        "oracle": ORACLE.file_name,
    }
    dates = {"prices": ["date"], "financials": ["period_end", "report_date"], "oracle": ["date"]}
    for name, path in paths.items():
        text = pd.read_csv(path, dtype=str)
        assert all(text[column].str.fullmatch(r"\d{4}-\d{2}-\d{2}").all() for column in dates[name])
        read = pd.read_csv(path, parse_dates=dates[name])
        for column in dates[name]:
            read[column] = read[column].astype("datetime64[ns]")
        pd.testing.assert_frame_equal(read, getattr(split_market, name), check_dtype=False, check_exact=True)
    today = pd.Timestamp(QUIRK_BASE.end)
    _, prices_report = validate_prices(read_csv_text(paths["prices"].read_bytes(), file="p"), today=today)
    _, financials_report = validate_financials(
        read_csv_text(paths["financials"].read_bytes(), file="f"),
        known_tickers=split_market.prices.ticker.unique(),
        today=today,
    )
    _, oracle_report = validate_oracle(read_csv_text(paths["oracle"].read_bytes(), file="o"))
    for report in (prices_report, financials_report, oracle_report):
        assert report.violations == ()
        assert report.rows_accepted == report.rows_read


def test_cli_writes_the_three_files_and_reports_row_counts(tmp_path: Path) -> None:
    output = io.StringIO()
    with redirect_stdout(output):
        code = main(
            [
                "--out",
                str(tmp_path),
                "--tickers",
                "3",
                "--start",
                "2024-01-01",
                "--end",
                "2024-03-29",
                "--seed",
                "5",
                "--listings",
                "--splits",
            ]
        )
    assert code == 0
    lines = output.getvalue().splitlines()
    assert len(lines) == 3
    for line, file_name in zip(lines, (PRICES.file_name, FINANCIALS.file_name, ORACLE.file_name), strict=True):
        rows = len(pd.read_csv(tmp_path / file_name))
        assert line == f"{tmp_path / file_name}: {rows} rows"
        assert rows > 0


def test_cli_rejects_an_invalid_spec_naming_the_field(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--out", str(tmp_path), "--tickers", "0"])
    assert exit_info.value.code == 2
    assert "n_tickers" in capsys.readouterr().err


def test_module_runs_as_a_script(tmp_path: Path) -> None:
    command = [
        sys.executable,
        "-m",
        "stockcast.data.synthetic.generator",
        "--out",
        str(tmp_path),
        "--tickers",
        "2",
        "--start",
        "2024-01-01",
        "--end",
        "2024-01-31",
    ]
    completed = subprocess.run(command, capture_output=True, text=True, check=False, timeout=120)
    assert completed.returncode == 0, completed.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [PRICES.file_name, FINANCIALS.file_name, ORACLE.file_name]
    )


# ----------------------------------------------------------------------------------------- spec validation
@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"n_tickers": 0}, "n_tickers"),
        ({"n_tickers": 2.5}, "n_tickers"),
        ({"n_tickers": MAX_TICKERS + 1}, "n_tickers"),
        ({"seed": -1}, "seed"),
        ({"n_sectors": 0}, "n_sectors"),
        ({"n_sectors": len(SECTORS) + 1}, "n_sectors"),
        ({"start": "2024-02-01", "end": "2024-01-01"}, "start"),
        ({"start": "2024-01-06", "end": "2024-01-07"}, "2 trading days"),
        ({"start": "2024-12-24", "end": "2024-12-25"}, "2 trading days"),  # Christmas: one session only
        ({"calendar": "NOPE"}, "calendar"),
        ({"calendar": "data"}, "calendar"),
        ({"start": "not a date"}, "start"),
        ({"end": None}, "end"),
        ({"end": "2999-01-01"}, "end"),
        ({"regime_shift_date": "2010-01-01"}, "regime_shift_date"),
        ({"regime_vol_multiplier": 0.0}, "regime_vol_multiplier"),
        ({"regime_beta_shift": float("nan")}, "regime_beta_shift"),
        ({"regime_reversal_scale": float("inf")}, "regime_reversal_scale"),
        ({"reversal_speed": 1.0}, "reversal_speed"),
        ({"overreaction_share": -0.1}, "overreaction_share"),
        ({"earnings_drift_share": 2.0}, "earnings_drift_share"),
        ({"valuation_pull": -0.01}, "valuation_pull"),
    ],
)
def test_invalid_spec_is_rejected_naming_the_field(changes: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError, match=re.escape(field)):
        MarketSpec(**changes)  # type: ignore[arg-type]


def test_ticker_symbols_never_read_as_missing_values() -> None:
    """NAN, NONE and NULL are valid-looking symbols that CSV readers turn into missing values."""
    symbols = _ticker_symbols(np.random.default_rng(0), MAX_TICKERS)
    assert len(set(symbols)) == MAX_TICKERS
    assert not set(symbols) & {"NAN", "NONE", "NULL"}


def test_a_minimal_market_is_generated() -> None:
    data = generate_market(MarketSpec(n_tickers=1, n_sectors=1, start="2024-01-02", end="2024-01-03"))
    assert len(data.prices) == 2
    assert len(data.oracle) == 2
    assert data.prices.ticker.nunique() == 1


def test_held_out_days_are_what_arrives_each_day_and_add_up_to_the_market(tmp_path) -> None:
    market = generate_market(MarketSpec(n_tickers=6, n_sectors=2, start="2024-01-01", end="2024-06-28", seed=9))
    history, days = split_days(market, 40)

    dates = sorted(market.prices["date"].unique())
    assert [day for day, _ in days] == dates[-40:]
    assert history.prices["date"].max() == dates[-41]
    assert (history.financials["report_date"] <= dates[-41]).all()
    for day, arriving in days:
        assert (arriving.prices["date"] == day).all() and (arriving.oracle["date"] == day).all()
    for name, key in (
        ("prices", ["ticker", "date"]),
        ("financials", ["ticker", "period_end"]),
        ("oracle", ["ticker", "date"]),
    ):
        pieces = [getattr(history, name)] + [getattr(arriving, name) for _, arriving in days]
        rebuilt = pd.concat(pieces).sort_values(key, ignore_index=True)
        pd.testing.assert_frame_equal(rebuilt, getattr(market, name).sort_values(key, ignore_index=True))
    assert any(not arriving.financials.empty for _, arriving in days)  # some reports arrive during 40 days

    folders = write_days(days, tmp_path)
    assert [folder.name for folder in folders] == [f"{day:%Y-%m-%d}" for day, _ in days]
    for folder, (_, arriving) in zip(folders, days, strict=True):
        assert (folder / "stock_price.csv").is_file()
        assert (folder / "financial_info.csv").is_file() == (not arriving.financials.empty)
    with pytest.raises(ValueError, match="n_days must be between 1 and"):
        split_days(market, len(dates))
