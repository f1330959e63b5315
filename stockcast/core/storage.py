"""A small object store under the Metaflow datastore root: local folder by default, S3 when configured.

Things that outlive a run and are not artefacts (the model registry, exported Bentos) live here, next to the
artefacts, so one setting decides where everything goes: ``METAFLOW_DEFAULT_DATASTORE`` with
``METAFLOW_DATASTORE_SYSROOT_LOCAL`` or ``METAFLOW_DATASTORE_SYSROOT_S3`` (and ``METAFLOW_S3_ENDPOINT_URL`` for
any S3-compatible server). Writes can be made exclusive (create-only), which is what keeps two concurrent
promotions from overwriting each other.

Storage faults fail fast. Every S3 call, ours and Metaflow's, has a connect and a read timeout and a few retries with
backoff, so that an unreachable endpoint fails the step within a minute or two, naming the endpoint
(``StorageUnavailableError``), instead of retrying silently for an hour. The numbers are here, and only here: our
boto3 client takes them from ``s3_client_config``; Metaflow's own S3 traffic (artefacts, the Client API,
``metaflow.S3``) takes them from the environment variables of ``METAFLOW_S3_SETTINGS``, which every run started
through ``stockcast.core.runs.launch_flow`` gets unless the user configured them, and which people running a flow
by hand export (``eval "$(python -m stockcast.core.storage)"``) or put in their Metaflow configuration file.
"""

from __future__ import annotations

import json
import os
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING

from metaflow.exception import MetaflowException

if TYPE_CHECKING:
    from botocore.config import Config

STORE_PREFIX = "stockcast"
"""Our objects sit under ``<datastore root>/stockcast/``, beside Metaflow's own per-flow folders."""

S3_CONNECT_TIMEOUT_SECONDS = 5
"""Longest wait for a TCP connection to the S3 endpoint (botocore's default is 60 s). A connection takes
milliseconds on loopback, in a data centre or within an AWS region; an endpoint that takes seconds is down or
firewalled, and every retry of it would wait the full timeout again."""
S3_READ_TIMEOUT_SECONDS = 30
"""Longest silence while waiting for the next bytes of an answer (botocore's default is 60 s). Large objects stream
without pauses; a server that says nothing for 30 s is hung, not slow."""
S3_MAX_ATTEMPTS = 3
"""Tries of one S3 call, the first included (botocore's ``total_max_attempts``; its ``max_attempts`` counts the
retries after the first), in botocore's ``standard`` retry mode: retried on connection errors, timeouts, throttling
and 5xx answers, with exponential backoff and jitter (at most 1 s, then 2 s); other errors (403, 404, a failed
precondition) are not retried. Metaflow's own default is 11 tries (``max_attempts`` 10) in ``adaptive`` mode: up to
two and a half minutes of backoff for every call."""
METAFLOW_S3_RETRIES = 1
"""Metaflow retries a failed S3 operation (every call of it already tried ``S3_MAX_ATTEMPTS`` times) this many times
more, after a pause of a few seconds. Its defaults (7 and 20, with pauses doubling up to six minutes) keep a run
retrying an unreachable endpoint for hours without a word: what this module exists to prevent."""

METAFLOW_S3_SETTINGS: dict[str, str] = {
    # Each S3 call of Metaflow's boto3 clients: standard mode, S3_MAX_ATTEMPTS tries.
    "METAFLOW_S3_CLIENT_RETRY_CONFIG": json.dumps({"total_max_attempts": S3_MAX_ATTEMPTS, "mode": "standard"}),
    # The keyword arguments of those clients: the connect and read timeouts (botocore ``Config`` fields). The endpoint
    # still comes from METAFLOW_S3_ENDPOINT_URL.
    "METAFLOW_DATATOOLS_CLIENT_PARAMS": json.dumps(
        {"config": {"connect_timeout": S3_CONNECT_TIMEOUT_SECONDS, "read_timeout": S3_READ_TIMEOUT_SECONDS}}
    ),
    # Retries of a whole operation: S3_RETRY_COUNT for listings and metadata, the larger of it and
    # S3_TRANSIENT_RETRY_COUNT for gets and puts (Metaflow's datastore and metaflow.S3 alike).
    "METAFLOW_S3_RETRY_COUNT": str(METAFLOW_S3_RETRIES),
    "METAFLOW_S3_TRANSIENT_RETRY_COUNT": str(METAFLOW_S3_RETRIES),
    # Say so when an operation is retried, rather than retry in silence.
    "METAFLOW_S3_LOG_TRANSIENT_RETRIES": "true",
}
"""Metaflow's S3 settings (``metaflow/metaflow_config.py``; environment variables or keys of the Metaflow configuration
file) that bound its retries of an unreachable endpoint to about ten seconds per operation."""
TRANSIENT_S3_CODES = frozenset(
    {"SlowDown", "Throttling", "ThrottlingException", "RequestTimeout", "ServiceUnavailable"}
)
"""S3 error codes that say "later", not "no"; so does every 5xx answer."""


