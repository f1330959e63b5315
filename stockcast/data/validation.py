"""Validation of the two contract files, with reports that name file, lines, column and rule.

Policy, per rule (documented in the README):
- **reject the file** when it cannot be trusted as a whole: unreadable CSV, a required column missing, no data
  rows, the same key twice with *different* values (we cannot know which one is right), or more than
  ``max_quarantined_fraction`` of its rows broken;
- **quarantine the rows** that break a row-level rule (missing or unparseable value, a date in the future,
  non-positive price, OHLC out of order, ...): they are left out, counted and listed in the snapshot's report.
Exact duplicate rows are harmless: one copy is kept and the others are quarantined.

Line numbers are those of the CSV file as a person sees it in an editor: the header is line 1.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Literal, NoReturn

import numpy as np
import pandas as pd

from stockcast.core.errors import UserError
from stockcast.data.calendar import DATA_CALENDAR, CalendarError, time_zone, trading_days
from stockcast.data.config import DEFAULT_TICKER_PATTERN
from stockcast.data.contract import FINANCIALS, ORACLE, PRICES, SECTORS, FileContract

Action = Literal["reject", "quarantine"]

NULL_TOKENS = frozenset({"", "na", "n/a", "nan", "null", "none"})
"""Cell values read as missing (compared case-insensitively, after stripping spaces)."""

DEFAULT_MAX_QUARANTINED_FRACTION = 0.05
LINES_SHOWN = 5
_FIRST_DATA_LINE = 2  # the header is line 1
FILE_LEVEL = "*"
"""The column of a violation that concerns the file as a whole."""


@dataclass(frozen=True)
class Violation:
    """One broken rule in one file: which rule, which column(s), which lines, and what happens to them."""

    file: str
    rule: str
    column: str
    detail: str
    action: Action
    count: int
    lines: tuple[int, ...] = ()

    def message(self) -> str:
        """A one-line, human-readable statement of the violation."""
        consequence = "file rejected" if self.action == "reject" else "rows quarantined"
        if self.column == FILE_LEVEL:
            return f"{self.file}: rule '{self.rule}' broken: {self.detail} ({consequence})"
        if not self.lines and self.action == "reject":
            return f"{self.file}: rule '{self.rule}' broken in column '{self.column}': {self.detail} ({consequence})"
        where = ""
        if self.lines:
            shown = ", ".join(str(line) for line in self.lines)
            more = f" and {self.count - len(self.lines)} more" if self.count > len(self.lines) else ""
            where = f" at line{'s' if self.count > 1 else ''} {shown}{more}"
        return (
            f"{self.file}: rule '{self.rule}' broken in column '{self.column}' by {self.count} "
            f"row{'s' if self.count != 1 else ''}{where}: {self.detail} ({consequence})"
        )


@dataclass(frozen=True)
class ValidationReport:
    """What validation found in one file and what it kept."""

    file: str
    rows_read: int
    rows_accepted: int
    violations: tuple[Violation, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def rejected(self) -> bool:
        """True when a rule rejected the whole file."""
        return any(v.action == "reject" for v in self.violations)

    @property
    def rows_quarantined(self) -> int:
        """Rows left out of the accepted table (zero when the file was rejected as a whole)."""
        return 0 if self.rejected else self.rows_read - self.rows_accepted

    def messages(self) -> list[str]:
        """Every violation as a sentence, rejections first."""
        ordered = sorted(self.violations, key=lambda v: v.action != "reject")
        return [v.message() for v in ordered]

    def to_dict(self) -> dict:
        """A plain-data form, for Metaflow artefacts and cards."""
        return {
            **asdict(self),
            "rejected": self.rejected,
            "rows_quarantined": self.rows_quarantined,
            "violations": [{**asdict(v), "message": v.message()} for v in self.violations],
        }


class ContractViolationError(UserError):
    """Raised when a file is rejected; the message lists every rule it broke."""

    headline = "Input rejected"

    def __init__(self, reports: Iterable[ValidationReport]) -> None:
        self.reports = [r for r in reports if r.rejected]
        lines = [m for r in self.reports for m in r.messages()]
        # Metaflow prints the headline ("Input rejected") above: the message is the broken rules, one per line.
        super().__init__("\n".join(f"- {line}" for line in lines))


@dataclass
class _Checker:
    """Collects violations for one file while the rules run; rows are positions in the raw frame."""

    file: str
    n_rows: int
    violations: list[Violation] = field(default_factory=list)
    quarantined: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.quarantined = np.zeros(self.n_rows, dtype=bool)

    def reject(self, rule: str, column: str, detail: str, bad: np.ndarray | None = None) -> None:
        self._add(rule, column, detail, "reject", bad)

    def quarantine(self, rule: str, column: str, detail: str, bad: np.ndarray) -> None:
        # A row that already broke an earlier rule is not reported again under a later one: the first broken
        # rule is the useful one (a missing close also "breaks" the OHLC order).
        new = bad & ~self.quarantined
        if new.any():
            self.quarantined |= new
            self._add(rule, column, detail, "quarantine", new)

    def _add(self, rule: str, column: str, detail: str, action: Action, bad: np.ndarray | None) -> None:
        positions = np.flatnonzero(bad) if bad is not None else np.array([], dtype=int)
        self.violations.append(
            Violation(
                file=self.file,
                rule=rule,
                column=column,
                detail=detail,
                action=action,
                count=len(positions) if bad is not None else 1,
                lines=tuple(int(p) + _FIRST_DATA_LINE for p in positions[:LINES_SHOWN]),
            )
        )

    def report(self, rows_accepted: int, notes: Iterable[str] = ()) -> ValidationReport:
        return ValidationReport(self.file, self.n_rows, rows_accepted, tuple(self.violations), tuple(notes))


def read_csv_text(data: bytes, *, file: str) -> pd.DataFrame:
    """Read CSV bytes into a frame of stripped strings. A file that cannot be read as a comma-separated table is
    rejected with the reason a person can act on: its encoding, its delimiter, the first line whose number of fields
    differs from the header's, or pandas' own reason."""
    text = _decode(data, file)
    if not text.strip():
        _reject_file(file, "readable_csv", "the file is empty")
    _check_fields(text, file)
    try:
        raw = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, na_filter=False, index_col=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        _reject_file(file, "readable_csv", f"not a readable CSV file: {exc}")
    raw.columns = [str(c).strip() for c in raw.columns]
    return raw.apply(lambda column: column.str.strip())


def _decode(data: bytes, file: str) -> str:
    """The file's text: UTF-8, with or without the byte-order mark spreadsheets write."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        _reject_file(file, "utf8_text", "the file is UTF-16 text; save it as UTF-8 (CSV UTF-8 in spreadsheets)")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        _reject_file(file, "utf8_text", f"line {line} is not UTF-8 text (byte {exc.start}); save the file as UTF-8")
    raise AssertionError("unreachable")


