"""The deployment targets: chosen by configuration, and the Kubernetes and BentoCloud ones driven as they would be.

Only what cannot run here is replaced: the kubectl/docker commands (a recording runner) and BentoCloud's API (its
functions in ``bentoml``). The endpoint a rolled-out deployment answers at is a real HTTP server on 127.0.0.1. The
rollout itself, with its rollback, runs for real with ``bentoml serve`` in ``tests/service/test_rollout_local.py``.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import import_module
from pathlib import Path

import pytest
import yaml
from bentoml.exceptions import BentoMLException, NotFound

from stockcast.deploy.config import BentoCloudSettings, parse_deploy_config
from stockcast.deploy.fleet import LocalFleet
from stockcast.deploy.rollout import build_target
from stockcast.deploy.targets import (
    ENDPOINT_ENV,
    BentoCloud,
    DeployError,
    KubernetesManifest,
    run_command,
)

KUBERNETES = 'target = "kubernetes"\n[kubernetes]\nimage = "ghcr.io/acme/stockcast"\nnamespace = "prod"\nreplicas = 3\n'


class _Readyz(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/readyz" else 404)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        return


@pytest.fixture
def endpoint() -> Iterator[str]:
    """A server on 127.0.0.1 answering ``/readyz`` with 200, where a cluster's Ingress would be."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Readyz)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


class RecordingRunner:
    """Stands in for kubectl and docker: records each command and its standard input, answers with empty output."""

    def __init__(self, fail_on: str | None = None) -> None:
        self.calls: list[tuple[list[str], str | None]] = []
        self.fail_on = fail_on

    def __call__(self, command: Sequence[str], stdin: str | None = None) -> str:
        self.calls.append((list(command), stdin))
        if self.fail_on and self.fail_on in command:
            raise DeployError(f"`{' '.join(command)}` exited with 1")
        return ""


# -- choosing the target -------------------------------------------------------------------------------------


def test_the_target_is_chosen_by_configuration_and_endpoints_come_from_the_environment(endpoint) -> None:
    local = build_target(parse_deploy_config('target = "local"\n[local]\nreplicas = 3'), {})
    assert isinstance(local, LocalFleet) and local.replicas == 3 and local.strategy == "rolling"
    assert isinstance(build_target(parse_deploy_config('target = "bentocloud"'), {}), BentoCloud)
    kubernetes = parse_deploy_config(KUBERNETES)
    with pytest.raises(DeployError, match=f"target 'kubernetes' needs {ENDPOINT_ENV}"):
        build_target(kubernetes, {})
    target = build_target(kubernetes, {ENDPOINT_ENV: endpoint + "/"})
    assert isinstance(target, KubernetesManifest) and target.endpoint == endpoint


# -- Kubernetes -----------------------------------------------------------------------------------------------


def test_kubernetes_manifest_runs_the_version_with_zero_unavailable_pods() -> None:
    settings = parse_deploy_config(KUBERNETES).kubernetes
    target = KubernetesManifest(settings, endpoint="http://unused", run=RecordingRunner())

    deployment, service = yaml.safe_load_all(target.manifest("stockcast:v42"))

    assert deployment["kind"] == "Deployment" and service["kind"] == "Service"
    assert deployment["metadata"] == {
        "name": "stockcast",
        "namespace": "prod",
        "labels": {
            "app.kubernetes.io/name": "stockcast",
            "app.kubernetes.io/part-of": "stockcast",
            "stockcast/model-version": "v42",
        },
    }
    spec = deployment["spec"]
    assert spec["replicas"] == 3
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    (container,) = spec["template"]["spec"]["containers"]
    assert container["image"] == "ghcr.io/acme/stockcast:v42"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert spec["selector"]["matchLabels"] == service["spec"]["selector"] == {"app.kubernetes.io/name": "stockcast"}
    assert service["spec"]["ports"] == [{"name": "http", "port": 3000, "targetPort": "http"}]


def test_kubernetes_deploy_builds_pushes_applies_and_waits_for_the_endpoint(endpoint) -> None:
    runner = RecordingRunner()
    target = KubernetesManifest(parse_deploy_config(KUBERNETES).kubernetes, endpoint=endpoint, run=runner)

    assert target.deploy("stockcast:v42") == endpoint

    commands = [command for command, _ in runner.calls]
    assert commands == [
        [sys.executable, "-m", "bentoml", "containerize", "stockcast:v42", "--image-tag", "ghcr.io/acme/stockcast:v42"],
        ["docker", "push", "ghcr.io/acme/stockcast:v42"],
        ["kubectl", "apply", "--namespace", "prod", "-f", "-"],
        ["kubectl", "rollout", "status", "deployment/stockcast", "--namespace", "prod", "--timeout=600s"],
    ]
    assert runner.calls[2][1] == target.manifest("stockcast:v42")  # the manifest goes to kubectl on stdin

    target.stop()
    assert runner.calls[-1][0] == [
        "kubectl",
        "delete",
        "deployment/stockcast",
        "service/stockcast",
        "--namespace",
        "prod",
        "--ignore-not-found",
    ]


