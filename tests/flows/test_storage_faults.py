"""Storage faults fail fast and resume clean, against a real S3 server whose endpoint the test takes down.

The runs here reach the session's S3 server through a TCP proxy of their own (``tests/flows/tcp_proxy.py``): killing
the proxy is the outage (its port refuses connections, those open are cut), starting it again on the same port is
the server coming back with its objects. One TrainFlow run loses its endpoint during the backtest; its resume loses
it again during the deploy step, once the step's own code is packaging the model; each must fail within two minutes,
naming the endpoint, and leave no process behind. The second resume completes, promoting the champion under its own
run, and BatchPredictFlow then works with it.

``@retry`` retrying storage faults and nothing else is checked on a small flow of its own, on the local datastore.
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
import pytest
from metaflow import Runner

from stockcast.core.network import free_port
from stockcast.core.registry import Registry
from stockcast.core.storage import S3Store
from tests.flows.tcp_proxy import TcpProxy
from tests.harness import S3_BUCKET, S3_DATASTORE_ENV, FlowRunner, metaflow_home

OUTAGE_DEADLINE_SECONDS = 120
"""A storage outage must fail the run within this long."""


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
    in_backtest: Failure
    in_deploy: Failure
    resumed: Any  # FlowOutcome
    predicted: Any


@pytest.fixture(scope="module")
def outage_scenario(market, configs, s3_server) -> Iterator[Scenario]:
    """The planted market ingested on S3 through the proxy; TrainFlow, with the endpoint taken down as its backtest
    starts; the server back, ``resume``, with the endpoint taken down in the deploy step; the server back, ``resume``
    to the end; then BatchPredictFlow."""
    runner = FlowRunner(f"fault{uuid.uuid4().hex[:8]}")
    with TcpProxy(s3_server, free_port()) as proxy:
        env = {**S3_DATASTORE_ENV, "METAFLOW_S3_ENDPOINT_URL": proxy.endpoint}
        history = runner.ingest(market.history, env)
        backtest_started = new_entries(metaflow_home() / ".metaflow" / "TrainFlow", "*/backtest/*")
        in_backtest = run_through_outage(
            proxy, backtest_started, lambda: runner("train", env=env, config=configs["quick"], snapshot=history)
        )
        proxy.start()
        # The deploy step's own code runs once it has saved the model into the BentoML store (then it builds and
        # smoke-tests the Bento, and exports it to the store: the call that meets the outage).
        model_saved = new_entries(metaflow_home() / "bentoml" / "models" / "stockcast-model", "v*")
        in_deploy = run_through_outage(proxy, model_saved, lambda: runner.resume("train", env=env))
        proxy.start()
        resumed = runner.resume("train", env=env)
        predicted = runner("predict", env=env, config=configs["operate"])
        yield Scenario(runner.branch, proxy.endpoint, in_backtest, in_deploy, resumed, predicted)


@pytest.mark.s3
@pytest.mark.slow
@pytest.mark.parametrize("phase", ["in_backtest", "in_deploy"])
def test_an_outage_fails_the_run_within_two_minutes_naming_the_endpoint(outage_scenario, phase):
    failure = getattr(outage_scenario, phase)
    output = failure.outcome.output
    assert not failure.outcome.successful, output
    assert failure.seconds < OUTAGE_DEADLINE_SECONDS, f"failed {failure.seconds:.0f} s after the outage:\n{output}"
    assert f"S3 endpoint {outage_scenario.endpoint} unreachable: " in output, output
    assert failure.left_behind == []
    failed_in, not_reached = {"in_backtest": ("backtest", "select"), "in_deploy": ("deploy", "end")}[phase]
    steps = {step.id for step in failure.outcome.run}
    assert failed_in in steps and not_reached not in steps, steps


@pytest.mark.s3
@pytest.mark.slow
def test_resume_after_the_outage_promotes_under_the_resumed_run_and_prediction_works(outage_scenario, s3_server):
    resumed, predicted = outage_scenario.resumed, outage_scenario.predicted
    assert resumed.successful, resumed.output
    store = S3Store(f"s3://{S3_BUCKET}/metaflow/stockcast", endpoint_url=s3_server)
    registry = Registry(f"test.{outage_scenario.branch}", store)
    champion = registry.champion()
    assert champion.version == f"v{resumed.run.id}" == resumed.run.data.model_version
    assert champion.run_pathspec == resumed.run.pathspec
    assert champion.model_task == resumed.run["refit"].task.pathspec
    assert resumed.run["refit"].task.metadata_dict.get("origin-run-id")  # refit was cloned, not run again
    # The record of the run that failed in its deploy step stays registered, never promoted.
    failed_version = f"v{outage_scenario.in_deploy.outcome.run.id}"
    assert failed_version in registry.versions()
    assert failed_version not in {event.version for event in registry.history()}
    assert predicted.successful, predicted.output
    assert predicted.run.data.model_record.version == champion.version


RETRY_FLOW = """
from metaflow import FlowSpec, Parameter, current, retry, step

from stockcast.core.storage import StorageUnavailableError
from stockcast.flowbase import only_storage_faults_retried


class RetryFlow(FlowSpec):
    fault = Parameter("fault", default="storage")

    @retry(times=2, minutes_between_retries=0)
    @only_storage_faults_retried
    @step
    def start(self):
        print(f"attempt {current.retry_count}")
        if current.retry_count == 0 and self.fault == "storage":
            raise StorageUnavailableError("S3 endpoint http://127.0.0.1:1 unreachable: refused")
        if self.fault == "bug":
            raise ValueError("a bug: fails the same way every time")
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    RetryFlow()
"""


@pytest.mark.slow
@pytest.mark.parametrize(("fault", "attempts", "successful"), [("storage", 2, True), ("bug", 1, False)])
def test_retry_tries_again_a_storage_fault_and_nothing_else(tmp_path, fault, attempts, successful):
    flow_file = tmp_path / "retry_flow.py"
    flow_file.write_text(RETRY_FLOW)
    with Runner(str(flow_file)) as runner:
        executed = runner.run(fault=fault)
        output = executed.stdout + executed.stderr
        assert (executed.status == "successful") is successful, output
    assert [f"attempt {n}" in output for n in range(3)] == [n < attempts for n in range(3)], output
    if fault == "bug":
        assert "ValueError: a bug" in output and "Not retried: only storage faults are." in output
