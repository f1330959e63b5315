"""Storage faults fail fast and resume clean, against a real S3 server whose endpoint the test takes down.

The outage scenario (``tests/flows/outage.py``, a session fixture): one TrainFlow run loses its endpoint during the
backtest; its resume loses it again during the deploy step, once the step's own code is packaging the model; each must
fail within two minutes, naming the endpoint, and leave no process behind. The second resume completes, promoting
the champion under its own run; BatchPredictFlow and MonitorFlow then work with it
(``tests/flows/test_operate_flows.py``, whose S3 champion it is).

``@retry`` retrying storage faults and nothing else is checked on a small flow of its own, on the local datastore.
"""

from __future__ import annotations

import pytest
from metaflow import Runner

from stockcast.core.registry import Registry
from stockcast.core.storage import S3Store
from tests.harness import S3_BUCKET

OUTAGE_DEADLINE_SECONDS = 120
"""A storage outage must fail the run within this long."""


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
def test_resume_after_the_outage_promotes_under_the_resumed_run(outage_scenario, s3_server):
    resumed = outage_scenario.resumed
    assert resumed.successful, resumed.output
    store = S3Store(f"s3://{S3_BUCKET}/metaflow/stockcast", endpoint_url=s3_server)
    registry = Registry(f"test.{outage_scenario.branch}", store)
    champion = registry.champion()
    assert champion.version == f"v{resumed.run.id}" == resumed.run.data.model_version
    assert champion.run_pathspec == resumed.run.pathspec
    assert champion.model_task == resumed.run["refit"].task.pathspec
    # The second resume started from the first: what the first finished (the refit, after the backtests) is cloned.
    refit = resumed.run["refit"].task.metadata_dict
    assert refit.get("origin-run-id") == outage_scenario.in_deploy.outcome.run.id and "origin-task-id" in refit
    # The record of the run that failed in its deploy step stays registered, never promoted.
    failed_version = f"v{outage_scenario.in_deploy.outcome.run.id}"
    assert failed_version in registry.versions()
    assert failed_version not in {event.version for event in registry.history()}


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
