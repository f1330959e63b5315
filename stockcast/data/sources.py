"""Where contract files come from: a local path, an ``http(s)://`` URL or an ``s3://`` URL.

S3 is read through Metaflow's own S3 client, so any S3-compatible endpoint configured for the datastore
(``METAFLOW_S3_ENDPOINT_URL`` and the usual AWS credential variables) serves data files too: one set of settings.

Network and storage hiccups (an HTTP 5xx, a timeout, an unreachable or failing S3 endpoint:
``stockcast.core.storage.transient_storage_error``) are retried here, a few times with a growing pause; a missing file
or a refused request is not, since it would fail the same way again.
IngestFlow's load step therefore runs without Metaflow's ``@retry``, which would retry everything.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

from stockcast.core.errors import UserError
from stockcast.core.storage import transient_storage_error

HTTP_TIMEOUT_SECONDS = 60
ATTEMPTS = 3
"""Tries of a read that failed on a network or storage hiccup (pauses of 1 s, then 2 s, between them)."""


class SourceError(UserError, OSError):
    """A source could not be read; the message names it and says why."""

    headline = "Cannot read the input"


class SourceNotFoundError(SourceError):
    """The source does not exist (as opposed to existing but being unreadable)."""


class TransientSourceError(SourceError):
    """A read that failed on the network or the storage service, and may succeed when tried again."""


def read_source(uri: str) -> bytes:
    """Return the bytes behind ``uri`` (path, http(s) or s3 URL), or raise ``SourceError`` naming it; network and
    storage hiccups are tried ``ATTEMPTS`` times first."""
    for attempt in range(ATTEMPTS):
        try:
            return _read_once(uri)
        except TransientSourceError:
            if attempt == ATTEMPTS - 1:
                raise
            time.sleep(2.0**attempt)
    raise AssertionError("unreachable")


def _read_once(uri: str) -> bytes:
    scheme = urlparse(uri).scheme
    if scheme in ("http", "https"):
        return _read_http(uri)
    if scheme == "s3":
        return _read_s3(uri)
    if scheme in ("", "file"):
        return _read_local(Path(urlparse(uri).path if scheme == "file" else uri))
    raise SourceError(f"{uri}: unsupported source scheme '{scheme}' (use a path, http(s):// or s3://)")


def read_optional_source(uri: str) -> bytes | None:
    """Like ``read_source`` but ``None`` when the source does not exist: for optional companion files."""
    try:
        return read_source(uri)
    except SourceNotFoundError:
        return None


def list_csv_files(uri: str) -> list[str] | None:
    """The ``.csv`` files of a folder, sorted (a local folder, or an ``s3://`` prefix ending with ``/``); None when
    ``uri`` names a file rather than a folder."""
    scheme = urlparse(uri).scheme
    if scheme == "s3" and uri.endswith("/"):
        from metaflow import S3

        try:
            with S3() as s3:
                return sorted(obj.url for obj in s3.list_recursive([uri]) if obj.url.endswith(".csv"))
        except Exception as exc:  # the S3 client raises several unrelated types for access and network errors
            raise SourceError(f"{uri}: cannot be listed on S3 ({exc})") from exc
    if scheme in ("", "file"):
        path = Path(urlparse(uri).path if scheme == "file" else uri)
        if path.is_dir():
            files = sorted(str(child) for child in path.glob("*.csv"))
            if not files:
                raise SourceNotFoundError(f"{uri}: a folder without .csv files")
            return files
    return None


def sibling(uri: str, file_name: str) -> str:
    """The URI of ``file_name`` in the same folder (or URL prefix) as ``uri``."""
    head, _, _ = uri.rpartition("/")
    return f"{head}/{file_name}" if head else file_name


def _read_local(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError as exc:
        raise SourceNotFoundError(f"{path}: file not found") from exc
    except OSError as exc:
        raise SourceError(f"{path}: cannot be read ({exc.strerror})") from exc


def _read_http(url: str) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT_SECONDS) as response:
            return response.read()
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            raise SourceNotFoundError(f"{url}: HTTP 404 {exc.reason}") from exc
        failure = TransientSourceError if exc.code >= 500 or exc.code == 429 else SourceError
        raise failure(f"{url}: HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, TimeoutError) as exc:
        raise TransientSourceError(f"{url}: cannot be fetched ({getattr(exc, 'reason', exc)})") from exc


def _read_s3(url: str) -> bytes:
    from metaflow import S3
    from metaflow.plugins.datatools.s3.s3 import MetaflowS3NotFound

    try:
        with S3() as s3:
            return Path(s3.get(url).path).read_bytes()
    except MetaflowS3NotFound as exc:
        raise SourceNotFoundError(f"{url}: object not found") from exc
    except Exception as exc:  # the S3 client raises several unrelated types for access and network errors
        failure = TransientSourceError if transient_storage_error(exc) else SourceError
        raise failure(f"{url}: cannot be read from S3 ({exc})") from exc
