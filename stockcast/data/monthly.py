"""Tables too large for one task's memory, stored by month as immutable Parquet parts: TrainFlow's shard rows and
its modelling frame.

A 2,000-ticker, 10-year market is 4.6 M rows of some 60 columns: about 2 GB in memory, several times that while it
is pickled as one artefact, and every backtest task used to load all of it to fit on a fold. Cut by month, a table
can be written as it is built (``MonthlyWriter``) and read a few months and columns at a time (``pieces``), so a
task holds what it works on, not the table.

Each part is keyed by the hash of its Parquet bytes and written create-only, like the snapshot's partitions
(``stockcast.data.partitions``), under ``<datastore root>/stockcast/frames/<table>/``; a ``MonthlyFrame`` (the
months and their hashes, the columns and their dtypes) is what a run stores as its artefact.

``FrameRows`` is the same interface over a table in memory, so the code that reads a table piece by piece is one
code, whether the table was stored or built in the process (tests, the library's whole-market path).
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from typing import Protocol

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from stockcast.core.storage import ObjectExistsError, ObjectStore
from stockcast.data.partitions import HASH_CHARS, read_object, store_at

FRAMES_PREFIX = "frames"
ROW_ORDER = ("ticker", "date")
"""The order rows come back in, whatever the months they were read from: the modelling frame's own."""

DateBound = pd.Timestamp | None


class RowSource(Protocol):
    """A table with a ``date`` column that can be read a month at a time."""

    @property
    def columns(self) -> dict[str, str]:
        """Column names in order, with their dtypes."""
        ...

    @property
    def months(self) -> list[str]:
        """The months (``YYYY-MM``) the table has rows in, in order."""
        ...

    def read_month(self, month: str, columns: Sequence[str] | None = None) -> pd.DataFrame:
        """One month's rows (none when the table has no rows that month), with the given ``columns`` (None: all)."""
        ...

    def count(self, start: DateBound = None, end: DateBound = None) -> int:
        """How many rows reading from ``start`` to ``end`` holds at most (the months they touch), without reading."""
        ...

    def pieces(
        self, start: DateBound = None, end: DateBound = None, columns: Sequence[str] | None = None
    ) -> Iterator[pd.DataFrame]:
        """The rows dated from ``start`` to ``end`` (inclusive; None: unbounded), one month at a time, in month
        order, with the given ``columns`` (None: all)."""
        ...


class RowSink(Protocol):
    """Where a table built a month at a time goes: stored (``MonthlyWriter``) or kept in memory (``RowCollector``)."""

    def add(self, frame: pd.DataFrame) -> None:
        """Rows of months no earlier call gave."""
        ...

    def finish(self) -> RowSource:
        """The table of every row added."""
        ...


def month_labels(dates: pd.Series) -> np.ndarray:
    """Each date's month, ``YYYY-MM``."""
    return np.datetime_as_string(dates.to_numpy(dtype="datetime64[ns]").astype("datetime64[M]"), unit="M")


def in_row_order(pieces: Sequence[pd.DataFrame], columns: dict[str, str]) -> pd.DataFrame:
    """Pieces of a table as one frame in ``ROW_ORDER`` with a fresh index (an empty one with the ``columns``'
    dtypes when there are none)."""
    filled = [piece for piece in pieces if len(piece)]
    if not filled:
        return pd.DataFrame({name: pd.Series(dtype=dtype) for name, dtype in columns.items()})
    frame = filled[0] if len(filled) == 1 else pd.concat(filled, ignore_index=True)
    return frame.sort_values(list(ROW_ORDER), kind="stable").reset_index(drop=True)


def read_rows(
    source: RowSource, start: DateBound = None, end: DateBound = None, columns: Sequence[str] | None = None
) -> pd.DataFrame:
    """The rows of ``source`` dated from ``start`` to ``end`` as one frame, in ``ROW_ORDER``."""
    wanted = {name: dtype for name, dtype in source.columns.items() if columns is None or name in columns}
    return in_row_order(list(source.pieces(start, end, columns)), wanted)


def _window(frame: pd.DataFrame, start: DateBound, end: DateBound) -> pd.DataFrame:
    if start is None and end is None:
        return frame
    dates = frame["date"]
    mask = np.ones(len(frame), dtype=bool)
    if start is not None:
        mask &= (dates >= start).to_numpy()
    if end is not None:
        mask &= (dates <= end).to_numpy()
    return frame[mask]


def _months_between(months: Sequence[str], start: DateBound, end: DateBound) -> list[str]:
    first = None if start is None else f"{start:%Y-%m}"
    last = None if end is None else f"{end:%Y-%m}"
    return [m for m in sorted(months) if (first is None or m >= first) and (last is None or m <= last)]


