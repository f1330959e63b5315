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
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from stockcast.core.network import free_port
from tests.harness import REPO_ROOT, S3_BUCKET, FlowRunner

TEST_HOME = Path(tempfile.mkdtemp(prefix="stockcast-tests-"))
EXTERNAL_S3_ENDPOINT = os.environ.get("STOCKCAST_TEST_S3_ENDPOINT")
"""An S3-compatible server that is already running (CI's MinIO); unset, the tests start moto_server themselves."""
S3_PORT = free_port()
S3_ENDPOINT = EXTERNAL_S3_ENDPOINT or f"http://127.0.0.1:{S3_PORT}"

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


SHARED_RUNS = {
    "champion": "champion",
    "interrupted_random_walk": "random-walk",
    "outage_scenario": "outage",
    "s3_champion": "outage",
    "published_on_s3": "s3-ingest",
    "published": "ingest",
    "ingested": "bad-inputs",
    "short_history": "user-errors",
    "market_files": "replay",
    "replay_history": "replay",
}
"""Fixtures made once per session or module at a cost (flow runs; the replay tests' market), and the group of the
tests that use them."""


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``long`` come first, in their order: under ``pytest -n N`` each worker starts on a chunk of the
    collection and takes more as it finishes, so a long test met late would leave the other workers idle at the end.

    Under ``pytest -n N --dist loadgroup`` (the unit and flow tiers), the tests that share an expensive run go to one
    worker, which makes the run once (each worker is a session of its own, with its own Metaflow home and S3 server);
    the other tests are spread over the workers.

    A group is named by a suffix of the test's node id, which the scheduler reads. pytest-xdist 3.8 writes it to
    ``item._nodeid``, which pytest 9.2 no longer reads (it keeps a structured ``item._id``), so its ``xdist_group``
    marker has no effect: the suffix is written here where pytest reads it."""
    items.sort(key=lambda item: item.get_closest_marker("long") is None)  # stable: the same order on every worker
    if not getattr(config.option, "loadgroup", False):  # set in xdist's workers under --dist loadgroup
        return
    from _pytest.nodeid import coerce_node_id

    for item in items:
        groups = {SHARED_RUNS[name] for name in getattr(item, "fixturenames", ()) if name in SHARED_RUNS}
        if groups:
            (group,) = groups  # a test needing two shared runs would make both on one worker: decide here first
            item._id = coerce_node_id(f"{item.nodeid}@{group}")


def pytest_sessionfinish(session, exitstatus) -> None:
    """Remove the session's Metaflow home, unless STOCKCAST_KEEP_TEST_HOME is set to look at it afterwards."""
    if not os.environ.get("STOCKCAST_KEEP_TEST_HOME"):
        os.chdir(REPO_ROOT)
        shutil.rmtree(TEST_HOME, ignore_errors=True)


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


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
def store(request: pytest.FixtureRequest, tmp_path: Path):  # -> ObjectStore
    """An empty object store of the test's own: a local folder, then a prefix on the S3 test server."""
    from stockcast.core.storage import LocalStore, S3Store

    if request.param == "local":
        return LocalStore(tmp_path / "store")
    return S3Store(f"s3://{S3_BUCKET}/stores/{tmp_path.name}", endpoint_url=request.getfixturevalue("s3_server"))


@pytest.fixture
def branch() -> str:
    """A fresh ``@project`` branch name, so each flow test starts with no earlier snapshot or champion."""
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def run_flow(branch: str) -> FlowRunner:
    """Run flows on the test's own branch; call it like ``run_flow("ingest", prices=...)``."""
    return FlowRunner(branch)


@pytest.fixture(scope="session")
def configs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The configuration files: ``small`` (every factory), ``quick`` (naive and ridge), ``split`` (quick, its work in
    shards and fold tasks) and ``operate``."""
    from tests.factories import OPERATE_CONFIG, QUICK_CONFIG, SMALL_CONFIG, SPLIT_CONFIG

    folder = tmp_path_factory.mktemp("configs")
    files = {"small": SMALL_CONFIG, "quick": QUICK_CONFIG, "split": SPLIT_CONFIG, "operate": OPERATE_CONFIG}
    for name, text in files.items():
        (folder / f"{name}.toml").write_text(text)
    return {name: str(folder / f"{name}.toml") for name in files}


@pytest.fixture(scope="session")
def market(tmp_path_factory: pytest.TempPathFactory):  # -> tests.factories.Market
    """The planted market's files (``tests.factories.write_planted_market``), written once per session."""
    from tests.factories import write_planted_market

    return write_planted_market(tmp_path_factory.mktemp("planted-market"))
