"""Corporate actions applied to raw prices and per-share figures, so that a split is not a crash.

Raw closes jump at splits (a 2-for-1 halves the price), reverse splits and spin-offs, and a renamed company
continues under a new ticker. Features and targets are computed on a series adjusted for these actions:

- **renames** join histories: the old ticker's rows (and reports, and earlier actions) before the ex-date are
  carried by the new ticker, so the company has one history;
- **splits** (and reverse splits) of ratio k: prices before the ex-date are divided by k, volumes multiplied by k,
  and so are per-share report figures (``eps`` divided, ``shares_outstanding`` multiplied) published before it;
- **spin-offs** keeping a fraction f of the parent's price: prices before the ex-date are multiplied by f; volumes
  and report figures are unchanged (the share count does not change);
- **delistings** end a history; nothing is adjusted (the target rule stops a return across the gap).

Point in time. "Adjusted with the actions known at date t" means: rows before t rescaled by the actions with
ex-dates up to t, row t itself raw. The series adjusted with *every* action of the table differs from that only
by one factor common to all rows up to t (the actions after t), so any feature that is invariant to rescaling a
ticker's whole history (ratios, returns, z-scores: every feature of the library, proved by tests) has the same
value on either. Levels at t are taken from the raw row t (see ``SPINOFF_FACTOR``). A vendor's back-adjusted
``adj_close`` *level* is never used: its ratio changes only tell where actions happened (``stockcast.data``).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

ACTION_KINDS = ("split", "reverse_split", "spinoff", "rename", "delisting")
"""The kinds of corporate action, see ``features.inputs.ACTION_INPUT``."""
SPLIT_KINDS = ("split", "reverse_split")
"""The kinds that change the number of shares (and so volumes and per-share figures)."""
PRICE_ACTIONS = (*SPLIT_KINDS, "spinoff")
"""The kinds that rescale prices."""
SPINOFF_FACTOR = "spinoff_factor"
"""Column added to adjusted prices: the product of the spin-off fractions applied to the row. The row's raw price
level in split-adjusted units is ``close / spinoff_factor``; its raw traded value is ``close * volume /
spinoff_factor``."""
_PRICE_COLUMNS = ["open", "high", "low", "close"]


def share_ratio(kind: str, ratio: float) -> float:
    """New shares per old share of a split or reverse split (2 for a 2-for-1, 0.1 for a 1-for-10)."""
    return float(ratio) if kind == "split" else 1.0 / float(ratio)


def price_factor(kind: str, ratio: float) -> float:
    """What one price action multiplies the prices before its ex-date by, to put them on the basis after it: 1 / k
    for a split of k new shares per old, the fraction kept for a spin-off."""
    return float(ratio) if kind == "spinoff" else 1.0 / share_ratio(kind, ratio)


def first_clash(table: pd.DataFrame) -> pd.Series | None:
    """The first row (by ticker and date) of a table whose tickers were renamed that shares its (ticker, date) with
    another row: a rename onto a ticker that already traded. None when every (ticker, date) is once."""
    clash = table.duplicated(["ticker", "date"], keep=False)
    return table[clash].sort_values(["ticker", "date"]).iloc[0] if clash.any() else None


def apply_renames(table: pd.DataFrame, actions: pd.DataFrame, date_column: str) -> pd.DataFrame:
    """``table`` with each renamed ticker's rows dated before the rename carried by the new ticker.

    Renames are applied in ex-date order, so a chain A → B → C ends on C. A copy; the input is not modified.
    """
    renames = actions[actions["kind"] == "rename"].sort_values("ex_date", kind="stable")
    if renames.empty or table.empty:
        return table
    tickers = table["ticker"].to_numpy(dtype=object).copy()
    dates = table[date_column].to_numpy()
    for old, new, ex_date in renames[["ticker", "new_ticker", "ex_date"]].itertuples(index=False):
        tickers[(tickers == old) & (dates < np.datetime64(ex_date))] = new
    return table.assign(ticker=pd.Series(tickers, index=table.index, dtype="str"))


def adjust_prices(prices: pd.DataFrame, actions: pd.DataFrame) -> pd.DataFrame:
    """Prices (typed, sorted by ticker and date) with renames joined and splits and spin-offs back-adjusted.

    Returns a new frame sorted by (ticker, date) with the input's columns and ``SPINOFF_FACTOR``; raises
    ``ValueError`` when a rename would give a ticker two rows on one day (the new ticker already traded then).
    """
    table = apply_renames(prices, actions, "date")
    table = table.sort_values(["ticker", "date"], kind="stable").reset_index(drop=True)
    actions = apply_renames(actions[actions["kind"].isin(PRICE_ACTIONS)], actions, "ex_date")
    prices_times = np.ones(len(table))
    volume_factor = np.ones(len(table))
    spinoff_factor = np.ones(len(table))
    slices = _ticker_slices(table["ticker"])
    dates = table["date"].to_numpy()
    for ticker, ex_date, kind, ratio in actions[["ticker", "ex_date", "kind", "ratio"]].itertuples(index=False):
        if ticker not in slices:
            continue
        start, stop = slices[ticker]
        before = start + int(np.searchsorted(dates[start:stop], np.datetime64(ex_date), side="left"))
        prices_times[start:before] *= price_factor(kind, ratio)
        if kind == "spinoff":
            spinoff_factor[start:before] *= ratio
        else:
            volume_factor[start:before] *= share_ratio(kind, ratio)
    adjusted = {name: table[name].to_numpy(dtype=float) * prices_times for name in _PRICE_COLUMNS}
    adjusted["volume"] = table["volume"].to_numpy(dtype=float) * volume_factor
    table = table.assign(**adjusted, **{SPINOFF_FACTOR: spinoff_factor})
    first = first_clash(table)
    if first is not None:
        raise ValueError(
            f"a rename gives {first['ticker']} two rows on {first['date'].date()}: the new ticker already traded "
            "before the rename's ex_date; fix the corporate action or the prices"
        )
    return table


def adjust_financials(financials: pd.DataFrame, actions: pd.DataFrame) -> pd.DataFrame:
    """Reports with renames joined and per-share figures in post-split units (``eps`` ÷ k, ``shares_outstanding``
    × k for each split of ratio k after the report day). A report is in the share units of its report day."""
    table = apply_renames(financials, actions, "report_date")
    splits = apply_renames(actions[actions["kind"].isin(SPLIT_KINDS)], actions, "ex_date")
    if splits.empty or table.empty:
        return table
    factor = np.ones(len(table))
    tickers = table["ticker"].to_numpy(dtype=object)
    report_dates = table["report_date"].to_numpy()
    for ticker, ex_date, kind, ratio in splits[["ticker", "ex_date", "kind", "ratio"]].itertuples(index=False):
        factor[(tickers == ticker) & (report_dates < np.datetime64(ex_date))] *= share_ratio(kind, ratio)
    return table.assign(
        eps=table["eps"].to_numpy(dtype=float) / factor,
        shares_outstanding=table["shares_outstanding"].to_numpy(dtype=float) * factor,
    )


def _ticker_slices(tickers: pd.Series) -> dict[str, tuple[int, int]]:
    """Each ticker's [start, stop) row range in a table sorted by ticker."""
    values, starts, counts = np.unique(tickers.to_numpy(dtype=object), return_index=True, return_counts=True)
    return {str(v): (int(s), int(s + c)) for v, s, c in zip(values, starts, counts, strict=True)}


def renamed_together(tickers: Iterable[str], actions: pd.DataFrame) -> list[list[str]]:
    """``tickers`` grouped so that tickers linked by a chain of renames (A → B → C) share a group, each group sorted,
    groups in the order of their first ticker; a rename's other end joins its group even if ``tickers`` lacks it.

    Adjusting one ticker's rows needs every ticker renamed into it (``apply_renames``): work split by ticker keeps
    a group together."""
    parent: dict[str, str] = {str(ticker): str(ticker) for ticker in tickers}

    def root(ticker: str) -> str:
        while parent.setdefault(ticker, ticker) != ticker:
            ticker = parent[ticker]
        return ticker

    renames = actions[actions["kind"] == "rename"]
    for old, new in renames[["ticker", "new_ticker"]].itertuples(index=False):
        first, second = sorted((root(str(old)), root(str(new))))
        parent[second] = first
    groups: dict[str, list[str]] = {}
    for ticker in sorted(parent):
        groups.setdefault(root(ticker), []).append(ticker)
    return list(groups.values())