@dataclass(frozen=True)
class FrameRows:
    """A table in memory, read like a stored one."""

    frame: pd.DataFrame

    @property
    def columns(self) -> dict[str, str]:
        return {str(name): str(dtype) for name, dtype in self.frame.dtypes.items()}

    @cached_property
    def _positions_by_month(self) -> dict[str, np.ndarray]:
        """Each month's row positions, found once: a join reads every month in turn."""
        labels = month_labels(self.frame["date"])
        return {str(month): positions for month, positions in pd.Series(labels).groupby(labels).indices.items()}

    @property
    def months(self) -> list[str]:
        return sorted(self._positions_by_month)

    def read_month(self, month: str, columns: Sequence[str] | None = None) -> pd.DataFrame:
        rows = self.frame.iloc[self._positions_by_month.get(month, np.array([], dtype=np.intp))]
        return rows if columns is None else rows[list(columns)]

    def count(self, start: DateBound = None, end: DateBound = None) -> int:
        return len(_window(self.frame, start, end))

    def pieces(
        self, start: DateBound = None, end: DateBound = None, columns: Sequence[str] | None = None
    ) -> Iterator[pd.DataFrame]:
        rows = _window(self.frame, start, end)
        labels = month_labels(rows["date"])
        if columns is not None:
            rows = rows[list(columns)]
        for _, piece in rows.groupby(labels, sort=True):
            yield piece


@dataclass(frozen=True)
class MonthlyFrame:
    """A table stored by month: where its parts are and what they hold. Small: it is what runs store as artefacts."""

    store_root: str
    table: str
    parts: dict[str, str]
    """Month (``YYYY-MM``) -> hash of the part's Parquet bytes."""
    part_rows: dict[str, int]
    """Month -> rows in its part."""
    columns: dict[str, str]

    @property
    def rows(self) -> int:
        """Rows in the table."""
        return sum(self.part_rows.values())

    @property
    def months(self) -> list[str]:
        return sorted(self.parts)

    def read_month(self, month: str, columns: Sequence[str] | None = None) -> pd.DataFrame:
        """One month's rows as stored (dtypes as written), or none when the table has no rows that month."""
        names = list(self.columns) if columns is None else [name for name in self.columns if name in columns]
        if month not in self.parts:
            return pd.DataFrame({name: pd.Series(dtype=self.columns[name]) for name in names})
        data = read_object(_store(self.store_root), part_key(self.table, self.parts[month]))
        arrow = pq.ParquetFile(pa.BufferReader(data)).read(columns=names).replace_schema_metadata(None)
        return arrow.to_pandas().astype({name: self.columns[name] for name in names})

    def count(self, start: DateBound = None, end: DateBound = None) -> int:
        return sum(self.part_rows[month] for month in _months_between(self.months, start, end))

    def pieces(
        self, start: DateBound = None, end: DateBound = None, columns: Sequence[str] | None = None
    ) -> Iterator[pd.DataFrame]:
        if columns is not None and "date" not in columns and (start is not None or end is not None):
            raise ValueError("reading a date window needs the date column")
        for month in _months_between(self.months, start, end):
            yield _window(self.read_month(month, columns), start, end)


@lru_cache(maxsize=8)
def _store(root: str) -> ObjectStore:
    """The store at ``root``, opened once per process: a join reads a part of every shard for every month, and an S3
    client takes tens of milliseconds to make."""
    return store_at(root)


def part_key(table: str, content_hash: str) -> str:
    """Where a part lives in the store."""
    return f"{FRAMES_PREFIX}/{table}/{content_hash}.parquet"


@dataclass
class MonthlyWriter:
    """Writes a table month by month as it is built; ``finish`` says what was written. Each month is added once."""

    store: ObjectStore
    table: str
    parts: dict[str, str] = field(default_factory=dict)
    part_rows: dict[str, int] = field(default_factory=dict)
    columns: dict[str, str] | None = None

    def add(self, frame: pd.DataFrame) -> None:
        """Store the rows of ``frame`` (of one or more months no earlier call gave) as one part per month."""
        columns = {str(name): str(dtype) for name, dtype in frame.dtypes.items()}
        if self.columns is not None and columns != self.columns:
            raise ValueError(f"rows for {self.table} have columns {columns}, the earlier ones had {self.columns}")
        self.columns = columns
        labels = month_labels(frame["date"])
        for month, piece in frame.groupby(labels, sort=True):
            if month in self.parts:
                raise ValueError(f"month {month} of {self.table} was written already")
            buffer = io.BytesIO()
            piece.to_parquet(buffer, index=False, compression="zstd")
            data = buffer.getvalue()
            content_hash = hashlib.sha256(data).hexdigest()[:HASH_CHARS]
            with suppress(ObjectExistsError):  # the same bytes, written by another run or task
                self.store.put(part_key(self.table, content_hash), data, exclusive=True)
            self.parts[str(month)] = content_hash
            self.part_rows[str(month)] = len(piece)

    def finish(self) -> MonthlyFrame:
        """The stored table."""
        if self.columns is None:
            raise ValueError(f"no rows were written for {self.table}")
        return MonthlyFrame(self.store.root, self.table, dict(self.parts), dict(self.part_rows), self.columns)


@dataclass
class RowCollector:
    """Keeps a table built a month at a time in memory, for a process that builds the whole table itself."""

    pieces: list[pd.DataFrame] = field(default_factory=list)

    def add(self, frame: pd.DataFrame) -> None:
        """Keep the rows."""
        self.pieces.append(frame)

    def finish(self) -> FrameRows:
        """The rows kept, in ``ROW_ORDER``."""
        if not self.pieces:
            raise ValueError("no rows were added")
        columns = {str(name): str(dtype) for name, dtype in self.pieces[0].dtypes.items()}
        return FrameRows(in_row_order(self.pieces, columns))
