"""The user-facing CSV contract (DESIGN.md §3): file names, columns, their kinds and keys.

Every reader, validator and writer in the project takes the column lists from here, so the contract is stated once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ColumnKind = Literal["date", "text", "number"]


@dataclass(frozen=True)
class Column:
    """One column of a contract file: its name, how it is parsed, and whether a value may be missing."""

    name: str
    kind: ColumnKind
    nullable: bool = False


@dataclass(frozen=True)
class FileContract:
    """The columns and unique key of one contract file."""

    file_name: str
    columns: tuple[Column, ...]
    optional_columns: tuple[Column, ...]
    key: tuple[str, ...]

    @property
    def required_names(self) -> list[str]:
        """Names of the columns every file must carry, in contract order."""
        return [column.name for column in self.columns]

    def all_columns(self) -> tuple[Column, ...]:
        """Required then optional columns, in contract order."""
        return self.columns + self.optional_columns


PRICES = FileContract(
    file_name="stock_price.csv",
    columns=(
        Column("date", "date"),
        Column("ticker", "text"),
        Column("open", "number"),
        Column("high", "number"),
        Column("low", "number"),
        Column("close", "number"),
        Column("volume", "number"),
    ),
    optional_columns=(Column("adj_close", "number"),),
    key=("ticker", "date"),
)

FINANCIALS = FileContract(
    file_name="financial_info.csv",
    columns=(
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
    optional_columns=(),
    key=("ticker", "period_end"),
)

ORACLE = FileContract(
    file_name="oracle.csv",
    columns=(Column("date", "date"), Column("ticker", "text"), Column("expected_next_close", "number")),
    optional_columns=(),
    key=("ticker", "date"),
)
"""Written by the generator beside its CSVs (never inside them): the best achievable next-day close, so
benchmarks can say how close a model gets to it. Real data has no oracle."""
