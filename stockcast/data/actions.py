"""Where the corporate actions of a snapshot come from: declared, read off ``adj_close``, or suspected in prices.

Three routes, in order of trust, each giving rows of ``features.inputs.ACTION_INPUT`` plus a ``source``:

1. **declared**: an optional ``corporate_actions.csv`` (splits, reverse splits, spin-offs, renames, delistings);
2. **adj_close**: a vendor's adjusted close, where present. Its *level* is back-adjusted with actions that happened
   later, so it looks ahead and is never used as a price; but the day its ratio to the raw close changes is the
   ex-date of an action, and the size of the change its ratio (a dividend moves it by a percent or two, under the
   threshold);
3. **suspected**: neither given for a ticker, a one-day move of the raw open and close at a usual split ratio of 2
   or more either way, with volume not moving against it (up for a split, down for a reverse split; a split day's
   volume is noisy) and the value traded about as usual (a crash of that size comes with panic volume), is taken as a
   split, and reported as suspected so a person can
   confirm it in ``corporate_actions.csv``. Only the day itself and the days before it are looked at.

A route is used for a ticker only where the ones above it are silent on that day. Renames and delistings cannot
be inferred from prices: they are declared, or the target rule (a return across a long gap is not a target) keeps
them from doing harm.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from features.adjust import ACTION_KINDS, SPLIT_KINDS, apply_renames, first_clash
from features.inputs import ACTION_INPUT
from features.windows import ticker_positions
from stockcast.core.errors import UserError
from stockcast.data.config import DEFAULT_TICKER_PATTERN, ActionSettings
from stockcast.data.contract import ACTIONS
from stockcast.data.validation import (
    DEFAULT_MAX_QUARANTINED_FRACTION,
    RowRule,
    ValidationReport,
    known_ticker_rule,
    validate_table,
)

SOURCE_COLUMN = "source"
SOURCES = ("declared", "adj_close", "suspected")
ACTION_COLUMNS = [*ACTION_INPUT.names, SOURCE_COLUMN]
_VOLUME_BASELINE_DAYS = 20


class ActionConflictError(UserError):
    """Declared actions that contradict the prices (a rename onto a ticker that already trades)."""

    headline = "Corporate actions rejected"


def check_renames(prices: pd.DataFrame, actions: pd.DataFrame) -> None:
    """Refuse a rename whose new ticker already trades before the rename's ex-date: joining the histories would give
    the company two rows on one day. Checked at ingest, so a snapshot never holds actions the features refuse."""
    first = first_clash(apply_renames(prices[["ticker", "date"]], actions, "date"))
    if first is not None:
        rename = actions[(actions["kind"] == "rename") & (actions["new_ticker"] == first["ticker"])].iloc[0]
        raise ActionConflictError(
            f"rename of {rename['ticker']} to {rename['new_ticker']} from {pd.Timestamp(rename['ex_date']).date()}: "
            f"{first['ticker']} already has prices on {pd.Timestamp(first['date']).date()}, before the rename; fix "
            "the rename's ex_date or new_ticker in corporate_actions.csv"
        )


def empty_actions() -> pd.DataFrame:
    """An actions table with no rows (the columns of ``ACTION_COLUMNS``)."""
    return ACTIONS.empty().assign(**{SOURCE_COLUMN: pd.Series(dtype="str")})


def validate_actions(
    raw: pd.DataFrame,
    *,
    known_tickers: Iterable[str],
    file: str = ACTIONS.file_name,
    max_quarantined_fraction: float = DEFAULT_MAX_QUARANTINED_FRACTION,
    ticker_pattern: str = DEFAULT_TICKER_PATTERN,
) -> tuple[pd.DataFrame, ValidationReport]:
    """Check a raw ``corporate_actions.csv``: kinds known, ratios that fit the kind, renames naming the new ticker."""

    def rules(_: pd.DataFrame) -> list[RowRule]:
        splits = lambda t: t["kind"].isin(SPLIT_KINDS)  # noqa: E731
        return [
            ("known_kind", "kind", f"kind must be one of {', '.join(ACTION_KINDS)}",
             lambda t: ~t["kind"].isin(ACTION_KINDS)),
            known_ticker_rule(known_tickers),
            ("split_ratio", "ratio", "a split's ratio must be a positive number other than 1",
             lambda t: splits(t) & ~((t["ratio"] > 0) & (t["ratio"] != 1))),
            ("spinoff_ratio", "ratio", "a spin-off's ratio is the share of the price kept: above 0, below 1",
             lambda t: (t["kind"] == "spinoff") & ~((t["ratio"] > 0) & (t["ratio"] < 1))),
            ("rename_target", "new_ticker", "a rename needs new_ticker, different from ticker",
             lambda t: (t["kind"] == "rename") & (t["new_ticker"].isna() | (t["new_ticker"] == t["ticker"]))),
        ]  # fmt: skip

    return validate_table(
        raw,
        ACTIONS,
        file=file,
        rules=rules,
        max_quarantined_fraction=max_quarantined_fraction,
        ticker_pattern=ticker_pattern,
    )


def derive_actions(prices: pd.DataFrame, declared: pd.DataFrame, settings: ActionSettings) -> pd.DataFrame:
    """Every action of the snapshot: the declared ones, then those read off ``adj_close``, then suspected ones.

    Sorted by (ticker, ex_date); columns ``ACTION_COLUMNS``.
    """
    table = prices.sort_values(["ticker", "date"], kind="stable").reset_index(drop=True)
    declared_rows = declared.assign(**{SOURCE_COLUMN: "declared"})[ACTION_COLUMNS]
    has_adj_close = "adj_close" in table.columns
    with_adj_close = set(table.loc[table["adj_close"].notna(), "ticker"]) if has_adj_close else set()
    from_adj_close = _from_adj_close(table[table["ticker"].isin(with_adj_close)], settings) if has_adj_close else None
    suspected = (
        _suspected(table[~table["ticker"].isin(with_adj_close)], settings) if settings.detect_from_prices else None
    )
    found = [declared_rows]
    known_days = pd.MultiIndex.from_frame(declared_rows[["ticker", "ex_date"]])
    for derived in (from_adj_close, suspected):
        if derived is not None and not derived.empty:
            # A declared action of the ticker on that day wins.
            found.append(derived[~pd.MultiIndex.from_frame(derived[["ticker", "ex_date"]]).isin(known_days)])
    combined = pd.concat([empty_actions(), *[frame for frame in found if not frame.empty]], ignore_index=True)
    return combined.sort_values(["ticker", "ex_date", "kind"], kind="stable", ignore_index=True)[ACTION_COLUMNS]


def _from_adj_close(table: pd.DataFrame, settings: ActionSettings) -> pd.DataFrame:
    """Actions where the ratio adj_close / close changes by more than the threshold from one row to the next."""
    ratio = (table["adj_close"] / table["close"]).to_numpy(dtype=float)
    # Shares after per share before: the back-adjustment factor of the earlier row relative to the later one.
    change = np.r_[np.nan, ratio[1:] / ratio[:-1]]
    event = (ticker_positions(table["ticker"]) > 0) & (np.abs(np.log(change)) > np.log1p(settings.adj_close_threshold))
    rows = []
    for ticker, ex_date, shares in zip(table["ticker"][event], table["date"][event], change[event], strict=True):
        usual = _snap(shares, settings.ratios, settings.ratio_tolerance)
        if usual is not None:
            rows.append(_split_row(ticker, ex_date, usual, "adj_close"))
        elif shares > 1:  # the price fell without new shares: the parent kept 1/shares of its value
            rows.append(_row(ticker, ex_date, "spinoff", 1.0 / shares, "adj_close"))
        else:
            rows.append(_split_row(ticker, ex_date, shares, "adj_close"))
    return pd.DataFrame(rows, columns=ACTION_COLUMNS)


def _suspected(table: pd.DataFrame, settings: ActionSettings) -> pd.DataFrame:
    """One-day moves of the open and close at a usual split ratio, with volume moving the matching way."""
    same = ticker_positions(table["ticker"]) > 0  # the row has a previous row of its ticker
    previous_close = np.r_[np.nan, table["close"].to_numpy(dtype=float)[:-1]]
    close_move = np.log(table["close"].to_numpy(dtype=float) / previous_close)
    open_move = np.log(table["open"].to_numpy(dtype=float) / previous_close)
    volume = table["volume"].to_numpy(dtype=float)
    value = volume * table["close"].to_numpy(dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        volume_move = np.log(volume / _usual(volume, table["ticker"]))
        value_move = np.abs(np.log(value / _usual(value, table["ticker"])))
    rows = []
    candidates = np.flatnonzero(same & (np.abs(close_move) > np.log(1.4)))
    for index in candidates:
        best = None
        for shares in settings.ratios:
            if abs(np.log(shares)) < np.log(2.0):
                continue  # a 3-for-2 looks like a -33 % day, or a spin-off: only adj_close or a declaration tells
            expected = -np.log(shares)  # a k-for-1 split divides the price by k
            error = max(abs(close_move[index] - expected), abs(open_move[index] - expected))
            # Volume must move the split's way (shares times more of them), by at least shares**min_volume_share.
            volume_share = volume_move[index] / np.log(shares)
            fits = (
                error <= settings.max_price_error
                and volume_share >= settings.min_volume_share
                and value_move[index] <= np.log(settings.max_dollar_volume_ratio)
            )
            if fits and (best is None or error < best[0]):
                best = (error, shares)
        if best is not None:
            rows.append(_split_row(table["ticker"].iloc[index], table["date"].iloc[index], best[1], "suspected"))
    return pd.DataFrame(rows, columns=ACTION_COLUMNS)


def _usual(values: np.ndarray, tickers: pd.Series) -> np.ndarray:
    """The median of each row's ticker's previous rows (up to 20): the usual level before the day."""
    return (
        pd.Series(values)
        .groupby(tickers.to_numpy())
        .transform(lambda v: v.shift(1).rolling(_VOLUME_BASELINE_DAYS, min_periods=5).median())
        .to_numpy()
    )


def _snap(shares: float, ratios: Sequence[float], tolerance: float) -> float | None:
    """The usual ratio within ``tolerance`` (relative) of ``shares``, if any."""
    for usual in ratios:
        if abs(shares / usual - 1.0) <= tolerance:
            return usual
    return None


def _split_row(ticker: str, ex_date: pd.Timestamp, shares: float, source: str) -> dict:
    """A split (``shares`` > 1) or reverse split, written the way a person would write it."""
    if shares >= 1:
        return _row(ticker, ex_date, "split", float(shares), source)
    return _row(ticker, ex_date, "reverse_split", float(1.0 / shares), source)


def _row(ticker: str, ex_date: pd.Timestamp, kind: str, ratio: float, source: str) -> dict:
    return {
        "ticker": str(ticker),
        "ex_date": pd.Timestamp(ex_date),
        "kind": kind,
        "ratio": ratio,
        "new_ticker": np.nan,
        SOURCE_COLUMN: source,
    }


def describe_action(action: dict) -> str:
    """One line for people: ``AAPL 2024-06-10: split 4-for-1 (declared)``."""
    day = pd.Timestamp(action["ex_date"]).date()
    kind, ratio = action["kind"], action["ratio"]
    what = {
        "split": lambda: f"split {ratio:g}-for-1",
        "reverse_split": lambda: f"reverse split 1-for-{ratio:g}",
        "spinoff": lambda: f"spin-off, {ratio:.0%} of the price kept",
        "rename": lambda: f"renamed {action['new_ticker']}",
        "delisting": lambda: "delisted",
    }[kind]()
    return f"{action['ticker']} {day}: {what} ({action[SOURCE_COLUMN]})"
