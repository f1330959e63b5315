"""``python -m stockcast.deploy serve`` and ``stockcast-day`` refuse what they cannot do with a message, not a
traceback, before starting anything."""

from __future__ import annotations

import pytest

from stockcast.deploy import DeployError, main, serve_command
from stockcast.operate import main as day_main
from stockcast.registry import ModelRecord, Registry, RegistryError
from stockcast.storage import LocalStore


def _record(version: str) -> ModelRecord:
    return ModelRecord(
        version=version,
        branch="user.test",
        run_pathspec=f"TrainFlow/{version[1:]}",
        model_task=f"TrainFlow/{version[1:]}/refit/1",
        candidate={"candidate_id": "ridge[alpha=1.0]"},
        data_version="d",
        snapshot_run="IngestFlow/1",
        feature_set="full",
        feature_fingerprint="f",
        code_version=None,
        metrics={},
        gate={},
    )


def test_serving_needs_a_champion_a_known_version_and_a_readable_bento(tmp_path) -> None:
    registry = Registry("user.test", LocalStore(tmp_path))
    with pytest.raises(RegistryError, match=r"no champion on branch 'user.test': run `python flows/train.py run`"):
        serve_command(registry, None, host="127.0.0.1", port=3000)

    registry.register(_record("v1"))
    registry.promote("v1", reason="test", expected_champion=None)
    with pytest.raises(RegistryError, match=r"no model version v9 on branch 'user\.test'"):
        serve_command(registry, "v9", host="127.0.0.1", port=3000)
    with pytest.raises(DeployError, match=r"model v1 on branch user\.test has no Bento"):
        serve_command(registry, None, host="127.0.0.1", port=3000)

    registry.record_bento("v1", {"archive": registry.store.url("bentos/stockcast/v1.bento"), "model_tag": "m:v1"})
    with pytest.raises(DeployError, match=r"the Bento archive of v1 cannot be read from .*v1\.bento"):
        serve_command(registry, None, host="127.0.0.1", port=3000)


def test_the_serve_command_line_reports_instead_of_crashing(monkeypatch, capsys, tmp_path) -> None:
    monkeypatch.setenv("METAFLOW_DATASTORE_SYSROOT_LOCAL", str(tmp_path))
    assert main(["--branch", "user.nobody", "serve"]) == 1
    assert "no champion on branch 'user.nobody'" in capsys.readouterr().err


def test_the_daily_loop_checks_its_configuration_before_the_first_day(tmp_path, capsys) -> None:
    day = tmp_path / "2025-12-29"
    day.mkdir()
    (day / "stock_price.csv").write_text("date,ticker,open,high,low,close,volume\n")
    bad = tmp_path / "operate.toml"
    bad.write_text("[monitor]\npsi_threshold = -1\n")

    assert day_main([str(day), "--operate-config", str(bad)]) == 1
    assert "monitor.psi_threshold" in capsys.readouterr().err
    assert day_main([str(day), "--train-config", str(tmp_path / "missing.toml")]) == 1
    assert "missing.toml" in capsys.readouterr().err
