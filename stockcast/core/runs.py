"""Flow runs: finding the latest successful run of a flow on a ``@project`` branch, and launching one.

Every hand-over between flows goes through a named, successful run (DESIGN.md §1). Runs are scoped by the
``project_branch:<branch>`` tag that Metaflow's ``@project`` puts on them, so a developer's runs never feed
production's flows and vice versa.

``launch_flow`` is the one way this project starts a flow from Python (the daily loop, the pull-request report and
the tests): ``metaflow.Runner`` on ``flows/<name>.py``, with the project branch and the configuration
file as options, the outcome read back with the Client API. Every run it starts gets the S3 timeouts and retries of
``stockcast.core.storage.METAFLOW_S3_SETTINGS`` that the user has not configured otherwise, so that a storage outage
fails the run within minutes rather than hours.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROJECT_NAME = "stockcast"
FLOWS_DIR = Path(__file__).resolve().parents[2] / "flows"
"""The flow files: ``flows/<name>.py``."""
FLOW_CLASSES = {"ingest": "IngestFlow", "train": "TrainFlow", "predict": "BatchPredictFlow", "monitor": "MonitorFlow"}
"""The flow each file of ``FLOWS_DIR`` defines, by the file's name."""


class NoRunError(LookupError):
    """No successful run of the flow exists on the branch."""


class FlowFailedError(RuntimeError):
    """A flow run did not succeed; the message names the flow and ends with its output."""


def user_branch() -> str:
    """The branch ``@project`` gives a plain ``run`` by the current user (``user.<name>``)."""
    from metaflow.util import get_username

    return f"user.{get_username()}"


def project_branch(branch: str | None = None, *, production: bool = False) -> str:
    """The ``@project`` branch a run started with ``--branch branch`` and ``--production`` lands on: ``prod`` (or
    ``prod.<branch>``), ``test.<branch>``, or the user's own branch when neither is given."""
    if production:
        return f"prod.{branch}" if branch else "prod"
    return f"test.{branch}" if branch else user_branch()


@contextmanager
def _global_namespace() -> Iterator[None]:
    """Look across all namespaces while inside; the branch tag does the scoping instead."""
    from metaflow import get_namespace, namespace

    previous = get_namespace()
    namespace(None)
    try:
        yield
    finally:
        namespace(previous)


def _branch_runs(flow_name: str, branch: str, *, successful_only: bool) -> list:  # -> list[metaflow.Run]
    """The runs of ``flow_name`` on ``branch`` (only the successful ones if asked), newest first."""
    from metaflow import Flow
    from metaflow.exception import MetaflowNotFound

    with _global_namespace():
        try:
            runs = list(Flow(flow_name).runs(f"project_branch:{branch}"))
        except MetaflowNotFound:
            runs = []
        if successful_only:
            runs = [run for run in runs if run.successful]
    return sorted(runs, key=lambda run: run.created_at, reverse=True)


def successful_runs(flow_name: str, branch: str | None = None) -> list:  # -> list[metaflow.Run]
    """Every successful run of ``flow_name`` on ``branch`` (default: the current user's branch), newest first."""
    return _branch_runs(flow_name, branch or user_branch(), successful_only=True)


def latest_run(flow_name: str, branch: str):  # -> metaflow.Run
    """The newest run of ``flow_name`` on ``branch``, whatever its outcome (a resumed run counts as one)."""
    runs = _branch_runs(flow_name, branch, successful_only=False)
    if not runs:
        raise NoRunError(f"no {flow_name} run on project branch '{branch}' to resume")
    return runs[0]


def latest_successful_run(flow_name: str, branch: str | None = None):  # -> metaflow.Run
    """The newest successful run of ``flow_name`` on ``branch`` (default: the current user's branch)."""
    runs = successful_runs(flow_name, branch)
    if not runs:
        raise NoRunError(f"no successful {flow_name} run on project branch '{branch or user_branch()}'")
    return runs[0]


