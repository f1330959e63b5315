"""Where a Bento runs: the ``DeployTarget`` interface and its implementations, one of which the deploy configuration
chooses (``stockcast.deploy.rollout.build_target``).

- ``LocalServe``: ``bentoml serve`` in a subprocess on this machine, on a port of its own (smoke tests, demos);
- ``LocalFleet`` (``stockcast.deploy.fleet``): replicas of ``LocalServe`` behind nginx, replaced by a strategy;
- ``KubernetesManifest``: the Bento as an OCI image (``bentoml containerize`` + ``docker push``), a Deployment and a
  Service applied with ``kubectl apply`` and awaited with ``kubectl rollout status``;
- ``BentoCloud``: the Bento pushed to BentoCloud and a deployment created or updated with BentoML's deployment API.

Every target's ``deploy`` returns an endpoint once it answers ``GET /readyz`` (``wait_ready``, the one readiness wait).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

import bentoml
import httpx
import yaml
from bentoml.exceptions import BentoMLException, NotFound

from stockcast.core.network import free_port
from stockcast.deploy.config import (
    BentoCloudSettings,
    KubernetesSettings,
    RolloutSettings,
    Strategy,
)
from stockcast.deploy.manifests import Release, image_of, rollout_phases
from stockcast.serve.bundle import BENTO_MODEL_NAME, MODEL_TAG_ENV
from stockcast.serve.feed import DATA_STORE_ENV, FeedSettings
from stockcast.serve.prediction_log import PREDICTION_LOG_ENV

ENDPOINT_ENV = "STOCKCAST_ENDPOINT"
"""The URL a Kubernetes deployment answers at (its Ingress or load balancer), which the smoke test calls."""
READY_POLL_S = 0.2


class DeployError(RuntimeError):
    """A deployment action failed; the message says which and why."""


def is_ready(endpoint: str, *, timeout: float = 5.0) -> bool:
    """``GET /readyz`` at ``endpoint`` answers 200: the service has loaded its model and takes requests."""
    try:
        return httpx.get(f"{endpoint}/readyz", timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


def served_model_tag(bento_tag: str) -> str:
    """The tag of the one stockcast model a Bento packages: what its service must be told to load
    (``STOCKCAST_MODEL_TAG``), so that it serves that model even when the local store holds newer ones."""
    bento = bentoml.bentos.get(bento_tag)
    models = [str(info.tag) for info in bento.info.all_models if info.tag.name == BENTO_MODEL_NAME]
    if len(models) != 1:
        raise DeployError(f"Bento {bento.tag} should package one {BENTO_MODEL_NAME} model, found {models}")
    return models[0]


def bentoml_serve_command(bento_tag: str, *, host: str, port: int) -> list[str]:
    """The command that serves ``bento_tag`` on ``host:port`` with this environment's BentoML."""
    return [sys.executable, "-m", "bentoml", "serve", bento_tag, "--host", host, "--port", str(port)]


def wait_ready(endpoint: str, timeout: float, *, gave_up: Callable[[], str | None] = lambda: None) -> None:
    """Wait until ``endpoint`` is ready; ``DeployError`` after ``timeout`` seconds, or as soon as ``gave_up`` returns
    a reason to stop waiting (the server process exited, say)."""
    deadline = time.monotonic() + timeout
    while not is_ready(endpoint):
        reason = gave_up()
        if reason is None and time.monotonic() > deadline:
            reason = f"{endpoint}/readyz did not answer 200 within {timeout:g} s"
        if reason is not None:
            raise DeployError(reason)
        time.sleep(min(READY_POLL_S, max(deadline - time.monotonic(), 0.0)))


