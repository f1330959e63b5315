"""Small checks and conversions every stage applies to its tables and figures."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pandas as pd


def require_columns(frame: pd.DataFrame, columns: Sequence[str], what: str = "the table") -> None:
    """A ``ValueError`` naming ``what`` and its missing columns, rather than a bare ``KeyError`` deep in pandas."""
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise ValueError(f"{what}: missing column(s) {missing}; got {list(frame.columns)}")


def json_ready(value: Any) -> Any:
    """``value`` with numpy scalars as Python numbers and NaN as None, in dicts and lists too: what JSON records,
    the registry and BentoML metadata can hold."""
    if isinstance(value, dict):
        return {str(key): json_ready(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(item) for item in value]
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
