"""Every validation rule, one bad file each: the message names file, line, column and rule, and the policy holds."""

from __future__ import annotations

import pandas as pd
import pytest

from stockcast.data.validation import (
    ContractViolationError,
    read_csv_text,
    validate_financials,
    validate_oracle,
    validate_prices,
)

TODAY = pd.Timestamp("2024-06-28")

PRICES_CSV = """date,ticker,open,high,low,close,volume
2024-01-02,AAA,10,11,9,10.5,1000
2024-01-03,AAA,10.5,11,10,10.8,1200
2024-01-04,AAA,10.8,11.2,10.1,11,900
2024-01-02,BBB,20,21,19,20.5,500
2024-01-03,BBB,20.5,21,19.5,20.8,600
2024-01-04,BBB,20.8,21.5,20,21,700
"""

FINANCIALS_CSV = """\
ticker,period_end,report_date,revenue,net_income,eps,total_assets,total_liabilities,shares_outstanding,sector
AAA,2023-09-30,2023-10-30,100,10,1,1000,500,10,Technology
AAA,2023-12-31,2024-02-01,110,12,1.2,1100,520,10,Technology
BBB,2023-09-30,2023-11-10,50,-2,-0.2,800,700,20,Energy
"""


def _raw(text: str) -> pd.DataFrame:
    return read_csv_text(text.encode(), file="test.csv")


def _edit(text: str, line: int, column: str, value: str) -> str:
    """``text`` with one cell replaced; ``line`` counts the header as line 1, like the messages do."""
    lines = text.splitlines()
    header = lines[0].split(",")
    cells = lines[line - 1].split(",")
    cells[header.index(column)] = value
    lines[line - 1] = ",".join(cells)
    return "\n".join(lines) + "\n"


def _prices(text: str = PRICES_CSV, **kwargs):
    return validate_prices(_raw(text), file="stock_price.csv", today=TODAY, max_quarantined_fraction=0.5, **kwargs)


def _financials(text: str = FINANCIALS_CSV, **kwargs):
    kwargs.setdefault("known_tickers", ["AAA", "BBB"])
    return validate_financials(
        _raw(text), file="financial_info.csv", today=TODAY, max_quarantined_fraction=0.5, **kwargs
    )


def test_valid_files_pass_untouched_and_typed():
    prices, report = _prices()
    assert not report.violations and report.rows_accepted == 6
    assert list(prices.columns) == ["date", "ticker", "open", "high", "low", "close", "volume"]
    assert prices["date"].dtype == "datetime64[ns]" and prices["close"].dtype == "float64"
    assert prices[["ticker", "date"]].equals(prices[["ticker", "date"]].sort_values(["ticker", "date"]))
    financials, report = _financials()
    assert not report.violations and len(financials) == 3
    assert financials["report_date"].dtype == "datetime64[ns]"


@pytest.mark.parametrize(
    ("line", "column", "value", "rule", "detail"),
    [
        (3, "close", "", "required_value", "value is missing"),
        (3, "ticker", "NA", "required_value", "value is missing"),
        (3, "date", "03/01/2024", "date_format", "not an ISO date"),
        (3, "volume", "lots", "number_format", "not a finite number"),
        (3, "close", "inf", "number_format", "not a finite number"),
        (3, "date", "2030-01-02", "not_in_future", "after today (2024-06-28)"),
        (3, "open", "-1", "positive_price", "price must be > 0"),
        (3, "low", "0", "positive_price", "price must be > 0"),
        (3, "volume", "-5", "non_negative_volume", "volume must be >= 0"),
        (3, "high", "10.6", "ohlc_order", "low <= min(open, close) <= max(open, close) <= high"),
        (3, "low", "10.7", "ohlc_order", "low <= min(open, close) <= max(open, close) <= high"),
    ],
)
def test_each_price_rule_quarantines_the_row_and_names_it(line, column, value, rule, detail):
    prices, report = _prices(_edit(PRICES_CSV, line, column, value))
    assert not report.rejected
    assert report.rows_quarantined == 1 and len(prices) == 5
    (violation,) = report.violations
    assert violation.rule == rule and violation.lines == (line,)
    message = violation.message()
    assert message.startswith("stock_price.csv: ")
    assert f"rule '{rule}'" in message and f"line {line}" in message and detail in message
    assert column in violation.column


