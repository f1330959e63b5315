"""Packaging a model for serving, one function per action, and the release TrainFlow's deploy step makes of them.

1. ``save_bento_model``: the champion's ``ServingBundle`` into the BentoML model store (``BENTOML_HOME``), with its
   lineage (``ModelRecord.lineage``) as labels and its metrics as metadata, under a version derived from the
   registry version;
2. ``build_bento``: a Bento of ``bentos/`` (the service with the ``stockcast`` and ``features`` packages) serving
   that model, built offline: requirements are pinned to this environment, never locked against the index;
3. ``export_bento`` / ``import_bento``: the Bento archive to and from the object store beside the Metaflow datastore
   (local folder or S3), so any deployment can be rebuilt or rolled back from the store alone;
4. ``package_champion``: the three above, with a smoke test of the built Bento on loopback before its archive is
   exported; ``release`` then records the Bento in the registry and promotes the model: TrainFlow's deploy step is
   this one call, so a champion always has a Bento that served.

Verified artefacts: a Bento archive carries a pickled bundle, and unpickling runs code, so whoever could write the
store's ``bentos/`` prefix could otherwise run code wherever a model is deployed. The registry therefore records the
sha256 of the archive (``archive_sha256``) and of the bundle inside it (``bundle_sha256``) when the archive is
exported, and ``registered_bento`` (which every deployment of a registered version goes through) checks the archive's
bytes before importing them and the bundle's before anything serves it.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from collections.abc import Iterator
from contextlib import chdir, contextmanager
from dataclasses import dataclass
from importlib.metadata import version as installed_version
from pathlib import Path
from typing import TYPE_CHECKING, Any

import bentoml
import pandas as pd
import yaml
from bentoml.exceptions import NotFound

from stockcast.core.registry import ModelRecord, Registry
from stockcast.core.storage import ObjectStore
from stockcast.data.calendar import DATA_CALENDAR
from stockcast.data.config import DEFAULT_TICKER_PATTERN
from stockcast.deploy.smoke import smoke_test
from stockcast.deploy.targets import DeployError, LocalServe, served_model_tag
from stockcast.serve.bundle import (
    BENTO_MODEL_NAME,
    BUNDLE_FILE,
    MODEL_TAG_ENV,
    ArtefactIntegrityError,
    ServingBundle,
    build_bundle,
    read_bundle,
    sha256_digest,
    verify_sha256,
    write_bundle,
)
from stockcast.train.factories import Estimator

if TYPE_CHECKING:
    from stockcast.data.snapshot import Snapshot

REPO_ROOT = Path(__file__).resolve().parents[2]
"""The Bento's build context: ``bentos/`` and the packages the service imports."""
BENTOFILE = REPO_ROOT / "bentos" / "bentofile.yaml"
BENTO_NAME = "stockcast"
"""Every Bento is ``stockcast:<model version>``: one Bento per champion."""
STORE_PREFIX = "bentos"
"""Exported Bentos live at ``bentos/<name>/<version>.bento`` in the object store."""

_TAG_VERSION = re.compile(r"^[a-z0-9]([-._a-z0-9]*[a-z0-9])?$")


@dataclass(frozen=True)
class Release:
    """What TrainFlow's deploy step did: whether the model was promoted, its Bento (tag, archive) when it was, and
    the branch's champion afterwards."""

    promoted: bool
    bento: dict[str, str] | None
    champion_version: str | None


def model_tag_for(model_version: str) -> str:
    """The BentoML model tag of a registry version: ``stockcast-model:<version>``, the same for the same version.

    Registry versions that BentoML would refuse as a tag version (upper case, ``/``, too long: some schedulers'
    run ids) are lower-cased, cleaned and suffixed with a hash of the original, so distinct versions stay distinct.
    """
    if len(model_version) <= 63 and _TAG_VERSION.match(model_version):
        return f"{BENTO_MODEL_NAME}:{model_version}"
    cleaned = re.sub(r"[^-._a-z0-9]+", "-", model_version.lower()).strip("-._")[:54].rstrip("-._")
    digest = sha256_digest(model_version.encode())[:8]
    return f"{BENTO_MODEL_NAME}:{cleaned}-{digest}" if cleaned else f"{BENTO_MODEL_NAME}:{digest}"


