"""The user-facing CSV contract (DESIGN.md §3): file names, columns, their kinds and keys.

Every reader, validator and writer in the project takes the column lists from here, so the contract is stated once.
The required columns are those the feature library reads (``features.inputs``): the contract adds the files' names,
their keys and the optional columns.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from features.inputs import ACTION_INPUT, FINANCIAL_INPUT, PRICE_INPUT, Column


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

    def empty(self) -> pd.DataFrame:
        """A table of the required columns, in their memory types, without rows: what "no such file" reads as."""
        return pd.DataFrame({column.name: pd.Series(dtype=_DTYPES[column.kind]) for column in self.columns})


_DTYPES = {"date": "datetime64[ns]", "text": "str", "number": "float64"}


PRICES = FileContract(
    file_name="stock_price.csv",
    columns=PRICE_INPUT.columns,
    optional_columns=(Column("adj_close", "number"),),
    key=("ticker", "date"),
)

FINANCIALS = FileContract(
    file_name="financial_info.csv",
    columns=FINANCIAL_INPUT.columns,
    optional_columns=(),
    key=("ticker", "period_end"),
)

ACTIONS = FileContract(
    file_name="corporate_actions.csv",
    columns=ACTION_INPUT.columns,
    optional_columns=(),
    key=("ticker", "ex_date", "kind"),
)
"""Optional: splits, reverse splits, spin-offs, renames and delistings (``features.inputs.ACTION_INPUT``)."""

SECTORS = FileContract(
    file_name="sectors.csv",
    columns=(Column("ticker", "text"), Column("sector", "text")),
    optional_columns=(),
    key=("ticker",),
)
"""Optional: each ticker's sector, for the sector feature when there are no financials (or to fill them in)."""

ORACLE = FileContract(
    file_name="oracle.csv",
    columns=(Column("date", "date"), Column("ticker", "text"), Column("expected_next_close", "number")),
    optional_columns=(),
    key=("ticker", "date"),
)
"""Written by the generator beside its CSVs (never inside them): the best achievable next-day close, so
benchmarks can say how close a model gets to it. Real data has no oracle."""
