"""A small object store under the Metaflow datastore root: local folder by default, S3 when configured.

Things that outlive a run and are not artefacts (the model registry, exported Bentos) live here, next to the
artefacts, so one setting decides where everything goes: ``METAFLOW_DEFAULT_DATASTORE`` with
``METAFLOW_DATASTORE_SYSROOT_LOCAL`` or ``METAFLOW_DATASTORE_SYSROOT_S3`` (and ``METAFLOW_S3_ENDPOINT_URL`` for
any S3-compatible server). Writes can be made exclusive (create-only), which is what keeps two concurrent
promotions from overwriting each other.
"""

from __future__ import annotations

import os
import tempfile
from abc import ABC, abstractmethod
from pathlib import Path

STORE_PREFIX = "stockcast"
"""Our objects sit under ``<datastore root>/stockcast/``, beside Metaflow's own per-flow folders."""


class ObjectExistsError(FileExistsError):
    """An exclusive write found the key already taken."""


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
    """A prefix in an S3 bucket, on whatever endpoint Metaflow is configured for."""

    def __init__(self, root: str, *, endpoint_url: str | None = None) -> None:
        import boto3

        if not root.startswith("s3://"):
            raise ValueError(f"S3 store root must be an s3:// URL, got {root!r}")
        self.root = root.rstrip("/")
        self.bucket, _, self.prefix = self.root[len("s3://") :].partition("/")
        self._client = boto3.client("s3", endpoint_url=endpoint_url)

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def put(self, key: str, data: bytes, *, exclusive: bool = False) -> None:
        from botocore.exceptions import ClientError

        extra = {"IfNoneMatch": "*"} if exclusive else {}
        try:
            self._client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, **extra)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("PreconditionFailed", "ConditionalRequestConflict"):
                raise ObjectExistsError(f"{self.url(key)} already exists") from exc
            raise

    def get(self, key: str) -> bytes:
        try:
            return self._client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()
        except self._client.exceptions.NoSuchKey as exc:
            raise KeyError(self.url(key)) from exc

    def list(self, prefix: str) -> list[str]:
        strip = len(self.prefix) + 1 if self.prefix else 0
        keys: list[str] = []
        paginator = self._client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self._key(prefix)):
            keys.extend(item["Key"][strip:] for item in page.get("Contents", []))
        return sorted(keys)


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
