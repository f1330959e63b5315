"""Small price and financial tables made in code for the feature tests (seeded, so every run sees the same)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest

SECTORS = ("Technology", "Energy")


def random_prices(n_tickers: int = 4, n_days: int = 200, *, seed: int = 0, start: str = "2021-01-04") -> pd.DataFrame:
    """Random-walk daily bars obeying the contract (low <= open, close <= high; prices > 0), sorted (ticker, date)."""
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range(start, periods=n_days).as_unit("ns")
    frames = []
    for i in range(n_tickers):
        close = (20.0 + 15.0 * i) * np.exp(np.cumsum(rng.normal(0.0, 0.02, n_days)))
        open_ = close * np.exp(rng.normal(0.0, 0.01, n_days))
        high = np.maximum(open_, close) * (1.0 + 0.01 * rng.random(n_days))
        low = np.minimum(open_, close) * (1.0 - 0.01 * rng.random(n_days))
        volume = rng.integers(1_000, 100_000, n_days).astype(float)
        frames.append(
            pd.DataFrame(
                {
                    "date": dates,
                    "ticker": f"T{i}",
                    "open": open_,
                    "high": high,
                    "low": low,
                    "close": close,
                    "volume": volume,
                }
            )
        )
    prices = pd.concat(frames, ignore_index=True)
    prices["ticker"] = prices["ticker"].astype("str")
    return prices


def random_financials(prices: pd.DataFrame, *, seed: int = 0) -> pd.DataFrame:
    """Quarterly reports for every ticker of ``prices``, from two years before its first day to its last,
    published 20-60 days after each quarter ends; tickers alternate between two sectors."""
    rng = np.random.default_rng(seed)
    first, last = prices["date"].min(), prices["date"].max()
    period_end = pd.date_range(first - pd.DateOffset(years=2), last, freq="QE").as_unit("ns")
    frames = []
    for i, ticker in enumerate(sorted(prices["ticker"].unique())):
        n = len(period_end)
        revenue = 1e8 * (1 + i) * np.exp(np.cumsum(rng.normal(0.01, 0.05, n)))
        net_income = revenue * rng.normal(0.08, 0.06, n)
        shares = np.full(n, 1e7 * (1 + i))
        assets = revenue * 4.0
        frames.append(
            pd.DataFrame(
                {
                    "ticker": ticker,
                    "period_end": period_end,
                    "report_date": period_end + pd.to_timedelta(rng.integers(20, 61, n), unit="D"),
                    "revenue": revenue,
                    "net_income": net_income,
                    "eps": net_income / shares,
                    "total_assets": assets,
                    "total_liabilities": assets * rng.uniform(0.2, 0.8, n),
                    "shares_outstanding": shares,
                    "sector": SECTORS[i % len(SECTORS)],
                }
            )
        )
    financials = pd.concat(frames, ignore_index=True)
    financials = financials[financials["report_date"] <= last].reset_index(drop=True)
    financials["ticker"] = financials["ticker"].astype("str")
    financials["sector"] = financials["sector"].astype("str")
    return financials


def bars(close: list[float] | np.ndarray, *, ticker: str = "AAA", start: str = "2024-01-01", **columns) -> pd.DataFrame:
    """A one-ticker price table from a list of closes; open/high/low default to the close, volume to 1000."""
    close = np.asarray(close, dtype=float)
    frame = pd.DataFrame(
        {
            "date": pd.bdate_range(start, periods=len(close)).as_unit("ns"),
            "ticker": ticker,
            "open": close,
            "high": close,
            "low": close,
            "close": close,
            "volume": np.full(len(close), 1000.0),
        }
    )
    for name, values in columns.items():
        frame[name] = np.asarray(values, dtype=float)
    frame["ticker"] = frame["ticker"].astype("str")
    return frame


@pytest.fixture(scope="session")
def make_prices() -> Callable[..., pd.DataFrame]:
    return random_prices


@pytest.fixture(scope="session")
def make_financials() -> Callable[..., pd.DataFrame]:
    return random_financials


@pytest.fixture(scope="session")
def make_bars() -> Callable[..., pd.DataFrame]:
    return bars