_OTHER_DELIMITERS = {";": "semicolon", "\t": "tab", "|": "pipe"}


def _check_fields(text: str, file: str) -> None:
    """Reject a file that is not one comma-separated table: a header without commas but another usual delimiter (it
    would read as one column), a column named twice, a line with more or fewer fields than the header, a quote never
    closed."""
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    record_line = 1  # where the record being read starts: a quote left open swallows the lines after it
    try:
        header = next(reader, [])
        if len(header) == 1:
            for delimiter, name in _OTHER_DELIMITERS.items():
                if delimiter in header[0]:
                    _reject_file(file, "comma_separated", f"looks {name}-separated; separate fields with commas")
        names = [name.strip() for name in header]
        duplicated = sorted({name for name in names if names.count(name) > 1})
        if duplicated:
            named_twice = ", ".join(duplicated)
            _reject_file(file, "unique_columns", f"column(s) named more than once in the header: {named_twice}")
        record_line = reader.line_num + 1
        for row in reader:
            if row and len(row) != len(header):
                _reject_file(
                    file, "field_count", f"line {record_line} has {len(row)} fields, the header has {len(header)}"
                )
            record_line = reader.line_num + 1
    except csv.Error as exc:
        _reject_file(file, "readable_csv", f"not a readable CSV file: line {record_line}: {exc}")


