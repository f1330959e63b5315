"""Snapshot tables as immutable, content-addressed Parquet partitions, listed by a small manifest.

A daily ingest used to store the whole merged history again as artefacts. Here each table is cut into partitions
(one per day of its date column: prices and the oracle by ``date``, financials by ``report_date``; the small actions
table is one partition), and each partition is stored once, under the datastore root, at a key made of the hash of
its canonical content (columns by name, rows sorted by every column, full float precision, ISO dates: what the
version used to hash of whole tables). A partition that exists is never written again, so a day's ingest
writes the day's new partitions and a corrected day rewrites that day alone.

The partitions of a table are listed by content-addressed chunks, one per year (``{"2024-01-02": "<hash>", ...}``),
and the chunks by the manifest, which the IngestFlow run stores as an artefact: a daily ingest writes the day's
partitions, the current year's chunk and a manifest of a few hundred bytes, however long the history. The snapshot
version is the Merkle root of the chunks, so identical content gives the same version whatever order its rows and
columns arrived in and however many runs it took, without serialising the history again.

Keys, under ``datastore_store()`` (``<datastore root>/stockcast/``): ``snapshots/<table>/<hash>.parquet`` and
``snapshots/<table>/chunks/<hash>.json``.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections import deque
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from stockcast.core.storage import LocalStore, ObjectExistsError, ObjectStore, S3Store
from stockcast.data.contract import FINANCIALS, ORACLE, PRICES

MANIFEST_FORMAT = 1
SNAPSHOT_PREFIX = "snapshots"
UNDATED = "undated"
"""The partition of rows whose date is missing (a financials row carrying a sector alone)."""
WHOLE_TABLE = "all"
"""The one partition of a table that is not cut by date."""
HASH_CHARS = 32
"""128 bits of SHA-256: collisions are out of reach for any number of partitions a store will hold."""
VERSION_CHARS = 16
"""The snapshot version's length, as before partitions: 64 bits, short enough for people to quote."""
PARTITION_CACHE_FOLDER = "stockcast-snapshots"
"""Where partitions and chunks read from S3 are kept: a folder in Metaflow's client cache (``CLIENT_CACHE_PATH``)."""
STORAGE_THREADS = 8
"""Partitions fetched or written at once: S3 answers each request in tens of milliseconds, mostly waiting, so a few
threads hide the latency; more would only hold more partitions in memory at a time."""


@dataclass(frozen=True)
class TableLayout:
    """How a table is cut and put back together: the date column it is partitioned by (``None``: one partition) and
    the columns its rows are ordered by (``None``: the order they were stored in)."""

    partition_column: str | None
    order: tuple[str, ...] | None


LAYOUTS: dict[str, TableLayout] = {
    "prices": TableLayout("date", PRICES.key),
    "financials": TableLayout("report_date", FINANCIALS.key),
    "oracle": TableLayout("date", ORACLE.key),
    "actions": TableLayout(None, None),
}
"""The snapshot's tables. Merged tables are sorted by their key (``merge_table``), so sorting the partitions back by
it restores the exact row order; the actions table is small and kept whole, in its own order."""
WHOLE = TableLayout(None, None)


@dataclass(frozen=True)
class TablePartitions:
    """A table cut into partitions, each with the hash of its canonical content; nothing written yet."""

    name: str
    frame: pd.DataFrame
    rows_by_partition: dict[str, np.ndarray]
    hashes: dict[str, str]

    @property
    def columns(self) -> dict[str, str]:
        """The table's columns in order, with their dtypes: what an empty table is rebuilt from and what every
        partition is cast to on reading."""
        return {str(column): str(dtype) for column, dtype in self.frame.dtypes.items()}

    def chunks(self) -> dict[str, dict[str, str]]:
        """The partition hashes grouped into the manifest's chunks (by year), each sorted by partition."""
        grouped: dict[str, dict[str, str]] = {}
        for partition in sorted(self.hashes):
            grouped.setdefault(chunk_of(partition), {})[partition] = self.hashes[partition]
        return grouped