class DeployTarget(ABC):
    """Somewhere a Bento runs: deploy it, ask whether it is healthy, stop it. Usable as a context manager that
    stops the deployment on exit. ``feed`` says where its replicas follow newer data (no store: they serve the rows
    they were built with), which the smoke test needs to know what they should answer."""

    feed: FeedSettings = FeedSettings()

    @abstractmethod
    def deploy(self, bento_tag: str) -> str:
        """Run the Bento; return its endpoint (base URL) once it is ready to answer."""

    def health(self, endpoint: str) -> bool:
        """Whether the deployment at ``endpoint`` is ready to answer requests."""
        return is_ready(endpoint)

    @abstractmethod
    def stop(self) -> None:
        """Stop what ``deploy`` started; doing so twice, or before deploying, does nothing."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()


def own_bentoml_home(folder: Path) -> Path:
    """``folder`` made a BentoML home that shares this process' model and Bento stores and has the rest of its own.

    Every ``bentoml serve`` empties ``<home>/prometheus_multiproc_dir`` when it starts, which wipes the metrics of a
    server already running from the same home: replicas side by side each need a home of their own."""
    shared = Path(os.environ.get("BENTOML_HOME") or Path.home() / "bentoml")
    folder.mkdir(parents=True, exist_ok=True)
    for store in ("bentos", "models"):
        link = folder / store
        if not link.exists():
            (shared / store).mkdir(parents=True, exist_ok=True)
            link.symlink_to(shared / store, target_is_directory=True)
    return folder


class LocalServe(DeployTarget):
    """``bentoml serve <bento>`` in a subprocess on this machine, ready once ``/readyz`` answers 200.

    The server gets ``STOCKCAST_MODEL_TAG`` set to the Bento's own model, so it serves that model even when the
    local model store holds newer ones. Its output goes to ``log_path`` (a temporary file by default). With ``home``,
    it runs in a BentoML home of its own (``own_bentoml_home``): needed by every server beside another one, whose
    metrics it would otherwise wipe. ``environment`` adds variables for the server alone (how a replica is told to
    follow newer data, ``stockcast.serve.feed``).
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        startup_timeout: float = 60.0,
        log_path: str | Path | None = None,
        home: Path | None = None,
        environment: Mapping[str, str] | None = None,
    ) -> None:
        self.environment = dict(environment or {})
        self.host = host
        self.port = port
        self.startup_timeout = startup_timeout
        self.log_path = Path(log_path) if log_path is not None else None
        self.home = home
        self._process: subprocess.Popen[bytes] | None = None
        self.endpoint: str = ""

    def deploy(self, bento_tag: str) -> str:
        """Start the server and wait until it is ready; on failure stop it and raise with its log's tail."""
        if self._process is not None:
            raise DeployError(f"already serving (pid {self._process.pid}); stop() it before deploying again")
        bento = bentoml.bentos.get(bento_tag)
        model_tag = served_model_tag(bento_tag)
        port = self.port or free_port(self.host)
        endpoint = f"http://{self.host}:{port}"
        command = bentoml_serve_command(str(bento.tag), host=self.host, port=port)
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
                env={
                    **os.environ,
                    # The rows it was built with and no prediction log, unless told otherwise.
                    DATA_STORE_ENV: "",
                    PREDICTION_LOG_ENV: "",
                    **self.environment,
                    MODEL_TAG_ENV: model_tag,
                    **self._home_environment(),
                },
                start_new_session=True,
            )
        process = self._process
        try:
            wait_ready(endpoint, self.startup_timeout, gave_up=lambda: _exited(process))
        except DeployError as exc:
            self.stop()
            raise DeployError(f"bentoml serve {bento.tag}: {exc}; log {self.log_path}:\n{self._log_tail()}") from None
        self.endpoint = endpoint
        return endpoint

    def _home_environment(self) -> dict[str, str]:
        return {"BENTOML_HOME": str(own_bentoml_home(self.home))} if self.home is not None else {}

    @property
    def pid(self) -> int | None:
        """The server's process id (the leader of its process group) while it runs."""
        return self._process.pid if self._process is not None else None

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


CommandRunner = Callable[[Sequence[str], str | None], str]
"""Runs an external command with optional standard input and returns its output (``DeployError`` if it fails)."""