def _reject_file(file: str, rule: str, detail: str) -> NoReturn:
    """Reject a whole file for a reason found before its rows could be read."""
    report = ValidationReport(file, 0, 0, (Violation(file, rule, FILE_LEVEL, detail, "reject", 1),))
    raise ContractViolationError([report])


def _parse_columns(raw: pd.DataFrame, contract: FileContract, checker: _Checker, time_zone: str | None) -> pd.DataFrame:
    """Typed columns from the raw strings; missing and unparseable values quarantine their rows."""
    parsed: dict[str, pd.Series] = {}
    for column in contract.all_columns():
        if column.name not in raw.columns:
            continue
        text = raw[column.name]
        missing = text.str.lower().isin(NULL_TOKENS).to_numpy()
        if not column.nullable:
            checker.quarantine("required_value", column.name, "value is missing", missing)
        if column.kind == "text":
            parsed[column.name] = text.where(~missing).astype("str")
            continue
        if column.kind == "date":
            values = _parse_dates(text, missing, column.name, checker, time_zone)
        else:
            values = pd.to_numeric(text.where(~missing), errors="coerce").astype("float64")
            unparseable = ~np.isfinite(values.to_numpy()) & ~missing
            checker.quarantine("number_format", column.name, "not a finite number", unparseable)
        parsed[column.name] = values
    return pd.DataFrame(parsed, index=raw.index)


_WITH_OFFSET = r"\d[T ]\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?\s*(?:Z|[+-]\d{2}(?::?\d{2})?)$"
"""An ISO timestamp with a UTC offset (``2024-03-01T22:00:00-05:00``, ``...Z``)."""
EARLIEST_DATE = pd.Timestamp("1900-01-01")
LATEST_DATE = pd.Timestamp("2199-12-31")
"""Dates outside these are typing errors in any market history (and beyond what a timestamp column can hold)."""


def _parse_dates(
    text: pd.Series, missing: np.ndarray, name: str, checker: _Checker, time_zone: str | None
) -> pd.Series:
    """Calendar days from ISO dates. A timestamp with a UTC offset is converted to the exchange's time zone before
    its day is taken (10 pm in New York is that day there, not the next day in UTC); without an exchange calendar
    there is no time zone to convert to, and the row is quarantined rather than put on a guessed day."""
    zoned = text.str.contains(_WITH_OFFSET, regex=True).to_numpy() & ~missing
    values = pd.to_datetime(text.where(~missing & ~zoned), format="ISO8601", errors="coerce")
    if zoned.any():
        if time_zone is None:
            checker.quarantine(
                "date_time_zone",
                name,
                "a timestamp with a UTC offset needs an exchange calendar (configs/data.toml) to tell its trading "
                "day; write the day alone (YYYY-MM-DD)",
                zoned,
            )
        else:
            local = pd.to_datetime(text.where(zoned), format="ISO8601", errors="coerce", utc=True)
            values = values.where(~zoned, local.dt.tz_convert(time_zone).dt.tz_localize(None))
    values = values.dt.normalize()
    # Rows quarantined above (an offset without a time zone) are not reported again: the first broken rule counts.
    unparseable = values.isna().to_numpy() & ~missing
    checker.quarantine("date_format", name, "not an ISO date (YYYY-MM-DD)", unparseable)
    outside = ((values < EARLIEST_DATE) | (values > LATEST_DATE)).to_numpy()
    checker.quarantine("date_range", name, f"date before {EARLIEST_DATE.date()} or after {LATEST_DATE.date()}", outside)
    return values.where(~outside).astype("datetime64[ns]")


