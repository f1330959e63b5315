"""The data configuration (``configs/data.toml``): the trading calendar and how corporate actions are found.

IngestFlow loads it with Metaflow's ``Config("config", parser=parse_data_config)``; the generator and training read
the calendar name from it (through the snapshot, which records the calendar its data was checked against).
"""

from __future__ import annotations

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


class DataConfig(Settings):
    """The whole data configuration."""

    calendar: str = DEFAULT_CALENDAR
    """An exchange code of ``exchange-calendars`` (XNYS, XLON, XTKS, ...) or "data" (the dates the data has)."""
    actions: ActionSettings = Field(default_factory=ActionSettings)

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
