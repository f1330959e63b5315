"""What every flow in ``flows/`` builds on: the project branch's registry, and the data snapshot a run works on.

Metaflow's base-flow pattern: ``StockcastFlow`` and ``SnapshotFlow`` are ``FlowSpec`` classes with shared parameters
and helper methods but no steps; each flow inherits one and adds its ``@project`` and its steps. A run pins its
inputs in its first step (``pin_snapshot``) as plain artefacts, so every later step, retry and resume reads exactly
the same ones.
"""

from __future__ import annotations

from metaflow import FlowSpec, Parameter, current

from stockcast.core.registry import Registry
from stockcast.data.snapshot import Snapshot, load_snapshot, resolve_snapshot


class StockcastFlow(FlowSpec):
    """A flow of the stockcast project: it reads and writes the registry of its ``@project`` branch."""

    def branch_registry(self) -> Registry:
        """The registry (and object store) of this run's project branch."""
        return Registry(current.branch_name)


class SnapshotFlow(StockcastFlow):
    """A flow that works on a data snapshot: the one named by ``--snapshot``, or the branch's latest."""

    snapshot_run = Parameter(
        "snapshot",
        default="",
        help="IngestFlow run pathspec (IngestFlow/<run_id>) to work on; empty means the branch's latest snapshot.",
    )

    def pin_snapshot(self) -> Snapshot:
        """Find the run's snapshot and pin it: ``snapshot_pathspec``, ``data_version`` and ``data_end`` (its last
        day) become artefacts that later steps read with ``snapshot()``."""
        snapshot = resolve_snapshot(self.snapshot_run, current.branch_name)
        self.snapshot_pathspec, self.data_version = snapshot.run_pathspec, snapshot.version
        self.data_end = snapshot.last_day
        return snapshot

    def snapshot(self) -> Snapshot:
        """The snapshot ``pin_snapshot`` pinned."""
        return load_snapshot(self.snapshot_pathspec)
