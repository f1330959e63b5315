"""Deployment actions, one function per action, for TrainFlow's deploy step; and the targets a Bento runs on.

1. ``save_bento_model``: the champion's ``ServingBundle`` into the BentoML model store (``BENTOML_HOME``), with its
   lineage as labels and its metrics as metadata, under a version derived from the registry version;
2. ``build_bento``: a Bento of ``bentos/`` (the service with the ``stockcast`` and ``features`` packages) serving
   that model, built offline: requirements are pinned to this environment, never locked against the index;
3. ``export_bento`` / ``import_bento``: the Bento archive to and from the object store beside the Metaflow datastore
   (local folder or S3), so any deployment can be rebuilt or rolled back from the store alone;
4. ``package_champion``: the three above for a promoted model, with a ``smoke_test`` of the built Bento on loopback
   before its archive is exported: TrainFlow's deploy step is this one call;
5. ``DeployTarget``: where a Bento runs. ``LocalServe`` runs ``bentoml serve`` on this machine; blue-green, canary
   or Kubernetes targets implement the same three methods.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import chdir, contextmanager
from hashlib import sha256
from importlib.metadata import version as installed_version
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import bentoml
import httpx
import numpy as np
import pandas as pd
import yaml
from bentoml.exceptions import NotFound

from stockcast.client import StockcastClient
from stockcast.models import Estimator
from stockcast.registry import ModelRecord, Registry, RegistryError
from stockcast.serving import (
    BENTO_MODEL_NAME,
    BUNDLE_FILE,
    MODEL_TAG_ENV,
    ServingBundle,
    build_bundle,
    predict_tickers,
    write_bundle,
)
from stockcast.storage import ObjectStore

REPO_ROOT = Path(__file__).resolve().parent.parent
"""The Bento's build context: ``bentos/`` and the packages the service imports."""
BENTOFILE = REPO_ROOT / "bentos" / "bentofile.yaml"
BENTO_NAME = "stockcast"
"""Every Bento is ``stockcast:<model version>``: one Bento per champion."""
SMOKE_TICKERS = 3
"""Tickers a smoke test asks the served Bento for."""
STORE_PREFIX = "bentos"
"""Exported Bentos live at ``bentos/<name>/<version>.bento`` in the object store."""

LINEAGE_LABELS = (
    "version",
    "branch",
    "run_pathspec",
    "model_task",
    "data_version",
    "snapshot_run",
    "feature_set",
    "feature_fingerprint",
    "code_version",
)
"""Registry record fields copied into the BentoML model's (and the Bento's) labels."""

_TAG_VERSION = re.compile(r"^[a-z0-9]([-._a-z0-9]*[a-z0-9])?$")


class DeployError(RuntimeError):
    """A deployment action failed; the message says which and why."""


def model_tag_for(model_version: str) -> str:
    """The BentoML model tag of a registry version: ``stockcast-model:<version>``, the same for the same version.

    Registry versions that BentoML would refuse as a tag version (upper case, ``/``, too long: some schedulers'
    run ids) are lower-cased, cleaned and suffixed with a hash of the original, so distinct versions stay distinct.
    """
    if len(model_version) <= 63 and _TAG_VERSION.match(model_version):
        return f"{BENTO_MODEL_NAME}:{model_version}"
    cleaned = re.sub(r"[^-._a-z0-9]+", "-", model_version.lower()).strip("-._")[:54].rstrip("-._")
    digest = sha256(model_version.encode()).hexdigest()[:8]
    return f"{BENTO_MODEL_NAME}:{cleaned}-{digest}" if cleaned else f"{BENTO_MODEL_NAME}:{digest}"


def save_bento_model(bundle: ServingBundle) -> str:
    """Save the bundle as a BentoML model in the store under ``BENTOML_HOME``; return its tag.

    Saving the same registry version again returns the stored model's tag without writing anything, so a retried
    deploy step deploys exactly the same model. A stored model of that tag from another training run is an error.
    """
    tag = model_tag_for(bundle.model_version)
    labels = _lineage_labels(bundle.record)
    try:
        existing = bentoml.models.get(tag)
    except NotFound:
        existing = None
    if existing is not None:
        if existing.info.labels.get("run_pathspec") != labels["run_pathspec"]:
            raise DeployError(
                f"BentoML model {tag} already exists from run {existing.info.labels.get('run_pathspec')}, "
                f"not from {labels['run_pathspec']}; delete it or use another BENTOML_HOME"
            )
        return str(existing.tag)
    metadata = {"metrics": _without_none(bundle.record["metrics"]), "gate": _without_none(bundle.record["gate"])}
    with bentoml.models.create(tag, labels=labels, metadata=metadata) as model:
        write_bundle(bundle, model.path_of(BUNDLE_FILE))
    return str(model.tag)