@dataclass
class WriteReport:
    """What writing a snapshot's tables put in the store: the new objects' keys and sizes."""

    written: dict[str, int] = field(default_factory=dict)

    @property
    def objects(self) -> int:
        """How many objects were written."""
        return len(self.written)

    @property
    def bytes(self) -> int:
        """How many bytes were written."""
        return sum(self.written.values())

    def to_dict(self) -> dict[str, int]:
        """Plain data for the snapshot summary."""
        return {"objects_written": self.objects, "bytes_written": self.bytes}


def chunk_of(partition: str) -> str:
    """The chunk (manifest entry) a partition is listed in: its year, or the partition itself when it is undated."""
    return partition[:4] if partition[:4].isdigit() else partition


def partition_table(name: str, frame: pd.DataFrame) -> TablePartitions:
    """Cut ``frame`` into the partitions of its layout (``LAYOUTS``; a table not listed there is one partition) and
    hash each one's canonical content: columns by name, rows sorted by every column, full float precision, ISO dates.

    The whole table is sorted once (by partition, then by every column) and each partition's slice serialised: as
    fast as hashing the table whole, where sorting each partition apart would be half as fast again.
    """
    layout = LAYOUTS.get(name, WHOLE)
    if layout.partition_column is None:
        labels = np.full(len(frame), WHOLE_TABLE, dtype=object)
    else:
        codes, days = pd.factorize(frame[layout.partition_column])
        # factorize codes a missing date -1, which picks the last name: UNDATED.
        names = np.array([f"{day:%Y-%m-%d}" for day in pd.DatetimeIndex(days)] + [UNDATED], dtype=object)
        labels = names[codes]
    label_codes, partitions = pd.factorize(labels, sort=True)
    columns = sorted(frame.columns)
    body = frame[columns].reset_index(drop=True)
    rows = body.sort_values(columns, kind="stable", na_position="last").index.to_numpy()
    rows = rows[np.argsort(label_codes[rows], kind="stable")]
    ends = np.searchsorted(label_codes[rows], np.arange(len(partitions)), side="right")
    starts = ends - np.bincount(label_codes, minlength=len(partitions))
    rows_by_partition, hashes = {}, {}
    for partition, start, end in zip(partitions, starts, ends, strict=True):
        text = body.iloc[rows[start:end]].to_csv(index=False, float_format="%.17g", date_format="%Y-%m-%d")
        hashes[str(partition)] = hashlib.sha256(text.encode()).hexdigest()[:HASH_CHARS]
        rows_by_partition[str(partition)] = np.sort(rows[start:end])  # stored in the table's own order
    return TablePartitions(name, frame.reset_index(drop=True), rows_by_partition, hashes)


def _json_bytes(value: object) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def snapshot_version(tables: Mapping[str, TablePartitions | None]) -> str:
    """The snapshot version: the Merkle root of the named tables' chunks (and their column names), so the same
    content always gives the same version, and any change of a value gives another."""
    root = {
        name: None if table is None else {"columns": sorted(table.columns), "chunks": _chunk_hashes(table.chunks())}
        for name, table in tables.items()
    }
    return hashlib.sha256(_json_bytes(root)).hexdigest()[:VERSION_CHARS]


def _chunk_hashes(chunks: Mapping[str, Mapping[str, str]]) -> dict[str, str]:
    return {chunk: hashlib.sha256(_json_bytes(listing)).hexdigest()[:HASH_CHARS] for chunk, listing in chunks.items()}


def manifest_store(manifest: Mapping) -> ObjectStore:
    """The store a manifest's partitions were written to, as its run's artefacts are read from the datastore the run
    used, whatever the reader's default."""
    return store_at(manifest["store"])


