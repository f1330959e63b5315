"""Reading contract files from a path, an http(s) URL and an s3 URL (a real S3 server on loopback)."""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from stockcast.data.sources import (
    SourceError,
    SourceNotFoundError,
    TransientSourceError,
    read_optional_source,
    read_source,
    sibling,
)

CONTENT = b"date,ticker\n2024-01-02,AAA\n"


@pytest.fixture
def http_root(tmp_path: Path) -> Iterator[str]:
    """A static file server on 127.0.0.1 serving ``tmp_path``."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_local_path_and_file_url(tmp_path: Path):
    path = tmp_path / "stock_price.csv"
    path.write_bytes(CONTENT)
    assert read_source(str(path)) == CONTENT
    assert read_source(path.as_uri()) == CONTENT


def test_missing_local_file_names_it(tmp_path: Path):
    with pytest.raises(SourceNotFoundError, match=r"nope\.csv: file not found"):
        read_source(str(tmp_path / "nope.csv"))
    assert read_optional_source(str(tmp_path / "nope.csv")) is None


def test_http_url(tmp_path: Path, http_root: str):
    (tmp_path / "stock_price.csv").write_bytes(CONTENT)
    assert read_source(f"{http_root}/stock_price.csv") == CONTENT
    with pytest.raises(SourceNotFoundError, match="HTTP 404"):
        read_source(f"{http_root}/missing.csv")


def test_unreachable_http_url_is_a_source_error(monkeypatch):
    monkeypatch.setattr("stockcast.data.sources.time.sleep", lambda seconds: None)
    with pytest.raises(SourceError, match="cannot be fetched"):
        read_source("http://127.0.0.1:9/stock_price.csv")


def test_unknown_scheme_is_refused():
    with pytest.raises(SourceError, match="unsupported source scheme 'ftp'"):
        read_source("ftp://example.invalid/x.csv")


@pytest.mark.s3
def test_s3_url_through_the_configured_endpoint(s3_client):
    s3_client.put_object(Bucket="stockcast-test", Key="inputs/stock_price.csv", Body=CONTENT)
    assert read_source("s3://stockcast-test/inputs/stock_price.csv") == CONTENT
    assert read_optional_source("s3://stockcast-test/inputs/absent.csv") is None


def test_sibling():
    assert sibling("s3://b/in/stock_price.csv", "oracle.csv") == "s3://b/in/oracle.csv"
    assert sibling("stock_price.csv", "oracle.csv") == "oracle.csv"
    assert sibling("/data/x/stock_price.csv", "oracle.csv") == "/data/x/oracle.csv"


def test_network_hiccups_are_retried_and_a_missing_file_is_not(monkeypatch):
    monkeypatch.setattr("stockcast.data.sources.time.sleep", lambda seconds: None)
    answers = {"/flaky.csv": [503, 503, 200], "/gone.csv": [404, 200], "/refused.csv": [403, 200]}
    asked: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            asked.append(self.path)
            status = answers[self.path].pop(0)
            self.send_response(status)
            self.end_headers()
            if status == 200:
                self.wfile.write(CONTENT)

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        assert read_source(f"{base}/flaky.csv") == CONTENT and asked.count("/flaky.csv") == 3
        with pytest.raises(SourceNotFoundError, match="HTTP 404"):
            read_source(f"{base}/gone.csv")
        with pytest.raises(SourceError, match="HTTP 403"):
            read_source(f"{base}/refused.csv")
        assert asked.count("/gone.csv") == asked.count("/refused.csv") == 1  # tried once: it would fail again
    finally:
        server.shutdown()


@pytest.mark.parametrize(
    ("error", "tries"),
    [
        (ClientError({"Error": {"Code": "AccessDenied"}, "ResponseMetadata": {"HTTPStatusCode": 403}}, "GetObject"), 1),
        (EndpointConnectionError(endpoint_url="http://127.0.0.1:9"), 3),
    ],
    ids=["refused", "unreachable"],
)
def test_s3_a_refused_read_is_tried_once_an_unreachable_endpoint_again(monkeypatch, error, tries):
    """S3 refusing access here would need a server enforcing credentials (AWS itself): the client's error stands in."""
    calls: list[str] = []

    def failing_get(self, key: str) -> None:
        calls.append(key)
        raise error

    monkeypatch.setattr("metaflow.S3.get", failing_get)
    monkeypatch.setattr("stockcast.data.sources.time.sleep", lambda seconds: None)
    with pytest.raises(SourceError, match=r"s3://bucket/in/stock_price\.csv: cannot be read from S3") as caught:
        read_source("s3://bucket/in/stock_price.csv")
    assert isinstance(caught.value, TransientSourceError) == (tries > 1) and len(calls) == tries
