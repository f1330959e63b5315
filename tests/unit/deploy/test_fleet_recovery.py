"""A fleet outlives the process driving it: a switch interrupted half way (the driver killed) is undone by the next
driver on the same folder, which adopts nginx and the live replicas, while requests keep being answered; and only
one driver at a time drives a fleet. The replicas are stand-in processes of their own, as ``bentoml serve`` is."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from stockcast.core.network import free_port
from stockcast.deploy.config import RolloutSettings
from stockcast.deploy.fleet import STATE_FILE, LocalFleet
from stockcast.deploy.load import ConstantLoad
from stockcast.deploy.proxy import NginxProxy
from stockcast.deploy.targets import DeployError
from tests.unit.deploy.stand_ins import BentoProcess
from tests.unit.deploy.test_fleet import RATE, Bentos, served_versions


class Killed(BaseException):
    """What killing the driver does to the fleet's code: it stops where it is, and nothing of it cleans up."""


class Driver:
    """Makes fleets on one folder and one pair of ports, as successive ``stockcast-rollout`` processes would, with
    stand-in replicas in processes of their own; stops whatever is left at the end."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.ports = folder, (free_port(), free_port())
        self.started: list[BentoProcess] = []
        self.fleets: list[LocalFleet] = []

    def start(self, bento_tag: str) -> BentoProcess:
        replica = BentoProcess(bento_tag)
        self.started.append(replica)
        return replica

    def fleet(self, strategy: str) -> LocalFleet:
        proxy = NginxProxy(self.folder / "proxy", port=self.ports[0], preview_port=self.ports[1])
        rollout = RolloutSettings(step_s=0.5, keep_warm_s=0.5, canary_steps=[50, 100])
        fleet = LocalFleet(
            proxy, self.start, Bentos.check, replicas=2, strategy=strategy, rollout=rollout, state_dir=self.folder
        )
        self.fleets.append(fleet)
        return fleet

    def killed(self, fleet: LocalFleet) -> None:
        """The driver's process is gone: the operating system releases its lock; nothing else happens."""
        assert fleet._lock is not None
        fleet._lock.close()

    def running(self, bento_tag: str) -> int:
        return sum(1 for replica in self.started if replica.bento_tag == bento_tag and replica.running)

    def close(self) -> None:
        for replica in self.started:
            replica.stop()
        for fleet in self.fleets:
            fleet.proxy.stop()


@pytest.fixture
def driver(tmp_path, nginx_installed) -> Iterator[Driver]:
    made = Driver(tmp_path / "fleet")
    yield made
    made.close()


def killed_at(when: Callable[[str, str], bool]) -> Callable[[str, str], None]:
    """A check that kills the driver the first time ``when(endpoint, bento_tag)`` holds, and checks otherwise."""

    def check(endpoint: str, bento_tag: str) -> None:
        if when(endpoint, bento_tag):
            raise Killed
        Bentos.check(endpoint, bento_tag)

    return check


def checking_v2_at_the_preview(fleet: LocalFleet) -> Callable[[str, str], bool]:
    """Blue-green: green is started and routed to the preview address; the kill comes while it is checked there."""
    return lambda endpoint, bento_tag: bento_tag == "stockcast:v2" and endpoint == fleet.proxy.preview_endpoint


def checking_the_second_new_replica(fleet: LocalFleet) -> Callable[[str, str], bool]:
    """Rolling: one replica replaced (an old one stopped), the kill comes while the second new one is checked."""
    checked: list[str] = []

    def when(endpoint: str, bento_tag: str) -> bool:
        checked.append(bento_tag)
        return checked.count("stockcast:v2") == 2

    return when


@pytest.mark.parametrize(
    ("strategy", "kill"),
    [("blue-green", checking_v2_at_the_preview), ("rolling", checking_the_second_new_replica)],
)
def test_a_switch_killed_half_way_is_undone_by_the_next_driver_without_a_failed_request(driver, strategy, kill) -> None:
    first = driver.fleet(strategy)
    first.check = killed_at(kill(first))
    first.deploy("stockcast:v1")
    nginx = first.proxy.pid
    with pytest.raises(Killed):
        first.deploy("stockcast:v2")
    driver.killed(first)
    assert driver.running("stockcast:v2") == 2, "what it started runs on"

    request = lambda client: client.post("/predict", json={})  # noqa: E731
    with ConstantLoad(first.proxy.endpoint, request, rate=RATE) as load:
        second = driver.fleet(strategy)
        recovery = second.recover()
    assert not load.report.failed and load.report.requests > 0, load.report.summary()
    assert recovery is not None and recovery.rolled_back is None
    assert (recovery.strategy, recovery.previous, recovery.bento_tag) == ("recovery", "stockcast:v2", "stockcast:v1")
    assert f"adopted nginx (pid {nginx})" in [step for step, _ in recovery.steps]
    assert second.proxy.pid == nginx, "callers kept the address: nginx was adopted, not restarted"
    assert driver.running("stockcast:v2") == 0 and driver.running("stockcast:v1") == 2
    assert served_versions(second.proxy.endpoint) == {"stockcast:v1"}

    second.deploy("stockcast:v2")  # the switch carried out again, from the start
    assert served_versions(second.proxy.endpoint) == {"stockcast:v2"}
    assert driver.running("stockcast:v1") == 0 and driver.running("stockcast:v2") == 2


def test_a_fleet_stopped_cleanly_leaves_nothing_to_recover(driver) -> None:
    first = driver.fleet("rolling")
    first.deploy("stockcast:v1")
    first.stop()

    assert driver.fleet("rolling").recover() is None
    assert driver.running("stockcast:v1") == 0
    assert (driver.folder / STATE_FILE).is_file()


def test_one_driver_at_a_time(driver) -> None:
    first = driver.fleet("rolling")
    with pytest.raises(DeployError, match=r"the fleet in .* is driven by pid \d+ already; stop it first"):
        driver.fleet("rolling")
    first.stop()
    driver.fleet("rolling")  # free again