class ObjectExistsError(FileExistsError):
    """An exclusive write found the key already taken."""


class StorageUnavailableError(MetaflowException, ConnectionError):
    """The S3 endpoint cannot be reached or keeps failing after the retries: a transient fault, worth a retry once
    the storage is back. The message names the endpoint. Metaflow prints it as a headline and a message."""

    headline = "Storage unavailable"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.args = (message,)


class ObjectStore(ABC):
    """Keys are '/'-separated paths relative to the store's root."""

    root: str

    @abstractmethod
    def put(self, key: str, data: bytes, *, exclusive: bool = False) -> None:
        """Write ``data`` at ``key``; with ``exclusive`` raise ``ObjectExistsError`` if the key exists."""

    @abstractmethod
    def get(self, key: str) -> bytes:
        """The bytes at ``key``; ``KeyError`` if absent."""

    @abstractmethod
    def list(self, prefix: str) -> list[str]:
        """Keys under ``prefix``, sorted."""

    def url(self, key: str) -> str:
        """Where ``key`` lives, for people and for lineage records."""
        return f"{self.root}/{key}"


class LocalStore(ObjectStore):
    """A folder on the local disk (the local Metaflow datastore's root)."""

    def __init__(self, root: str | Path) -> None:
        self.root = str(root)

    def _path(self, key: str) -> Path:
        return Path(self.root) / key

    def put(self, key: str, data: bytes, *, exclusive: bool = False) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        # Written aside first, so a reader never sees half an object: renamed over the key, or, for an exclusive
        # write, hard-linked to it, which fails when the key exists (creating the key and then writing it would let a
        # concurrent reader find it empty).
        handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
        with os.fdopen(handle, "wb") as partial_file:
            partial_file.write(data)
        partial = Path(name)
        partial.chmod(0o644)
        if not exclusive:
            partial.replace(path)
            return
        try:
            os.link(partial, path)
        except FileExistsError as exc:
            raise ObjectExistsError(f"{self.url(key)} already exists") from exc
        finally:
            partial.unlink()

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError as exc:
            raise KeyError(self.url(key)) from exc

    def list(self, prefix: str) -> list[str]:
        base = self._path(prefix)
        if not base.exists():
            return []
        root = Path(self.root)
        return sorted(
            p.relative_to(root).as_posix() for p in base.rglob("*") if p.is_file() and not p.name.endswith(".partial")
        )


class S3Store(ObjectStore):
    """A prefix in an S3 bucket, on whatever endpoint Metaflow is configured for.

    Its client has the timeouts and retries of ``s3_client_config``; a call that still cannot reach the endpoint, or
    keeps getting throttled or 5xx answers, raises ``StorageUnavailableError`` naming the endpoint.
    """

    def __init__(self, root: str, *, endpoint_url: str | None = None, config: Config | None = None) -> None:
        import boto3

        if not root.startswith("s3://"):
            raise ValueError(f"S3 store root must be an s3:// URL, got {root!r}")
        self.root = root.rstrip("/")
        self.bucket, _, self.prefix = self.root[len("s3://") :].partition("/")
        self._client = boto3.client("s3", endpoint_url=endpoint_url, config=config or s3_client_config())
        self.endpoint: str = self._client.meta.endpoint_url

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def put(self, key: str, data: bytes, *, exclusive: bool = False) -> None:
        from botocore.exceptions import ClientError

        extra = {"IfNoneMatch": "*"} if exclusive else {}
        try:
            with self._faults():
                self._client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, **extra)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("PreconditionFailed", "ConditionalRequestConflict"):
                raise ObjectExistsError(f"{self.url(key)} already exists") from exc
            raise

    def get(self, key: str) -> bytes:
        try:
            with self._faults():
                return self._client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()
        except self._client.exceptions.NoSuchKey as exc:
            raise KeyError(self.url(key)) from exc

    def list(self, prefix: str) -> list[str]:
        strip = len(self.prefix) + 1 if self.prefix else 0
        keys: list[str] = []
        paginator = self._client.get_paginator("list_objects_v2")
        with self._faults():
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self._key(prefix)):
                keys.extend(item["Key"][strip:] for item in page.get("Contents", []))
        return sorted(keys)

    def check_reachable(self) -> None:
        """Ask the endpoint about the bucket; ``StorageUnavailableError`` if it cannot be reached. Any answer, even a
        refusal, means it is up."""
        from botocore.exceptions import ClientError

        with self._faults(), suppress(ClientError):
            self._client.head_bucket(Bucket=self.bucket)

    @contextmanager
    def _faults(self) -> Iterator[None]:
        """Turn what the retries could not get past into ``StorageUnavailableError`` naming the endpoint."""
        from botocore.exceptions import ClientError

        try:
            yield
        except ClientError as exc:
            if not transient_storage_error(exc):
                raise
            raise StorageUnavailableError(f"S3 endpoint {self.endpoint} failing: {exc}") from exc
        except Exception as exc:
            if not transient_storage_error(exc):
                raise
            raise StorageUnavailableError(f"S3 endpoint {self.endpoint} unreachable: {exc}") from exc