def test_kubernetes_deploy_without_image_build_only_applies(endpoint) -> None:
    runner = RecordingRunner()
    settings = parse_deploy_config(KUBERNETES + "build_image = false\n").kubernetes
    KubernetesManifest(settings, endpoint=endpoint, run=runner).deploy("stockcast:v42")
    assert [command[:2] for command, _ in runner.calls] == [["kubectl", "apply"], ["kubectl", "rollout"]]


def test_a_failed_kubectl_rollout_or_a_silent_endpoint_is_a_deploy_error(endpoint) -> None:
    settings = parse_deploy_config(KUBERNETES + "ready_timeout_s = 0.5\n").kubernetes
    with pytest.raises(DeployError, match="exited with 1"):
        KubernetesManifest(settings, endpoint=endpoint, run=RecordingRunner(fail_on="rollout")).deploy("stockcast:v1")

    _Readyz.status = 503
    try:
        with pytest.raises(DeployError, match=r"rolled out, but .*/readyz did not answer 200 within 0\.5 s"):
            KubernetesManifest(settings, endpoint=endpoint, run=RecordingRunner()).deploy("stockcast:v1")
    finally:
        _Readyz.status = 200


def test_run_command_quotes_the_failing_command_and_its_output(tmp_path: Path) -> None:
    assert run_command([sys.executable, "-c", "import sys; print(sys.stdin.read())"], "manifest") == "manifest\n"
    with pytest.raises(DeployError, match=r"exited with 3:\nno cluster"):
        run_command([sys.executable, "-c", "import sys; print('no cluster'); sys.exit(3)"])
    with pytest.raises(DeployError, match="cannot run"):
        run_command([str(tmp_path / "kubectl")])


# -- BentoCloud -----------------------------------------------------------------------------------------------


class FakeDeployment:
    def __init__(self, ready: int = 0) -> None:
        self.ready = ready

    def wait_until_ready(self, timeout: int) -> int:
        return self.ready

    def get_endpoint_urls(self) -> list[str]:
        return ["https://stockcast.example.bentoml.ai/"]


@pytest.fixture
def cloud(monkeypatch: pytest.MonkeyPatch) -> dict[str, list]:
    """BentoCloud's API replaced by recorders; ``existing`` lists the deployments the fake cloud knows."""
    calls: dict[str, list] = {"push": [], "create": [], "update": [], "terminate": [], "existing": []}

    def get(name: str, cluster: str | None = None) -> FakeDeployment:
        if name not in calls["existing"]:
            raise NotFound(f"deployment {name} not found")
        return FakeDeployment()

    # The modules themselves: ``bentoml.bentos`` and ``bentoml.deployment`` start as lazy proxies of them.
    bentos, deployment = import_module("bentoml.bentos"), import_module("bentoml.deployment")
    monkeypatch.setattr(bentos, "push", calls["push"].append)
    monkeypatch.setattr(deployment, "get", get)
    monkeypatch.setattr(deployment, "create", lambda **kwargs: calls["create"].append(kwargs) or FakeDeployment())
    monkeypatch.setattr(deployment, "update", lambda **kwargs: calls["update"].append(kwargs) or FakeDeployment())
    monkeypatch.setattr(deployment, "terminate", lambda name, cluster=None: calls["terminate"].append(name))
    return calls


def test_bentocloud_creates_the_deployment_first_and_updates_it_after(cloud) -> None:
    target = BentoCloud(BentoCloudSettings(deployment="stockcast-prod", scaling_max=4))

    assert target.deploy("stockcast:v1") == "https://stockcast.example.bentoml.ai"
    cloud["existing"].append("stockcast-prod")
    target.deploy("stockcast:v2")
    target.stop()

    assert cloud["push"] == ["stockcast:v1", "stockcast:v2"]
    assert cloud["create"] == [
        {
            "name": "stockcast-prod",
            "bento": "stockcast:v1",
            "cluster": None,
            "instance_type": None,
            "scaling_min": 1,
            "scaling_max": 4,
            "strategy": "RollingUpdate",
        }
    ]
    update = {"name": "stockcast-prod", "cluster": None, "bento": "stockcast:v2", "strategy": "RollingUpdate"}
    assert cloud["update"] == [update]
    assert cloud["terminate"] == ["stockcast-prod"]


def test_bentocloud_recreates_when_configured_to(cloud) -> None:
    config = parse_deploy_config('target = "bentocloud"\nstrategy = "recreate"\n')
    build_target(config).deploy("stockcast:v1")
    assert cloud["create"][0]["strategy"] == "Recreate"


def test_bentocloud_failures_are_deploy_errors(cloud, monkeypatch: pytest.MonkeyPatch) -> None:
    target = BentoCloud(BentoCloudSettings())
    monkeypatch.setattr(import_module("bentoml.deployment"), "create", lambda **kwargs: FakeDeployment(ready=1))
    with pytest.raises(DeployError, match="did not become ready with stockcast:v3"):
        target.deploy("stockcast:v3")

    def refuse(tag: str) -> None:
        raise BentoMLException("401 Unauthorized: check BENTO_CLOUD_API_KEY")

    monkeypatch.setattr(import_module("bentoml.bentos"), "push", refuse)
    with pytest.raises(DeployError, match="of stockcast:v3 failed: 401 Unauthorized"):
        target.deploy("stockcast:v3")
