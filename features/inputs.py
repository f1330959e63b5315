"""The tables the feature library reads: their columns, in the order and kinds it expects.

These are the required columns of the user-facing CSV contract (``stockcast.data.contract`` builds the contract's
files, keys and optional columns on them), stated here because the feature library is the lower layer: it depends on
nothing of ``stockcast``, and ``stockcast`` takes the column lists from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ColumnKind = Literal["date", "text", "number"]


@dataclass(frozen=True)
class Column:
    """One input column: its name, how it is parsed, and whether a value may be missing."""

    name: str
    kind: ColumnKind
    nullable: bool = False


@dataclass(frozen=True)
class InputTable:
    """The columns the feature library needs of one input table (``prices`` or ``financials``)."""

    name: str
    columns: tuple[Column, ...]

    @property
    def names(self) -> list[str]:
        """The column names, in order."""
        return [column.name for column in self.columns]


PRICE_INPUT = InputTable(
    "prices",
    (
        Column("date", "date"),
        Column("ticker", "text"),
        Column("open", "number"),
        Column("high", "number"),
        Column("low", "number"),
        Column("close", "number"),
        Column("volume", "number"),
    ),
)
"""One row per ticker and trading day."""

FINANCIAL_INPUT = InputTable(
    "financials",
    (
        Column("ticker", "text"),
        # A row without dates carries the ticker's sector alone (sector metadata without fundamentals); its figures
        # are empty.
        Column("period_end", "date", nullable=True),
        Column("report_date", "date", nullable=True),
        # Reported figures may be absent for a quarter (a bank reports no "revenue" line, say): missing stays
        # missing and is never invented downstream.
        Column("revenue", "number", nullable=True),
        Column("net_income", "number", nullable=True),
        Column("eps", "number", nullable=True),
        Column("total_assets", "number", nullable=True),
        Column("total_liabilities", "number", nullable=True),
        Column("shares_outstanding", "number", nullable=True),
        Column("sector", "text"),
    ),
)
"""One row per ticker and fiscal quarter; its figures are known from ``report_date`` on."""

ACTION_INPUT = InputTable(
    "corporate actions",
    (
        Column("ticker", "text"),
        Column("ex_date", "date"),
        Column("kind", "text"),
        Column("ratio", "number", nullable=True),
        Column("new_ticker", "text", nullable=True),
    ),
)
"""One row per corporate action, effective from ``ex_date`` (the first day that trades on the new basis).

Kinds (``features.adjust.ACTION_KINDS``): ``split`` (``ratio`` new shares per old share: 2 for a 2-for-1, 0.1 for a
1-for-10), ``reverse_split`` (``ratio`` old shares per new share: 10 for a 1-for-10), ``spinoff`` (``ratio`` the share
of the parent's price kept on the ex-date, between 0 and 1), ``rename`` (``new_ticker`` trades from ``ex_date`` on;
the histories join) and ``delisting`` (no trading from ``ex_date`` on)."""
