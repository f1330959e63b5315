"""``stockcast-rollout --follow``: every version that becomes champion is rolled out, once; a failed one is not tried
again. The registry is real (a local store); the roll-out is recorded (served for real in tests/service)."""

from __future__ import annotations

import select
import signal
import subprocess
import sys
import threading
import time

from stockcast.core.network import free_port
from stockcast.core.registry import Registry
from stockcast.core.storage import LocalStore
from stockcast.deploy.config import SmokeSettings
from stockcast.deploy.rollout import RolloutError, RolloutResult, follow
from tests.factories import make_record


def test_every_new_champion_is_rolled_out_once_and_a_failed_one_is_not_retried(tmp_path) -> None:
    registry = Registry("user.follow", LocalStore(tmp_path / "store"))
    for version in ("v1", "v2", "v3"):
        registry.register(make_record(version, branch="user.follow"))
    registry.promote("v1", reason="first", expected_champion=None)
    rolled: list[str] = []
    reports: list[object] = []

    def roll_out(registry: Registry, target: object, smoke: SmokeSettings) -> RolloutResult:
        champion = registry.champion_version()
        rolled.append(champion)
        if champion == "v3":
            raise RolloutError("rollout of v3 failed: smoke test")
        return RolloutResult(registry.branch, champion, f"stockcast:{champion}", "http://127.0.0.1:1")

    stop = threading.Event()
    worker = threading.Thread(
        target=follow,
        args=(registry, None, SmokeSettings()),
        kwargs={
            "poll_s": 0.02,
            "keep_going": lambda: not stop.is_set(),
            "report": reports.append,
            "roll_out": roll_out,
        },
    )
    worker.start()
    try:
        _until(lambda: rolled == ["v1"])
        registry.promote("v2", reason="a retrain beat v1", expected_champion="v1")
        _until(lambda: rolled == ["v1", "v2"])
        registry.promote("v3", reason="by hand", expected_champion="v2")
        _until(lambda: rolled == ["v1", "v2", "v3"])
        time.sleep(0.2)  # several more polls: v3 is not tried again
    finally:
        stop.set()
        worker.join(timeout=5)
    assert rolled == ["v1", "v2", "v3"]
    assert [getattr(report, "model_version", None) for report in reports] == ["v1", "v2", None]
    assert isinstance(reports[-1], RolloutError)


def _until(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the follower did not get there"
        time.sleep(0.01)


def test_the_follower_stops_on_ctrl_c_even_when_started_with_it_ignored(tmp_path) -> None:
    """A shell's background job (``&`` without job control) inherits SIGINT as ignored; the follower must still stop
    on it, rather than outlive its caller with the servers it started."""
    config = tmp_path / "deploy.toml"
    config.write_text(f'target = "local"\n[local]\nport = {free_port()}\npreview_port = {free_port()}\n')
    command = [sys.executable, "-m", "stockcast.deploy.rollout", "--follow", "--poll-s", "0.1", "--config", str(config)]
    follower = subprocess.Popen(
        ["sh", "-c", 'trap "" INT; exec "$@"', "sh", *command, "--branch", "test.no-champion-yet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert follower.stdout is not None
        assert select.select([follower.stdout], [], [], 20)[0], "the follower printed nothing"
        assert "Following the champion" in follower.stdout.readline()
        follower.send_signal(signal.SIGINT)
        assert follower.wait(timeout=20) == 0
    finally:
        follower.kill()
