"""Test-wide set-up: an isolated Metaflow home, and a real S3-compatible server on 127.0.0.1.

Metaflow reads its configuration when it is first imported, so the environment is set here at module level,
before any test module imports it (FIELD_NOTES). Every run the tests make lands in a temporary folder, never in
the developer's ``.metaflow``. The S3 server (moto's standalone server, a real HTTP S3 API) is started once per
session on a free loopback port; the same ``METAFLOW_S3_ENDPOINT_URL`` variables point Metaflow, our boto3 code
and the tests at it. With ``STOCKCAST_TEST_S3_ENDPOINT`` set (CI's MinIO service), the tests use that server
instead, which must accept the dummy credentials below; the test bucket is created there if missing.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


TEST_HOME = Path(tempfile.mkdtemp(prefix="stockcast-tests-"))
EXTERNAL_S3_ENDPOINT = os.environ.get("STOCKCAST_TEST_S3_ENDPOINT")
"""An S3-compatible server that is already running (CI's MinIO); unset, the tests start moto_server themselves."""
S3_PORT = _free_port()
S3_ENDPOINT = EXTERNAL_S3_ENDPOINT or f"http://127.0.0.1:{S3_PORT}"
S3_BUCKET = "stockcast-test"
REPO_ROOT = Path(__file__).resolve().parent.parent

os.environ.update(
    {
        "USERNAME": "pytest",
        "METAFLOW_USER": "pytest",
        "METAFLOW_DEFAULT_DATASTORE": "local",
        "METAFLOW_DEFAULT_METADATA": "local",
        "METAFLOW_DATASTORE_SYSROOT_LOCAL": str(TEST_HOME),
        "METAFLOW_CLIENT_CACHE_PATH": str(TEST_HOME / "client-cache"),
        "METAFLOW_TEMPDIR": str(TEST_HOME / "tmp"),
        # The S3 server below; dummy credentials, or a run against S3 hangs instead of failing (FIELD_NOTES).
        "METAFLOW_S3_ENDPOINT_URL": S3_ENDPOINT,
        "METAFLOW_DATASTORE_SYSROOT_S3": f"s3://{S3_BUCKET}/metaflow",
        "AWS_ACCESS_KEY_ID": "stockcast-test",
        "AWS_SECRET_ACCESS_KEY": "stockcast-test",
        "AWS_DEFAULT_REGION": "us-east-1",
        "BENTOML_HOME": str(TEST_HOME / "bentoml"),
    }
)
(TEST_HOME / "tmp").mkdir(parents=True, exist_ok=True)
(TEST_HOME / ".metaflow").mkdir(exist_ok=True)
# Cards, and anything else Metaflow or CatBoost put relative to the working directory, land in the test home too:
# Metaflow finds the local card root by searching upwards from the working directory for `.metaflow`.
os.chdir(TEST_HOME)


def pytest_sessionfinish(session, exitstatus) -> None:
    """Remove the session's Metaflow home, unless STOCKCAST_KEEP_TEST_HOME is set to look at it afterwards."""
    if not os.environ.get("STOCKCAST_KEEP_TEST_HOME"):
        os.chdir(REPO_ROOT)
        shutil.rmtree(TEST_HOME, ignore_errors=True)


MAX_WORKERS = os.cpu_count() or 1
"""Parallel tasks of the flow runs the tests start: one per core. With Metaflow's default of 16, every backtest of a
TrainFlow run starts at once and the model libraries' thread pools fight over the cores: on 2 cores the PR report's
TrainFlow run took 57 s instead of 50."""

S3_DATASTORE_ENV = {"METAFLOW_DEFAULT_DATASTORE": "s3"}
"""Extra environment for a flow run whose artefacts go to the S3 server (metadata stays local)."""


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """A real S3 API for the whole session, with the test bucket created; yields its endpoint.

    moto_server on 127.0.0.1, or the server at ``STOCKCAST_TEST_S3_ENDPOINT`` when that is set.
    """
    if EXTERNAL_S3_ENDPOINT:
        _create_bucket_when_reachable(EXTERNAL_S3_ENDPOINT, timeout=30)
        yield EXTERNAL_S3_ENDPOINT
        return
    log = (TEST_HOME / "moto_server.log").open("wb")
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p", str(S3_PORT)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{S3_ENDPOINT}/moto-api/", timeout=1).close()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"S3 test server did not start; see {log.name}") from None
                time.sleep(0.2)
        _create_bucket_when_reachable(S3_ENDPOINT, timeout=10)
        yield S3_ENDPOINT
    finally:
        server.terminate()
        server.wait(timeout=10)
        log.close()


