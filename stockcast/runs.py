"""Finding upstream runs: the latest successful run of a flow on a ``@project`` branch.

Every hand-over between flows goes through a named, successful run (DESIGN.md §1). Runs are scoped by the
``project_branch:<branch>`` tag that Metaflow's ``@project`` puts on them, so a developer's runs never feed
production's flows and vice versa.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

PROJECT_NAME = "stockcast"


class NoRunError(LookupError):
    """No successful run of the flow exists on the branch."""


def user_branch() -> str:
    """The branch ``@project`` gives a plain ``run`` by the current user (``user.<name>``)."""
    from metaflow.util import get_username

    return f"user.{get_username()}"


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


def successful_runs(flow_name: str, branch: str | None = None) -> list:  # -> list[metaflow.Run]
    """Every successful run of ``flow_name`` on ``branch`` (default: the current user's branch), newest first."""
    from metaflow import Flow
    from metaflow.exception import MetaflowNotFound

    branch = branch or user_branch()
    with _global_namespace():
        try:
            runs = list(Flow(flow_name).runs(f"project_branch:{branch}"))
        except MetaflowNotFound:
            runs = []
        successful = [run for run in runs if run.successful]
    return sorted(successful, key=lambda run: run.created_at, reverse=True)


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


def task_by_pathspec(pathspec: str):  # -> metaflow.Task
    """A finished task by its pathspec (``Flow/run_id/step/task_id``), from any namespace."""
    from metaflow import Task

    with _global_namespace():
        task = Task(pathspec)
        if not task.finished or not task.successful:
            raise NoRunError(f"task {pathspec} did not finish successfully")
        return task
