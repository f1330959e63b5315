"""The registry on both stores: register, promote with optimistic concurrency, history, rollback."""

from __future__ import annotations

import threading
from dataclasses import replace

import pytest

from features import get_feature_set
from stockcast.core.registry import (
    LINEAGE_FIELDS,
    ChampionChangedError,
    ModelRecord,
    Registry,
    RegistryError,
    current_code_version,
    main,
    packaged_code_version,
)
from stockcast.core.storage import LocalStore, ObjectExistsError
from tests.factories import make_record


def _record(version: str, branch: str = "user.test") -> ModelRecord:
    return make_record(version, branch=branch, feature_set=get_feature_set("full"))


def test_store_exclusive_put_and_listing(store):
    store.put("a/b/1.json", b"one", exclusive=True)
    with pytest.raises(ObjectExistsError):
        store.put("a/b/1.json", b"again", exclusive=True)
    store.put("a/b/2.json", b"two")
    store.put("a/b/2.json", b"two, overwritten")
    assert store.list("a/b/") == ["a/b/1.json", "a/b/2.json"]
    assert store.get("a/b/2.json") == b"two, overwritten"
    with pytest.raises(KeyError):
        store.get("a/b/3.json")


def test_register_get_and_no_champion_before_promotion(store):
    registry = Registry("user.test", store)
    record = registry.register(_record("v1"))
    assert registry.get("v1") == record
    assert registry.versions() == ["v1"]
    assert registry.champion() is None and registry.history() == []
    assert registry.register(_record("v1")) == record  # a retried step registers nothing new
    with pytest.raises(RegistryError, match="already registered, from run TrainFlow/1"):
        registry.register(replace(_record("v1"), run_pathspec="TrainFlow/2"))
    with pytest.raises(RegistryError, match="no model version v9"):
        registry.get("v9")


def test_promote_history_and_rollback_chain(store):
    registry = Registry("user.test", store)
    for version in ("v1", "v2", "v3"):
        registry.register(_record(version))
    registry.promote("v1", reason="first", expected_champion=None)
    registry.promote("v2", reason="better", expected_champion="v1")
    registry.promote("v3", reason="better still", expected_champion="v2")
    assert registry.champion().version == "v3"
    event = registry.rollback(reason="smoke test failed")
    assert (event.action, event.version, event.previous) == ("rollback", "v2", "v3")
    assert registry.champion().version == "v2"
    registry.rollback(reason="again")
    assert registry.champion().version == "v1"
    with pytest.raises(RegistryError, match="nothing to roll back to"):
        registry.rollback(reason="once more")
    assert [(e.seq, e.action, e.version) for e in registry.history()] == [
        (1, "promote", "v1"),
        (2, "promote", "v2"),
        (3, "promote", "v3"),
        (4, "rollback", "v2"),
        (5, "rollback", "v1"),
    ]


def test_promotion_against_a_stale_champion_is_refused(store):
    registry = Registry("user.test", store)
    for version in ("v1", "v2"):
        registry.register(_record(version))
    registry.promote("v1", reason="first", expected_champion=None)
    with pytest.raises(ChampionChangedError, match=r"champion of branch 'user\.test' is v1, not the expected None"):
        registry.promote("v2", reason="raced", expected_champion=None)
    assert registry.champion().version == "v1"


