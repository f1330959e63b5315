"""The local roll-out strategies, carried out through real nginx on small loopback servers that stand for Bentos
(each answers with its version, counts its traffic in Prometheus' format, and fails as asked), while a constant load
runs through the proxy. The same strategies on real ``bentoml serve`` replicas: tests/service/test_rollout_local.py."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from stockcast.core.network import free_port
from stockcast.deploy.config import RolloutSettings
from stockcast.deploy.fleet import LocalFleet, Traffic, read_traffic
from stockcast.deploy.load import ConstantLoad
from stockcast.deploy.proxy import NginxProxy
from stockcast.deploy.targets import DeployError
from tests.unit.deploy.stand_ins import FakeBento

RATE = 100
"""Requests a second through the proxy during every switch."""


class Bentos:
    """Starts fake replicas (refusing tags that say ``crash``), checks them (failing tags that say ``smoke``), and
    remembers every replica it started."""

    def __init__(self) -> None:
        self.started: list[FakeBento] = []

    def start(self, bento_tag: str) -> FakeBento:
        if "crash" in bento_tag:
            raise DeployError(f"bentoml serve {bento_tag}: exited with code 1")
        replica = FakeBento(bento_tag)
        self.started.append(replica)
        return replica

    @staticmethod
    def check(endpoint: str, bento_tag: str) -> None:
        answer = httpx.get(f"{endpoint}/model", timeout=5)
        if answer.status_code != 200:
            raise DeployError(f"{endpoint}/model answered {answer.status_code}")
        served = answer.json()["model_version"]
        if served != bento_tag or "smoke" in bento_tag:
            raise DeployError(f"{endpoint} serves {served}, which fails its smoke test")

    def running(self, bento_tag: str) -> int:
        return sum(1 for replica in self.started if replica.bento_tag == bento_tag and not replica.stopped)


@pytest.fixture
def bentos() -> Iterator[Bentos]:
    made = Bentos()
    yield made
    for replica in made.started:
        replica.stop()


@pytest.fixture
def fleet_of(tmp_path, bentos, nginx_installed) -> Iterator:
    made: list[LocalFleet] = []

    def make(strategy: str, **rollout: object) -> LocalFleet:
        proxy = NginxProxy(tmp_path / f"proxy-{len(made)}", port=free_port(), preview_port=free_port())
        settings = RolloutSettings(**{"canary_steps": [50, 100], "step_s": 0.5, "keep_warm_s": 0.5, **rollout})
        fleet = LocalFleet(proxy, bentos.start, bentos.check, replicas=2, strategy=strategy, rollout=settings)
        made.append(fleet)
        return fleet

    yield make
    for fleet in made:
        fleet.stop()


def served_versions(endpoint: str, n: int = 20) -> set[str]:
    with httpx.Client(base_url=endpoint, timeout=5) as client:
        return {client.post("/predict", json={}).json()["model_version"] for _ in range(n)}


def under_load(fleet: LocalFleet, bento_tag: str) -> tuple[ConstantLoad, DeployError | None]:
    """Deploy ``bento_tag`` while RATE requests a second go through the proxy; the load and the error, if any."""
    failure = None
    with ConstantLoad(fleet.proxy.endpoint, lambda client: client.post("/predict", json={}), rate=RATE) as load:
        time.sleep(0.2)
        try:
            fleet.deploy(bento_tag)
        except DeployError as exc:
            failure = exc
        time.sleep(0.2)
    return load, failure


@pytest.mark.parametrize("strategy", ["rolling", "blue-green", "canary", "shadow"])
def test_a_switch_loses_no_request_and_leaves_only_the_new_version(fleet_of, bentos, strategy) -> None:
    fleet = fleet_of(strategy)
    fleet.deploy("stockcast:v1")
    load, failure = under_load(fleet, "stockcast:v2")

    assert failure is None
    assert not load.report.failed and load.report.requests > RATE / 2, load.report.summary()
    assert served_versions(fleet.proxy.endpoint) == {"stockcast:v2"}
    assert bentos.running("stockcast:v1") == 0 and bentos.running("stockcast:v2") == 2
    switch = fleet.switches[-1]
    assert (switch.strategy, switch.previous, switch.rolled_back, switch.downtime_s) == (
        strategy,
        "stockcast:v1",
        None,
        0.0,
    )


def test_canary_shifts_its_share_of_requests_step_by_step(fleet_of) -> None:
    fleet = fleet_of("canary", canary_steps=[25, 100], step_s=1.5)
    fleet.deploy("stockcast:v1")
    seen: list[str] = []
    worker = threading.Thread(target=lambda: seen.extend(_sample(fleet.proxy.endpoint, 2.5)))
    worker.start()
    fleet.deploy("stockcast:v2")
    worker.join()
    steps = [step for step, _ in fleet.switches[-1].steps]
    assert steps.index("25% to the canary") < steps.index("100% to the canary")
    assert "stockcast:v1" in seen and "stockcast:v2" in seen


def test_a_shadow_gets_a_copy_of_every_request_and_callers_only_the_live_answers(fleet_of, bentos) -> None:
    fleet = fleet_of("shadow", step_s=1.5)
    fleet.deploy("stockcast:v1")
    seen: list[str] = []
    stop = threading.Event()
    worker = threading.Thread(target=lambda: seen.extend(_sample(fleet.proxy.endpoint, 30, stop)))
    worker.start()
    time.sleep(0.2)
    fleet.deploy("stockcast:v2")
    stop.set()
    worker.join()

    steps = [step for step, _ in fleet.switches[-1].steps]
    assert steps.index("mirroring every request to the shadow") < steps.index("switched to the shadow")
    shadow = [replica for replica in bentos.started if replica.bento_tag == "stockcast:v2"]
    answered_by_shadow = sum(replica.counts["200"] for replica in shadow)
    # Callers got v1's answers while v2 was watched; v2 answered those requests too (the mirror), and more.
    assert seen.index("stockcast:v2") > 0 and "stockcast:v1" in seen
    assert answered_by_shadow > seen.count("stockcast:v2") + 10, (answered_by_shadow, len(seen))


def _sample(endpoint: str, seconds: float, stop: threading.Event | None = None) -> list[str]:
    deadline, versions = time.monotonic() + seconds, []
    with httpx.Client(base_url=endpoint, timeout=5) as client:
        while time.monotonic() < deadline and not (stop and stop.is_set()):
            versions.append(client.post("/predict", json={}).json()["model_version"])
    return versions


@pytest.mark.parametrize(
    ("strategy", "bad", "says"),
    [
        ("rolling", "stockcast:crash-v3", "exited with code 1"),
        ("blue-green", "stockcast:smoke-v4", "fails its smoke test"),
        ("canary", "stockcast:errors-v5", "rollout.max_error_rate"),
        ("blue-green", "stockcast:errors-v5", "rollout.max_error_rate"),
        ("shadow", "stockcast:errors-v5", "rollout.max_error_rate"),
    ],
)
def test_a_bad_version_is_rolled_back_without_a_failed_request(fleet_of, bentos, strategy, bad, says) -> None:
    fleet = fleet_of(strategy, step_s=1.0, keep_warm_s=1.0)
    fleet.deploy("stockcast:v1")
    load, failure = under_load(fleet, bad)

    assert failure is not None and says in str(failure) and "stockcast:v1 serves" in str(failure)
    assert not load.report.failed, load.report.summary()  # a failing replica's answers are retried elsewhere
    assert served_versions(fleet.proxy.endpoint) == {"stockcast:v1"}
    assert bentos.running(bad) == 0 and bentos.running("stockcast:v1") == 2
    assert fleet.switches[-1].rolled_back and fleet.live.bento_tag == "stockcast:v1"
    fleet.deploy("stockcast:v1")  # what serves is deployed already: nothing happens
    assert len(fleet.switches) == 2


def test_a_rolling_update_that_fails_half_way_restores_the_replicas_it_stopped(fleet_of, bentos) -> None:
    fleet = fleet_of("rolling")
    fleet.deploy("stockcast:v1")
    started = bentos.start

    def second_fails(bento_tag: str) -> FakeBento:
        if bento_tag == "stockcast:v2" and any(r.bento_tag == "stockcast:v2" for r in bentos.started):
            raise DeployError("the second replica did not start")
        return started(bento_tag)

    fleet.start_replica = second_fails
    load, failure = under_load(fleet, "stockcast:v2")
    assert failure is not None and "the second replica did not start" in str(failure)
    assert not load.report.failed, load.report.summary()
    assert served_versions(fleet.proxy.endpoint) == {"stockcast:v1"} and bentos.running("stockcast:v1") == 2


def test_recreate_reports_its_downtime_and_fails_requests_only_then(fleet_of) -> None:
    fleet = fleet_of("recreate")
    fleet.deploy("stockcast:v1")
    load, failure = under_load(fleet, "stockcast:v2")
    switch = fleet.switches[-1]
    assert failure is None and switch.downtime_s > 0
    assert switch.describe().startswith(f"recreate: stockcast:v1 -> stockcast:v2 in {switch.seconds:.1f} s, downtime")
    assert served_versions(fleet.proxy.endpoint) == {"stockcast:v2"}
    (first_step, stopped) = switch.steps[0]  # seconds after the switch began
    assert first_step == "stopped the old version"
    failed = load.report.failed
    assert all(outcome.status == 502 for outcome in failed)
    assert len(failed) <= RATE * (switch.downtime_s + 0.2), (len(failed), switch.downtime_s, stopped)


def test_traffic_is_read_from_prometheus_metrics_and_differenced() -> None:
    replica = FakeBento("stockcast:errors-v1")
    try:
        before = read_traffic(replica.endpoint)
        with httpx.Client(base_url=replica.endpoint) as client:
            statuses = [client.post("/predict", json={}).status_code for _ in range(40)]
        seen = read_traffic(replica.endpoint) - before
    finally:
        replica.stop()
    assert statuses.count(500) == 2 and (seen.requests, seen.errors) == (40, 2)
    assert seen.error_rate == 0.05 and seen.p99_ms() == 50.0
    assert Traffic().p99_ms() == 0.0 and Traffic().error_rate == 0.0