def save_bento_model(bundle: ServingBundle) -> str:
    """Save the bundle as a BentoML model in the store under ``BENTOML_HOME``; return its tag.

    Saving the same registry version again returns the stored model's tag without writing anything, so a retried
    deploy step deploys exactly the same model. A stored model of that tag from another training run is an error.
    """
    tag = model_tag_for(bundle.model_version)
    labels = bundle.record.lineage()
    try:
        existing = bentoml.models.get(tag)
    except NotFound:
        existing = None
    if existing is not None:
        if existing.info.labels.get("run_pathspec") != labels["run_pathspec"]:
            raise DeployError(
                f"BentoML model {tag} already exists from run {existing.info.labels.get('run_pathspec')}, "
                f"not from {labels['run_pathspec']}; delete it or use another BENTOML_HOME"
            )
        return str(existing.tag)
    metadata = {"metrics": _without_none(bundle.record.metrics), "gate": _without_none(bundle.record.gate)}
    with bentoml.models.create(tag, labels=labels, metadata=metadata) as model:
        write_bundle(bundle, model.path_of(BUNDLE_FILE))
    return str(model.tag)


def build_bento(model_tag: str) -> str:
    """Build a Bento of ``bentos/`` that serves the BentoML model ``model_tag``; return the Bento's tag.

    The Bento's version is the model's, so building for the same champion twice gives the same Bento: an existing
    one is returned as it is (a rollback redeploys exactly what was deployed before). The options come from
    ``bentos/bentofile.yaml``, with its Python packages pinned to the versions installed here and locking switched
    off (no index access). The model's lineage labels are copied onto the Bento.
    """
    model = bentoml.models.get(model_tag)
    options: dict[str, Any] = yaml.safe_load(BENTOFILE.read_text())
    existing = _existing_bento(model.tag)
    if existing is not None:
        return existing
    python = dict(options.get("python") or {})
    python["packages"] = [f"{name}=={installed_version(name)}" for name in python.get("packages", [])]
    python["lock_packages"] = False
    options.update(
        python=python,
        labels={**options.get("labels", {}), **model.info.labels, "model_tag": str(model.tag)},
        models=[str(model.tag)],
    )
    service_module = options["service"].partition(":")[0]
    # Built as `bentoml build` runs, from the root: BentoML reads files named in the options relative to it.
    with chdir(REPO_ROOT), _environment(MODEL_TAG_ENV, str(model.tag)):
        # The service reads its model tag when its module is imported, and BentoML reuses a module imported
        # before: drop it so that this build's tag is the one the service refers to.
        sys.modules.pop(service_module, None)
        try:
            bento = bentoml.bentos.build(
                **options, name=BENTO_NAME, version=model.tag.version, build_ctx=str(REPO_ROOT)
            )
        finally:
            # ... and drop it again, so that no later load in this process gets this build's model by accident.
            sys.modules.pop(service_module, None)
    packaged = sorted(str(info.tag) for info in bento.info.all_models)
    if packaged != [str(model.tag)]:
        raise DeployError(f"Bento {bento.tag} packages models {packaged}, expected only {model.tag}")
    return str(bento.tag)


def package_champion(
    record: ModelRecord,
    prices: pd.DataFrame,
    financials: pd.DataFrame | None,
    store: ObjectStore,
    *,
    actions: pd.DataFrame | None = None,
    estimator: Estimator | None = None,
    calendar: str = DATA_CALENDAR,
    ticker_pattern: str = DEFAULT_TICKER_PATTERN,
) -> dict[str, str]:
    """Package a model for serving and return what the registry records of it.

    The model's ``ServingBundle`` (from the snapshot it was trained on, with the calendar and ticker pattern its data
    was checked against) goes into the BentoML model store, a Bento is built around it and smoke-tested on loopback,
    and only then is its archive exported to ``store``: an archive in the store is a Bento that served. Returns what
    ``export_bento`` does: the tags, the archive's URL and the sha256 digests that every later deployment checks.
    """
    bundle = build_bundle(
        record,
        prices,
        financials,
        actions=actions,
        estimator=estimator,
        calendar=calendar,
        ticker_pattern=ticker_pattern,
    )
    bento_tag = build_bento(save_bento_model(bundle))
    with LocalServe() as serving:
        smoke_test(serving.deploy(bento_tag), bundle)
    return export_bento(bento_tag, store)


