"""Data snapshots: continuous collection by merging, versions by content hash, and the one call to find them.

A snapshot is what a successful ``IngestFlow`` run published: its ``snapshot`` summary and its ``manifest``, which
lists the content-addressed Parquet partitions of the tables (``stockcast.data.partitions``). Its version is the
Merkle root of those partitions' content hashes, so re-ingesting identical data gives the same version however many
runs it took to get there. Runs from before the manifest stored the whole tables as artefacts (``prices``,
``financials``, ``oracle``, ``actions``); ``Snapshot`` reads both, so every snapshot ever published stays readable.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import asdict, dataclass
from functools import cached_property

import pandas as pd

from stockcast.core.errors import UserError
from stockcast.core.runs import NoRunError, latest_successful_run, run_by_pathspec
from stockcast.core.storage import ObjectStore
from stockcast.data.actions import empty_actions
from stockcast.data.config import DEFAULT_TICKER_PATTERN
from stockcast.data.partitions import LAYOUTS, manifest_store, partition_names, read_table

INGEST_FLOW = "IngestFlow"
ORACLE_KEY = ("ticker", "date")


@dataclass(frozen=True)
class MergeStats:
    """How a new batch changed the previous table."""

    appended: int
    corrected: int
    unchanged: int

    def to_dict(self) -> dict[str, int]:
        """Plain data for artefacts and cards."""
        return asdict(self)


def merge_table(
    previous: pd.DataFrame | None, new: pd.DataFrame, key: tuple[str, ...]
) -> tuple[pd.DataFrame, MergeStats]:
    """Merge ``new`` rows into ``previous`` by ``key``: unseen keys append, changed rows replace (a correction),
    identical rows change nothing. Rows only in ``previous`` stay: a day's file never deletes history."""
    key_list = list(key)
    if previous is None or previous.empty:
        merged = new.sort_values(key_list, kind="stable").reset_index(drop=True)
        return merged, MergeStats(appended=len(new), corrected=0, unchanged=0)
    old = previous.set_index(key_list)
    incoming = new.set_index(key_list)
    columns = old.columns.union(incoming.columns, sort=False)
    old, incoming = old.reindex(columns=columns), incoming.reindex(columns=columns)
    overlap = incoming.index.intersection(old.index)
    before, after = old.loc[overlap], incoming.loc[overlap]
    same = (before == after) | (before.isna() & after.isna())
    corrected = int((~same.all(axis=1)).sum())
    merged = pd.concat([old.drop(index=overlap), incoming]).reset_index()
    merged = merged.sort_values(key_list, kind="stable").reset_index(drop=True)
    stats = MergeStats(appended=len(incoming) - len(overlap), corrected=corrected, unchanged=len(overlap) - corrected)
    return merged, stats


def implausible_corrections(
    previous: pd.DataFrame | None,
    new: pd.DataFrame,
    key: tuple[str, ...],
    columns: tuple[str, ...],
    max_change: float,
) -> pd.DataFrame:
    """The rows of ``new`` that would correct a row of ``previous`` by moving any of ``columns`` by more than
    ``max_change`` (relative), with the values before and after: corrections to hold back for review. Vendors
    correct a price by cents; a whole history scaled (a file in cents, a split-adjusted re-download) is another
    basis, and applied silently it would rewrite the past. Indexed like ``new``."""
    wanted = [*key, *columns]
    if previous is None or previous.empty or new.empty:
        return new.iloc[0:0][wanted]
    before = previous[wanted].rename(columns={column: f"{column}_before" for column in columns})
    joined = new[wanted].merge(before, on=list(key), how="left", validate="many_to_one").set_index(new.index)
    moved = pd.concat(
        [(joined[column] / joined[f"{column}_before"] - 1.0).abs() > max_change for column in columns], axis=1
    ).any(axis=1)
    return joined[moved.to_numpy()]