def store_at(root: str) -> ObjectStore:
    """The store at ``root``: an S3 prefix (on the configured S3 endpoint) or a local folder."""
    if root.startswith("s3://"):
        from metaflow import metaflow_config as config

        return S3Store(root, endpoint_url=config.S3_ENDPOINT_URL)
    return LocalStore(root)


def partition_key(table: str, content_hash: str) -> str:
    """Where a partition lives in the store."""
    return f"{SNAPSHOT_PREFIX}/{table}/{content_hash}.parquet"


def chunk_key(table: str, chunk_hash: str) -> str:
    """Where a chunk (a year's list of partitions) lives in the store."""
    return f"{SNAPSHOT_PREFIX}/{table}/chunks/{chunk_hash}.json"


def write_tables(
    store: ObjectStore, tables: Mapping[str, TablePartitions | None], previous: Mapping | None
) -> tuple[dict, WriteReport]:
    """Store the partitions and chunks the ``previous`` manifest does not already list, and return the new manifest
    with what was written. Writes are create-only: a partition another run wrote meanwhile is left as it is, so two
    runs writing the same content is harmless."""
    report = WriteReport()
    if previous is not None and previous.get("store") != store.root:
        previous = None  # its partitions are in another store (a run on another datastore): none is here yet
    manifest: dict = {"format": MANIFEST_FORMAT, "store": store.root, "tables": {}}
    uploads: list[tuple[str, Callable[[], bytes]]] = []
    for name, table in tables.items():
        if table is None:
            manifest["tables"][name] = None
            continue
        chunks = table.chunks()
        chunk_hashes = _chunk_hashes(chunks)
        before = (previous or {}).get("tables", {}).get(name) or {}
        known = _known_partitions(store, name, before.get("chunks", {}), chunk_hashes)
        for chunk, listing in chunks.items():
            if before.get("chunks", {}).get(chunk) == chunk_hashes[chunk]:
                continue
            uploads.append((chunk_key(name, chunk_hashes[chunk]), lambda listing=listing: _json_bytes(listing)))
            for partition, content_hash in listing.items():
                if content_hash not in known:
                    known.add(content_hash)
                    uploads.append((partition_key(name, content_hash), _parquet_writer(table, partition)))
        manifest["tables"][name] = {"columns": table.columns, "rows": len(table.frame), "chunks": chunk_hashes}

    def upload(item: tuple[str, Callable[[], bytes]]) -> tuple[str, int | None]:
        key, serialise = item
        data = serialise()
        try:
            store.put(key, data, exclusive=True)
        except ObjectExistsError:
            return key, None
        return key, len(data)

    for key, size in _bounded_map(upload, uploads):
        if size is not None:
            report.written[key] = size
    return manifest, report


def _known_partitions(
    store: ObjectStore, table: str, previous_chunks: Mapping[str, str], chunk_hashes: Mapping[str, str]
) -> set[str]:
    """The partitions the previous manifest lists in the chunks that change now: already stored, not to write."""
    changed = [h for chunk, h in previous_chunks.items() if chunk_hashes.get(chunk) != h]
    listings = _bounded_map(lambda chunk_hash: json.loads(read_object(store, chunk_key(table, chunk_hash))), changed)
    return {content_hash for listing in listings for content_hash in listing.values()}


def _parquet_writer(table: TablePartitions, partition: str) -> Callable[[], bytes]:
    def serialise() -> bytes:
        buffer = io.BytesIO()
        table.frame.iloc[table.rows_by_partition[partition]].to_parquet(buffer, index=False, compression="zstd")
        return buffer.getvalue()

    return serialise


Item = TypeVar("Item")
Result = TypeVar("Result")


