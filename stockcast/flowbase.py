"""What every flow in ``flows/`` builds on: the project branch's registry, and the data snapshot a run works on.

Metaflow's base-flow pattern: ``StockcastFlow`` and ``SnapshotFlow`` are ``FlowSpec`` classes with shared parameters
and helper methods but no steps; each flow inherits one and adds its ``@project`` and its steps. A run pins its
inputs in its first step (``pin_snapshot``) as plain artefacts, so every later step, retry and resume reads exactly
the same ones.

Storage faults: a step with ``@retry`` also carries ``@only_storage_faults_retried``, so that only a storage fault is
tried again; and every flow reports an unreachable S3 endpoint when a run fails
(``@exit_hook(on_error=[STORAGE_OUTAGE_HOOK])``, from ``stockcast.core.storage``). Importing this module puts the
bounded S3 settings the user has not configured into the environment of the tasks a run starts.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Iterator
from typing import Any

from metaflow import Config, FlowSpec, Parameter, current, user_step_decorator
from metaflow.exception import METAFLOW_EXIT_DISALLOW_RETRY, MetaflowException

from stockcast.core.engines import ENGINES_CONFIG, ENGINES_CONFIG_FILE, parse_engines_config
from stockcast.core.registry import Registry
from stockcast.core.storage import metaflow_s3_environment, transient_storage_error
from stockcast.data.snapshot import Snapshot, load_snapshot, resolve_snapshot

# A flow run by hand (`python flows/x.py run`) read Metaflow's configuration before it imported this module, so its
# scheduler keeps Metaflow's defaults; but every task it starts reads its own configuration from the environment it
# inherits, so the bounded S3 settings the user has not configured reach the tasks, where artefacts are loaded and
# saved. (Runs started through `launch_flow` get them from the start; `python -m stockcast.core.storage` prints them.)
os.environ.update(metaflow_s3_environment())


@user_step_decorator
def only_storage_faults_retried(step_name: str, flow: FlowSpec, inputs: Any = None) -> Iterator[None]:
    """Put under ``@retry``: a failure of the step that is not a storage fault (``transient_storage_error``) ends the
    task with Metaflow's "do not retry" exit code, so ``@retry`` tries again only what may pass.

    Metaflow's ``@retry`` retries every failure, and it has no option to choose which (Metaflow issue 1443; the
    ``only_on`` option of pull request 2390 is not released). A bad input, a bug or a refused promotion fails the same
    way however often it is tried, and a retry only delays and repeats the message. Exit code
    ``METAFLOW_EXIT_DISALLOW_RETRY`` is Metaflow's own way of saying "do not retry this task" (the workaround its
    maintainers give in that issue), which its scheduler honours for the tasks it runs; it then ends the run with "The
    terminal step end was not successful". On Argo Workflows, which retries every failed pod (``retryPolicy:
    Always``), a deterministic failure is still retried and fails the same way again: minutes lost, not a wrong
    result, since the retried steps are idempotent.

    The error is printed here as Metaflow would print it (headline and message, or the traceback of an unexpected
    error), since a task that exits this way skips Metaflow's own report. A storage fault is raised as it is, for
    ``@retry``; failures outside the step's code (Metaflow loading its inputs or saving its artefacts) are storage
    faults by nature and are retried as before.
    """
    try:
        yield
    except Exception as error:
        if transient_storage_error(error):
            raise
        if isinstance(error, MetaflowException):
            report = f"{error.headline}:\n{error.message}"
        else:
            report = "".join(traceback.format_exception(error)).rstrip()
        print(f"{report}\nNot retried: only storage faults are.", file=sys.stderr, flush=True)
        raise SystemExit(METAFLOW_EXIT_DISALLOW_RETRY) from error


class StockcastFlow(FlowSpec):
    """A flow of the stockcast project: it reads and writes the registry of its ``@project`` branch, and its
    ``@engines`` decorator reads where its steps run from ``--config engines`` (``stockcast.core.engines``)."""

    engines_config = Config(
        ENGINES_CONFIG,
        default=lambda _ctx: str(ENGINES_CONFIG_FILE),
        parser=parse_engines_config,
        help="engines TOML: where each step runs and with what resources",
    )

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
