"""Roll a branch's champion out to where it serves, smoke-test it there, and roll back when the smoke test fails.

    stockcast-rollout [--branch prod] [--config configs/deploy.toml]

``rollout`` deploys the champion's Bento (imported from its archive in the object store, so any machine can do it)
to a ``DeployTarget`` and smoke-tests the endpoint it serves at. When that fails, the registry is rolled back
(``Registry.rollback``: the champion the failed one replaced is champion again, with the reason in the history) and
the previous champion's Bento is deployed and smoke-tested in its place: production keeps serving a model that
passed, and the run fails loudly.

Where a Bento goes is configuration (``configs/deploy.toml``, validated; errors name the field), chosen by its
``target``; each target is a ``stockcast.deploy.DeployTarget`` whose ``deploy`` replaces what the target serves, so
blue-green or canary targets plug in the same way:

- ``local``: ``bentoml serve`` on this machine (``LocalServe``), for demos and tests;
- ``kubernetes``: the Bento as an OCI image (``bentoml containerize`` + ``docker push``), a Deployment and a Service
  applied with ``kubectl apply`` and awaited with ``kubectl rollout status``;
- ``bentocloud``: the Bento pushed to BentoCloud and a deployment created or updated with BentoML's deployment API.

Environment variables carry only endpoints and secrets: ``STOCKCAST_ENDPOINT`` (the URL a Kubernetes deployment
answers at, for the smoke test), ``KUBECONFIG`` (kubectl's cluster credentials), ``BENTO_CLOUD_API_KEY`` and
``BENTO_CLOUD_API_ENDPOINT`` (BentoML's own BentoCloud login).
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import bentoml
import httpx
import yaml
from bentoml.exceptions import BentoMLException, NotFound
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveFloat,
    PositiveInt,
    StringConstraints,
    ValidationError,
    model_validator,
)
from pydantic_core import PydanticCustomError

from stockcast.client import ServiceRequestError, StockcastClient
from stockcast.config import ConfigError
from stockcast.deploy import REPO_ROOT, DeployError, DeployTarget, LocalServe, import_bento
from stockcast.registry import Registry, RegistryError

DEFAULT_CONFIG = REPO_ROOT / "configs" / "deploy.toml"
ENDPOINT_ENV = "STOCKCAST_ENDPOINT"
"""The URL a Kubernetes deployment answers at (its Ingress or load balancer), which the smoke test calls."""

DnsLabel = Annotated[str, StringConstraints(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63)]
"""A Kubernetes object name (RFC 1123 label), also fine as a BentoCloud deployment name."""


class RolloutError(RuntimeError):
    """A rollout could not leave a smoke-tested model serving; the message says what happened to each version."""


class SmokeTestError(RuntimeError):
    """The deployment answered, but not as the model it should serve; the message says what differed."""


# -- configuration --------------------------------------------------------------------------------------------


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class SmokeSettings(_Section):
    """What the smoke test asks a fresh deployment."""

    tickers: PositiveInt = 3
    """Tickers that must get a prediction from the deployed model."""
    max_requests: PositiveInt = 20
    """Tickers tried at most: a ticker too new to predict is refused by a healthy service, so it may be skipped."""
    timeout_s: PositiveFloat = 10.0
    """Per-request timeout."""


class LocalSettings(_Section):
    """``bentoml serve`` on this machine."""

    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 3000
    startup_timeout_s: PositiveFloat = 60.0


class KubernetesSettings(_Section):
    """A Deployment and a Service in one namespace; the image is ``<image>:<model version>``."""

    image: Annotated[str, StringConstraints(min_length=1)]
    """Image repository the Bento's image is pushed to, such as ``ghcr.io/<owner>/stockcast``."""
    build_image: bool = True
    """Build (``bentoml containerize``) and push the image; false when another step already pushed it."""
    namespace: DnsLabel = "stockcast"
    name: DnsLabel = "stockcast"
    replicas: PositiveInt = 2
    port: Annotated[int, Field(ge=1, le=65535)] = 3000
    cpu: str = "1"
    memory: str = "2Gi"
    rollout_timeout_s: PositiveInt = 600
    ready_timeout_s: PositiveFloat = 120.0
    """How long the endpoint may take to answer ``/readyz`` after the rollout finished (Ingress propagation)."""


