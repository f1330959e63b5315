"""The Kubernetes manifests of every roll-out strategy: valid against the Kubernetes API's own schemas (offline, with
kubernetes-validate in strict mode), and doing what each strategy promises, phase by phase."""

from __future__ import annotations

import subprocess
import sys

import kubernetes_validate
import pytest
import yaml

from stockcast.core.errors import UserError
from stockcast.deploy.config import KubernetesSettings, RolloutSettings, parse_deploy_config, with_strategy
from stockcast.deploy.manifests import NGINX, STRATEGIES, VERSION_LABEL, Phase, Release, rollout_phases
from stockcast.deploy.targets import KubernetesManifest
from stockcast.serve.feed import FeedSettings

KUBERNETES_VERSION = "1.33"
"""The oldest Kubernetes release the manifests must apply to (supported upstream until mid-2026)."""
SETTINGS = KubernetesSettings(image="ghcr.io/acme/stockcast", host="stockcast.example.com", replicas=3)
ROLLOUT = RolloutSettings(canary_steps=[5, 25, 100], step_s=30, keep_warm_s=120)
FEED = FeedSettings(store="s3://bucket/prefix/stockcast", refresh_s=10.0, max_age_days=4.0).environment()
OLD = Release("v1", "ghcr.io/acme/stockcast:v1", FEED)
NEW = Release("v2", "ghcr.io/acme/stockcast:v2", FEED)


def objects(phases: list[Phase], kind: str) -> list[dict]:
    return [item for phase in phases for item in phase.objects if item["kind"] == kind]


