"""A history request's rows are judged by the ingest validators themselves: the same rules, the same sentences,
each broken rule named at its field, row and column."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pandas as pd
import pytest

from stockcast.data.contract import FINANCIALS, PRICES
from stockcast.data.validation import ValidationReport, Violation
from stockcast.serve.answers import FieldError, ServingInputError
from stockcast.serve.contract import checked_history, field_errors, raw_table

TODAY = pd.Timestamp("2025-01-10")


def _prices(days: int = 5, ticker: str = "ABC") -> list[dict[str, Any]]:
    """Rows as the service's schema parses them: dates as dates, numbers as floats, an absent adj_close None."""
    start = dt.date(2025, 1, 2)
    return [
        {
            "date": start + dt.timedelta(days=day),
            "ticker": ticker,
            "open": 10.0 + day,
            "high": 11.0 + day,
            "low": 9.5 + day,
            "close": 10.5 + day,
            "volume": 1000.0,
            "adj_close": None,
        }
        for day in range(days)
    ]


def _report(ticker: str = "ABC", **values: Any) -> dict[str, Any]:
    return {
        "ticker": ticker,
        "period_end": dt.date(2024, 9, 30),
        "report_date": dt.date(2024, 10, 30),
        "revenue": 1e9,
        "net_income": 1e8,
        "eps": 1.2,
        "total_assets": 5e9,
        "total_liabilities": 2e9,
        "shares_outstanding": 1e8,
        "sector": "Technology",
        **values,
    }


def _refusal(prices: list[dict[str, Any]], financials: list[dict[str, Any]] | None = None) -> ServingInputError:
    with pytest.raises(ServingInputError) as caught:
        checked_history(prices, financials, today=TODAY)
    return caught.value


def test_valid_rows_become_the_typed_tables_ingest_accepts() -> None:
    rows = _prices()
    prices, financials = checked_history(list(reversed(rows)), [_report()], today=TODAY)

    assert list(prices.columns) == PRICES.required_names
    assert prices["date"].tolist() == [pd.Timestamp(row["date"]) for row in rows]  # sorted, as ingest sorts
    assert prices["close"].tolist() == [row["close"] for row in rows]
    assert financials is not None and list(financials.columns) == FINANCIALS.required_names
    assert financials["total_assets"].tolist() == [5e9]


def test_no_reports_and_an_empty_list_of_reports_differ() -> None:
    _, none = checked_history(_prices(), None, today=TODAY)
    _, empty = checked_history(_prices(), [], today=TODAY)

    assert none is None
    assert empty is not None and empty.empty and list(empty.columns) == FINANCIALS.required_names


@pytest.mark.parametrize(
    ("row", "values", "loc", "rule", "message"),
    [
        (1, {"close": -1.0}, ("prices", 1, "close"), "positive_price", "price must be > 0"),
        (4, {"close": 1e308, "high": 1e308}, ("prices", 4, "high"), "plausible_price", "price above 1e+09"),
        (2, {"volume": -5.0}, ("prices", 2, "volume"), "non_negative_volume", "volume must be >= 0"),
        (4, {"date": dt.date(2090, 1, 2)}, ("prices", 4, "date"), "not_in_future", "date is after today (2025-01-10)"),
        (0, {"date": dt.date(1, 1, 1)}, ("prices", 0, "date"), "date_range", "date before 1900-01-01 or after"),
        (4, {"date": dt.date(9999, 12, 31)}, ("prices", 4, "date"), "date_range", "date before 1900-01-01 or after"),
        (3, {"ticker": "=HYPERLINK(1)"}, ("prices", 3, "ticker"), "ticker_format", "not a ticker: must match"),
        (3, {"ticker": "  "}, ("prices", 3, "ticker"), "required_value", "value is missing"),
        (
            2,
            {"high": 1.0},
            ("prices", 2),
            "ohlc_order",
            "low, open, close, high: must satisfy low <= min(open, close) <= max(open, close) <= high",
        ),
    ],
)
def test_a_broken_price_row_is_named_with_the_rule_ingest_applies(
    row: int, values: dict[str, Any], loc: tuple[str | int, ...], rule: str, message: str
) -> None:
    rows = _prices()
    rows[row].update(values)

    refusal = _refusal(rows)

    (error,) = refusal.errors
    assert (error.loc, error.type) == (loc, rule)
    assert error.msg.startswith(message)
    assert refusal.field == "prices"
    assert str(refusal) == f"{'.'.join(map(str, loc))}: {error.msg}"


