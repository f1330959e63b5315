"""Trading calendars: which days an exchange trades, from ``exchange-calendars`` (maintained holiday rules for
NYSE and about fifty other exchanges).

The calendar is chosen by name in ``configs/data.toml`` (``calendar = "XNYS"``). ``"data"`` means "no exchange
calendar": the trading days are the dates the data itself has, for markets the library does not know. The
generator trades on these days only, ingest reports the market days a snapshot lacks, and training counts the
trading days a target spans with them.
"""

from __future__ import annotations

from functools import lru_cache

import pandas as pd

DATA_CALENDAR = "data"
"""The calendar name meaning "the dates present in the data"."""
DEFAULT_CALENDAR = "XNYS"
_EARLIEST = pd.Timestamp("1990-01-01")


class CalendarError(ValueError):
    """An unknown calendar name, or dates outside what the calendar covers."""


def calendar_names() -> list[str]:
    """Every accepted calendar name: the exchange codes ``exchange-calendars`` knows, and ``"data"``."""
    import exchange_calendars

    return sorted({*exchange_calendars.get_calendar_names(include_aliases=False), DATA_CALENDAR})


def trading_days(
    calendar: str, start: object, end: object, *, data_dates: pd.DatetimeIndex | None = None
) -> pd.DatetimeIndex:
    """The trading days of ``calendar`` from ``start`` to ``end`` inclusive, as naive midnight timestamps.

    With the ``"data"`` calendar they are the distinct ``data_dates`` in the range (required then).
    """
    first, last = pd.Timestamp(start).normalize(), pd.Timestamp(end).normalize()
    if calendar == DATA_CALENDAR:
        if data_dates is None:
            raise CalendarError("the 'data' calendar needs the data's dates")
        dates = pd.DatetimeIndex(data_dates).unique().sort_values()
        return dates[(dates >= first) & (dates <= last)].astype("datetime64[ns]")
    sessions = _sessions(calendar)
    if first < sessions[0] or last > sessions[-1]:
        raise CalendarError(
            f"calendar {calendar} covers {sessions[0].date()} to {sessions[-1].date()}, not {first.date()} to "
            f"{last.date()}"
        )
    return sessions[(sessions >= first) & (sessions <= last)]


def time_zone(calendar: str) -> str | None:
    """The exchange's time zone (``America/New_York`` for XNYS): a timestamp with an offset is converted to it to
    tell its trading day. ``None`` for the ``"data"`` calendar, which has no place."""
    if calendar == DATA_CALENDAR:
        return None
    import exchange_calendars

    return str(exchange_calendars.get_calendar(calendar, start=_EARLIEST).tz)


def trading_days_spanning(calendar: str, dates: pd.Series) -> pd.DatetimeIndex:
    """The trading days of ``calendar`` from the first to the last of ``dates`` (a table's date column)."""
    return trading_days(calendar, dates.min(), dates.max(), data_dates=pd.DatetimeIndex(dates))


@lru_cache(maxsize=8)
def _sessions(calendar: str) -> pd.DatetimeIndex:
    import exchange_calendars

    if calendar not in calendar_names():
        known = ", ".join(name for name in calendar_names() if name.startswith("X"))
        raise CalendarError(
            f"unknown trading calendar {calendar!r}; use 'data' or an exchange code such as {known[:80]}..."
        )
    # Calendars cover 20 years back by default; histories may reach further.
    sessions = exchange_calendars.get_calendar(calendar, start=_EARLIEST).sessions
    return pd.DatetimeIndex(sessions.tz_localize(None) if sessions.tz is not None else sessions).astype(
        "datetime64[ns]"
    )


def missing_trading_days(prices: pd.DataFrame, sessions: pd.DatetimeIndex, *, shown: int = 5) -> dict:
    """The trading days a price table lacks: days no ticker has (``market``), and per ticker the days between its
    first and last row that it alone lacks (``tickers``: count and the first ``shown`` days). Plain data, for the
    snapshot summary and its card."""
    dates = pd.DatetimeIndex(prices["date"].unique())
    if dates.empty:
        return {"market": [], "tickers": {}}
    in_range = sessions[(sessions >= dates.min()) & (sessions <= dates.max())]
    market = in_range.difference(dates)
    per_ticker = {}
    for ticker, rows in prices.groupby("ticker", sort=True)["date"]:
        own = in_range[(in_range >= rows.min()) & (in_range <= rows.max())]
        lacking = own.difference(pd.DatetimeIndex(rows)).difference(market)
        if len(lacking):
            per_ticker[str(ticker)] = {"count": len(lacking), "first": [str(d.date()) for d in lacking[:shown]]}
    return {"market": [str(d.date()) for d in market], "tickers": per_ticker}