@pytest.mark.parametrize("live", [None, OLD], ids=["first", "replacing"])
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_manifest_of_every_strategy_is_valid_kubernetes(strategy, live) -> None:
    phases = rollout_phases(strategy, SETTINGS, ROLLOUT, NEW, live)
    assert phases and all(phase.objects or phase.deletions for phase in phases)
    for phase in phases:
        for item in phase.objects:
            # Round-tripped through YAML, as kubectl receives it; strict: an unknown field is an error.
            kubernetes_validate.validate(yaml.safe_load(yaml.safe_dump(item)), KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_pod_follows_the_published_data(strategy) -> None:
    for deployment in objects(rollout_phases(strategy, SETTINGS, ROLLOUT, NEW, OLD), "Deployment"):
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert {item["name"]: item["value"] for item in container["env"]} == FEED


def test_the_validator_would_catch_a_broken_manifest() -> None:
    (phase,) = rollout_phases("rolling", SETTINGS, ROLLOUT, NEW)
    deployment = phase.objects[0]
    broken = {**deployment, "spec": {**deployment["spec"], "replica": 3}}
    with pytest.raises(kubernetes_validate.ValidationError, match="replica"):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_recreate_and_rolling_update_one_deployment_in_place() -> None:
    (recreate,) = rollout_phases("recreate", SETTINGS, ROLLOUT, NEW, OLD)
    (rolling,) = rollout_phases("rolling", SETTINGS, ROLLOUT, NEW, OLD)
    assert objects([recreate], "Deployment")[0]["spec"]["strategy"] == {"type": "Recreate"}
    update = objects([rolling], "Deployment")[0]["spec"]["strategy"]
    assert update["rollingUpdate"]["maxUnavailable"] == 0  # never fewer ready pods than asked for
    assert rolling.rollouts == ["stockcast"]


def test_blue_green_previews_green_then_switches_the_service_then_retires_blue_after_the_warm_period() -> None:
    start, switch, retire = rollout_phases("blue-green", SETTINGS, ROLLOUT, NEW, OLD)
    (preview,) = objects([start], "Service")
    assert preview["metadata"]["name"] == "stockcast-preview" and preview["spec"]["selector"][VERSION_LABEL] == "v2"
    assert start.rollouts == ["stockcast-v2"] and not objects([start], "Ingress")
    (service,) = switch.objects
    assert service["metadata"]["name"] == "stockcast" and service["spec"]["selector"][VERSION_LABEL] == "v2"
    assert switch.pause_s == 120 and not switch.deletions  # blue keeps running: rollback is one switch back
    assert retire.deletions == ["deployment/stockcast-v1", "service/stockcast-preview"]


def test_canary_shifts_the_configured_shares_then_promotes_and_removes_the_canary_route() -> None:
    phases = rollout_phases("canary", SETTINGS, ROLLOUT, NEW, OLD)
    start, *steps, promote = phases
    assert start.rollouts == ["stockcast-v2"]
    (stable_route,) = objects([start], "Ingress")
    assert "annotations" not in stable_route["metadata"]
    weights = [step.objects[0]["metadata"]["annotations"][f"{NGINX}/canary-weight"] for step in steps]
    assert weights == ["5", "25"] and all(step.pause_s == 30 for step in steps)
    for step in steps:
        (route,) = step.objects
        assert route["spec"]["rules"][0]["host"] == "stockcast.example.com"
        assert route["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"] == "stockcast-canary"
    (service,) = promote.objects
    assert service["spec"]["selector"][VERSION_LABEL] == "v2"
    assert promote.deletions == ["ingress/stockcast-canary", "service/stockcast-canary", "deployment/stockcast-v1"]


def test_shadow_mirrors_every_request_to_the_new_version_then_switches_to_it() -> None:
    start, mirror, switch = rollout_phases("shadow", SETTINGS, ROLLOUT, NEW, OLD)
    assert {item["metadata"]["name"] for item in start.objects} == {"stockcast-v2", "stockcast-shadow"}
    (route,) = mirror.objects
    target = route["metadata"]["annotations"][f"{NGINX}/mirror-target"]
    assert target == "http://stockcast-shadow.stockcast.svc.cluster.local:3000$request_uri"
    assert route["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"] == "stockcast"
    assert "stockcast" not in {service["metadata"]["name"] for service in objects([start, mirror], "Service")}
    assert mirror.pause_s == ROLLOUT.step_s, "callers see nothing of the shadow while it is watched"
    service, unmirrored = switch.objects
    assert service["metadata"]["name"] == "stockcast" and service["spec"]["selector"][VERSION_LABEL] == "v2"
    assert f"{NGINX}/mirror-target" not in unmirrored["metadata"].get("annotations", {})
    assert switch.deletions == ["service/stockcast-shadow", "deployment/stockcast-v1"]


def test_the_kubernetes_target_applies_the_configured_strategy() -> None:
    target = KubernetesManifest(SETTINGS, endpoint="https://x", strategy="recreate")
    (deployment, service) = yaml.safe_load_all(target.manifest("stockcast:v9"))
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == "ghcr.io/acme/stockcast:v9"
    assert service["kind"] == "Service"


@pytest.mark.parametrize(
    ("text", "field", "says"),
    [
        (
            'target = "kubernetes"\nstrategy = "canary"\n[kubernetes]\nimage = "i"\n',
            "strategy",
            "rolling, recreate only",
        ),
        ('target = "bentocloud"\nstrategy = "shadow"\n', "strategy", "not 'shadow'"),
        ('target = "local"\nstrategy = "rollin"\n', "strategy", "rollin"),
        ('target = "local"\n[rollout]\ncanary_steps = [10, 50]\n', "rollout.canary_steps", "end at 100"),
        ('target = "local"\n[rollout]\ncanary_steps = [50, 10, 100]\n', "rollout.canary_steps", "increase"),
    ],
)
def test_a_strategy_the_target_cannot_carry_out_or_bad_steps_are_refused_naming_the_field(text, field, says) -> None:
    with pytest.raises(UserError) as error:
        parse_deploy_config(text)
    assert field in str(error.value) and says in str(error.value)


def test_the_command_line_strategy_is_validated_like_the_file() -> None:
    config = parse_deploy_config('target = "local"\n[local]\nreplicas = 3\n')
    assert (
        with_strategy(config, "canary").rollout_strategy == "canary"
        and with_strategy(config, "canary").local.replicas == 3
    )
    with pytest.raises(UserError, match="strategy: Input should be 'recreate'"):
        with_strategy(config, "sideways")
    bentocloud = parse_deploy_config('target = "bentocloud"\n')
    with pytest.raises(UserError, match="strategy: target 'bentocloud' carries out"):
        with_strategy(bentocloud, "shadow")


def test_each_target_has_its_default_strategy() -> None:
    assert parse_deploy_config('target = "local"\n').rollout_strategy == "rolling"
    assert parse_deploy_config('target = "bentocloud"\n').rollout_strategy == "rolling"


def test_the_manifests_command_prints_every_phase(tmp_path) -> None:
    config = tmp_path / "deploy.toml"
    config.write_text('target = "local"\n[kubernetes]\nimage = "ghcr.io/acme/stockcast"\n')
    command = [sys.executable, "-m", "stockcast.deploy", "manifests", "--config", str(config)]
    done = subprocess.run(
        [*command, "--version", "v2", "--live", "v1", "--strategy", "blue-green"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert "# phase 1: start green (then: wait for rollout of deployment/stockcast-v2)" in done.stdout
    assert (
        "# phase 3: retire blue (then: delete deployment/stockcast-v1; delete service/stockcast-preview)" in done.stdout
    )
    assert len([item for item in yaml.safe_load_all(done.stdout) if item]) == 3
    missing = subprocess.run(
        [*command[:-1], str(tmp_path / "none.toml"), "--version", "v2"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert missing.returncode == 1 and "none.toml" in missing.stderr
