"""``python -m stockcast.deploy serve`` refuses what it cannot do with a message, not a traceback, before starting
anything: no champion, an unknown version, no Bento, an unreadable archive, one that is not what was recorded."""

from __future__ import annotations

import pytest

from stockcast.core.registry import NoChampionError, Registry, RegistryError
from stockcast.core.storage import LocalStore
from stockcast.deploy.serve import main, serve_command
from stockcast.deploy.targets import DeployError
from stockcast.serve.bundle import ArtefactIntegrityError, sha256_digest
from tests.factories import make_record


def test_serving_needs_a_champion_a_known_version_and_a_readable_bento(tmp_path) -> None:
    registry = Registry("user.test", LocalStore(tmp_path))
    with pytest.raises(NoChampionError, match=r"branch 'user.test' has no champion yet: train one with `python flows/"):
        serve_command(registry, None, host="127.0.0.1", port=3000)

    registry.register(make_record("v1"))
    registry.promote("v1", reason="test", expected_champion=None)
    with pytest.raises(RegistryError, match=r"no model version v9 on branch 'user\.test'"):
        serve_command(registry, "v9", host="127.0.0.1", port=3000)
    with pytest.raises(DeployError, match=r"model v1 on branch user\.test has no Bento"):
        serve_command(registry, None, host="127.0.0.1", port=3000)

    archive = {"archive": registry.store.url("bentos/stockcast/v1.bento"), "model_tag": "m:v1"}
    registry.record_bento("v1", archive)
    with pytest.raises(ArtefactIntegrityError, match=r"the Bento of model v1 .* was recorded without sha256 digests"):
        serve_command(registry, None, host="127.0.0.1", port=3000)

    registry.record_bento("v1", archive | {"archive_sha256": sha256_digest(b"a"), "bundle_sha256": sha256_digest(b"b")})
    with pytest.raises(DeployError, match=r"the Bento archive of v1 cannot be read from .*v1\.bento"):
        serve_command(registry, None, host="127.0.0.1", port=3000)


def test_the_serve_command_line_reports_instead_of_crashing(monkeypatch, capsys, tmp_path) -> None:
    monkeypatch.setenv("METAFLOW_DATASTORE_SYSROOT_LOCAL", str(tmp_path))
    assert main(["--branch", "user.nobody", "serve"]) == 1
    assert "branch 'user.nobody' has no champion yet" in capsys.readouterr().err

    registry = Registry("user.tampered")
    registry.register(make_record("v1", branch="user.tampered"))
    registry.promote("v1", reason="test", expected_champion=None)
    registry.store.put("bentos/stockcast/v1.bento", b"not what was exported")
    registry.record_bento(
        "v1",
        {
            "archive": registry.store.url("bentos/stockcast/v1.bento"),
            "archive_sha256": sha256_digest(b"what was exported"),
            "bundle_sha256": sha256_digest(b"its bundle"),
        },
    )
    assert main(["--branch", "user.tampered", "serve"]) == 1
    assert "v1.bento was changed after it was recorded" in capsys.readouterr().err