def release(
    registry: Registry,
    record: ModelRecord,
    *,
    promote: bool,
    reason: str,
    expected_champion: str | None,
    snapshot: Snapshot,
    estimator: Estimator | None = None,
) -> Release:
    """When the gate said ``promote``: package the model from ``snapshot``, the data it was trained on
    (``package_champion``), record its Bento in the registry and promote it, provided the champion is still
    ``expected_champion`` (the one the gate judged against; otherwise the registry's ``ChampionChangedError`` names
    both). When it did not, build nothing (nor read the snapshot's tables): the champion's Bento stays.

    A retried step finds the model already packaged and promoted and changes nothing.
    """
    if not promote:
        return Release(promoted=False, bento=None, champion_version=registry.champion_version())
    bento = package_champion(
        record,
        snapshot.prices,
        snapshot.financials,
        registry.store,
        actions=snapshot.actions,
        estimator=estimator,
        calendar=snapshot.calendar,
        ticker_pattern=snapshot.ticker_pattern,
    )
    registry.record_bento(record.version, bento)
    if registry.champion_version() != record.version:
        registry.promote(record.version, reason=reason, expected_champion=expected_champion)
    return Release(promoted=True, bento=bento, champion_version=registry.champion_version())


def bento_bundle(bento_tag: str, *, sha256: str | None = None) -> ServingBundle:
    """The ``ServingBundle`` a Bento serves, read from its model in the local BentoML store; with ``sha256`` (the
    registry's ``bundle_sha256``) only if its bytes have that digest (``read_bundle``)."""
    return read_bundle(bundle_path(bento_tag), sha256=sha256)


def bundle_path(bento_tag: str) -> Path:
    """Where the pickled bundle of the model a Bento serves lies in the local BentoML model store."""
    return Path(bentoml.models.get(served_model_tag(bento_tag)).path_of(BUNDLE_FILE))


def registered_bento(registry: Registry, version: str) -> str:
    """The tag of the Bento the registry recorded for ``version``, checked against the digests recorded with it.

    The archive is imported into the local BentoML store when the store lacks the Bento, and only if its bytes have
    the recorded ``archive_sha256``; then the bundle the Bento serves must have the recorded ``bundle_sha256`` (which
    also covers a Bento imported earlier). ``ArtefactIntegrityError`` when either differs: nothing of it is imported
    or served. ``DeployError`` when no Bento was recorded or its archive cannot be read.

    An entry recorded before digests were (it lacks them) is refused too, with ``ArtefactIntegrityError`` saying how
    to re-record it: re-run the deploy step of its training run, which exports the archive again and records it
    with its digests. Accepting it with a warning would leave exactly the hole the digests close, for the versions a
    rollback goes back to.
    """
    bento = registry.bento(version)
    if bento is None:
        raise DeployError(
            f"model {version} on branch {registry.branch} has no Bento: only a TrainFlow deploy step that promoted "
            "it builds one"
        )
    if not bento.get("archive_sha256") or not bento.get("bundle_sha256"):
        raise ArtefactIntegrityError(_unrecorded_message(registry, version, bento.get("archive")))
    try:
        bento_tag = import_bento(bento["archive"], registry.store, sha256=bento["archive_sha256"])
    except (KeyError, ValueError) as exc:
        raise DeployError(f"the Bento archive of {version} cannot be read from {bento['archive']}: {exc}") from exc
    path = bundle_path(bento_tag)
    verify_sha256(
        path, bento["bundle_sha256"], what=f"serving bundle {path} of {bento_tag}", refused="it is not served"
    )
    return bento_tag


