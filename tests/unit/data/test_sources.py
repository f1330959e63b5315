"""Reading contract files from a path, an http(s) URL and an s3 URL (a real S3 server on loopback)."""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from stockcast.data.sources import SourceError, SourceNotFoundError, read_optional_source, read_source, sibling

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


def test_unreachable_http_url_is_a_source_error():
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