def s3_client_config() -> Config:
    """The timeouts and retries of every boto3 S3 client of ours (see ``S3_CONNECT_TIMEOUT_SECONDS`` and below)."""
    from botocore.config import Config

    return Config(
        connect_timeout=S3_CONNECT_TIMEOUT_SECONDS,
        read_timeout=S3_READ_TIMEOUT_SECONDS,
        retries={"total_max_attempts": S3_MAX_ATTEMPTS, "mode": "standard"},
    )


def transient_storage_error(error: BaseException) -> bool:
    """Whether ``error``, or an error it was raised from or while handling, is a storage fault that may pass: an S3
    endpoint that cannot be reached, times out, throttles or answers 5xx; ``StorageUnavailableError``; or Metaflow's
    generic "S3 operation failed" after its own retries (its not-found and access-denied errors are not transient).

    A missing object, a refused request, a failed precondition or any error of the code itself is not: trying again
    would fail the same way.
    """
    from botocore.exceptions import ClientError, HTTPClientError
    from botocore.exceptions import ConnectionError as BotoConnectionError
    from metaflow.plugins.datatools.s3.s3 import MetaflowS3Exception

    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, StorageUnavailableError | BotoConnectionError | HTTPClientError | MetaflowS3Exception):
            return True
        if isinstance(current, ClientError):
            response = current.response
            status = response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
            if status >= 500 or response.get("Error", {}).get("Code") in TRANSIENT_S3_CODES:
                return True
        current = current.__cause__ or current.__context__
    return False


def metaflow_s3_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The ``METAFLOW_S3_SETTINGS`` that the user has not set: not in ``environ`` (default ``os.environ``) and not in
    Metaflow's configuration files (``$METAFLOW_HOME/config[_<profile>].json``, ``.metaflow/config.json``). What a
    user configured wins; the rest is added to the environment of the runs we start."""
    from metaflow.metaflow_config_funcs import init_config, init_local_config

    environ = os.environ if environ is None else environ
    configured = {*environ, *init_config(), *init_local_config()}
    return {name: value for name, value in METAFLOW_S3_SETTINGS.items() if name not in configured}


def datastore_store() -> ObjectStore:
    """The store beside the configured Metaflow datastore (local unless ``METAFLOW_DEFAULT_DATASTORE=s3``)."""
    from metaflow import metaflow_config as config

    if config.DEFAULT_DATASTORE == "s3":
        if not config.DATASTORE_SYSROOT_S3:
            raise ValueError("METAFLOW_DEFAULT_DATASTORE=s3 needs METAFLOW_DATASTORE_SYSROOT_S3 (s3://bucket/prefix)")
        return S3Store(f"{config.DATASTORE_SYSROOT_S3.rstrip('/')}/{STORE_PREFIX}", endpoint_url=config.S3_ENDPOINT_URL)
    from metaflow.plugins.datastores.local_storage import LocalStorage

    root = LocalStorage.get_datastore_root_from_config(lambda *_args, **_kw: None, create_on_absent=True)
    return LocalStore(Path(root) / STORE_PREFIX)


STORAGE_OUTAGE_HOOK = "stockcast.core.storage.report_storage_outage"
"""``report_storage_outage`` as flows name it in ``@exit_hook(on_error=[STORAGE_OUTAGE_HOOK])``: by import path, which
Metaflow's hook runner imports wherever the run's code is; a function object would be looked up in the flow file,
which the runner finds only when run from the folder of the flows."""


def report_storage_outage() -> None:
    """Metaflow exit hook of a failed run (``STORAGE_OUTAGE_HOOK``): when the datastore is on S3 and its endpoint
    cannot be reached, say so, naming the endpoint, below whatever Metaflow printed. Whichever process met the outage
    first (a task, its artefact upload, the scheduler's own bookkeeping), the run's output then says the cause in our
    words; a run that failed for any other reason prints nothing more."""
    store = datastore_store()
    if not isinstance(store, S3Store):
        return
    try:
        store.check_reachable()
    except StorageUnavailableError as exc:
        print(exc)


def main() -> None:
    """``python -m stockcast.core.storage``: the ``export`` lines of the Metaflow S3 settings not configured yet, for
    ``eval "$(python -m stockcast.core.storage)"`` before running a flow by hand on S3."""
    import shlex

    for name, value in metaflow_s3_environment().items():
        print(f"export {name}={shlex.quote(value)}")


if __name__ == "__main__":
    main()
