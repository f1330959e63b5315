"""Verified artefacts without building a Bento: the one sha256 helper, the refusal messages, a pickle that is refused
before it can run anything, and an archive or a registry entry that the import and the rollout refuse.

The same checks on real Bento archives, served for real when they pass, are in ``tests/service/test_tampering.py``.
"""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import bentoml
import pytest
from bentoml.exceptions import NotFound

from stockcast.core.registry import Registry
from stockcast.core.storage import LocalStore
from stockcast.deploy.package import import_bento, registered_bento
from stockcast.deploy.rollout import RolloutError, rollout
from stockcast.deploy.targets import DeployTarget
from stockcast.serve.bundle import (
    SHA256_CHUNK_BYTES,
    ArtefactIntegrityError,
    read_bundle,
    sha256_digest,
    verify_sha256,
)
from tests.factories import make_record

EXPORTED = b"the archive as the deploy step exported it"


class _Touch:
    """Unpickled, it creates ``marker``: the code a tampered bundle would run."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[Path]]:
        return Path.touch, (self.marker,)


class _RecordingTarget(DeployTarget):
    """A target that records what it is asked to deploy and deploys nothing."""

    def __init__(self) -> None:
        self.deployed: list[str] = []

    def deploy(self, bento_tag: str) -> str:
        self.deployed.append(bento_tag)
        return "http://127.0.0.1:9"

    def stop(self) -> None:
        return


def test_the_digest_of_bytes_and_of_a_file_read_in_chunks_is_hashlibs_sha256(tmp_path) -> None:
    data = bytes(range(256)) * (SHA256_CHUNK_BYTES // 256 * 2 + 3)  # more than two chunks, the last one partial
    (tmp_path / "big").write_bytes(data)
    (tmp_path / "empty").write_bytes(b"")

    assert sha256_digest(data) == hashlib.sha256(data).hexdigest()
    assert sha256_digest(tmp_path / "big") == sha256_digest(data)
    assert sha256_digest(tmp_path / "empty") == hashlib.sha256(b"").hexdigest()


def test_a_changed_artefact_is_named_with_both_digests_and_what_was_not_done() -> None:
    verify_sha256(EXPORTED, sha256_digest(EXPORTED), what="archive s3://b/x.bento", refused="nothing was imported")
    changed = EXPORTED.replace(b"deploy", b"DEPLOY")

    with pytest.raises(ArtefactIntegrityError) as refused:
        verify_sha256(changed, sha256_digest(EXPORTED), what="archive s3://b/x.bento", refused="nothing was imported")

    assert str(refused.value) == (
        f"archive s3://b/x.bento was changed after it was recorded: expected sha256 {sha256_digest(EXPORTED)}, "
        f"actual {sha256_digest(changed)}; nothing was imported"
    )


def test_a_bundle_whose_bytes_differ_from_the_recorded_ones_is_never_unpickled(tmp_path) -> None:
    marker = tmp_path / "code-ran"
    path = tmp_path / "bundle.pkl"
    path.write_bytes(pickle.dumps(_Touch(marker)))

    with pytest.raises(ArtefactIntegrityError, match=rf"serving bundle {path} was changed .*; it was not unpickled"):
        read_bundle(path, sha256=sha256_digest(b"the bundle that was recorded"))
    assert not marker.exists()

    # With the digest of these very bytes they are unpickled, and their code runs: the digest is the only guard.
    with pytest.raises(TypeError, match="holds a NoneType, not a ServingBundle"):
        read_bundle(path, sha256=sha256_digest(path))
    assert marker.exists()


def test_an_archive_other_than_the_exported_one_is_refused_before_anything_is_imported(tmp_path) -> None:
    store = LocalStore(tmp_path / "store")
    store.put("bentos/stockcast/v1.bento", b"PK\x03\x04 an archive put here by someone else")
    url = store.url("bentos/stockcast/v1.bento")

    with pytest.raises(ArtefactIntegrityError) as refused:
        import_bento(url, store, sha256=sha256_digest(EXPORTED))

    message = str(refused.value)
    assert message.startswith(f"Bento archive {url} was changed after it was recorded: ")
    assert f"expected sha256 {sha256_digest(EXPORTED)}" in message
    assert f"actual {sha256_digest(store.get('bentos/stockcast/v1.bento'))}" in message
    assert message.endswith("nothing was imported")
    with pytest.raises(NotFound):
        bentoml.bentos.get("stockcast:v1")


def test_a_bento_recorded_without_digests_is_refused_with_how_to_re_record_it(tmp_path) -> None:
    registry = Registry("user.test", LocalStore(tmp_path))
    registry.register(make_record("v12"))
    archive = registry.store.url("bentos/stockcast/v12.bento")
    registry.store.put("bentos/stockcast/v12.bento", EXPORTED)
    registry.record_bento("v12", {"bento_tag": "stockcast:v12", "archive": archive, "archive_sha256": "0" * 64})

    with pytest.raises(ArtefactIntegrityError) as refused:
        registered_bento(registry, "v12")

    assert str(refused.value) == (
        f"the Bento of model v12 on branch user.test was recorded without sha256 digests (before archives were "
        f"verified), so its archive {archive} cannot be checked and is not imported. Re-record it by re-running the "
        "deploy step of TrainFlow/12: `python flows/train.py resume deploy --origin-run-id 12` (with that run's "
        "--branch or --production option), or promote a newer champion"
    )
    with pytest.raises(NotFound):
        bentoml.bentos.get("stockcast:v12")


def test_a_rollout_refuses_a_changed_champion_deploys_nothing_and_does_not_roll_back(tmp_path) -> None:
    registry = Registry("user.test", LocalStore(tmp_path))
    for version, previous in (("v1", None), ("v2", "v1")):
        registry.register(make_record(version))
        registry.promote(version, reason="test", expected_champion=previous)
        registry.store.put(f"bentos/stockcast/{version}.bento", EXPORTED + version.encode())
        registry.record_bento(
            version,
            {
                "archive": registry.store.url(f"bentos/stockcast/{version}.bento"),
                "archive_sha256": sha256_digest(EXPORTED + version.encode()),
                "bundle_sha256": sha256_digest(b"its bundle"),
            },
        )
    registry.store.put("bentos/stockcast/v2.bento", b"replaced")
    target = _RecordingTarget()

    with pytest.raises(
        RolloutError,
        match=r"(?s)^rollout of v2 refused: Bento archive .*v2\.bento was changed after it was recorded: .*"
        r"nothing was imported\nNothing was deployed and the registry was not rolled back\.$",
    ):
        rollout(registry, target)

    assert target.deployed == []
    assert [(event.action, event.version) for event in registry.history()] == [("promote", "v1"), ("promote", "v2")]