def run_command(command: Sequence[str], stdin: str | None = None) -> str:
    """Run ``command`` (kubectl, docker, bentoml); its output, or ``DeployError`` quoting the command and its output."""
    try:
        done = subprocess.run(list(command), input=stdin, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise DeployError(f"cannot run {command[0]}: {exc}") from exc
    if done.returncode != 0:
        raise DeployError(f"`{' '.join(command)}` exited with {done.returncode}:\n{done.stdout}{done.stderr}")
    return done.stdout


class KubernetesManifest(DeployTarget):
    """The Bento's image behind a Deployment and a Service, rolled out with ``kubectl``.

    ``deploy`` builds and pushes the image (unless configured not to), applies the manifest of the strategy (a
    rolling update with no pod unavailable, or a recreate), waits for ``kubectl rollout status`` and then for
    ``endpoint`` to answer ``/readyz``.
    """

    def __init__(
        self,
        settings: KubernetesSettings,
        *,
        endpoint: str,
        strategy: Strategy = "rolling",
        environment: Mapping[str, str] | None = None,
        run: CommandRunner = run_command,
    ) -> None:
        self.settings = settings
        self.strategy = strategy
        self.environment = dict(environment or {})
        self.feed = FeedSettings.from_environment(self.environment)
        self.endpoint = endpoint.rstrip("/")
        self._run = run

    def image(self, bento_tag: str) -> str:
        """The image reference of a Bento: the configured repository, tagged with the Bento's (the model's) version."""
        return image_of(self.settings, bentoml.Tag.from_taglike(bento_tag).version)

    def manifest(self, bento_tag: str) -> str:
        """The objects serving ``bento_tag`` with the configured strategy, as a YAML stream for ``kubectl apply -f -``
        (``stockcast.deploy.manifests``)."""
        version = bentoml.Tag.from_taglike(bento_tag).version
        (phase,) = rollout_phases(
            self.strategy, self.settings, RolloutSettings(), Release(version, self.image(bento_tag), self.environment)
        )
        return yaml.safe_dump_all(phase.objects, sort_keys=False)

    def deploy(self, bento_tag: str) -> str:
        """Roll the Bento out; its endpoint once it answers ``/readyz``, else ``DeployError``."""
        settings, namespace = self.settings, self.settings.namespace
        if settings.build_image:
            image = self.image(bento_tag)
            self._run([sys.executable, "-m", "bentoml", "containerize", bento_tag, "--image-tag", image], None)
            self._run(["docker", "push", image], None)
        self._run(["kubectl", "apply", "--namespace", namespace, "-f", "-"], self.manifest(bento_tag))
        self._run(
            [
                "kubectl",
                "rollout",
                "status",
                f"deployment/{settings.name}",
                "--namespace",
                namespace,
                f"--timeout={settings.rollout_timeout_s}s",
            ],
            None,
        )
        try:
            wait_ready(self.endpoint, settings.ready_timeout_s)
        except DeployError as exc:
            raise DeployError(f"deployment/{settings.name} rolled out, but {exc}") from None
        return self.endpoint

    def stop(self) -> None:
        """Delete the Deployment and the Service."""
        settings = self.settings
        self._run(
            [
                "kubectl",
                "delete",
                f"deployment/{settings.name}",
                f"service/{settings.name}",
                "--namespace",
                settings.namespace,
                "--ignore-not-found",
            ],
            None,
        )


BENTOCLOUD_STRATEGIES = {"recreate": "Recreate", "rolling": "RollingUpdate"}
"""BentoCloud's own deployment strategies for ours (``bentoml.deployment.create(strategy=...)``). Blue-green, canary
and shadow have no BentoCloud strategy of the same meaning; the configuration refuses them for this target."""


class BentoCloud(DeployTarget):
    """A BentoCloud deployment: the Bento is pushed, the deployment created (first time) or updated to it."""

    def __init__(self, settings: BentoCloudSettings, strategy: Strategy = "rolling") -> None:
        self.settings = settings
        self.strategy = BENTOCLOUD_STRATEGIES[strategy]

    def deploy(self, bento_tag: str) -> str:
        """Push the Bento, point the deployment at it and wait until it runs; its endpoint URL."""
        settings = self.settings
        try:
            bentoml.bentos.push(bento_tag)
            try:
                bentoml.deployment.get(settings.deployment, cluster=settings.cluster)
            except NotFound:
                deployment = bentoml.deployment.create(
                    name=settings.deployment,
                    bento=bento_tag,
                    cluster=settings.cluster,
                    instance_type=settings.instance_type,
                    scaling_min=settings.scaling_min,
                    scaling_max=settings.scaling_max,
                    strategy=self.strategy,
                )
            else:
                deployment = bentoml.deployment.update(
                    name=settings.deployment, cluster=settings.cluster, bento=bento_tag, strategy=self.strategy
                )
            if deployment.wait_until_ready(timeout=settings.ready_timeout_s) != 0:
                raise DeployError(f"BentoCloud deployment {settings.deployment} did not become ready with {bento_tag}")
            return deployment.get_endpoint_urls()[0].rstrip("/")
        except BentoMLException as exc:
            raise DeployError(f"BentoCloud deployment {settings.deployment} of {bento_tag} failed: {exc}") from exc

    def stop(self) -> None:
        """Terminate the deployment."""
        try:
            bentoml.deployment.terminate(self.settings.deployment, cluster=self.settings.cluster)
        except NotFound:
            return


def _exited(process: subprocess.Popen[bytes]) -> str | None:
    """Why a server process is no longer worth waiting for: it exited (None while it runs)."""
    return None if process.poll() is None else f"exited with code {process.returncode}"
