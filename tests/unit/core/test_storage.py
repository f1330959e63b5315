"""Storage faults: bounded S3 calls that name the endpoint, which errors count as transient, and the Metaflow settings
that bound Metaflow's own S3 traffic."""

from __future__ import annotations

import importlib
import json
import socket
import time
from collections.abc import Iterator

import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError
from metaflow.plugins.datatools.s3.s3 import MetaflowS3AccessDenied, MetaflowS3Exception, MetaflowS3NotFound

from stockcast.core import storage
from stockcast.core.network import LOOPBACK, free_port
from stockcast.core.storage import (
    METAFLOW_S3_SETTINGS,
    S3_CONNECT_TIMEOUT_SECONDS,
    S3_MAX_ATTEMPTS,
    S3_READ_TIMEOUT_SECONDS,
    STORAGE_OUTAGE_HOOK,
    LocalStore,
    S3Store,
    StorageUnavailableError,
    metaflow_s3_environment,
    report_storage_outage,
    transient_storage_error,
)
from tests.harness import S3_BUCKET


@pytest.fixture
def silent_endpoint() -> Iterator[str]:
    """An endpoint that accepts connections and never answers (a hung server): only a read timeout ends a call."""
    with socket.socket() as listener:
        listener.bind((LOOPBACK, 0))
        listener.listen(16)
        yield f"http://{LOOPBACK}:{listener.getsockname()[1]}"


def _client_error(code: str, status: int) -> ClientError:
    return ClientError({"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "PutObject")


def test_our_s3_client_has_timeouts_and_bounded_standard_retries():
    config = S3Store("s3://bucket/prefix", endpoint_url="http://127.0.0.1:9")._client.meta.config
    assert (config.connect_timeout, config.read_timeout) == (S3_CONNECT_TIMEOUT_SECONDS, S3_READ_TIMEOUT_SECONDS)
    assert config.retries == {"total_max_attempts": S3_MAX_ATTEMPTS, "mode": "standard"}


def test_metaflow_gets_the_same_numbers():
    params = json.loads(METAFLOW_S3_SETTINGS["METAFLOW_DATATOOLS_CLIENT_PARAMS"])
    assert params == {
        "config": {"connect_timeout": S3_CONNECT_TIMEOUT_SECONDS, "read_timeout": S3_READ_TIMEOUT_SECONDS}
    }
    retries = json.loads(METAFLOW_S3_SETTINGS["METAFLOW_S3_CLIENT_RETRY_CONFIG"])
    assert retries == {"total_max_attempts": S3_MAX_ATTEMPTS, "mode": "standard"}
    Config(**params["config"], retries=retries)  # what Metaflow builds from them must be a valid botocore Config


@pytest.mark.parametrize("call", ["get", "put", "list"])
def test_a_refused_endpoint_fails_at_once_naming_it(call):
    endpoint = f"http://{LOOPBACK}:{free_port()}"
    store = S3Store("s3://bucket/prefix", endpoint_url=endpoint)
    started = time.monotonic()
    with pytest.raises(StorageUnavailableError, match=f"^S3 endpoint {endpoint} unreachable: ") as raised:
        {"get": lambda: store.get("a.json"), "put": lambda: store.put("a.json", b"{}"), "list": lambda: store.list("")}[
            call
        ]()
    assert time.monotonic() - started < 10  # three tries, a second or two of backoff
    assert transient_storage_error(raised.value)
    with pytest.raises(StorageUnavailableError):
        store.check_reachable()


def test_a_hung_endpoint_fails_on_the_read_timeout(silent_endpoint):
    quick = Config(connect_timeout=1, read_timeout=0.5, retries={"total_max_attempts": 2, "mode": "standard"})
    store = S3Store("s3://bucket/prefix", endpoint_url=silent_endpoint, config=quick)
    started = time.monotonic()
    with pytest.raises(StorageUnavailableError, match=f"S3 endpoint {silent_endpoint} unreachable: Read timeout"):
        store.get("a.json")
    assert time.monotonic() - started < 5


@pytest.mark.s3
def test_a_reachable_endpoint_answers_and_missing_objects_stay_key_errors(s3_server):
    store = S3Store(f"s3://{S3_BUCKET}/stores/reachable", endpoint_url=s3_server)
    store.check_reachable()
    S3Store("s3://no-such-bucket-here", endpoint_url=s3_server).check_reachable()  # a refusal is an answer
    with pytest.raises(KeyError):
        store.get("absent.json")


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (StorageUnavailableError("S3 endpoint x unreachable: y"), True),
        (EndpointConnectionError(endpoint_url="http://127.0.0.1:9"), True),
        (ReadTimeoutError(endpoint_url="http://127.0.0.1:9"), True),
        (MetaflowS3Exception("S3 operation failed"), True),
        (_client_error("SlowDown", 503), True),
        (_client_error("InternalError", 500), True),
        (_client_error("AccessDenied", 403), False),
        (_client_error("PreconditionFailed", 412), False),
        (MetaflowS3NotFound("s3://b/k"), False),
        (MetaflowS3AccessDenied("s3://b/k"), False),
        (ValueError("a bug"), False),
        (KeyError("s3://b/k"), False),
    ],
)
def test_which_errors_are_transient_storage_faults(error, transient):
    assert transient_storage_error(error) is transient


def test_an_error_raised_from_a_storage_fault_is_one_too():
    try:
        try:
            raise EndpointConnectionError(endpoint_url="http://127.0.0.1:9")
        except EndpointConnectionError as fault:
            raise RuntimeError("cannot load the snapshot") from fault
    except RuntimeError as error:
        assert transient_storage_error(error)


def test_what_the_user_configured_wins(monkeypatch, tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"METAFLOW_S3_RETRY_COUNT": "5"}))
    monkeypatch.setenv("METAFLOW_HOME", str(tmp_path))
    monkeypatch.delenv("METAFLOW_PROFILE", raising=False)
    added = metaflow_s3_environment({"METAFLOW_S3_CLIENT_RETRY_CONFIG": '{"max_attempts": 5}'})
    assert set(added) == set(METAFLOW_S3_SETTINGS) - {"METAFLOW_S3_RETRY_COUNT", "METAFLOW_S3_CLIENT_RETRY_CONFIG"}
    assert all(added[name] == METAFLOW_S3_SETTINGS[name] for name in added)


def test_the_exports_for_a_shell(monkeypatch, capsys):
    for name in METAFLOW_S3_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("METAFLOW_HOME", "/nonexistent")
    storage.main()
    lines = capsys.readouterr().out.splitlines()
    assert "export METAFLOW_S3_RETRY_COUNT=1" in lines and len(lines) == len(METAFLOW_S3_SETTINGS)


def test_the_exit_hook_names_an_unreachable_endpoint_and_nothing_else(monkeypatch, capsys, tmp_path):
    module, _, name = STORAGE_OUTAGE_HOOK.rpartition(".")
    assert getattr(importlib.import_module(module), name) is report_storage_outage

    endpoint = f"http://{LOOPBACK}:{free_port()}"
    monkeypatch.setattr(storage, "datastore_store", lambda: S3Store("s3://bucket/prefix", endpoint_url=endpoint))
    report_storage_outage()
    assert capsys.readouterr().out.startswith(f"S3 endpoint {endpoint} unreachable: ")

    monkeypatch.setattr(storage, "datastore_store", lambda: LocalStore(tmp_path))
    report_storage_outage()
    assert capsys.readouterr().out == ""
