"""Verified artefacts on real Bento archives: exported and recorded as TrainFlow's deploy step does, then changed in
the object store (bytes flipped, or the archive replaced by another valid one) or in the local BentoML store (the
bundle), and refused by the import, ``python -m stockcast.deploy serve`` and the rollout, with nothing imported,
deployed or rolled back. The untouched archive is imported, served and smoke-tested for real.

The model is the session's, under a version of its own (v31): these tests delete its Bento from the local store so
that it must come back from its archive, and leave the session's v7 Bento to the other tests.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import bentoml
import pytest
from bentoml.exceptions import NotFound

from stockcast.core.registry import Registry
from stockcast.core.storage import LocalStore
from stockcast.deploy.config import SmokeSettings
from stockcast.deploy.package import (
    build_bento,
    bundle_path,
    export_bento,
    import_bento,
    registered_bento,
    save_bento_model,
)
from stockcast.deploy.rollout import RolloutError, rollout
from stockcast.deploy.serve import serve_command
from stockcast.deploy.targets import DeployTarget
from stockcast.serve.bundle import ArtefactIntegrityError, sha256_digest
from stockcast.serve.client import StockcastClient
from tests.factories import with_record
from tests.service.conftest import make_fleet

VERSION = "v31"
BENTO = f"stockcast:{VERSION}"
MODEL = f"stockcast-model:{VERSION}"
KEY = f"bentos/stockcast/{VERSION}.bento"
V7_KEY = "bentos/stockcast/v7.bento"
"""Where the registry fixture exports the session's v7 Bento."""
SMOKE = SmokeSettings(tickers=2)


@dataclass(frozen=True)
class Exported:
    """The v31 archive as the deploy step exported it, and what it recorded of it (without the store's URL)."""

    archive: bytes
    entry: dict[str, str]


class CountingTarget(DeployTarget):
    """The local target, remembering every Bento it was asked to deploy."""

    def __init__(self, inner: DeployTarget) -> None:
        self.inner, self.deployed = inner, []

    def deploy(self, bento_tag: str) -> str:
        self.deployed.append(bento_tag)
        return self.inner.deploy(bento_tag)

    def stop(self) -> None:
        self.inner.stop()


def _forget_v31() -> None:
    """Remove v31's Bento and model from the local store, so that only its archive can bring them back."""
    for delete, tag in ((bentoml.bentos.delete, BENTO), (bentoml.models.delete, MODEL)):
        with contextlib.suppress(NotFound):
            delete(tag)


@pytest.fixture(scope="module")
def exported(served_model, tmp_path_factory: pytest.TempPathFactory) -> Exported:
    """v31 built, exported once, and then forgotten by the local store."""
    bento_tag = build_bento(save_bento_model(with_record(served_model.bundle, version=VERSION)))
    store = LocalStore(tmp_path_factory.mktemp("exported"))
    entry = export_bento(bento_tag, store)
    _forget_v31()
    return Exported(archive=store.get(KEY), entry={name: value for name, value in entry.items() if name != "archive"})


@pytest.fixture(autouse=True)
def _v31_forgotten_after() -> Iterator[None]:
    """Whatever a test imported of v31 is gone for the next one."""
    yield
    _forget_v31()


@pytest.fixture
def registry(tmp_path, served_model, bento_tag, exported) -> Registry:
    """A branch whose first champion is the session's v7 and whose champion is v31, both recorded with digests."""
    previous = served_model.bundle.record
    registry = Registry(previous.branch, LocalStore(tmp_path / "store"))
    registry.register(previous)
    registry.promote(previous.version, reason="first champion", expected_champion=None)
    registry.record_bento(previous.version, export_bento(bento_tag, registry.store))
    registry.register(with_record(served_model.bundle, version=VERSION).record)
    registry.promote(VERSION, reason="beats the champion", expected_champion=previous.version)
    registry.store.put(KEY, exported.archive)
    registry.record_bento(VERSION, exported.entry | {"archive": registry.store.url(KEY)})
    return registry


@pytest.fixture
def target(tmp_path) -> Iterator[CountingTarget]:
    serving = CountingTarget(make_fleet(tmp_path / "fleet"))
    yield serving
    serving.stop()


def _flip_a_byte(archive: bytes) -> bytes:
    middle = len(archive) // 2
    return archive[:middle] + bytes([archive[middle] ^ 0x01]) + archive[middle + 1 :]


@pytest.mark.slow
def test_the_archive_as_recorded_is_imported_served_and_smoke_tested(registry, target) -> None:
    result = rollout(registry, target, SMOKE)

    assert not result.rolled_back and (result.model_version, result.bento_tag) == (VERSION, BENTO)
    assert target.deployed == [BENTO]
    with StockcastClient(result.endpoint) as client:
        assert client.model()["model_version"] == VERSION


@pytest.mark.parametrize("tampering", ["flipped byte", "another valid archive"])
def test_a_changed_archive_is_refused_and_nothing_is_imported_deployed_or_rolled_back(
    registry, target, exported, tampering
) -> None:
    # Another valid archive: the v7 Bento's, which would import without complaint and serve another model.
    changed = _flip_a_byte(exported.archive) if tampering == "flipped byte" else registry.store.get(V7_KEY)
    registry.store.put(KEY, changed)
    url = registry.store.url(KEY)
    refusal = (
        f"Bento archive {url} was changed after it was recorded: expected sha256 {exported.entry['archive_sha256']}, "
        f"actual {sha256_digest(changed)}; nothing was imported"
    )
    history = registry.history()

    with pytest.raises(RolloutError) as refused:
        rollout(registry, target, SMOKE)
    assert str(refused.value) == (
        f"rollout of {VERSION} refused: {refusal}\nNothing was deployed and the registry was not rolled back."
    )
    with pytest.raises(ArtefactIntegrityError) as refused:
        serve_command(registry, None, host="127.0.0.1", port=3000)
    assert str(refused.value) == refusal
    with pytest.raises(ArtefactIntegrityError):
        import_bento(url, registry.store, sha256=exported.entry["archive_sha256"])

    assert target.deployed == []
    assert registry.history() == history and registry.champion_version() == VERSION
    for get, tag in ((bentoml.bentos.get, BENTO), (bentoml.models.get, MODEL)):
        with pytest.raises(NotFound):
            get(tag)


def test_a_bundle_changed_in_the_local_store_after_the_import_is_not_served(registry, target, exported) -> None:
    assert registered_bento(registry, VERSION) == BENTO  # the archive as recorded: imported
    path = bundle_path(BENTO)
    path.write_bytes(path.read_bytes() + b"\0")
    refusal = (
        f"serving bundle {path} of {BENTO} was changed after it was recorded: expected sha256 "
        f"{exported.entry['bundle_sha256']}, actual {sha256_digest(path)}; it is not served"
    )

    with pytest.raises(ArtefactIntegrityError) as refused:
        serve_command(registry, None, host="127.0.0.1", port=3000)
    assert str(refused.value) == refusal
    with pytest.raises(RolloutError, match=r"^rollout of v31 refused: serving bundle .* it is not served\nNothing was"):
        rollout(registry, target, SMOKE)
    assert target.deployed == []