def test_adj_close_is_optional_but_checked_when_present():
    text = PRICES_CSV.replace("volume\n", "volume,adj_close\n", 1)
    text = "\n".join(line + ",5" if i else line for i, line in enumerate(text.splitlines())) + "\n"
    prices, report = _prices(_edit(text, 4, "adj_close", "-3"))
    assert "adj_close" in prices.columns
    assert [(v.rule, v.column, v.lines) for v in report.violations] == [("positive_price", "adj_close", (4,))]


def test_missing_required_column_rejects_the_file():
    text = "\n".join(",".join(line.split(",")[:6]) for line in PRICES_CSV.splitlines()) + "\n"
    prices, report = _prices(text)
    assert report.rejected and prices.empty
    (violation,) = report.violations
    assert violation.rule == "required_columns" and violation.column == "volume"
    assert "expected date, ticker, open, high, low, close, volume" in violation.message()


def test_header_only_file_is_rejected():
    _, report = _prices(PRICES_CSV.splitlines()[0] + "\n")
    assert report.rejected and report.violations[0].rule == "has_rows"
    assert report.violations[0].message() == (
        "stock_price.csv: rule 'has_rows' broken: file has a header but no data rows (file rejected)"
    )


def test_unreadable_csv_raises_naming_the_file():
    with pytest.raises(ContractViolationError, match=r"broken\.csv: rule 'readable_csv'"):
        read_csv_text(b'date,ticker\n"2024-01-02,AAA\n', file="broken.csv")


def test_exact_duplicates_are_quarantined_and_one_copy_kept():
    lines = PRICES_CSV.splitlines()
    prices, report = _prices("\n".join([*lines, lines[2]]) + "\n")
    assert len(prices) == 6 and not report.rejected
    (violation,) = report.violations
    assert violation.rule == "unique_key" and violation.lines == (8,)


def test_conflicting_duplicates_reject_the_file_naming_both_lines():
    lines = PRICES_CSV.splitlines()
    conflicting = lines[2].replace("10.8,1200", "10.9,1200")
    _, report = _prices("\n".join([*lines, conflicting]) + "\n")
    assert report.rejected
    (violation,) = report.violations
    assert violation.rule == "unique_key" and violation.lines == (3, 8)
    assert "with different values" in violation.message()


def test_too_many_bad_rows_reject_the_file():
    text = _edit(_edit(PRICES_CSV, 2, "close", "-1"), 3, "close", "-1")
    _, report = validate_prices(_raw(text), file="stock_price.csv", today=TODAY, max_quarantined_fraction=0.2)
    assert report.rejected
    assert any(v.rule == "max_quarantined_fraction" and "2 of 6 rows" in v.message() for v in report.violations)
    assert report.messages()[0].endswith("(file rejected)")


def test_a_row_is_reported_once_under_its_first_broken_rule():
    # A missing close would also break the OHLC order; only the missing value is reported.
    _, report = _prices(_edit(PRICES_CSV, 2, "close", ""))
    assert [v.rule for v in report.violations] == ["required_value"]


def test_many_bad_lines_are_listed_briefly_with_a_count():
    text = PRICES_CSV
    for line in range(2, 8):
        text = _edit(text, line, "volume", "-1")
    _, report = validate_prices(_raw(text), file="stock_price.csv", today=TODAY, max_quarantined_fraction=1.0)
    (violation,) = report.violations
    assert violation.count == 6 and violation.lines == (2, 3, 4, 5, 6)
    assert "at lines 2, 3, 4, 5, 6 and 1 more" in violation.message()


def test_extra_columns_are_noted_not_fatal():
    text = "\n".join(line + (",x" if i else ",comment") for i, line in enumerate(PRICES_CSV.splitlines())) + "\n"
    prices, report = _prices(text)
    assert "comment" not in prices.columns and not report.violations
    assert report.notes == ("stock_price.csv: ignored column(s) not in the contract: comment",)


