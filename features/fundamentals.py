"""Company fundamentals joined to each price row as they were known at that day's close.

Point-in-time rule: a quarter's figures count from its ``report_date`` on, never from its ``period_end`` (a
quarter ending 31 March is typically reported weeks later; using it from 31 March would leak the future). The
report day itself is included: reports are taken as known by the close of the day they are published, which
is when features for that day are computed. The join is a backward ``merge_asof`` on ``report_date`` by ticker.

Trailing figures (four-quarter sums, the same quarter a year earlier) are computed over the ticker's reports in
report order, so each report row only combines reports published no later than itself. They are NaN unless the
quarters involved are consecutive (period ends roughly a quarter apart), so a missing quarter is never papered
over. A ticker without reports, or dates before its first report, get NaN: nothing is invented.

Every feature is a ratio or a growth rate, none a per-share level (EPS itself is not a feature): a split changes
per-share levels, so a level at t would depend on whether a later split had been applied (``features.adjust``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.definitions import ColumnSpec, Family, Kind
from features.windows import divide, lag, ticker_positions

_SECTOR = "sector"


def _positive_ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator where the denominator is positive, NaN elsewhere (a ratio to a loss or to
    negative revenue has no meaningful reading)."""
    return np.where(denominator > 0, divide(numerator, denominator), np.nan)


def quarterly_metrics(financials: pd.DataFrame, *, quarter_gap_days: tuple[int, int]) -> pd.DataFrame:
    """Per report: the latest quarter's figures plus trailing four-quarter sums and the year-ago EPS.

    Rows are taken in report order per ticker; the trailing values are NaN unless the quarters they span are
    consecutive (period ends ``quarter_gap_days`` apart, inclusive bounds).
    """
    quarters = financials.sort_values(["ticker", "report_date", "period_end"], kind="stable").reset_index(drop=True)
    position = ticker_positions(quarters["ticker"])
    period_day = quarters["period_end"].to_numpy().astype("datetime64[D]").astype(np.int64).astype(float)
    gap = period_day - lag(period_day, 1, position)
    shortest, longest = quarter_gap_days
    consecutive = ((gap >= shortest) & (gap <= longest)).astype(float)

    def consecutive_back(quarters_back: int) -> np.ndarray:
        """True where this report and the ``quarters_back`` before it are consecutive quarters."""
        return np.all([lag(consecutive, k, position) == 1 for k in range(quarters_back)], axis=0)

    def trailing_sum(values: np.ndarray) -> np.ndarray:
        total = values + lag(values, 1, position) + lag(values, 2, position) + lag(values, 3, position)
        return np.where(consecutive_back(3), total, np.nan)

    eps = quarters["eps"].to_numpy(dtype=float)
    revenue = quarters["revenue"].to_numpy(dtype=float)
    return pd.DataFrame(
        {
            "ticker": quarters["ticker"],
            "report_date": quarters["report_date"],
            "eps": eps,
            "eps_ttm": trailing_sum(eps),
            "eps_year_ago": np.where(consecutive_back(4), lag(eps, 4, position), np.nan),
            "revenue_ttm": trailing_sum(revenue),
            "net_margin": _positive_ratio(quarters["net_income"].to_numpy(dtype=float), revenue),
            "leverage": _positive_ratio(
                quarters["total_liabilities"].to_numpy(dtype=float), quarters["total_assets"].to_numpy(dtype=float)
            ),
            "shares_outstanding": quarters["shares_outstanding"].to_numpy(dtype=float),
            _SECTOR: quarters[_SECTOR],
        }
    )


def _as_of_reports(keys: pd.DataFrame, quarters: pd.DataFrame) -> pd.DataFrame:
    """For every row of ``keys`` (sorted by ticker, date), the latest report with report_date <= date."""
    # merge_asof needs both sides sorted by its key. Both tables are sorted by ticker and then by day, so the
    # key (ticker's sort rank, day number) in one int64 is sorted as they stand, and the large price table need
    # not be re-sorted by date (3x faster). ``by`` keeps each ticker to its own reports.
    ranks = pd.factorize(pd.concat([keys["ticker"], quarters["ticker"]], ignore_index=True), sort=True)[0]
    price_key = _ticker_day_key(ranks[: len(keys)], keys["date"])
    report_key = _ticker_day_key(ranks[len(keys) :], quarters["report_date"])
    return pd.merge_asof(
        pd.DataFrame({"key": price_key, "ticker": keys["ticker"]}),
        # Among reports published the same day, the latest quarter comes last (sorted by period_end) and wins.
        quarters.assign(key=report_key),
        on="key",
        by="ticker",
        direction="backward",
        allow_exact_matches=True,  # a report counts from the close of its report day (see module docstring)
    )


def _ticker_day_key(ranks: np.ndarray, dates: pd.Series) -> np.ndarray:
    days = dates.to_numpy().astype("datetime64[D]").astype(np.int64)  # < 10^6 until the year 4700
    return ranks.astype(np.int64) * 1_000_000 + days


