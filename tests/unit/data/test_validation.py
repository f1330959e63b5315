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


# --- Time zones, tickers and magnitudes (issue 17) ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("stamp", "day"),
    [
        ("2024-01-03T22:00:00-05:00", "2024-01-03"),  # 10 pm in New York: still that day there (UTC: the next day)
        ("2024-01-03T21:00:00Z", "2024-01-03"),  # 4 pm in New York, written in UTC
        ("2024-01-04T02:30:00+00:00", "2024-01-03"),  # 9:30 pm New York
        ("2024-01-03 15:59", "2024-01-03"),  # no offset: the day as written
    ],
)
def test_a_timestamp_with_an_offset_is_read_in_the_exchange_time_zone(stamp, day):
    accepted, report = _prices(_edit(PRICES_CSV, 3, "date", stamp), calendar="XNYS")
    assert not report.violations
    assert accepted.loc[accepted["ticker"].eq("AAA"), "date"].dt.strftime("%Y-%m-%d").tolist()[1] == day


def test_without_an_exchange_calendar_an_offset_is_quarantined_not_guessed():
    _, report = _prices(_edit(PRICES_CSV, 3, "date", "2024-01-03T22:00:00-05:00"), calendar="data")
    (violation,) = report.violations
    assert (violation.rule, violation.column, violation.lines) == ("date_time_zone", "date", (3,))
    assert "needs an exchange calendar" in violation.message()


@pytest.mark.parametrize("ticker", ["=cmd|' /C calc'!A0", "AA\u200bA", "AA A", "A" * 21, "+SUM(A1)", "ÄBC"])
def test_junk_tickers_are_quarantined(ticker):
    _, report = _prices(_edit(PRICES_CSV, 2, "ticker", ticker))
    (violation,) = report.violations
    assert (violation.rule, violation.column, violation.lines) == ("ticker_format", "ticker", (2,))
    assert "ticker_pattern in configs/data.toml" in violation.message()


@pytest.mark.parametrize("ticker", ["BRK.B", "BRK-B", "BRK/B", "7203.T", "^GSPC", "rds_a"])
def test_real_ticker_spellings_are_accepted(ticker):
    accepted, report = _prices(_edit(PRICES_CSV, 2, "ticker", ticker))
    assert not report.violations and ticker in set(accepted["ticker"])


def test_the_ticker_pattern_is_configurable():
    _, report = _prices(_edit(PRICES_CSV, 2, "ticker", "AAAA"), ticker_pattern=r"^[A-Z]{3}$")
    (violation,) = report.violations
    assert (violation.rule, violation.lines, violation.count) == ("ticker_format", (2,), 1)


@pytest.mark.parametrize(
    ("column", "value", "rule"),
    [("close", "1e308", "ohlc_order"), ("high", "2e9", "plausible_price"), ("volume", "1e14", "plausible_volume")],
)
def test_values_no_market_has_are_quarantined(column, value, rule):
    text = _edit(PRICES_CSV, 2, column, value)
    _, report = _prices(text if column != "close" else _edit(text, 2, "high", value))
    (violation,) = report.violations
    assert violation.rule in {rule, "plausible_price"} and violation.lines == (2,)


def test_dates_beyond_what_a_timestamp_holds_are_quarantined():
    _, report = _prices(_edit(_edit(PRICES_CSV, 2, "date", "9999-12-31"), 3, "date", "0001-01-01"))
    (violation,) = report.violations
    assert (violation.rule, violation.lines) == ("date_range", (2, 3))


def test_figures_no_company_reports_are_quarantined():
    raw = _raw(_edit(FINANCIALS_CSV, 2, "revenue", "1e300"))
    _, report = validate_financials(raw, known_tickers={"AAA", "BBB"}, today=TODAY, max_quarantined_fraction=0.5)
    (violation,) = report.violations
    assert (violation.rule, violation.column, violation.lines) == ("plausible_figure", "revenue", (2,))


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (PRICES_CSV.replace(",", ";").encode(), "looks semicolon-separated"),
        (PRICES_CSV.replace(",", "\t").encode(), "looks tab-separated"),
        (_edit(PRICES_CSV, 3, "volume", "1200,7").encode(), "line 3 has 8 fields, the header has 7"),
        (_edit(PRICES_CSV, 4, "volume", "").replace(",\n", "\n").encode(), "line 4 has 6 fields, the header has 7"),
        (PRICES_CSV.encode("utf-16"), "the file is UTF-16 text"),
        (PRICES_CSV.replace("BBB", "BB\xc9").encode("latin-1"), "line 5 is not UTF-8 text"),
        (b"", "the file is empty"),
        (PRICES_CSV.replace("volume", "close").encode(), "named more than once in the header: close"),
    ],
)
def test_a_file_that_is_not_one_comma_separated_table_is_diagnosed(data, reason):
    with pytest.raises(ContractViolationError) as caught:
        read_csv_text(data, file="stock_price.csv")
    assert reason in str(caught.value)
    assert "\n" not in str(caught.value)  # one sentence (Metaflow prints the headline above it)


def test_a_byte_order_mark_and_windows_line_ends_read_as_plain_csv():
    plain = read_csv_text(PRICES_CSV.encode(), file="a.csv")
    marked = read_csv_text(("\ufeff" + PRICES_CSV.replace("\n", "\r\n")).encode(), file="b.csv")
    pd.testing.assert_frame_equal(plain, marked)
