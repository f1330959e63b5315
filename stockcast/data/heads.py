"""Snapshot heads: the one mutable object of the data layer, naming each branch's newest published snapshot.

A snapshot is published by a successful IngestFlow run (``stockcast.data.snapshot``); the flows find it through the
Metaflow Client. A running service has no business querying Metaflow's metadata, so IngestFlow also writes the
snapshot's *head* once the snapshot is complete: ``snapshots/heads/<branch>.json`` in the object store beside the
datastore, holding the version, last day, publication time, the checks the data passed (calendar, ticker pattern) and
the manifest that lists its partitions. Anything that can read the store can then follow a branch's data by
polling one small object and reading the partitions it names (``stockcast.serve.feed`` does), with no Metaflow
client, database or message broker. The head is overwritten in one write (a rename on a local disk, one PUT on S3),
so a reader sees the old head or the new one, never half of one; partitions are immutable, so the manifest a reader
got stays readable.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

import pandas as pd

from stockcast.core.storage import ObjectStore
from stockcast.data.partitions import SNAPSHOT_PREFIX, manifest_store, read_table

HEADS_PREFIX = f"{SNAPSHOT_PREFIX}/heads"


@dataclass(frozen=True)
class SnapshotHead:
    """A branch's newest published snapshot, as its head object holds it."""

    version: str
    last_day: str
    """The last trading day of the snapshot's prices (``YYYY-MM-DD``): the day answers from it are as of."""
    run: str
    """The IngestFlow run that published it (``IngestFlow/<id>``)."""
    published_at: str
    """When the head was written (ISO 8601, UTC)."""
    calendar: str
    ticker_pattern: str
    manifest: dict

    @classmethod
    def of(cls, summary: dict, manifest: dict, *, run: str, published_at: datetime | None = None) -> SnapshotHead:
        """The head of a snapshot from what IngestFlow stored: its ``snapshot`` summary and ``manifest``."""
        return cls(
            version=summary["version"],
            last_day=summary["date_range"][1],
            run=run,
            published_at=(published_at or datetime.now(UTC)).isoformat(timespec="seconds"),
            calendar=summary["calendar"],
            ticker_pattern=summary["ticker_pattern"],
            manifest=manifest,
        )

    def read(self, table: str) -> pd.DataFrame | None:
        """A table of the snapshot (``prices``, ``financials``, ``oracle`` or ``actions``), read from its partitions
        exactly as ``Snapshot.read`` reads it."""
        return read_table(manifest_store(self.manifest), self.manifest, table)


def head_key(branch: str) -> str:
    """Where a branch's head lives in the store."""
    return f"{HEADS_PREFIX}/{branch}.json"


def publish_head(store: ObjectStore, branch: str, head: SnapshotHead) -> None:
    """Make ``head`` the branch's newest snapshot: what a service following the branch serves next."""
    # Not sorted: the manifest lists each table's columns in their order, which reading it keeps.
    store.put(head_key(branch), json.dumps(asdict(head)).encode())


def read_head(store: ObjectStore, branch: str) -> SnapshotHead | None:
    """The branch's newest published snapshot, or ``None`` when nothing was published since heads were written."""
    try:
        data = store.get(head_key(branch))
    except KeyError:
        return None
    return SnapshotHead(**json.loads(data))