@pytest.mark.parametrize(
    ("values", "loc", "rule", "message"),
    [
        (
            {"total_assets": -5.0},
            ("financials", 0, "total_assets"),
            "positive_total_assets",
            "total_assets must be > 0",
        ),
        (
            {"shares_outstanding": 0.0},
            ("financials", 0, "shares_outstanding"),
            "positive_shares",
            "shares_outstanding must be > 0",
        ),
        ({"revenue": 1e300}, ("financials", 0, "revenue"), "plausible_figure", "|value| above 1e+15"),
        (
            {"report_date": dt.date(2024, 9, 1)},
            ("financials", 0, "report_date"),
            "report_after_period_end",
            "report_date must be on or after period_end",
        ),
        (
            {"ticker": "XYZ"},
            ("financials", 0, "ticker"),
            "known_ticker",
            "ticker has no prices (neither in the prices file nor in the snapshot)",
        ),
    ],
)
def test_a_broken_report_is_named_with_the_rule_ingest_applies(
    values: dict[str, Any], loc: tuple[str | int, ...], rule: str, message: str
) -> None:
    refusal = _refusal(_prices(), [_report(**values)])

    (error,) = refusal.errors
    assert (error.loc, error.type) == (loc, rule)
    assert error.msg.startswith(message)
    assert refusal.field == "financials"


def test_every_broken_row_is_listed_and_the_rest_counted() -> None:
    rows = _prices(days=9)
    for row in rows[1:8]:
        row["volume"] = -1.0
    rows[0]["close"] = 0.0

    refusal = _refusal(rows, [_report(total_assets=0.0)])

    assert [(error.loc, error.type) for error in refusal.errors] == [
        (("prices", 0, "close"), "positive_price"),
        *[(("prices", row, "volume"), "non_negative_volume") for row in range(1, 6)],
        (("prices",), "non_negative_volume"),
        (("financials", 0, "total_assets"), "positive_total_assets"),
    ]
    assert refusal.errors[6].msg == "2 more row(s) break the same rule: volume must be >= 0"
    assert str(refusal) == "prices.0.close: price must be > 0 (and 7 more)"


def test_the_same_day_twice_is_refused_as_a_file_would_be() -> None:
    rows = _prices()
    exact = [*rows, dict(rows[2])]
    conflicting = [*rows, {**rows[2], "close": rows[2]["close"] + 0.1}]

    (duplicate,) = _refusal(exact).errors
    conflict = _refusal(conflicting).errors

    assert duplicate == FieldError(("prices", 5), "ticker, date: exact duplicate of an earlier row", "unique_key")
    assert [error.loc for error in conflict] == [("prices", 2), ("prices", 5)]
    assert conflict[0].msg == ("ticker, date: the same (ticker, date) appears more than once with different values")


def test_raw_table_gives_the_cells_a_csv_reader_gives() -> None:
    rows = _prices(days=2)
    rows[0]["ticker"] = " ABC "
    rows[1]["volume"] = 1250000.0

    raw = raw_table(rows, PRICES)

    assert list(raw.columns) == PRICES.required_names  # adj_close absent from every row: no column
    assert raw.iloc[0].tolist() == ["2025-01-02", "ABC", "10.0", "11.0", "9.5", "10.5", "1000.0"]
    assert raw.loc[1, "volume"] == "1250000.0"


def test_an_optional_column_some_rows_fill_must_be_filled_in_all() -> None:
    rows = _prices(days=3)
    rows[0]["adj_close"] = 10.4

    assert list(raw_table(rows, PRICES).columns) == [*PRICES.required_names, "adj_close"]
    assert _refusal(rows).errors == (
        FieldError(("prices", 1, "adj_close"), "value is missing", "required_value"),
        FieldError(("prices", 2, "adj_close"), "value is missing", "required_value"),
    )


def test_a_rule_about_the_whole_file_names_the_field() -> None:
    report = ValidationReport(
        "prices", 3, 0, (Violation("prices", "has_rows", "*", "file has a header but no data rows", "reject", 1),)
    )

    assert field_errors("prices", report, PRICES) == [
        FieldError(("prices",), "file has a header but no data rows", "has_rows")
    ]


def test_the_snapshot_calendar_and_ticker_pattern_apply_to_requests() -> None:
    """A bundle records what its snapshot was checked against, and the service passes it on."""
    days = _prices(days=5)  # 2 to 6 January 2025: a Saturday (4th) and a Sunday (5th) among them
    checked_history(days, today=TODAY)  # no exchange calendar: the rows' own days
    with pytest.raises(ServingInputError) as caught:
        checked_history(days, today=TODAY, calendar="XNYS")
    assert [error.loc for error in caught.value.errors] == [("prices", 2, "date"), ("prices", 3, "date")]
    assert {error.type for error in caught.value.errors} == {"trading_day"}
    with pytest.raises(ServingInputError) as caught:
        checked_history(_prices(days=2), today=TODAY, ticker_pattern=r"^[A-Z]{4}$")
    assert {(error.loc[-1], error.type) for error in caught.value.errors} == {("ticker", "ticker_format")}
