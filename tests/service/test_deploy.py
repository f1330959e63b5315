"""Deployment actions: a deterministic BentoML model per registry version, a Bento with its code, model and pinned
requirements, the archive's round trip through both object stores with the digests the registry records of it, and a
local server that cleans up after itself."""

from __future__ import annotations

import copy
import socket
from dataclasses import replace
from importlib.metadata import version as installed_version
from pathlib import Path

import bentoml
import pandas as pd
import pytest

from stockcast.deploy.package import (
    bento_bundle,
    build_bento,
    bundle_path,
    export_bento,
    import_bento,
    model_tag_for,
    save_bento_model,
)
from stockcast.deploy.smoke import SmokeTestError, smoke_test
from stockcast.deploy.targets import DeployError, LocalServe
from stockcast.serve.bundle import sha256_digest
from tests.factories import with_record


def test_a_registry_version_maps_to_one_valid_model_tag() -> None:
    assert model_tag_for("v123") == "stockcast-model:v123"
    awkward = ["vargo-StockCast.User/x-99", "vargo-stockcast.user-x-99", "v" + "9" * 80, "V_!"]
    tags = [model_tag_for(version) for version in awkward]

    assert tags == [model_tag_for(version) for version in awkward]  # deterministic
    assert len(set(tags)) == len(tags)  # distinct versions stay distinct after cleaning
    for tag in tags:
        assert str(bentoml.Tag.from_taglike(tag)) == tag  # valid as it is: BentoML neither refuses nor rewrites it
        assert tag.startswith("stockcast-model:")


def test_saving_the_same_champion_again_gives_the_same_model(served_model) -> None:
    before = [str(model.tag) for model in bentoml.models.list("stockcast-model")]

    again = save_bento_model(served_model.bundle)

    assert again == served_model.model_tag == "stockcast-model:v7"
    assert [str(model.tag) for model in bentoml.models.list("stockcast-model")] == before
    stored = bentoml.models.get(again)
    assert stored.info.labels["run_pathspec"] == "TrainFlow/7"
    assert stored.info.labels["feature_fingerprint"] == served_model.bundle.feature_fingerprint
    assert stored.info.labels["data_version"] == "d4t4" and "code_version" not in stored.info.labels
    assert stored.info.metadata["metrics"] == {"mean_fold_rmse": 1.23, "rmse_vs_naive": 0.99}  # None dropped


def test_a_stored_model_of_another_run_is_never_overwritten(served_model) -> None:
    impostor = with_record(served_model.bundle, run_pathspec="TrainFlow/8")
    with pytest.raises(
        DeployError, match=r"stockcast-model:v7 already exists from run TrainFlow/7, not from TrainFlow/8"
    ):
        save_bento_model(impostor)


def test_the_bento_holds_the_service_the_packages_the_model_and_pinned_requirements(served_model, bento_tag) -> None:
    bento = bentoml.bentos.get(bento_tag)
    root = Path(bento.path)

    assert [str(model.tag) for model in bento.info.all_models] == [served_model.model_tag]
    assert bento.info.labels["model_tag"] == served_model.model_tag
    assert bento.info.labels["run_pathspec"] == "TrainFlow/7"
    for source in ("bentos/service.py", "bentos/schemas.py", "bentos/guard.py", "stockcast/serve/answers.py"):
        assert (root / "src" / source).is_file(), source
    assert not (root / "src" / "tests").exists()
    requirements = (root / "env" / "python" / "requirements.txt").read_text().split()
    for package in ("pandas", "numpy", "scikit-learn", "catboost", "bentoml"):
        assert f"{package}=={installed_version(package)}" in requirements


def test_building_for_the_same_model_again_gives_the_same_bento(served_model, bento_tag) -> None:
    assert bento_tag == "stockcast:v7"
    assert build_bento(served_model.model_tag) == bento_tag
    # One Bento of that version, whatever other tests of this process built for other versions.
    assert [str(bento.tag) for bento in bentoml.bentos.list("stockcast") if bento.tag.version == "v7"] == [bento_tag]


@pytest.mark.slow
def test_a_smoke_test_passes_the_right_model_and_names_the_wrong_one(served_model, bento_tag, tmp_path) -> None:
    moved = replace(served_model.bundle, estimator=copy.deepcopy(served_model.bundle.estimator))
    moved.estimator.regressor_.named_steps["model"].intercept_ += 0.01  # the same version, answering otherwise
    # A server of its own: every `bentoml serve` in one BENTOML_HOME empties the Prometheus folder they share, which
    # would reset the session server's metrics that tests/service/test_service_http.py reads.
    with LocalServe(log_path=tmp_path / "serve.log") as serving:
        endpoint = serving.deploy(bento_tag)
        smoke_test(endpoint, served_model.bundle)
        with pytest.raises(SmokeTestError, match=r"http://127\.0\.0\.1:\d+ serves model v7, not v8"):
            smoke_test(endpoint, with_record(served_model.bundle, version="v8"))
        with pytest.raises(SmokeTestError, match=r"answered \[\{'ticker': .*, the library \[\{'ticker'"):
            smoke_test(endpoint, moved)


def test_a_bento_serves_the_bundle_it_was_built_with(served_model, bento_tag) -> None:
    bundle = bento_bundle(bento_tag, sha256=sha256_digest(bundle_path(bento_tag)))
    assert bundle.record == served_model.bundle.record
    pd.testing.assert_frame_equal(bundle.latest_rows, served_model.bundle.latest_rows)


@pytest.fixture(scope="module")
def spare_bento(served_model) -> str:
    """The model's Bento, asked for again: these tests may delete it and re-import it from an archive."""
    return build_bento(served_model.model_tag)


def test_an_exported_bento_comes_back_from_the_store_alone(store, spare_bento, served_model) -> None:
    tag = bentoml.Tag.from_taglike(spare_bento)
    bundle_sha256 = sha256_digest(bundle_path(spare_bento))
    entry = export_bento(spare_bento, store)
    key = f"bentos/stockcast/{tag.version}.bento"
    assert entry == {
        "model_tag": served_model.model_tag,
        "bento_tag": spare_bento,
        "archive": store.url(key),
        "archive_sha256": sha256_digest(store.get(key)),
        "bundle_sha256": bundle_sha256,
    }
    # Forget the Bento and its model here: the archive alone must bring both back (later tests need the model).
    bentoml.bentos.delete(spare_bento)
    bentoml.models.delete(served_model.model_tag)

    imported = import_bento(entry["archive"], store, sha256=entry["archive_sha256"])

    assert imported == spare_bento
    assert [str(model.tag) for model in bentoml.bentos.get(imported).info.all_models] == [served_model.model_tag]
    assert bentoml.models.get(served_model.model_tag).info.labels["run_pathspec"] == "TrainFlow/7"
    assert sha256_digest(bundle_path(imported)) == bundle_sha256  # the bundle inside comes back byte for byte
    assert import_bento(entry["archive"], store, sha256=entry["archive_sha256"]) == spare_bento  # already there
    with pytest.raises(ValueError, match="is not in the object store"):
        import_bento(f"s3://elsewhere/{key}", store, sha256=entry["archive_sha256"])


@pytest.mark.slow
def test_a_server_that_cannot_start_is_reported_with_its_log_and_cleaned_up(bento_tag, tmp_path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        target = LocalServe(port=port, startup_timeout=60, log_path=tmp_path / "serve.log")
        with pytest.raises(DeployError, match=r"(?s)exited with code 1.*Address already in use"):
            target.deploy(bento_tag)

    assert target._process is None
    assert not target.health(f"http://127.0.0.1:{port}")
    target.stop()  # stopping twice is harmless
