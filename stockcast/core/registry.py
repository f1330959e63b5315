"""The model registry: every trained challenger with its lineage, one champion per project branch, and the
history of promotions and rollbacks.

Layout under the object store (``stockcast.core.storage``), per ``@project`` branch::

    registry/<branch>/models/<version>.json    one immutable record per registered model (lineage, metrics, gate)
    registry/<branch>/bentos/<version>.json    the Bento built from that model, once deployed
    registry/<branch>/events/<seq>.json        append-only promotions and rollbacks; the last one names the champion

Events are written create-only with consecutive sequence numbers, and a promotion states which champion it
expects to replace: two concurrent promotions cannot both win, and the loser gets a clear error instead of
silently overwriting the other. The fitted model itself stays a Metaflow artefact of the training task that refitted
it; a record points at that task's pathspec.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from metaflow.packaging_sys import MetaflowCodeContent

from stockcast.core.errors import UserError
from stockcast.core.runs import step_task, task_by_pathspec, user_branch
from stockcast.core.storage import ObjectExistsError, ObjectStore, datastore_store

Action = Literal["promote", "rollback"]
LINEAGE_FIELDS = (
    "model_version",
    "candidate_id",
    "branch",
    "run_pathspec",
    "model_task",
    "data_version",
    "snapshot_run",
    "feature_set",
    "feature_fingerprint",
    "code_version",
    "registered_at",
)
"""The keys of ``ModelRecord.lineage()``, in the order people read them."""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class RegistryError(RuntimeError):
    """A registry operation cannot be done as asked; the message says why."""


class NoChampionError(UserError):
    """The branch has no champion yet: nothing to serve, predict with or watch."""

    headline = "No champion"


class ChampionChangedError(RegistryError):
    """Someone else changed the champion since the caller looked; re-run the gate against the new one."""


@dataclass(frozen=True)
class ModelRecord:
    """One registered model version and everything needed to trust, reproduce or serve it."""

    version: str
    branch: str
    run_pathspec: str
    model_task: str
    candidate: dict[str, Any]
    data_version: str
    snapshot_run: str
    feature_set: str
    feature_fingerprint: str
    code_version: str | None
    metrics: dict[str, Any]
    gate: dict[str, Any]
    registered_at: str = field(default_factory=_now)
    data_end: str | None = None
    """The last day of the data the model was trained on (``YYYY-MM-DD``): its age counts from it. None in records
    registered before it was kept, whose snapshot says it."""

    @property
    def candidate_id(self) -> str:
        """The readable id of the model spec, such as ``catboost[depth=4]``."""
        return self.candidate["candidate_id"]

    def lineage(self) -> dict[str, str]:
        """Where the model comes from, as strings: the one view of it that the Bento's labels, ``GET /model``, the
        training card and the registry command show. Fields not known (no git commit) are left out."""
        values = {"model_version": self.version, "candidate_id": self.candidate_id}
        values |= {name: getattr(self, name) for name in LINEAGE_FIELDS if name not in values}
        return {name: str(value) for name, value in values.items() if value is not None}

    def load_model(self) -> Any:
        """The fitted estimator: the ``model`` artefact of the training task that refitted it."""
        return task_by_pathspec(self.model_task).data.model


@dataclass(frozen=True)
class Event:
    """A change of champion: a promotion by the gate or a rollback."""

    seq: int
    action: Action
    version: str
    previous: str | None
    reason: str
    at: str


def current_code_version(repo_dir: str | Path | None = None) -> str | None:
    """The git commit of the code being run (with ``+dirty`` if uncommitted changes exist), or ``None``.

    From git where the code is a checkout; on a pod, where the code is an unpacked Metaflow code package and there
    is no ``.git``, the commit Metaflow recorded in the package's INFO file when the run or deployment was started
    from a checkout (``packaged_code_version``).
    """
    cwd = str(repo_dir or Path(__file__).resolve().parent)
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return packaged_code_version(MetaflowCodeContent.get_info())
    return f"{commit}+dirty" if dirty else commit


def packaged_code_version(info: Mapping[str, Any] | None) -> str | None:
    """The commit in a Metaflow code package's INFO (``commit_sha``, and ``has_uncommitted_changes``, which
    ``metaflow.metaflow_git`` wrote from the checkout that made the package), written as ``current_code_version``
    writes it; ``None`` without a package or a commit."""
    commit = (info or {}).get("commit_sha")
    if not commit:
        return None
    return f"{commit}+dirty" if info.get("has_uncommitted_changes") else commit


class Registry:
    """The registry of one ``@project`` branch."""

    def __init__(self, branch: str, store: ObjectStore | None = None) -> None:
        self.branch = branch
        self.store = store or datastore_store()
        self._prefix = f"registry/{branch}"

    # -- writing -------------------------------------------------------------------------------------------

    def register(self, record: ModelRecord) -> ModelRecord:
        """Add a model version and return its record as stored; a version is registered once and never changes.

        Registering again from the same training run (a retried step) returns the stored record unchanged; the same
        version from another run is a ``RegistryError``.
        """
        if record.branch != self.branch:
            raise RegistryError(f"record is for branch '{record.branch}', registry is '{self.branch}'")
        try:
            self.store.put(self._model_key(record.version), _dump(asdict(record)), exclusive=True)
        except ObjectExistsError as exc:
            stored = self.get(record.version)
            if stored.run_pathspec != record.run_pathspec:
                raise RegistryError(
                    f"model version {record.version} is already registered, from run {stored.run_pathspec}"
                ) from exc
            return stored
        return record

    def register_for_run(
        self, record: ModelRecord, *, version: str, run_pathspec: str, expected_champion: str | None
    ) -> tuple[ModelRecord, str | None]:
        """The record the run ``run_pathspec`` promotes, and the champion its promotion may replace.

        A record that run registered comes back as it is, with ``expected_champion`` (the champion its gate judged).
        A run that ``resume`` started after a failed step cloned the steps that had finished, ``register`` among them:
        its record names the run that failed, and only successful runs hand over (readers of the champion, such as
        BatchPredictFlow, load that run's artefacts). Such a record is registered again as ``version``, with this
        run's pathspec and its clone of the model's task; the failed run's record stays, never promoted. Should the
        failed run have promoted its record before failing, this run's promotion replaces it.
        """
        if record.run_pathspec == run_pathspec:
            return record, expected_champion
        model_step = record.model_task.split("/")[2]
        resumed = replace(
            record,
            version=version,
            run_pathspec=run_pathspec,
            model_task=step_task(run_pathspec, model_step),
            registered_at=_now(),
        )
        champion = self.champion_version()
        return self.register(resumed), record.version if champion == record.version else expected_champion

    def promote(self, version: str, *, reason: str, expected_champion: str | None) -> Event:
        """Make ``version`` the champion, provided the champion is still ``expected_champion``."""
        self.get(version)  # must exist
        return self._append("promote", version, reason, expected_champion)

    def rollback(self, *, reason: str) -> Event:
        """Restore the champion the current one replaced; one call, recorded in the history."""
        current = self.champion_version()
        if current is None:
            raise RegistryError(f"branch '{self.branch}' has no champion to roll back")
        promoted = [e for e in self.history() if e.action == "promote" and e.version == current]
        previous = promoted[-1].previous if promoted else None
        if previous is None:
            raise RegistryError(f"champion {current} was the first on branch '{self.branch}'; nothing to roll back to")
        return self._append("rollback", previous, reason, current)

    def record_bento(self, version: str, info: dict[str, Any]) -> None:
        """Remember the Bento built from ``version`` (tag, archive URL) so any deployment can be rebuilt."""
        self.get(version)
        self.store.put(f"{self._prefix}/bentos/{version}.json", _dump(info))

    # -- reading -------------------------------------------------------------------------------------------

    def get(self, version: str) -> ModelRecord:
        """A registered model version; ``RegistryError`` naming it if unknown."""
        try:
            stored = json.loads(self.store.get(self._model_key(version)))
        except KeyError as exc:
            raise RegistryError(f"no model version {version} on branch '{self.branch}'") from exc
        # Fields a newer version of this code added are left out, so that code being rolled out alongside reads it.
        known = {known_field.name for known_field in fields(ModelRecord)}
        return ModelRecord(**{name: value for name, value in stored.items() if name in known})

    def versions(self) -> list[str]:
        """Every registered version, oldest first."""
        keys = self.store.list(f"{self._prefix}/models/")
        return [Path(key).stem for key in keys]

    def history(self) -> list[Event]:
        """Promotions and rollbacks, oldest first."""
        return [Event(**json.loads(self.store.get(key))) for key in self.store.list(f"{self._prefix}/events/")]

    def champion_version(self) -> str | None:
        """The current champion's version, or ``None`` before the first promotion."""
        events = self.history()
        return events[-1].version if events else None

    def champion(self) -> ModelRecord | None:
        """The current champion's record, or ``None`` before the first promotion."""
        version = self.champion_version()
        return self.get(version) if version else None

    def require_champion(self) -> ModelRecord:
        """The current champion; ``NoChampionError`` saying how to get one if the branch has none yet."""
        champion = self.champion()
        if champion is None:
            raise NoChampionError(
                f"branch '{self.branch}' has no champion yet: train one with `python flows/train.py run` (when no "
                "model beats the naive baseline, naive itself becomes the branch's baseline champion)"
            )
        return champion

    def bento(self, version: str) -> dict[str, Any] | None:
        """The Bento recorded for ``version``, if one was built."""
        try:
            return json.loads(self.store.get(f"{self._prefix}/bentos/{version}.json"))
        except KeyError:
            return None

    # -- internals -----------------------------------------------------------------------------------------

    def _model_key(self, version: str) -> str:
        return f"{self._prefix}/models/{version}.json"

    def _append(self, action: Action, version: str, reason: str, expected_champion: str | None) -> Event:
        events = self.history()
        current = events[-1].version if events else None
        if current != expected_champion:
            raise ChampionChangedError(
                f"champion of branch '{self.branch}' is {current}, not the expected {expected_champion}; "
                "it changed since the comparison was made"
            )
        event = Event(len(events) + 1, action, version, current, reason, _now())
        try:
            self.store.put(f"{self._prefix}/events/{event.seq:08d}.json", _dump(asdict(event)), exclusive=True)
        except ObjectExistsError as exc:
            raise ChampionChangedError(
                f"another {action} on branch '{self.branch}' landed first; re-run the gate against the new champion"
            ) from exc
        return event


def _dump(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, indent=2, sort_keys=True, default=str).encode()


def main(argv: list[str] | None = None) -> int:
    """``stockcast-registry``: show the champion and history of a branch, or roll back with one command."""
    import argparse

    parser = argparse.ArgumentParser(prog="stockcast-registry", description=main.__doc__)
    parser.add_argument("--branch", default=None, help="@project branch (default: your user branch, user.<name>)")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("show", help="the champion's lineage and metrics, as JSON")
    commands.add_parser("history", help="every promotion and rollback, oldest first")
    rollback = commands.add_parser("rollback", help="restore the champion the current one replaced")
    rollback.add_argument("--reason", required=True, help="why; recorded in the history")
    args = parser.parse_args(argv)

    registry = Registry(args.branch or user_branch())
    try:
        if args.command == "show":
            champion = registry.champion()
            print(
                json.dumps(asdict(champion), indent=2, default=str) if champion else f"no champion on {registry.branch}"
            )
        elif args.command == "history":
            for e in registry.history():
                print(f"{e.seq:>4} {e.at} {e.action:<8} {e.version} (was {e.previous}): {e.reason}")
        else:
            event = registry.rollback(reason=args.reason)
            print(f"rolled back branch {registry.branch}: champion is now {event.version} (was {event.previous})")
    except RegistryError as exc:
        print(f"stockcast-registry: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