def build_bento(model_tag: str) -> str:
    """Build a Bento of ``bentos/`` that serves the BentoML model ``model_tag``; return the Bento's tag.

    The Bento's version is the model's, so building for the same champion twice gives the same Bento: an existing
    one is returned as it is (a rollback redeploys exactly what was deployed before). The options come from
    ``bentos/bentofile.yaml``, with its Python packages pinned to the versions installed here and locking switched
    off (no index access). The model's lineage labels are copied onto the Bento.
    """
    model = bentoml.models.get(model_tag)
    options: dict[str, Any] = yaml.safe_load(BENTOFILE.read_text())
    existing = _existing_bento(model.tag)
    if existing is not None:
        return existing
    python = dict(options.get("python") or {})
    python["packages"] = [f"{name}=={installed_version(name)}" for name in python.get("packages", [])]
    python["lock_packages"] = False
    options.update(
        python=python,
        labels={**options.get("labels", {}), **model.info.labels, "model_tag": str(model.tag)},
        models=[str(model.tag)],
    )
    service_module = options["service"].partition(":")[0]
    # Built as `bentoml build` runs, from the root: BentoML reads files named in the options relative to it.
    with chdir(REPO_ROOT), _environment(MODEL_TAG_ENV, str(model.tag)):
        # The service reads its model tag when its module is imported, and BentoML reuses a module imported
        # before: drop it so that this build's tag is the one the service refers to.
        sys.modules.pop(service_module, None)
        try:
            bento = bentoml.bentos.build(
                **options, name=BENTO_NAME, version=model.tag.version, build_ctx=str(REPO_ROOT)
            )
        finally:
            # ... and drop it again, so that no later load in this process gets this build's model by accident.
            sys.modules.pop(service_module, None)
    packaged = sorted(str(info.tag) for info in bento.info.all_models)
    if packaged != [str(model.tag)]:
        raise DeployError(f"Bento {bento.tag} packages models {packaged}, expected only {model.tag}")
    return str(bento.tag)


def package_champion(
    record: ModelRecord,
    prices: pd.DataFrame,
    financials: pd.DataFrame | None,
    store: ObjectStore,
    *,
    estimator: Estimator | None = None,
) -> dict[str, str]:
    """Package a promoted model for serving and return what the registry records of it.

    The model's ``ServingBundle`` (from the snapshot it was trained on) goes into the BentoML model store, a Bento
    is built around it and smoke-tested on loopback, and only then is its archive exported to ``store``: an archive
    in the store is a Bento that served. Returns ``model_tag``, ``bento_tag`` and ``archive`` (the archive's URL).
    """
    bundle = build_bundle(record, prices, financials, estimator=estimator)
    model_tag = save_bento_model(bundle)
    bento_tag = build_bento(model_tag)
    smoke_test(bento_tag, bundle)
    return {"model_tag": model_tag, "bento_tag": bento_tag, "archive": export_bento(bento_tag, store)}


def smoke_test(bento_tag: str, bundle: ServingBundle, target: DeployTarget | None = None) -> None:
    """Deploy the Bento to ``target`` (``LocalServe`` on loopback by default), check that it serves ``bundle``'s
    model and answers ``/predict`` exactly as the library does for a few tickers, then stop it.

    Raises ``DeployError`` saying what differed; a Bento that fails here must not be rolled out.
    """
    warm = bundle.latest_rows.loc[bundle.latest_rows["is_warm"].eq(True), "ticker"].head(SMOKE_TICKERS).tolist()
    if not warm:
        raise DeployError(f"model {bundle.model_version} has no ticker with enough history to smoke-test a prediction")
    expected = predict_tickers(bundle, warm)
    with target or LocalServe() as serving:
        endpoint = serving.deploy(bento_tag)
        with StockcastClient(endpoint) as client:
            served_version = client.model()["model_version"]
            if served_version != bundle.model_version:
                raise DeployError(
                    f"{bento_tag} at {endpoint} serves model {served_version}, not {bundle.model_version}"
                )
            answer = pd.DataFrame(client.predict(warm))
    if answer["ticker"].tolist() != warm or not np.array_equal(
        answer["predicted_close"].to_numpy(dtype=float), expected["predicted_close"].to_numpy()
    ):
        raise DeployError(
            f"{bento_tag} answered {answer[['ticker', 'predicted_close']].to_dict('records')}, the library "
            f"{expected[['ticker', 'predicted_close']].to_dict('records')}"
        )