def run_by_pathspec(pathspec: str):  # -> metaflow.Run
    """A run by its pathspec (``Flow/run_id``), from any namespace; it must have succeeded."""
    from metaflow import Run

    with _global_namespace():
        run = Run(pathspec)
        if not run.successful:
            raise NoRunError(f"run {pathspec} did not succeed; only successful runs can be used")
        return run


def step_task(run_pathspec: str, step: str) -> str:
    """The pathspec of the (first) task of ``step`` in a run, finished or still running, from any namespace."""
    from metaflow import Run

    with _global_namespace():
        return Run(run_pathspec)[step].task.pathspec


def task_by_pathspec(pathspec: str):  # -> metaflow.Task
    """A finished task by its pathspec (``Flow/run_id/step/task_id``), from any namespace."""
    from metaflow import Task

    with _global_namespace():
        task = Task(pathspec)
        if not task.finished or not task.successful:
            raise NoRunError(f"task {pathspec} did not finish successfully")
        return task


@dataclass(frozen=True)
class FlowOutcome:
    """A finished (or refused) flow run: its Client ``Run`` (None when the command stopped before a run existed),
    whether it succeeded, and what it printed."""

    flow: str
    run: Any | None  # metaflow.Run
    successful: bool
    output: str

    def require_success(self) -> Any:  # -> metaflow.Run
        """The run, or ``FlowFailedError`` naming the flow and quoting its output."""
        if not self.successful:
            where = self.run.pathspec if self.run is not None else "no run started"
            raise FlowFailedError(f"{self.flow} failed ({where}):\n{self.output}")
        return self.run


def launch_flow(
    flow: str,
    *,
    branch: str | None = None,
    production: bool = False,
    config: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    cwd: str | Path | None = None,
    show_output: bool = False,
    resume: bool = False,
    **params: Any,
) -> FlowOutcome:
    """Run ``flows/<flow>.py`` to the end (or ``resume`` the branch's latest run of it) with ``params``.

    A resume names its origin: the branch's newest run, resumed or not. Metaflow's own default is the last run that
    ``run`` started in this Metaflow home, on any branch; a second ``resume`` would start again from the first
    failure and redo every step the first resume finished.

    ``branch`` and ``production`` choose the ``@project`` branch, ``config`` the file of the flow's ``--config
    config`` option; ``env`` extends the environment of the run (Metaflow reads its configuration from it), after
    the bounded S3 settings (``metaflow_s3_environment``). A command refused before any run existed (a parameter
    Metaflow or a configuration parser rejects) is an unsuccessful outcome with that message, like a run that failed.
    """
    from metaflow import Runner

    from stockcast.core.storage import metaflow_s3_environment

    given = dict(env or {})
    env = {**metaflow_s3_environment({**os.environ, **given}), **given}
    options: dict[str, Any] = {"production": True} if production else {}
    if branch:
        options["branch"] = branch
    if config:
        options["config"] = [("config", str(config))]
    runner = Runner(
        str(FLOWS_DIR / f"{flow}.py"),
        show_output=show_output,
        env=env,
        cwd=str(cwd) if cwd else None,
        **options,
    )
    if resume:
        origin = latest_run(FLOW_CLASSES[flow], project_branch(branch, production=production))
        params = {"origin_run_id": origin.id, **params}
    with runner:
        try:
            executing = runner.resume(**params) if resume else runner.run(**params)
        # Metaflow raises RuntimeError with the command's output when it stops before a run exists, and the Runner
        # parses configurations itself, so a configuration parser's ValueError surfaces here directly.
        except (RuntimeError, ValueError) as exc:
            return FlowOutcome(flow, None, False, str(exc))
        return FlowOutcome(flow, executing.run, executing.status == "successful", executing.stdout + executing.stderr)


def run_flow(flow: str, **options: Any) -> Any:  # -> metaflow.Run
    """``launch_flow`` that must succeed: the Client ``Run``, or ``FlowFailedError`` with the flow's output."""
    return launch_flow(flow, **options).require_success()