@pytest.mark.parametrize(
    ("line", "column", "value", "rule"),
    [
        (2, "report_date", "2023-09-01", "report_after_period_end"),
        (2, "report_date", "2025-01-01", "not_in_future"),
        (2, "ticker", "ZZZ", "known_ticker"),
        (2, "revenue", "-1", "non_negative_revenue"),
        (2, "total_assets", "0", "positive_total_assets"),
        (2, "total_liabilities", "-1", "non_negative_liabilities"),
        (2, "shares_outstanding", "0", "positive_shares"),
        (2, "sector", "", "required_value"),
        (2, "eps", "one", "number_format"),
    ],
)
def test_each_financials_rule_quarantines_the_row_and_names_it(line, column, value, rule):
    financials, report = _financials(_edit(FINANCIALS_CSV, line, column, value))
    assert len(financials) == 2 and not report.rejected
    (violation,) = report.violations
    assert (violation.rule, violation.column, violation.lines) == (rule, column, (line,))
    assert violation.message().startswith("financial_info.csv: ")


def test_a_row_without_dates_or_figures_carries_the_sector_alone():
    sector_only = FINANCIALS_CSV + "CCC,,,,,,,,,Utilities\n"
    financials, report = _financials(sector_only, known_tickers=["AAA", "BBB", "CCC"])
    assert not report.violations
    row = financials[financials["ticker"] == "CCC"].iloc[0]
    assert row["sector"] == "Utilities" and pd.isna(row["report_date"]) and pd.isna(row["revenue"])


@pytest.mark.parametrize(
    ("row", "rule", "column"),
    [
        ("CCC,2024-03-31,,,,,,,,Utilities", "dates_together", "period_end, report_date"),
        ("CCC,,,100,,,,,,Utilities", "sector_only_row", "revenue, net_income, eps"),
    ],
)
def test_dates_come_together_and_a_dateless_row_has_no_figures(row, rule, column):
    financials, report = _financials(FINANCIALS_CSV + row + "\n", known_tickers=["AAA", "BBB", "CCC"])
    (violation,) = report.violations
    assert violation.rule == rule and violation.column.startswith(column) and violation.lines == (5,)
    assert "CCC" not in set(financials["ticker"])


def test_missing_reported_figures_stay_missing():
    financials, report = _financials(_edit(FINANCIALS_CSV, 2, "revenue", ""))
    assert not report.violations
    assert financials["revenue"].isna().sum() == 1


def test_financials_duplicate_quarter_with_different_figures_rejects():
    lines = FINANCIALS_CSV.splitlines()
    _, report = _financials("\n".join([*lines, lines[1].replace(",100,", ",101,")]) + "\n")
    assert report.rejected and report.violations[0].column == "ticker, period_end"


def test_oracle_contract():
    oracle, report = validate_oracle(_raw("date,ticker,expected_next_close\n2024-01-02,AAA,10.1\n"))
    assert not report.violations and oracle["expected_next_close"].tolist() == [10.1]
    _, report = validate_oracle(_raw("date,ticker\n2024-01-02,AAA\n"))
    assert report.rejected
    _, report = validate_oracle(_raw("date,ticker,expected_next_close\n2024-01-02,AAA,-1\n"))
    assert report.rejected and report.violations[0].rule == "positive_price"


def test_contract_violation_error_lists_every_rejection():
    _, bad = _prices(PRICES_CSV.splitlines()[0] + "\n")
    _, good = _prices()
    error = ContractViolationError([good, bad])
    assert error.reports == [bad]
    assert "stock_price.csv: rule 'has_rows'" in str(error)


def test_inputs_are_not_mutated():
    raw = _raw(_edit(PRICES_CSV, 3, "close", "-1"))
    before = raw.copy()
    validate_prices(raw, today=TODAY, max_quarantined_fraction=0.5)
    pd.testing.assert_frame_equal(raw, before)