def fundamentals(
    keys: pd.DataFrame, financials: pd.DataFrame, *, quarter_gap_days: tuple[int, int]
) -> dict[str, np.ndarray]:
    """Fundamental ratios and earnings signals per (date, ticker) of ``keys``, as known at each day's close."""
    close = keys["close"].to_numpy(dtype=float)
    dated = financials["report_date"].notna()
    static_sector = _static_sectors(keys, financials[~dated])
    financials = financials[dated]
    if financials.empty:
        missing = np.full(len(keys), np.nan)
        names = [spec.name for spec in fundamentals_columns(quarter_gap_days=quarter_gap_days)]
        columns = {name: missing.copy() for name in names}
        return columns | {_SECTOR: static_sector}
    reports = _as_of_reports(keys, quarterly_metrics(financials, quarter_gap_days=quarter_gap_days))
    eps = reports["eps"].to_numpy(dtype=float)
    eps_ttm = reports["eps_ttm"].to_numpy(dtype=float)
    eps_year_ago = reports["eps_year_ago"].to_numpy(dtype=float)
    eps_change = eps - eps_year_ago
    days_since = (keys["date"].to_numpy() - reports["report_date"].to_numpy()) / np.timedelta64(1, "D")
    return {
        "earnings_growth_yoy": divide(eps_change, np.abs(eps_year_ago)),
        "earnings_surprise": eps_change / close,
        "pe_ratio": _positive_ratio(close, eps_ttm),
        "earnings_yield": eps_ttm / close,
        "price_to_sales": _positive_ratio(
            close * reports["shares_outstanding"].to_numpy(dtype=float), reports["revenue_ttm"].to_numpy(dtype=float)
        ),
        "net_margin": reports["net_margin"].to_numpy(dtype=float),
        "leverage": reports["leverage"].to_numpy(dtype=float),
        "days_since_report": days_since.astype(float),
        # The latest report's sector; before a ticker's first report, or without reports, its sector row's.
        _SECTOR: np.where(
            reports[_SECTOR].isna().to_numpy(), static_sector, reports[_SECTOR].to_numpy(dtype=object, na_value=np.nan)
        ),
    }


def _static_sectors(keys: pd.DataFrame, sector_rows: pd.DataFrame) -> np.ndarray:
    """Each key row's sector from the rows without dates (sector metadata), NaN where there is none."""
    if sector_rows.empty:
        return np.full(len(keys), np.nan, dtype=object)
    by_ticker = sector_rows.drop_duplicates("ticker", keep="last").set_index("ticker")[_SECTOR]
    return keys["ticker"].map(by_ticker).to_numpy(dtype=object, na_value=np.nan)


def fundamentals_columns(*, quarter_gap_days: tuple[int, int]) -> tuple[ColumnSpec, ...]:
    """Columns of ``fundamentals``; each uses the close at t and the reports known at t (see the module)."""
    trailing = f"over the last four reported quarters (NaN unless consecutive: period ends {quarter_gap_days[0]}-"
    trailing += f"{quarter_gap_days[1]} days apart)"
    return (
        ColumnSpec(
            "earnings_growth_yoy",
            "(EPS - EPS of the same quarter a year earlier) / |year-earlier EPS|, both reported by t; NaN when "
            "the year-earlier EPS is 0 or the quarters are not consecutive.",
            1,
        ),
        ColumnSpec(
            "earnings_surprise",
            "Last earnings surprise against a seasonal random walk, scaled by price: (EPS - EPS of the same "
            "quarter a year earlier) / close(t). Uses only reports published by t.",
            1,
        ),
        ColumnSpec(
            "pe_ratio",
            f"P/E: close(t) / trailing EPS (the sum of quarterly EPS {trailing}); NaN when trailing EPS <= 0 "
            "(a P/E of a loss is not comparable: earnings_yield carries that information).",
            1,
        ),
        ColumnSpec("earnings_yield", "Trailing EPS / close(t): the P/E inverted, defined for losses too.", 1),
        ColumnSpec(
            "price_to_sales",
            f"Market cap (close(t) × shares outstanding) / revenue {trailing}; NaN when that revenue <= 0.",
            1,
        ),
        ColumnSpec("net_margin", "Net income / revenue of the latest quarter; NaN when revenue <= 0.", 1),
        ColumnSpec("leverage", "Total liabilities / total assets of the latest quarter; NaN when assets <= 0.", 1),
        ColumnSpec("days_since_report", "Calendar days from the latest report date to t (0 on a report day).", 1),
        ColumnSpec(
            _SECTOR,
            "Sector of the company, as given by its latest report, or by its sector row (a row without dates: "
            "sector metadata alone) before its first report or without reports (categorical).",
            1,
            categorical=True,
        ),
    )


FUNDAMENTALS = Family("fundamentals", "fundamentals", Kind.FUNDAMENTAL, fundamentals, fundamentals_columns)