def export_bento(bento_tag: str, store: ObjectStore) -> str:
    """Export the Bento (with its model) as an archive into ``store``; return the archive's URL."""
    bento = bentoml.bentos.get(bento_tag)
    key = f"{STORE_PREFIX}/{bento.tag.name}/{bento.tag.version}.bento"
    with tempfile.TemporaryDirectory(prefix="stockcast-export-") as folder:
        archive = bentoml.bentos.export_bento(bento.tag, str(Path(folder) / "bento.bento"))
        store.put(key, Path(archive).read_bytes())
    return store.url(key)


def import_bento(url: str, store: ObjectStore) -> str:
    """Import a Bento archive that ``export_bento`` put in ``store``; return its tag (already there: unchanged)."""
    prefix = store.url("")
    if not url.startswith(prefix):
        raise ValueError(f"{url} is not in the object store at {store.root}")
    key = url[len(prefix) :]
    name, _, file_name = key.removeprefix(f"{STORE_PREFIX}/").partition("/")
    tag = f"{name}:{file_name.removesuffix('.bento')}"
    try:
        return str(bentoml.bentos.get(tag).tag)
    except NotFound:
        pass
    with tempfile.TemporaryDirectory(prefix="stockcast-import-") as folder:
        archive = Path(folder) / "bento.bento"
        archive.write_bytes(store.get(key))
        return str(bentoml.bentos.import_bento(str(archive)).tag)


class DeployTarget(ABC):
    """Somewhere a Bento runs: deploy it, ask whether it is healthy, stop it. Usable as a context manager that
    stops the deployment on exit."""

    @abstractmethod
    def deploy(self, bento_tag: str) -> str:
        """Run the Bento; return its endpoint (base URL) once it is ready to answer."""

    @abstractmethod
    def health(self, endpoint: str) -> bool:
        """Whether the deployment at ``endpoint`` is ready to answer requests."""

    @abstractmethod
    def stop(self) -> None:
        """Stop what ``deploy`` started; doing so twice, or before deploying, does nothing."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()


class LocalServe(DeployTarget):
    """``bentoml serve <bento>`` in a subprocess on this machine, ready once ``/readyz`` answers 200.

    The server gets ``STOCKCAST_MODEL_TAG`` set to the Bento's own model, so it serves that model even when the
    local model store holds newer ones. Its output goes to ``log_path`` (a temporary file by default).
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        startup_timeout: float = 60.0,
        log_path: str | Path | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.startup_timeout = startup_timeout
        self.log_path = Path(log_path) if log_path is not None else None
        self._process: subprocess.Popen[bytes] | None = None

    def deploy(self, bento_tag: str) -> str:
        """Start the server and wait until it is ready; on failure stop it and raise with its log's tail."""
        if self._process is not None:
            raise DeployError(f"already serving (pid {self._process.pid}); stop() it before deploying again")
        bento = bentoml.bentos.get(bento_tag)
        models = [str(info.tag) for info in bento.info.all_models if info.tag.name == BENTO_MODEL_NAME]
        if len(models) != 1:
            raise DeployError(f"Bento {bento.tag} should package one {BENTO_MODEL_NAME} model, found {models}")
        port = self.port or _free_port(self.host)
        endpoint = f"http://{self.host}:{port}"
        command = [sys.executable, "-m", "bentoml", "serve", str(bento.tag), "--host", self.host, "--port", str(port)]
        if self.log_path is None:
            handle, name = tempfile.mkstemp(prefix="stockcast-serve-", suffix=".log")
            os.close(handle)
            self.log_path = Path(name)
        with self.log_path.open("wb") as log:
            # A session of its own, so stop() can end the server and the worker processes it spawns together.
            self._process = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, MODEL_TAG_ENV: models[0]},
                start_new_session=True,
            )
        deadline = time.monotonic() + self.startup_timeout
        while not self.health(endpoint):
            exited = self._process.poll() is not None
            if exited or time.monotonic() > deadline:
                reason = f"exited with code {self._process.returncode}" if exited else "did not become ready"
                self.stop()
                raise DeployError(
                    f"bentoml serve {bento.tag} {reason} within {self.startup_timeout:.0f} s; "
                    f"log {self.log_path}:\n{self._log_tail()}"
                )
            time.sleep(0.2)
        return endpoint

    def health(self, endpoint: str) -> bool:
        """``GET /readyz`` answers 200."""
        try:
            return httpx.get(f"{endpoint}/readyz", timeout=2.0).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        """Terminate the server's process group, killing it if it has not exited within 10 s."""
        process, self._process = self._process, None
        if process is None:
            return
        try:
            # The whole group: worker processes may outlive a server process that has already exited.
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            process.wait()
            return
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)

    def _log_tail(self, lines: int = 40) -> str:
        if self.log_path is None:
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def _existing_bento(model_tag: bentoml.Tag) -> str | None:
    """The Bento already built for ``model_tag``, if any. One of that tag serving another model is an error, not
    something to overwrite."""
    try:
        bento = bentoml.bentos.get(f"{BENTO_NAME}:{model_tag.version}")
    except NotFound:
        return None
    if bento.info.labels.get("model_tag") != str(model_tag):
        raise DeployError(f"Bento {bento.tag} serves {bento.info.labels.get('model_tag')}, not {model_tag}")
    return str(bento.tag)