class BentoCloudSettings(_Section):
    """A BentoCloud deployment of the Bento."""

    deployment: DnsLabel = "stockcast"
    cluster: str | None = None
    instance_type: str | None = None
    scaling_min: Annotated[int, Field(ge=0)] = 1
    scaling_max: PositiveInt = 2
    ready_timeout_s: PositiveInt = 1800


class DeployConfig(_Section):
    """``configs/deploy.toml``: the target a rollout uses, its settings, and the smoke test."""

    target: Literal["local", "kubernetes", "bentocloud"]
    smoke: SmokeSettings = Field(default_factory=SmokeSettings)
    local: LocalSettings = Field(default_factory=LocalSettings)
    kubernetes: KubernetesSettings | None = None
    bentocloud: BentoCloudSettings = Field(default_factory=BentoCloudSettings)

    @model_validator(mode="after")
    def _kubernetes_has_its_section(self) -> DeployConfig:
        if self.target == "kubernetes" and self.kubernetes is None:
            raise PydanticCustomError("missing_section", "target 'kubernetes' needs a [kubernetes] section with image")
        return self


def parse_deploy_config(text: str, source: str = "deploy configuration") -> DeployConfig:
    """Parse and validate deploy TOML; ``ConfigError`` lists every problem with its field path (``kubernetes.port``)."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{source} is not valid TOML: {error}") from None
    try:
        config = DeployConfig.model_validate(raw)
    except ValidationError as error:
        problems = [
            f"{'.'.join(str(part) for part in item['loc']) or '(top level)'}: {item['msg']}" for item in error.errors()
        ]
        raise ConfigError(f"invalid {source}:\n  " + "\n  ".join(problems)) from None
    return config


def load_deploy_config(path: str | Path = DEFAULT_CONFIG) -> DeployConfig:
    """Read and validate a deploy configuration file."""
    path = Path(path)
    return parse_deploy_config(path.read_text(encoding="utf-8"), source=str(path))


# -- targets --------------------------------------------------------------------------------------------------

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


def _ready(endpoint: str) -> bool:
    """``GET /readyz`` answers 200."""
    try:
        return httpx.get(f"{endpoint}/readyz", timeout=5.0).status_code == 200
    except httpx.HTTPError:
        return False


class LocalTarget(DeployTarget):
    """``LocalServe`` on a fixed address, replacing the Bento it serves on every ``deploy``."""

    def __init__(self, settings: LocalSettings) -> None:
        self._serve = LocalServe(host=settings.host, port=settings.port, startup_timeout=settings.startup_timeout_s)

    def deploy(self, bento_tag: str) -> str:
        """Stop what is served here, then serve ``bento_tag``; its endpoint once ready."""
        self._serve.stop()
        return self._serve.deploy(bento_tag)

    def health(self, endpoint: str) -> bool:
        """``GET /readyz`` answers 200."""
        return self._serve.health(endpoint)

    def stop(self) -> None:
        """Stop the server."""
        self._serve.stop()


class KubernetesManifest(DeployTarget):
    """The Bento's image behind a Deployment and a Service, rolled out with ``kubectl``.

    ``deploy`` builds and pushes the image (unless configured not to), applies the manifest (a rolling update of the
    Deployment when it exists), waits for ``kubectl rollout status`` and then for ``endpoint`` to answer ``/readyz``.
    """

    def __init__(self, settings: KubernetesSettings, *, endpoint: str, run: CommandRunner = run_command) -> None:
        self.settings = settings
        self.endpoint = endpoint.rstrip("/")
        self._run = run

    def image(self, bento_tag: str) -> str:
        """The image reference of a Bento: the configured repository, tagged with the Bento's (the model's) version."""
        return f"{self.settings.image}:{bentoml.Tag.from_taglike(bento_tag).version}"

    def manifest(self, bento_tag: str) -> str:
        """The Deployment and Service serving ``bento_tag``, as a YAML stream for ``kubectl apply -f -``."""
        settings = self.settings
        version = bentoml.Tag.from_taglike(bento_tag).version
        selector = {"app.kubernetes.io/name": settings.name}
        labels = {**selector, "app.kubernetes.io/part-of": "stockcast", "stockcast/model-version": version}
        probe = {"httpGet": {"path": "/readyz", "port": "http"}, "periodSeconds": 5}
        container = {
            "name": "bento",
            "image": self.image(bento_tag),
            "ports": [{"name": "http", "containerPort": 3000}],
            "readinessProbe": probe,
            "livenessProbe": {"httpGet": {"path": "/livez", "port": "http"}, "periodSeconds": 10},
            "resources": {"requests": {"cpu": settings.cpu, "memory": settings.memory}},
        }
        deployment = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": settings.name, "namespace": settings.namespace, "labels": labels},
            "spec": {
                "replicas": settings.replicas,
                "selector": {"matchLabels": selector},
                # Never fewer ready pods than asked for: a new version that never gets ready leaves the old serving.
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
                "template": {"metadata": {"labels": labels}, "spec": {"containers": [container]}},
            },
        }
        service = {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": settings.name, "namespace": settings.namespace, "labels": labels},
            "spec": {"selector": selector, "ports": [{"name": "http", "port": settings.port, "targetPort": "http"}]},
        }
        return yaml.safe_dump_all([deployment, service], sort_keys=False)

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
        deadline = time.monotonic() + settings.ready_timeout_s
        while not self.health(self.endpoint):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise DeployError(
                    f"deployment/{settings.name} rolled out, but {self.endpoint}/readyz did not answer 200 "
                    f"within {settings.ready_timeout_s:g} s"
                )
            time.sleep(min(2.0, remaining))
        return self.endpoint

    def health(self, endpoint: str) -> bool:
        """``GET /readyz`` answers 200."""
        return _ready(endpoint)

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


class BentoCloud(DeployTarget):
    """A BentoCloud deployment: the Bento is pushed, the deployment created (first time) or updated to it."""

    def __init__(self, settings: BentoCloudSettings) -> None:
        self.settings = settings

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
                )
            else:
                deployment = bentoml.deployment.update(
                    name=settings.deployment, cluster=settings.cluster, bento=bento_tag
                )
            if deployment.wait_until_ready(timeout=settings.ready_timeout_s) != 0:
                raise DeployError(f"BentoCloud deployment {settings.deployment} did not become ready with {bento_tag}")
            return deployment.get_endpoint_urls()[0].rstrip("/")
        except BentoMLException as exc:
            raise DeployError(f"BentoCloud deployment {settings.deployment} of {bento_tag} failed: {exc}") from exc

    def health(self, endpoint: str) -> bool:
        """``GET /readyz`` answers 200."""
        return _ready(endpoint)

    def stop(self) -> None:
        """Terminate the deployment."""
        try:
            bentoml.deployment.terminate(self.settings.deployment, cluster=self.settings.cluster)
        except NotFound:
            return


def build_target(config: DeployConfig, environ: Mapping[str, str] = os.environ) -> DeployTarget:
    """The target the configuration names, with its endpoint or secrets from ``environ``."""
    if config.target == "local":
        return LocalTarget(config.local)
    if config.target == "bentocloud":
        return BentoCloud(config.bentocloud)
    endpoint = environ.get(ENDPOINT_ENV, "")
    if not endpoint:
        raise DeployError(f"target 'kubernetes' needs {ENDPOINT_ENV}: the URL the deployment answers at")
    return KubernetesManifest(config.kubernetes, endpoint=endpoint)


# -- the rollout ----------------------------------------------------------------------------------------------


def smoke_check(endpoint: str, model_version: str, settings: SmokeSettings) -> None:
    """The deployment at ``endpoint`` serves ``model_version`` and predicts a finite, positive close from it.

    It must name the model in ``GET /model`` and answer ``POST /predict`` for ``settings.tickers`` of its tickers;
    a ticker the service refuses as too new is skipped (that is a correct answer), up to ``max_requests`` tries.
    Raises ``SmokeTestError`` saying what was wrong; connection failures raise ``httpx.HTTPError``.
    """
    with StockcastClient(endpoint, timeout=settings.timeout_s) as client:
        served = client.model()
        if served.get("model_version") != model_version:
            raise SmokeTestError(f"{endpoint} serves model {served.get('model_version')}, not {model_version}")
        answered, refused = [], []
        for ticker in served.get("tickers", [])[: settings.max_requests]:
            try:
                (row,) = client.predict([ticker])
            except ServiceRequestError as exc:
                refused.append(f"{ticker}: {exc}")
                continue
            close = row.get("predicted_close")
            if row.get("model_version") != model_version or not (
                isinstance(close, int | float) and math.isfinite(close) and close > 0
            ):
                raise SmokeTestError(
                    f"{endpoint} answered {row} for {ticker}, expected a positive close by {model_version}"
                )
            answered.append(ticker)
            if len(answered) == settings.tickers:
                return
    raise SmokeTestError(
        f"{endpoint} predicted {len(answered)} of the {settings.tickers} tickers asked for; refused: {refused[:3]}"
    )


@dataclass(frozen=True)
class RolloutResult:
    """What serves after a rollout, and, when it was rolled back, the version that failed and why."""

    branch: str
    model_version: str
    bento_tag: str
    endpoint: str
    failed_version: str | None = None
    failure: str | None = None

    @property
    def rolled_back(self) -> bool:
        """Whether the champion failed its smoke test and the previous one serves instead."""
        return self.failed_version is not None


def rollout(registry: Registry, target: DeployTarget, smoke: SmokeSettings | None = None) -> RolloutResult:
    """Deploy the champion of ``registry`` to ``target`` and smoke-test it; on failure roll the registry back and
    deploy the previous champion instead.

    Returns what serves afterwards. ``RolloutError`` when no smoke-tested model could be left serving (no champion,
    no Bento recorded for it, or the previous champion failing too).
    """
    smoke = smoke or SmokeSettings()
    champion = registry.champion_version()
    if champion is None:
        raise RolloutError(f"branch {registry.branch} has no champion to roll out")
    try:
        bento_tag = _bento_tag(registry, champion)
        endpoint = target.deploy(bento_tag)
        smoke_check(endpoint, champion, smoke)
        return RolloutResult(registry.branch, champion, bento_tag, endpoint)
    except (DeployError, SmokeTestError, httpx.HTTPError, ServiceRequestError) as exc:
        failure = f"rollout of {champion} failed: {exc}"
    try:
        event = registry.rollback(reason=failure)
    except RegistryError as exc:
        raise RolloutError(f"{failure}\nand it cannot be rolled back: {exc}") from exc
    try:
        previous_tag = _bento_tag(registry, event.version)
        endpoint = target.deploy(previous_tag)
        smoke_check(endpoint, event.version, smoke)
    except (DeployError, SmokeTestError, httpx.HTTPError, ServiceRequestError) as exc:
        raise RolloutError(
            f"{failure}\nThe registry was rolled back to {event.version}, whose redeployment failed too: {exc}"
        ) from exc
    return RolloutResult(registry.branch, event.version, previous_tag, endpoint, champion, failure)


def _bento_tag(registry: Registry, version: str) -> str:
    """The Bento recorded for ``version``, imported into the local BentoML store from its archive if needed."""
    bento: dict[str, Any] | None = registry.bento(version)
    if bento is None:
        raise DeployError(
            f"model {version} on branch {registry.branch} has no Bento recorded: only a TrainFlow "
            "deploy step that promoted it builds one"
        )
    return import_bento(bento["archive"], registry.store)


def main(argv: list[str] | None = None) -> int:
    """``stockcast-rollout``: deploy a branch's champion to the configured target, smoke-test it, roll back on failure.

    Exit status 0 when the champion serves, 1 when it failed and the previous champion serves instead, 2 when no
    smoke-tested model could be left serving.
    """
    import argparse

    from stockcast.runs import user_branch

    parser = argparse.ArgumentParser(prog="stockcast-rollout", description=main.__doc__)
    parser.add_argument("--branch", default=None, help="@project branch (default: your user branch; CD uses prod)")
    parser.add_argument("--config", default=str(DEFAULT_CONFIG), help="deploy configuration TOML (target, smoke test)")
    args = parser.parse_args(argv)

    try:
        config = load_deploy_config(args.config)
        target = build_target(config)
        result = rollout(Registry(args.branch or user_branch()), target, config.smoke)
    except (ConfigError, DeployError, RolloutError, RegistryError) as exc:
        print(f"stockcast-rollout: {exc}", file=sys.stderr)
        return 2
    serving = f"{result.model_version} ({result.bento_tag}) serves at {result.endpoint}"
    if result.rolled_back:
        print(f"stockcast-rollout: {result.failure}", file=sys.stderr)
        print(f"Rolled back branch {result.branch}: {serving}")
    else:
        print(f"Branch {result.branch}: champion {serving}")
    if config.target == "local":
        print("Serving on this machine until interrupted (Ctrl-C).", flush=True)
        try:
            while target.health(result.endpoint):
                time.sleep(1.0)
        except KeyboardInterrupt:
            pass
        finally:
            target.stop()
    return 1 if result.rolled_back else 0


if __name__ == "__main__":
    raise SystemExit(main())