def _bounded_map(function: Callable[[Item], Result], items: Iterable[Item]) -> Iterator[Result]:
    """``function`` over ``items`` on ``STORAGE_THREADS`` threads, in order, with at most that many results in
    flight: peak memory is a few partitions, not all of them."""
    with ThreadPoolExecutor(max_workers=STORAGE_THREADS) as pool:
        in_flight: deque[Future[Result]] = deque()
        for item in items:
            if len(in_flight) == STORAGE_THREADS:
                yield in_flight.popleft().result()
            in_flight.append(pool.submit(function, item))
        while in_flight:
            yield in_flight.popleft().result()


def read_table(
    store: ObjectStore, manifest: Mapping, name: str, tickers: Collection[str] | None = None
) -> pd.DataFrame | None:
    """A table of a manifest, exactly as it was written (values, dtypes, column and row order, a fresh index), or
    only the rows of ``tickers``; ``None`` for a table the snapshot does not have. Partitions are fetched a few at a
    time and filtered as they arrive, so peak memory is the selection plus a few partitions."""
    entry = manifest["tables"].get(name)
    if entry is None:
        return None
    dtypes: dict[str, str] = entry["columns"]
    layout = LAYOUTS.get(name, WHOLE)
    listings = _chunk_listings(store, name, entry)
    hashes = [content_hash for listing in listings for _, content_hash in sorted(listing.items())]
    wanted = None if tickers is None else pa.array(list(tickers), type=pa.string())

    def fetch(content_hash: str) -> pa.Table:
        # Read as Arrow (ParquetFile: a third of read_table's overhead on small files) and converted to pandas once,
        # at the end, which is far faster than converting each partition. The schema's metadata (pandas' own) goes:
        # the manifest's dtypes rule.
        table = pq.ParquetFile(pa.BufferReader(read_object(store, partition_key(name, content_hash)))).read()
        table = table.replace_schema_metadata(None)
        return table if wanted is None else table.filter(pc.is_in(table["ticker"], value_set=wanted))

    pieces = [piece for piece in _bounded_map(fetch, hashes) if piece.num_rows]
    if not pieces:
        return pd.DataFrame({column: pd.Series(dtype=dtype) for column, dtype in dtypes.items()})
    arrow = pa.concat_tables(pieces, promote_options="permissive")
    table = arrow.to_pandas()[list(dtypes)].astype(dtypes)
    if layout.order is not None:
        table = table.sort_values(list(layout.order), kind="stable", na_position="last")
    return table.reset_index(drop=True)


def partition_names(store: ObjectStore, manifest: Mapping, name: str) -> list[str]:
    """The partitions a manifest lists for a table (a day each, ``YYYY-MM-DD``, for a table cut by date), read from
    its chunks alone."""
    entry = manifest["tables"].get(name) or {"chunks": {}}
    listings = _chunk_listings(store, name, entry)
    return [partition for listing in listings for partition in sorted(listing) if partition != UNDATED]


def _chunk_listings(store: ObjectStore, name: str, entry: Mapping) -> Iterator[dict[str, str]]:
    """The partition listings of a table's chunks, in chunk order."""
    return _bounded_map(
        lambda chunk_hash: json.loads(read_object(store, chunk_key(name, chunk_hash))), _sorted_values(entry["chunks"])
    )


def read_object(store: ObjectStore, key: str) -> bytes:
    """A partition or chunk. From S3, through a cache on the local disk (in Metaflow's client cache folder): its
    content never changes (the key is its hash), so the copy is never stale, and the many tasks of a run on one
    machine (every backtest of TrainFlow reads the snapshot) fetch each object once rather than each time."""
    if isinstance(store, LocalStore):
        return store.get(key)
    from metaflow import metaflow_config as config

    cache = LocalStore(Path(config.CLIENT_CACHE_PATH) / PARTITION_CACHE_FOLDER)
    try:
        return cache.get(key)
    except KeyError:
        data = store.get(key)
        cache.put(key, data)  # written aside and renamed: a concurrent reader sees all of it or nothing
        return data


def _sorted_values(mapping: Mapping[str, str]) -> list[str]:
    return [mapping[key] for key in sorted(mapping)]
