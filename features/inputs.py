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
        Column("period_end", "date"),
        Column("report_date", "date"),
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