def test_concurrent_promotions_cannot_both_win(tmp_path):
    registry = Registry("user.test", LocalStore(tmp_path))
    for version in ("a", "b", "c", "d"):
        registry.register(_record(version))
    barrier = threading.Barrier(4)
    outcomes: list[str] = []

    def promote(version: str) -> None:
        barrier.wait()
        try:
            registry.promote(version, reason="race", expected_champion=None)
            outcomes.append("won")
        except ChampionChangedError:
            outcomes.append("lost")

    threads = [threading.Thread(target=promote, args=(v,)) for v in ("a", "b", "c", "d")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes.count("won") == 1
    assert len(registry.history()) == 1


def test_branches_are_isolated(store):
    mine, prod = Registry("user.test", store), Registry("prod", store)
    mine.register(_record("v1"))
    mine.promote("v1", reason="first", expected_champion=None)
    assert prod.champion() is None and prod.versions() == []
    with pytest.raises(RegistryError, match=r"record is for branch 'user\.test', registry is 'prod'"):
        prod.register(_record("v2"))
    prod.register(replace(_record("v2"), branch="prod"))
    assert mine.versions() == ["v1"]


def test_bento_records(store):
    registry = Registry("user.test", store)
    registry.register(_record("v1"))
    assert registry.bento("v1") is None
    registry.record_bento("v1", {"tag": "stockcast:abc"})
    assert registry.bento("v1") == {"tag": "stockcast:abc"}


def test_code_version_is_a_commit_or_none(tmp_path):
    assert current_code_version(tmp_path) is None
    version = current_code_version()
    assert version is None or len(version.split("+")[0]) == 40


def test_outside_a_checkout_the_code_version_is_the_commit_metaflow_packaged() -> None:
    # The git part of the INFO file Metaflow writes into a code package (metaflow_environment.get_environment_info);
    # tests/workflows/test_code_package.py reads it back from a real package unpacked outside any repository.
    info = {"script": "train.py", "commit_sha": "0123456789abcdef0123456789abcdef01234567", "branch_name": "main"}

    assert packaged_code_version(info) == info["commit_sha"]
    assert packaged_code_version(info | {"has_uncommitted_changes": True}) == f"{info['commit_sha']}+dirty"
    assert packaged_code_version(info | {"has_uncommitted_changes": False}) == info["commit_sha"]
    assert packaged_code_version({"script": "train.py"}) is None  # packaged from outside a checkout
    assert packaged_code_version(None) is None  # not a code package at all


def test_command_line_show_history_and_rollback(tmp_path, capsys, monkeypatch):
    store = LocalStore(tmp_path)
    monkeypatch.setattr("stockcast.core.registry.datastore_store", lambda: store)
    registry = Registry("user.cli", store)
    for version in ("v1", "v2"):
        registry.register(_record(version, branch="user.cli"))
    assert main(["--branch", "user.cli", "rollback", "--reason", "x"]) == 1
    assert "no champion to roll back" in capsys.readouterr().out
    registry.promote("v1", reason="first", expected_champion=None)
    registry.promote("v2", reason="better", expected_champion="v1")
    assert main(["--branch", "user.cli", "show"]) == 0
    assert '"version": "v2"' in capsys.readouterr().out
    assert main(["--branch", "user.cli", "rollback", "--reason", "smoke test failed"]) == 0
    assert "champion is now v1 (was v2)" in capsys.readouterr().out
    assert main(["--branch", "user.cli", "history"]) == 0
    assert "rollback v1 (was v2): smoke test failed" in capsys.readouterr().out


def test_lineage_is_the_records_provenance_as_strings_without_unknowns():
    record = _record("v3")
    lineage = record.lineage()

    assert list(lineage) == [name for name in LINEAGE_FIELDS if name != "code_version"]  # no commit: left out
    assert lineage["model_version"] == "v3" and lineage["candidate_id"] == record.candidate_id
    assert lineage["run_pathspec"] == record.run_pathspec and lineage["registered_at"] == record.registered_at
    assert all(isinstance(value, str) for value in lineage.values())
    assert replace(record, code_version="abc123").lineage()["code_version"] == "abc123"


def test_a_run_promotes_its_own_record_as_it_is(store):
    registry = Registry("user.test", store)
    record = registry.register(_record("v1"))
    promoted = registry.register_for_run(record, version="v1", run_pathspec="TrainFlow/1", expected_champion=None)
    assert promoted == (record, None) and registry.versions() == ["v1"]


def test_a_resumed_run_registers_the_cloned_record_under_its_own_lineage(store, monkeypatch):
    monkeypatch.setattr("stockcast.core.registry.step_task", lambda run, step: f"{run}/{step}/12")
    registry = Registry("user.test", store)
    registry.register(_record("v0"))
    registry.promote("v0", reason="first", expected_champion=None)
    failed = registry.register(_record("v1"))  # registered by the run that then failed in its deploy step
    resumed = {"version": "v2", "run_pathspec": "TrainFlow/2", "expected_champion": "v0"}

    record, expected = registry.register_for_run(failed, **resumed)
    assert (record.version, record.run_pathspec, record.model_task) == ("v2", "TrainFlow/2", "TrainFlow/2/refit/12")
    lineage = ("version", "run_pathspec", "model_task", "registered_at")
    assert replace(record, **{name: getattr(failed, name) for name in lineage}) == failed  # nothing else changes
    assert expected == "v0" and registry.get("v2") == record and registry.get("v1") == failed
    assert registry.register_for_run(failed, **resumed) == (record, "v0")  # a retried deploy registers nothing new


def test_a_resumed_run_replaces_what_its_failed_run_promoted_before_failing(store, monkeypatch):
    monkeypatch.setattr("stockcast.core.registry.step_task", lambda run, step: f"{run}/{step}/12")
    registry = Registry("user.test", store)
    failed = registry.register(_record("v1"))
    registry.promote("v1", reason="promoted, then the step failed", expected_champion=None)

    record, expected = registry.register_for_run(
        failed, version="v2", run_pathspec="TrainFlow/2", expected_champion=None
    )
    assert expected == "v1"
    registry.promote(record.version, reason="resumed", expected_champion=expected)
    assert registry.champion() == record