def _check_columns(raw: pd.DataFrame, contract: FileContract, checker: _Checker) -> list[str]:
    """Reject a file missing required columns or carrying no rows; return notes on ignored extra columns."""
    missing = [c for c in contract.required_names if c not in raw.columns]
    if missing:
        checker.reject(
            "required_columns",
            ", ".join(missing),
            f"required column(s) missing; expected {', '.join(contract.required_names)} (names are case-sensitive), "
            f"found {', '.join(str(c)[:40] for c in raw.columns[:10]) or 'none'}",
        )
    if len(raw) == 0:
        checker.reject("has_rows", FILE_LEVEL, "file has a header but no data rows")
    known = {c.name for c in contract.all_columns()}
    extra = [c for c in raw.columns if c not in known]
    return [f"{checker.file}: ignored column(s) not in the contract: {', '.join(extra)}"] if extra else []


def _check_keys(typed: pd.DataFrame, contract: FileContract, checker: _Checker) -> None:
    """Exact duplicates are quarantined (one copy kept); the same key with different values rejects the file."""
    key = list(contract.key)
    candidates = ~checker.quarantined
    exact = typed.duplicated(keep="first").to_numpy() & candidates
    checker.quarantine("unique_key", ", ".join(key), "exact duplicate of an earlier row", exact)
    live = typed[~checker.quarantined]
    conflicting = live.duplicated(subset=key, keep=False)
    if conflicting.any():
        bad = np.zeros(len(typed), dtype=bool)
        bad[typed.index.get_indexer(live.index[conflicting.to_numpy()])] = True
        checker.reject(
            "unique_key",
            ", ".join(key),
            f"the same ({', '.join(key)}) appears more than once with different values",
            bad,
        )


def _finish(
    typed: pd.DataFrame,
    contract: FileContract,
    checker: _Checker,
    notes: list[str],
    max_quarantined_fraction: float,
) -> tuple[pd.DataFrame, ValidationReport]:
    """Apply the quarantine threshold, drop quarantined rows and sort by key."""
    n_bad = int(checker.quarantined.sum())
    if checker.n_rows and n_bad / checker.n_rows > max_quarantined_fraction:
        checker.reject(
            "max_quarantined_fraction",
            FILE_LEVEL,
            f"{n_bad} of {checker.n_rows} rows are invalid, more than the allowed {max_quarantined_fraction:.6g} "
            f"({max_quarantined_fraction * 100:.6g} %, option max-quarantined-fraction); fix the file rather than "
            "lose that much data, or raise the option",
        )
    accepted = typed[~checker.quarantined]
    if checker.violations and any(v.action == "reject" for v in checker.violations):
        accepted = accepted.iloc[0:0]
    accepted = accepted.sort_values(list(contract.key), kind="stable").reset_index(drop=True)
    return accepted, checker.report(len(accepted), notes)


RowRule = tuple[str, str, str, Callable[[pd.DataFrame], pd.Series]]
"""(rule, column, detail, predicate selecting the rows that break it)."""


def validate_table(
    raw: pd.DataFrame,
    contract: FileContract,
    *,
    file: str,
    rules: Callable[[pd.DataFrame], list[RowRule]],
    max_quarantined_fraction: float,
    time_zone: str | None = None,
    ticker_pattern: str = DEFAULT_TICKER_PATTERN,
) -> tuple[pd.DataFrame, ValidationReport]:
    """The validation pipeline every contract file goes through: columns, parsing, row rules, keys, threshold.

    Every ticker column must match ``ticker_pattern``; dates with a UTC offset are read in ``time_zone``."""
    checker = _Checker(file, len(raw))
    notes = _check_columns(raw, contract, checker)
    if checker.violations:
        return pd.DataFrame(columns=contract.required_names), checker.report(0, notes)
    typed = _parse_columns(raw, contract, checker, time_zone)
    for rule, column, detail, is_bad in [*_ticker_rules(typed, ticker_pattern), *rules(typed)]:
        # Missing values were quarantined by the parser already; NaN comparisons count as "not broken" here.
        checker.quarantine(rule, column, detail, is_bad(typed).fillna(False).to_numpy(dtype=bool))
    _check_keys(typed, contract, checker)
    return _finish(typed, contract, checker, notes, max_quarantined_fraction)