class Snapshot:
    """A published data snapshot, read lazily from the IngestFlow run that wrote it: the summary is cheap,
    the tables are loaded on first use."""

    def __init__(self, run) -> None:  # run: metaflow.Run of a successful IngestFlow
        self._run = run
        self.run_pathspec: str = run.pathspec
        self.summary: dict = run.data.snapshot
        self.version: str = self.summary["version"]
        self.manifest: dict | None = run.data.manifest if "manifest" in run.data else None
        """The partitions of the tables (``stockcast.data.partitions``); ``None`` for a run that stored whole tables."""

    def read(self, table: str, tickers: Collection[str] | None = None) -> pd.DataFrame | None:
        """``table`` (``prices``, ``financials``, ``oracle`` or ``actions``) as published, or only the rows of
        ``tickers``, with a fresh index. Read partition by partition, so peak memory is the selection plus a few
        partitions: what building features one shard of tickers at a time needs. ``None`` for an oracle the
        snapshot does not have."""
        if table not in LAYOUTS:
            tables = ", ".join(LAYOUTS)
            raise UserError(f"Snapshot {self.version} ({self.run_pathspec}) has no table {table!r}; it has {tables}.")
        if self.manifest is not None:
            return read_table(self._store, self.manifest, table, tickers)
        # Runs from before actions were published have no actions artefact.
        frame = getattr(self._run.data, table) if table in self._run.data else empty_actions()
        if frame is None or tickers is None:
            return frame
        return frame[frame["ticker"].isin(list(tickers))].reset_index(drop=True)

    @cached_property
    def _store(self) -> ObjectStore:
        return manifest_store(self.manifest)

    @cached_property
    def prices(self) -> pd.DataFrame:
        """The merged, validated prices."""
        return self.read("prices")

    @cached_property
    def financials(self) -> pd.DataFrame:
        """The merged, validated financials (no rows for a prices-only user)."""
        return self.read("financials")

    @cached_property
    def oracle(self) -> pd.DataFrame | None:
        """The generator's best achievable next-day close, when the data came from the generator."""
        return self.read("oracle")

    @cached_property
    def actions(self) -> pd.DataFrame:
        """The corporate actions of the snapshot (declared, read off adj_close, suspected), with their source."""
        return self.read("actions")

    @property
    def n_days(self) -> int:
        """How many trading days the snapshot's prices cover (days with at least one price)."""
        return int(self.summary.get("n_days") or self.prices["date"].nunique())

    @cached_property
    def price_dates(self) -> pd.DatetimeIndex:
        """The dates with at least one price, in order: from the partitions' names (a day each) where the snapshot
        has them, so the whole price table is not read for them."""
        if self.manifest is not None:
            return pd.DatetimeIndex(partition_names(self._store, self.manifest, "prices")).sort_values()
        return pd.DatetimeIndex(self.prices["date"].unique()).sort_values()

    @property
    def calendar(self) -> str:
        """The trading calendar the snapshot's data was checked against."""
        return self.summary.get("calendar", "data")

    @property
    def ticker_pattern(self) -> str:
        """The pattern the snapshot's tickers were checked against (``DataConfig.ticker_pattern``)."""
        return self.summary.get("ticker_pattern", DEFAULT_TICKER_PATTERN)

    @property
    def last_day(self) -> str:
        """The last trading day of the snapshot's prices (``YYYY-MM-DD``): the day its newest answers are as of."""
        return self.summary["date_range"][1]

    @property
    def tickers(self) -> list[str]:
        """Every ticker with prices in the snapshot."""
        return self.summary["tickers"]

    def __repr__(self) -> str:
        return f"Snapshot(version={self.version!r}, run={self.run_pathspec!r})"


def latest_snapshot(branch: str | None = None) -> Snapshot:
    """The latest published snapshot of the project branch (default: the current user's)."""
    return Snapshot(latest_successful_run(INGEST_FLOW, branch))


def load_snapshot(run_pathspec: str) -> Snapshot:
    """The snapshot published by a given IngestFlow run (``IngestFlow/<run_id>``)."""
    return Snapshot(run_by_pathspec(run_pathspec))


def resolve_snapshot(run_pathspec: str, branch: str) -> Snapshot:
    """The snapshot a run was asked for (``IngestFlow/<run_id>``), or the branch's latest when none was named: how
    every downstream flow's ``--snapshot`` parameter is read."""
    return load_snapshot(run_pathspec) if run_pathspec else latest_snapshot(branch)


def latest_snapshot_or_none(branch: str | None = None) -> Snapshot | None:
    """The latest snapshot of the branch, or ``None`` before the first ingestion."""
    try:
        return latest_snapshot(branch)
    except NoRunError:
        return None


@dataclass(frozen=True, eq=False)
class FrameSnapshot:
    """A snapshot held in memory, with the tables and properties of ``Snapshot`` that prediction, monitoring and
    training read: what a replay works on, where the data of each past day is the history cut at that day rather than
    an IngestFlow run."""

    version: str
    prices: pd.DataFrame
    financials: pd.DataFrame
    oracle: pd.DataFrame | None
    actions: pd.DataFrame
    calendar: str
    ticker_pattern: str = DEFAULT_TICKER_PATTERN
    run_pathspec: str = ""

    @cached_property
    def price_dates(self) -> pd.DatetimeIndex:
        """The dates with at least one price, in order."""
        return pd.DatetimeIndex(self.prices["date"].unique()).sort_values()

    @property
    def n_days(self) -> int:
        """How many trading days the prices cover (days with at least one price)."""
        return len(self.price_dates)

    @property
    def last_day(self) -> str:
        """The last trading day of the prices (``YYYY-MM-DD``)."""
        return f"{self.price_dates[-1]:%Y-%m-%d}"

    @property
    def tickers(self) -> list[str]:
        """Every ticker with prices."""
        return sorted(self.prices["ticker"].unique())

    def as_of(self, day: pd.Timestamp) -> FrameSnapshot:
        """The snapshot as it stood at the close of ``day``: prices and oracle rows up to it, the reports published
        (``report_date``) by then (a sector without dates is known throughout), the corporate actions effective by
        then; its version is this one's at that day."""
        financials = self.financials
        known = financials["report_date"].isna() | (financials["report_date"] <= day)
        return FrameSnapshot(
            version=f"{self.version.partition('@')[0]}@{day:%Y-%m-%d}",
            prices=self.prices[self.prices["date"] <= day].reset_index(drop=True),
            financials=financials[known].reset_index(drop=True),
            oracle=None if self.oracle is None else self.oracle[self.oracle["date"] <= day].reset_index(drop=True),
            actions=self.actions[self.actions["ex_date"] <= day].reset_index(drop=True),
            calendar=self.calendar,
            ticker_pattern=self.ticker_pattern,
        )