def _create_bucket_when_reachable(endpoint: str, *, timeout: float) -> None:
    """Create the test bucket (an existing one is kept), retrying while the server is still starting."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    client = boto3.client("s3", endpoint_url=endpoint)
    deadline = time.monotonic() + timeout
    while True:
        try:
            if S3_BUCKET not in {bucket["Name"] for bucket in client.list_buckets().get("Buckets", [])}:
                client.create_bucket(Bucket=S3_BUCKET)
            return
        except (BotoCoreError, ClientError) as exc:
            if time.monotonic() > deadline:
                raise RuntimeError(f"S3 test server at {endpoint} is not usable: {exc}") from exc
            time.sleep(0.5)


@pytest.fixture(autouse=True)
def _s3_server_for_s3_tests(request: pytest.FixtureRequest) -> None:
    """Tests marked ``s3`` always have the server: a Metaflow run against an absent endpoint hangs in retries."""
    if request.node.get_closest_marker("s3"):
        request.getfixturevalue("s3_server")


@pytest.fixture
def s3_client(s3_server: str):
    """A boto3 S3 client on the test server."""
    import boto3

    return boto3.client("s3", endpoint_url=s3_server)


@pytest.fixture
def branch() -> str:
    """A fresh ``@project`` branch name, so each flow test starts with no earlier snapshot or champion."""
    return f"t{uuid.uuid4().hex[:10]}"


@dataclass(frozen=True)
class FlowResult:
    """A finished flow run: its Client ``Run`` (None if it never started), whether it succeeded, its output."""

    run: object | None
    successful: bool
    output: str


class FlowRunner:
    """Runs ``flows/<flow>.py`` on one test branch with ``metaflow.Runner``: fresh runs and resumes."""

    def __init__(self, branch: str) -> None:
        self.branch = branch

    def _runner(self, flow: str, env: dict[str, str] | None, config: str | None):
        from metaflow import Runner

        options = {"config": [("config", config)]} if config else {}
        flow_file = str(REPO_ROOT / "flows" / f"{flow}.py")
        return Runner(flow_file, show_output=False, env=env, branch=self.branch, **options)

    @staticmethod
    def _result(executing) -> FlowResult:
        return FlowResult(
            run=executing.run,
            successful=executing.status == "successful",
            output=executing.stdout + executing.stderr,
        )

    def __call__(
        self, flow: str, *, env: dict[str, str] | None = None, config: str | None = None, **params
    ) -> FlowResult:
        """A fresh run with the given parameters (and ``--config config PATH`` when ``config`` is given)."""
        with self._runner(flow, env, config) as runner:
            try:
                return self._result(runner.run(max_workers=MAX_WORKERS, **params))
            # The command failed before a run existed: Metaflow raises RuntimeError with the command's output, and
            # the Runner parses configs itself, so a config parser's ValueError surfaces here directly.
            except (RuntimeError, ValueError) as exc:
                return FlowResult(run=None, successful=False, output=str(exc))

    def resume(self, flow: str, *, env: dict[str, str] | None = None) -> FlowResult:
        """``resume`` of the branch's latest run of ``flow``: failed steps re-run, finished ones are cloned."""
        with self._runner(flow, env, None) as runner:
            return self._result(runner.resume(max_workers=MAX_WORKERS))


@pytest.fixture
def run_flow(branch: str) -> FlowRunner:
    """Run flows on the test's own branch; call it like ``run_flow("ingest", prices=...)``."""
    return FlowRunner(branch)


def card_text(task, card_id: str) -> str:
    """The decoded content of a task's card (Metaflow embeds it as base64 JSON), for asserting on what it shows."""
    import base64
    import re

    from metaflow.cards import get_cards

    (card,) = get_cards(task, id=card_id)
    payloads = re.findall(r'__MF_DATA__\["[^"]+"\] = "([A-Za-z0-9+/=]+)"', card.get())
    return "\n".join(base64.b64decode(payload).decode() for payload in payloads)