def _free_port(host: str) -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


@contextmanager
def _environment(name: str, value: str) -> Iterator[None]:
    """Set one environment variable while inside, restoring its previous state after."""
    previous = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = previous


def _lineage_labels(record: dict[str, Any]) -> dict[str, str]:
    """The record's lineage as BentoML labels (strings), ``version`` renamed ``model_version``; unknowns left out."""
    labels = {key: str(record[key]) for key in LINEAGE_LABELS if record.get(key) is not None}
    labels["model_version"] = labels.pop("version")
    labels["candidate_id"] = str(record["candidate"]["candidate_id"])
    return labels


def _without_none(value: Any) -> Any:
    """``value`` without ``None`` entries, which BentoML metadata cannot hold (the registry writes NaN as None)."""
    if isinstance(value, dict):
        return {key: _without_none(item) for key, item in value.items() if item is not None}
    if isinstance(value, list | tuple):
        return [_without_none(item) for item in value if item is not None]
    return value


def serve_command(registry: Registry, version: str | None, *, host: str, port: int) -> tuple[list[str], str]:
    """The ``bentoml serve`` command for the Bento of ``version`` (default: the champion) and the model tag it
    serves; the Bento is imported from the registry's archive when this machine's BentoML store lacks it.
    ``DeployError`` says what is missing."""
    version = registry.get(version).version if version else registry.require_champion().version
    bento = registry.bento(version)
    if bento is None:
        raise DeployError(f"model {version} on branch {registry.branch} has no Bento: only promoted models get one")
    try:
        bento_tag = import_bento(bento["archive"], registry.store)
    except (KeyError, ValueError) as exc:
        raise DeployError(f"the Bento archive of {version} cannot be read from {bento['archive']}: {exc}") from exc
    return [sys.executable, "-m", "bentoml", "serve", bento_tag, "--host", host, "--port", str(port)], bento[
        "model_tag"
    ]


def main(argv: list[str] | None = None) -> int:
    """``python -m stockcast.deploy serve``: serve a branch's champion (or another version) on this machine."""
    import argparse

    from stockcast.runs import user_branch

    parser = argparse.ArgumentParser(prog="python -m stockcast.deploy", description=main.__doc__)
    parser.add_argument("--branch", default=None, help="@project branch (default: your user branch, user.<name>)")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run `bentoml serve` on a model's Bento until interrupted")
    serve.add_argument("--version", default=None, help="registry version to serve (default: the champion)")
    serve.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: loopback only)")
    serve.add_argument("--port", type=int, default=3000)
    args = parser.parse_args(argv)

    registry = Registry(args.branch or user_branch())
    try:
        command, model_tag = serve_command(registry, args.version, host=args.host, port=args.port)
    except (DeployError, RegistryError) as exc:
        print(f"stockcast.deploy: {exc}", file=sys.stderr)
        return 1
    bento_tag = command[command.index("serve") + 1]
    print(f"Serving {bento_tag} ({model_tag}) at http://{args.host}:{args.port}", flush=True)
    os.execve(sys.executable, command, {**os.environ, MODEL_TAG_ENV: model_tag})


if __name__ == "__main__":
    raise SystemExit(main())
