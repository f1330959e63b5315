"""Checks for run-time flow parameters: a bad value stops the run at its first step with the parameter's name."""

from __future__ import annotations

import pandas as pd

from stockcast.core.errors import UserError


class ParameterError(UserError):
    """A flow parameter has a value it cannot take; the message names the parameter and the rule."""

    headline = "Invalid parameter"


def parse_fraction(name: str, value: float) -> float:
    """``value`` if it is a fraction in [0, 1], else a ``ParameterError`` naming ``--name``."""
    if not 0.0 <= value <= 1.0:
        raise ParameterError(f"--{name} must be between 0 and 1, got {value}")
    return float(value)


def parse_optional_date(name: str, text: str) -> pd.Timestamp | None:
    """A date from ``YYYY-MM-DD`` text, ``None`` for empty text, else a ``ParameterError`` naming ``--name``."""
    if not text:
        return None
    try:
        return pd.Timestamp(pd.to_datetime(text, format="%Y-%m-%d"))
    except ValueError as exc:
        raise ParameterError(f"--{name} must be a date as YYYY-MM-DD, got {text!r}") from exc
