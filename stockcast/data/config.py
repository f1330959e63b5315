"""The data configuration (``configs/data.toml``): the trading calendar and how corporate actions are found.

IngestFlow loads it with Metaflow's ``Config("config", parser=parse_data_config)``; the generator and training read
the calendar name from it (through the snapshot, which records the calendar its data was checked against).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, field_validator

from stockcast.core.config import CONFIG_DIR, Settings, as_stored, load_settings, one_of, parse_settings
from stockcast.data.calendar import DEFAULT_CALENDAR, calendar_names

DATA_CONFIG_FILE = CONFIG_DIR / "data.toml"
SOURCE = "data configuration"

Fraction = Annotated[float, Field(gt=0.0, lt=1.0)]


class ActionSettings(Settings):
    """How corporate actions are read off ``adj_close`` and suspected in prices (``stockcast.data.actions``)."""

    ratios: Annotated[list[Annotated[float, Field(gt=0.0)]], Field(min_length=1)] = Field(
        default_factory=lambda: [2.0, 3.0, 4.0, 5.0, 10.0, 1.5, 0.5, 1 / 3, 0.25, 0.2, 0.1, 0.05]
    )
    """Usual split ratios, new shares per old share (0.1 is a 1-for-10 reverse split)."""
    ratio_tolerance: Fraction = 0.02
    """How far (relative) a ratio read off adj_close may be from a usual one to be snapped to it."""
    adj_close_threshold: Fraction = 0.1
    """A change of adj_close / close by more than this (relative) is an action; dividends stay below it."""
    detect_from_prices: bool = True
    """Suspect splits in tickers that have neither declared actions on the day nor adj_close."""
    max_price_error: Fraction = 0.1
    """A suspected split's open and close moves must be within this (in log terms) of 1 / ratio."""
    min_volume_share: float = -0.5
    """...its volume must move at least ratio ** min_volume_share the split's way (0: not against it; a split day's
    volume is noisy, so by default it may even dip a little, but not fall the way a reverse split's would)..."""
    max_dollar_volume_ratio: Annotated[float, Field(gt=1.0)] = 4.5
    """...and its traded value stay within this factor of the usual: a split leaves it alone, while a crash of that
    size comes with panic volume (several times the usual value traded)."""


DEFAULT_TICKER_PATTERN = r"^\^?[A-Za-z0-9][A-Za-z0-9./_-]{0,19}$"
"""Tickers as exchanges and vendors write them (``AAPL``, ``BRK.B``, ``BRK-B``, ``BRK/B``, ``7203.T``, ``^GSPC``):
printable ASCII letters, digits and ``. / _ -``, at most 20 characters. What it refuses is what must never be
published: a spreadsheet formula (``=cmd|...``), a zero-width or other invisible character, spaces, quotes."""


class CorrectionSettings(Settings):
    """When a re-sent row that changes a published one is applied (a correction) or held back for review."""

    max_price_change: Annotated[float, Field(gt=0.0)] = 0.2
    """A correction moving any of open, high, low or close by more than this (relative) is held back: vendors
    correct prices by cents, while a whole history scaled (a file in cents, a split-adjusted re-download) moves
    them by a factor. ``--apply-corrections`` applies them all the same."""


class DataConfig(Settings):
    """The whole data configuration."""

    calendar: str = DEFAULT_CALENDAR
    """An exchange code of ``exchange-calendars`` (XNYS, XLON, XTKS, ...) or "data" (the dates the data has)."""
    ticker_pattern: str = DEFAULT_TICKER_PATTERN
    """The regular expression every ticker must match (prices, financials, actions, sectors, API requests)."""
    actions: ActionSettings = Field(default_factory=ActionSettings)
    corrections: CorrectionSettings = Field(default_factory=CorrectionSettings)

    @field_validator("ticker_pattern")
    @classmethod
    def _pattern_compiles(cls, pattern: str) -> str:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc}") from exc
        return pattern

    @field_validator("calendar")
    @classmethod
    def _calendar_is_known(cls, name: str) -> str:
        return one_of(name, calendar_names(), "calendar", "calendars")


def parse_data_config(text: str) -> dict[str, Any]:
    """TOML text validated into the plain dict Metaflow stores: the parser of IngestFlow's ``Config``."""
    return as_stored(parse_settings(text, DataConfig, source=SOURCE))


def load_data_config(path: str | Path = DATA_CONFIG_FILE) -> DataConfig:
    """The typed configuration of a TOML file."""
    return load_settings(path, DataConfig, source=SOURCE)
