"""A storage outage staged for the flow tests: TrainFlow on S3 loses its endpoint during the backtest, its resume
loses it again in the deploy step, and the second resume completes.

The runs reach the session's S3 server through a TCP proxy of their own (``tests/flows/tcp_proxy.py``): killing the
proxy is the outage (its port refuses connections, those open are cut), starting it again on the same port is the
server coming back with its objects. The completed run's champion is the S3 champion the operate tests predict and
monitor with (``tests/flows/conftest.py``): the flow after an outage is the flow they test.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from stockcast.core.network import free_port
from tests.flows.tcp_proxy import TcpProxy
from tests.harness import S3_DATASTORE_ENV, FlowRunner, metaflow_home


@dataclass
class Outage:
    """When the endpoint was taken down (``time.monotonic()``), once it was."""

    at: float | None = None

    def seconds_since(self) -> float:
        assert self.at is not None, "the endpoint was never taken down: the condition never held"
        return time.monotonic() - self.at


@contextmanager
def outage_when(proxy: TcpProxy, condition: Callable[[], bool]) -> Iterator[Outage]:
    """Kill ``proxy`` as soon as ``condition()`` holds (checked ten times a second, beside the flow run inside)."""
    outage, done = Outage(), threading.Event()

    def watch() -> None:
        while not done.is_set():
            if condition():
                proxy.kill()
                outage.at = time.monotonic()
                return
            time.sleep(0.1)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        yield outage
    finally:
        done.set()
        watcher.join()


def new_entries(folder: Path, pattern: str) -> Callable[[], bool]:
    """A condition: some path matching ``pattern`` under ``folder`` exists that did not when this was called."""
    before = set(folder.glob(pattern))
    return lambda: bool(set(folder.glob(pattern)) - before)


def processes_using(endpoint: str, within: float = 10) -> list[str]:
    """Processes whose environment points Metaflow at ``endpoint`` (tasks, the S3 helpers they start, Bento
    servers), after giving them ``within`` seconds to end: what a failed run left behind, as command lines."""
    deadline = time.monotonic() + within
    while True:
        left = []
        for process in psutil.process_iter(["cmdline"]):
            try:
                if process.environ().get("METAFLOW_S3_ENDPOINT_URL") == endpoint:
                    left.append(f"{process.pid}: {' '.join(process.info['cmdline'] or [])}")
            except psutil.Error:
                continue
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.5)


@dataclass(frozen=True)
class Failure:
    """A run that lost its endpoint: its outcome, the seconds from the outage to its end, what it left running."""

    outcome: Any  # FlowOutcome
    seconds: float
    left_behind: list[str]


def run_through_outage(proxy: TcpProxy, condition: Callable[[], bool], launch: Callable[[], Any]) -> Failure:
    """``launch()`` a run, take the endpoint down once ``condition()`` holds, and see how the run ended."""
    with outage_when(proxy, condition) as outage:
        outcome = launch()
    seconds = outage.seconds_since()
    return Failure(outcome, seconds, processes_using(proxy.endpoint))


@dataclass(frozen=True)
class Scenario:
    """The runs of the outage scenario, in order."""

    branch: str
    endpoint: str
    history: str
    in_backtest: Failure
    in_deploy: Failure
    resumed: Any  # FlowOutcome


def stage_outage(market: Any, quick_config: str, s3_server: str) -> Scenario:
    """The planted market ingested on S3 through the proxy; TrainFlow, with the endpoint taken down as its backtest
    starts; the server back, ``resume``, with the endpoint taken down in the deploy step; the server back, ``resume``
    to the end."""
    runner = FlowRunner(f"fault{uuid.uuid4().hex[:8]}")
    with TcpProxy(s3_server, free_port()) as proxy:
        env = {**S3_DATASTORE_ENV, "METAFLOW_S3_ENDPOINT_URL": proxy.endpoint}
        history = runner.ingest(market.history, env)
        backtest_started = new_entries(metaflow_home() / ".metaflow" / "TrainFlow", "*/backtest/*")
        in_backtest = run_through_outage(
            proxy, backtest_started, lambda: runner("train", env=env, config=quick_config, snapshot=history)
        )
        proxy.start()
        # The deploy step's own code runs once it has saved the model into the BentoML store (then it builds and
        # smoke-tests the Bento, and exports it to the store: the call that meets the outage).
        model_saved = new_entries(metaflow_home() / "bentoml" / "models" / "stockcast-model", "v*")
        in_deploy = run_through_outage(proxy, model_saved, lambda: runner.resume("train", env=env))
        proxy.start()
        resumed = runner.resume("train", env=env)
        return Scenario(runner.branch, proxy.endpoint, history, in_backtest, in_deploy, resumed)