def _ticker_rules(typed: pd.DataFrame, pattern: str) -> list[RowRule]:
    """The rule "a ticker looks like a ticker" for each ticker column of a file (``new_ticker`` may be empty)."""
    matcher = re.compile(pattern)

    def breaks(values: pd.Series) -> pd.Series:
        return values.map(lambda value: isinstance(value, str) and matcher.fullmatch(value) is None).astype(bool)

    detail = f"not a ticker: must match {pattern} (ticker_pattern in configs/data.toml)"
    return [
        ("ticker_format", name, detail, lambda t, name=name: breaks(t[name]))
        for name in ("ticker", "new_ticker")
        if name in typed
    ]


MAX_PRICE = 1e9
MAX_VOLUME = 1e13
MAX_FIGURE = 1e15
"""Bounds no real price, day's volume or reported figure reaches in any currency: beyond them a value is a unit or
typing error (a price in millionths, 1e308), and would overflow the features built on it."""


def _today(today: pd.Timestamp | None) -> pd.Timestamp:
    return (today or pd.Timestamp.today()).normalize()


def validate_prices(
    raw: pd.DataFrame,
    *,
    file: str = PRICES.file_name,
    today: pd.Timestamp | None = None,
    max_quarantined_fraction: float = DEFAULT_MAX_QUARANTINED_FRACTION,
    calendar: str = DATA_CALENDAR,
    ticker_pattern: str = DEFAULT_TICKER_PATTERN,
) -> tuple[pd.DataFrame, ValidationReport]:
    """Check a raw ``stock_price.csv`` against the contract; return the accepted typed rows and the report.

    With an exchange ``calendar``, rows dated on a day it does not trade (a weekend, a holiday) are quarantined, and
    timestamps with a UTC offset are read in the exchange's time zone.
    """
    today = _today(today)

    def rules(typed: pd.DataFrame) -> list[RowRule]:
        prices = ["open", "high", "low", "close", *(["adj_close"] if "adj_close" in typed else [])]
        return [
            ("not_in_future", "date", f"date is after today ({today.date()})", lambda t: t["date"] > today),
            *_trading_day_rule(typed, calendar),
            *[("positive_price", p, "price must be > 0", lambda t, p=p: t[p] <= 0) for p in prices],
            *[("plausible_price", p, f"price above {MAX_PRICE:.0e}", lambda t, p=p: t[p] > MAX_PRICE) for p in prices],
            ("non_negative_volume", "volume", "volume must be >= 0", lambda t: t["volume"] < 0),
            ("plausible_volume", "volume", f"volume above {MAX_VOLUME:.0e}", lambda t: t["volume"] > MAX_VOLUME),
            (
                "ohlc_order",
                "low, open, close, high",
                "must satisfy low <= min(open, close) <= max(open, close) <= high",
                lambda t: (
                    (t["low"] > t[["open", "close"]].min(axis=1)) | (t["high"] < t[["open", "close"]].max(axis=1))
                ),
            ),
        ]

    return validate_table(
        raw,
        PRICES,
        file=file,
        rules=rules,
        max_quarantined_fraction=max_quarantined_fraction,
        time_zone=time_zone(calendar),
        ticker_pattern=ticker_pattern,
    )


def known_ticker_rule(known_tickers: Iterable[str]) -> RowRule:
    """The rule "the ticker has prices", for the files that describe tickers (financials, sectors, actions)."""
    known = pd.Index(sorted(set(known_tickers)))
    return (
        "known_ticker",
        "ticker",
        "ticker has no prices (neither in the prices file nor in the snapshot)",
        lambda t: ~t["ticker"].isin(known),
    )


