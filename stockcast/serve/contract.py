"""One contract for every entry point: the rows a prediction request sends obey the rules CSV ingest applies.

``POST /predict_from_history`` carries rows of ``stock_price.csv`` and ``financial_info.csv`` as JSON. Rather than
state the contract a second time, ``checked_history`` writes them as the cells a CSV reader would give
(``stockcast.data.validation.read_csv_text``: text, stripped, a missing value empty) and runs the ingest validators
themselves on them; every rule they break refuses the request with a ``FieldError`` per row, naming the request field,
the row's position and the column (``("prices", 3, "close")``), with the rule's own sentence. A rule added to
ingest applies here the moment it is added.

Where a file and a request differ, the request is stricter: a file loses a few broken rows to quarantine, a request
loses nothing, so any broken rule refuses it whole.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pandas as pd

from stockcast.data.calendar import DATA_CALENDAR
from stockcast.data.config import DEFAULT_TICKER_PATTERN
from stockcast.data.contract import FINANCIALS, PRICES, FileContract
from stockcast.data.validation import FILE_LEVEL, ValidationReport, validate_financials, validate_prices
from stockcast.serve.answers import FieldError, ServingInputError

Rows = Sequence[Mapping[str, Any]]
"""Request rows: one mapping of contract column to value per row (a date, a number, a string or None)."""

CSV_FIRST_DATA_LINE = 2
"""The validators number rows as a CSV editor shows them, the header being line 1: row position + 2."""

ALL_ROWS_MAY_BREAK = 1.0
"""The validators' quarantine threshold, disabled: a request is refused over a single broken row anyway."""


def checked_history(
    prices: Rows,
    financials: Rows | None = None,
    *,
    today: pd.Timestamp | None = None,
    calendar: str = DATA_CALENDAR,
    ticker_pattern: str = DEFAULT_TICKER_PATTERN,
) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """The price rows (and reports) of a history request as the typed tables ingest would accept, or a
    ``ServingInputError`` listing every rule they break.

    ``today`` bounds dates as at ingest (default: today); ``calendar`` is the exchange whose trading days price rows
    must fall on (``"data"``: no exchange calendar, as when the model's data came without one) and ``ticker_pattern``
    the pattern tickers must match: both those the model's snapshot was checked against. Reports must be of the
    tickers the price rows are of. ``financials`` None stays None (the model's own reports are used); an empty list
    is an empty table (the ticker has none).
    """
    raw_prices = raw_table(prices, PRICES)
    typed_prices, report = validate_prices(
        raw_prices,
        file="prices",
        today=today,
        max_quarantined_fraction=ALL_ROWS_MAY_BREAK,
        calendar=calendar,
        ticker_pattern=ticker_pattern,
    )
    errors = field_errors("prices", report, PRICES)
    typed_financials = None
    if financials is not None:
        typed_financials = FINANCIALS.empty()
        if financials:
            typed_financials, report = validate_financials(
                raw_table(financials, FINANCIALS),
                known_tickers=raw_prices["ticker"].unique(),
                file="financials",
                today=today,
                max_quarantined_fraction=ALL_ROWS_MAY_BREAK,
                ticker_pattern=ticker_pattern,
            )
            errors += field_errors("financials", report, FINANCIALS)
    if errors:
        first = errors[0]
        raise ServingInputError(
            f"{_place(first.loc)}: {first.msg}" + (f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""),
            field=str(first.loc[0]),
            errors=errors,
        )
    return typed_prices, typed_financials


def raw_table(rows: Rows, contract: FileContract) -> pd.DataFrame:
    """The CSV file ``rows`` stand for, as ``read_csv_text`` reads one: a frame of stripped strings, a missing value
    empty. It has the contract's required columns, and its optional ones that any row gives a value."""
    optional = [
        column.name for column in contract.optional_columns if any(row.get(column.name) is not None for row in rows)
    ]
    columns = [*contract.required_names, *optional]
    cells = {name: [_cell(row.get(name)) for row in rows] for name in columns}
    return pd.DataFrame(cells, columns=columns, dtype="str")


def field_errors(field: str, report: ValidationReport, contract: FileContract) -> list[FieldError]:
    """Every violation of a validation report as request field errors: one per row shown (the validator lists the
    first few rows of each rule), then one saying how many more rows break it. A rule about one column names the
    column in ``loc``; a rule about several (the order of a day's prices, a key) names them in its message."""
    known_columns = {column.name for column in contract.all_columns()}
    errors: list[FieldError] = []
    for violation in report.violations:
        if violation.column == FILE_LEVEL or not violation.lines:
            errors.append(FieldError((field,), violation.detail, violation.rule))
            continue
        single = violation.column in known_columns
        column: tuple[str, ...] = (violation.column,) if single else ()
        message = violation.detail if single else f"{violation.column}: {violation.detail}"
        rows = [line - CSV_FIRST_DATA_LINE for line in violation.lines]
        errors.extend(FieldError((field, row, *column), message, violation.rule) for row in rows)
        if violation.count > len(violation.lines):
            more = violation.count - len(violation.lines)
            errors.append(FieldError((field,), f"{more} more row(s) break the same rule: {message}", violation.rule))
    return errors


def _cell(value: Any) -> str:
    """A value as a CSV cell: ISO dates and Python's shortest round-trip form of a number are what ``str`` gives."""
    return "" if value is None else str(value).strip()


def _place(loc: Iterable[str | int]) -> str:
    return ".".join(str(part) for part in loc)