def export_bento(bento_tag: str, store: ObjectStore) -> dict[str, str]:
    """Export the Bento (with its model) as an archive into ``store``; return what the registry records of it.

    That is ``model_tag``, ``bento_tag``, ``archive`` (the archive's URL), ``archive_sha256`` (of the bytes put in the
    store) and ``bundle_sha256`` (of the pickled bundle inside): ``registered_bento`` checks both before a deployment.
    """
    bento = bentoml.bentos.get(bento_tag)
    key = f"{STORE_PREFIX}/{bento.tag.name}/{bento.tag.version}.bento"
    with tempfile.TemporaryDirectory(prefix="stockcast-export-") as folder:
        archive = Path(bentoml.bentos.export_bento(bento.tag, str(Path(folder) / "bento.bento"))).read_bytes()
    store.put(key, archive)
    return {
        "model_tag": served_model_tag(str(bento.tag)),
        "bento_tag": str(bento.tag),
        "archive": store.url(key),
        "archive_sha256": sha256_digest(archive),
        "bundle_sha256": sha256_digest(bundle_path(str(bento.tag))),
    }


def import_bento(url: str, store: ObjectStore, *, sha256: str) -> str:
    """Import a Bento archive that ``export_bento`` put in ``store``; return its tag (already there: unchanged).

    The archive's bytes must have the sha256 recorded when it was exported: ``ArtefactIntegrityError`` naming the
    archive and both digests otherwise, before anything is imported. The bytes checked are the bytes imported.
    """
    prefix = store.url("")
    if not url.startswith(prefix):
        raise ValueError(f"{url} is not in the object store at {store.root}")
    key = url[len(prefix) :]
    name, _, file_name = key.removeprefix(f"{STORE_PREFIX}/").partition("/")
    tag = f"{name}:{file_name.removesuffix('.bento')}"
    try:
        return str(bentoml.bentos.get(tag).tag)
    except NotFound:
        pass
    data = store.get(key)
    verify_sha256(data, sha256, what=f"Bento archive {url}", refused="nothing was imported")
    with tempfile.TemporaryDirectory(prefix="stockcast-import-") as folder:
        archive = Path(folder) / "bento.bento"
        archive.write_bytes(data)
        return str(bentoml.bentos.import_bento(str(archive)).tag)


def _unrecorded_message(registry: Registry, version: str, archive: str | None) -> str:
    """Why a Bento entry without digests is refused, and the command that re-records it."""
    run = registry.get(version).run_pathspec
    return (
        f"the Bento of model {version} on branch {registry.branch} was recorded without sha256 digests (before "
        f"archives were verified), so its archive {archive} cannot be checked and is not imported. Re-record it by "
        f"re-running the deploy step of {run}: `python flows/train.py resume deploy --origin-run-id "
        f"{run.rpartition('/')[2]}` (with that run's --branch or --production option), or promote a newer champion"
    )


def _existing_bento(model_tag: bentoml.Tag) -> str | None:
    """The Bento already built for ``model_tag``, if any. One of that tag serving another model is an error, not
    something to overwrite."""
    try:
        bento = bentoml.bentos.get(f"{BENTO_NAME}:{model_tag.version}")
    except NotFound:
        return None
    if bento.info.labels.get("model_tag") != str(model_tag):
        raise DeployError(f"Bento {bento.tag} serves {bento.info.labels.get('model_tag')}, not {model_tag}")
    return str(bento.tag)


@contextmanager
def _environment(name: str, value: str) -> Iterator[None]:
    """Set one environment variable while inside, restoring its previous state after."""
    previous = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = previous


def _without_none(value: Any) -> Any:
    """``value`` without ``None`` entries, which BentoML metadata cannot hold (the registry writes NaN as None)."""
    if isinstance(value, dict):
        return {key: _without_none(item) for key, item in value.items() if item is not None}
    if isinstance(value, list | tuple):
        return [_without_none(item) for item in value if item is not None]
    return value