def _trading_day_rule(typed: pd.DataFrame, calendar: str) -> list[RowRule]:
    """The rule "the exchange traded that day", for an exchange calendar and dates it covers."""
    dates = typed["date"].dropna()
    if calendar == DATA_CALENDAR or dates.empty:
        return []
    try:
        sessions = trading_days(calendar, dates.min(), dates.max())
    except CalendarError:
        return []  # dates beyond the calendar's coverage: nothing to check them against
    return [
        (
            "trading_day",
            "date",
            f"not a trading day of the {calendar} calendar",
            lambda t: ~t["date"].isin(sessions) & t["date"].notna(),
        )
    ]


FIGURES = [column.name for column in FINANCIALS.columns if column.kind == "number"]
"""The reported figures of a financials row."""


def validate_financials(
    raw: pd.DataFrame,
    *,
    known_tickers: Iterable[str],
    file: str = FINANCIALS.file_name,
    today: pd.Timestamp | None = None,
    max_quarantined_fraction: float = DEFAULT_MAX_QUARANTINED_FRACTION,
    ticker_pattern: str = DEFAULT_TICKER_PATTERN,
) -> tuple[pd.DataFrame, ValidationReport]:
    """Check a raw ``financial_info.csv``; ``known_tickers`` are those with prices (this file or the snapshot)."""
    today = _today(today)

    def rules(_: pd.DataFrame) -> list[RowRule]:
        return [
            ("dates_together", "period_end, report_date",
             "period_end and report_date go together (a row without both carries the sector alone)",
             lambda t: t["period_end"].isna() != t["report_date"].isna()),
            ("sector_only_row", ", ".join(FIGURES), "a row without dates carries the sector alone, no figures",
             lambda t: t["report_date"].isna() & t[FIGURES].notna().any(axis=1)),
            (
                "report_after_period_end",
                "report_date",
                "report_date must be on or after period_end (figures cannot be public before the quarter ends)",
                lambda t: t["report_date"] < t["period_end"],
            ),
            ("not_in_future", "report_date", f"report_date is after today ({today.date()})",
             lambda t: t["report_date"] > today),
            known_ticker_rule(known_tickers),
            ("non_negative_revenue", "revenue", "revenue must be >= 0", lambda t: t["revenue"] < 0),
            ("positive_total_assets", "total_assets", "total_assets must be > 0", lambda t: t["total_assets"] <= 0),
            ("non_negative_liabilities", "total_liabilities", "total_liabilities must be >= 0",
             lambda t: t["total_liabilities"] < 0),
            ("positive_shares", "shares_outstanding", "shares_outstanding must be > 0",
             lambda t: t["shares_outstanding"] <= 0),
            *[("plausible_figure", figure, f"|value| above {MAX_FIGURE:.0e}",
               lambda t, figure=figure: t[figure].abs() > MAX_FIGURE) for figure in FIGURES],
        ]  # fmt: skip

    return validate_table(
        raw,
        FINANCIALS,
        file=file,
        rules=rules,
        max_quarantined_fraction=max_quarantined_fraction,
        ticker_pattern=ticker_pattern,
    )


def validate_sectors(
    raw: pd.DataFrame,
    *,
    known_tickers: Iterable[str],
    file: str = SECTORS.file_name,
    ticker_pattern: str = DEFAULT_TICKER_PATTERN,
) -> tuple[pd.DataFrame, ValidationReport]:
    """Check a ``sectors.csv`` (``ticker, sector``): one sector per known ticker."""
    rule = known_ticker_rule(known_tickers)
    return validate_table(
        raw,
        SECTORS,
        file=file,
        rules=lambda _: [rule],
        max_quarantined_fraction=DEFAULT_MAX_QUARANTINED_FRACTION,
        ticker_pattern=ticker_pattern,
    )


def validate_oracle(raw: pd.DataFrame, *, file: str = ORACLE.file_name) -> tuple[pd.DataFrame, ValidationReport]:
    """Check the generator's oracle file: contract columns and unique keys; it is never user data."""
    return validate_table(
        raw,
        ORACLE,
        file=file,
        rules=lambda _: [
            ("positive_price", "expected_next_close", "must be > 0", lambda t: t["expected_next_close"] <= 0)
        ],
        max_quarantined_fraction=0.0,
    )
