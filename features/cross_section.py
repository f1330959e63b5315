"""Cross-sectional features: where a ticker stands among all tickers (or its sector's) on the same date.

A rank at date t is computed from the rows dated t only (each of which looks only backwards), so it uses
nothing after t. Ranks are mid-rank percentiles, (rank - 0.5) / count, in (0, 1) with 0.5 the median; ties share
their average rank. Tickers whose input is NaN on that date (still warming up, say) take no part. A group with
fewer than ``min_tickers`` values gives NaN: a rank without peers says nothing.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.definitions import ColumnSpec, Family, Kind

_SECTOR = "sector"


def _percentile_rank(values: pd.Series, groups: list[pd.Series], min_tickers: int) -> np.ndarray:
    grouped = values.groupby(groups, sort=False, dropna=True)  # a missing sector takes no part
    rank = grouped.rank(method="average").to_numpy(dtype=float)
    count = grouped.transform("count").to_numpy(dtype=float)
    return np.where(count >= min_tickers, (rank - 0.5) / count, np.nan)


def market_rank(frame: pd.DataFrame, *, columns: tuple[str, ...], min_tickers: int) -> dict[str, np.ndarray]:
    """Percentile rank of each input column among all tickers on the same date."""
    return {f"rank_market_{c}": _percentile_rank(frame[c], [frame["date"]], min_tickers) for c in columns}


def market_rank_columns(*, columns: tuple[str, ...], min_tickers: int) -> tuple[ColumnSpec, ...]:
    """Columns of ``market_rank``."""
    return tuple(
        ColumnSpec(
            f"rank_market_{c}",
            f"Percentile rank of {c} among all tickers on date t, (rank - 0.5) / count; NaN with fewer than "
            f"{min_tickers} tickers.",
            1,
            inputs=(c,),
        )
        for c in columns
    )


def sector_rank(frame: pd.DataFrame, *, columns: tuple[str, ...], min_tickers: int) -> dict[str, np.ndarray]:
    """Percentile rank of each input column among the tickers of the same sector on the same date."""
    groups = [frame["date"], frame[_SECTOR]]
    return {f"rank_sector_{c}": _percentile_rank(frame[c], groups, min_tickers) for c in columns}


def sector_rank_columns(*, columns: tuple[str, ...], min_tickers: int) -> tuple[ColumnSpec, ...]:
    """Columns of ``sector_rank``."""
    return tuple(
        ColumnSpec(
            f"rank_sector_{c}",
            f"Percentile rank of {c} within the ticker's sector on date t; NaN without a known sector or with "
            f"fewer than {min_tickers} tickers in it.",
            1,
            inputs=(c, _SECTOR),
        )
        for c in columns
    )


MARKET_RANK = Family("market_rank", "cross-sectional", Kind.CROSS_SECTIONAL, market_rank, market_rank_columns)
SECTOR_RANK = Family("sector_rank", "cross-sectional", Kind.CROSS_SECTIONAL, sector_rank, sector_rank_columns)
