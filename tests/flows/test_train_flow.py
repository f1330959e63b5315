"""TrainFlow run for real: selection, the gate, the registry and resume. (TrainFlow on the S3 datastore is tested
with the champion that prediction and monitoring use there, in test_operate_flows.py.)"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from conftest import REPO_ROOT, TEST_HOME, FlowResult, FlowRunner, card_text
from flow_inputs import PLANTED, QUICK_CONFIG, SMALL_CONFIG
from stockcast.client import StockcastClient
from stockcast.data.generator import generate_market, write_market
from stockcast.deploy import build_bento, model_tag_for
from stockcast.registry import Registry

pytestmark = pytest.mark.slow


def random_walk_prices(n_tickers: int, n_days: int, seed: int) -> pd.DataFrame:
    """Prices that are a driftless random walk: nothing about tomorrow is predictable beyond today's close."""
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2022-06-01", periods=n_days)
    log_close = np.log(50.0) + np.cumsum(rng.normal(0.0, 0.015, size=(n_days, n_tickers)), axis=0)
    close = np.exp(log_close)
    open_ = close * np.exp(rng.normal(0.0, 0.004, size=close.shape))
    spread = np.abs(rng.normal(0.0, 0.006, size=close.shape))
    frame = pd.DataFrame(
        {
            "date": np.repeat(dates, n_tickers),
            "ticker": np.tile([f"RW{i:02d}" for i in range(n_tickers)], n_days),
            "open": open_.ravel(),
            "high": (np.maximum(open_, close) * (1 + spread)).ravel(),
            "low": (np.minimum(open_, close) * (1 - spread)).ravel(),
            "close": close.ravel(),
            "volume": rng.integers(10_000, 100_000, size=close.size).astype(float),
        }
    )
    return frame.sort_values(["ticker", "date"], ignore_index=True)


@pytest.fixture(scope="module")
def config_file(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("config") / "train.toml"
    path.write_text(SMALL_CONFIG)
    return str(path)


@pytest.fixture(scope="module")
def quick_config_file(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("config") / "quick.toml"
    path.write_text(QUICK_CONFIG)
    return str(path)


def _ingest(branch: str, folder: Path, **sources: str) -> str:
    result = FlowRunner(branch)("ingest", **sources)
    assert result.successful, result.output
    return result.run.pathspec


@pytest.fixture(scope="module")
def planted_snapshot(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("planted")
    files = write_market(generate_market(PLANTED), folder)
    return _ingest("planted_data", folder, prices=str(files["prices"]), financials=str(files["financials"]))


@pytest.fixture(scope="module")
def random_walk_snapshot(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("random-walk")
    random_walk_prices(40, 650, seed=3).to_csv(folder / "stock_price.csv", index=False, date_format="%Y-%m-%d")
    return _ingest("random_walk_data", folder, prices=str(folder / "stock_price.csv"), financials="")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_until_ready(endpoint: str, server: subprocess.Popen, log: Path, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert server.poll() is None, log.read_text()
        try:
            if httpx.get(f"{endpoint}/readyz", timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"{endpoint} not ready after {timeout} s:\n{log.read_text()}")


def _mean_fold_rmse_by_candidate(run) -> dict[str, float]:
    """Each candidate's mean fold RMSE, recomputed from its own backtest task's per-row predictions."""
    scores = {}
    for task in run["backtest"]:
        predictions = task.data.result.evaluation.predictions
        per_fold = predictions.groupby("fold").apply(
            lambda rows: float(np.sqrt(((rows["predicted_close"] - rows["next_close"]) ** 2).mean()))
        )
        scores[task.data.result.item.spec.candidate_id] = float(per_fold.mean())
    return scores


@pytest.fixture(scope="module")
def promoted(config_file, planted_snapshot) -> tuple[str, FlowResult]:
    """A TrainFlow run on the planted market, on a branch of its own: it promotes its winner and deploys it.

    The equal-champion test trains again on this branch and rolls a manual promotion back, so the run stays the
    branch's champion for every test that uses it, in any order.
    """
    branch = f"t{uuid.uuid4().hex[:10]}"
    result = FlowRunner(branch)("train", config=config_file, snapshot=planted_snapshot)
    assert result.successful, result.output
    return branch, result


def test_winner_is_the_argmin_and_is_registered_with_lineage(promoted, planted_snapshot):
    branch, result = promoted
    run = result.run
    scores = _mean_fold_rmse_by_candidate(run)
    assert len(scores) == 5
    assert run.data.selection.challenger.candidate_id == min(scores, key=scores.get)
    assert run.data.promoted is True
    assert run.data.decision["promote"] and "beats the naive baseline" in run.data.decision["reason"]

    registry = Registry(f"test.{branch}")
    champion = registry.champion()
    assert champion.version == run.data.model_version == f"v{run.id}"
    assert champion.snapshot_run == planted_snapshot
    assert champion.run_pathspec == run.pathspec
    assert champion.feature_set == "full" and len(champion.feature_fingerprint) >= 16
    assert champion.metrics["candidate_id"] == champion.candidate_id
    assert champion.gate["promote"] is True

    model = champion.load_model()
    frame = run.data.modelling["full"].frame
    columns = run.data.modelling["full"].feature_columns
    assert np.isfinite(model.predict(frame[columns].tail(5))).all()

    shown = card_text(run["deploy"].task, "training")
    assert "PROMOTED to champion" in shown and champion.candidate_id in shown and "Leaderboard" in shown
    assert f"Model v{run.id} ({champion.candidate_id}): promoted to champion." in result.output
    assert "Card: python flows/train.py card get" in result.output


def test_the_promoted_champion_is_packaged_and_served_with_its_lineage(promoted, tmp_path):
    branch, result = promoted
    run, registry = result.run, Registry(f"test.{branch}")
    version = run.data.model_version
    bento = registry.bento(version)
    assert bento == run.data.bento
    assert bento["model_tag"] == model_tag_for(version) and bento["bento_tag"] == f"stockcast:{version}"
    assert bento["archive"] == registry.store.url(f"bentos/stockcast/{version}.bento")
    assert Path(bento["archive"]).stat().st_size > 10_000
    assert build_bento(bento["model_tag"]) == bento["bento_tag"]  # the same champion gives the same Bento
    assert f"Bento stockcast:{version}" in result.output

    # On a machine whose BentoML store is empty, the serve command brings the Bento back from the archive alone.
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "stockcast.deploy", "--branch", f"test.{branch}", "serve", "--port", str(port)],
        env={**os.environ, "BENTOML_HOME": str(tmp_path / "bentoml")},
        stdout=(tmp_path / "serve.log").open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        endpoint = f"http://127.0.0.1:{port}"
        _wait_until_ready(endpoint, server, tmp_path / "serve.log")
        with StockcastClient(endpoint) as client:
            served = client.model()
            answer = client.predict(served["tickers"][:2])
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)

    assert served["model_version"] == version and served["model_tag"] == bento["model_tag"]
    assert served["lineage"]["run_pathspec"] == run.pathspec
    assert served["lineage"]["model_task"] == run["refit"].task.pathspec
    assert served["lineage"]["snapshot_run"] == run.data.snapshot_pathspec
    assert served["lineage"]["data_version"] == run.data.data_version
    assert served["feature_fingerprint"] == run.data.modelling["full"].fingerprint
    assert served["candidate_id"] == run.data.selection.challenger.candidate_id
    assert served["metrics"]["mean_fold_rmse"] == pytest.approx(run.data.leaderboard.iloc[0]["mean_fold_rmse"])
    assert [row["model_version"] for row in answer] == [version, version]


def test_an_equal_champion_is_kept_and_rollback_restores_the_previous(promoted, config_file, planted_snapshot):
    branch, first = promoted  # the champion of its branch
    second = FlowRunner(branch)("train", config=config_file, snapshot=planted_snapshot)
    assert second.successful, second.output
    assert second.run.data.promoted is False
    reason = second.run.data.decision["reason"]
    assert "does not beat" in reason and f"champion v{first.run.id}" in reason
    registry = Registry(f"test.{branch}")
    assert registry.champion_version() == f"v{first.run.id}"
    assert registry.versions() == sorted([f"v{first.run.id}", f"v{second.run.id}"])

    # An operator promotes the second model by hand, then rolls back with one call.
    registry.promote(f"v{second.run.id}", reason="manual", expected_champion=f"v{first.run.id}")
    event = registry.rollback(reason="smoke test failed")
    assert event.version == f"v{first.run.id}"
    assert registry.champion().load_model() is not None


def test_a_random_walk_promotes_nothing_and_says_why(run_flow, branch, config_file, random_walk_snapshot):
    result = run_flow("train", config=config_file, snapshot=random_walk_snapshot)
    assert result.successful, result.output
    decision = result.run.data.decision
    assert decision["promote"] is False
    assert decision["reason"].startswith("Do not promote") and "does not beat the naive baseline" in decision["reason"]
    assert "registered, not promoted" in result.output
    assert "no Bento built" in result.output and result.run.data.bento is None
    registry = Registry(f"test.{branch}")
    assert registry.champion() is None and registry.bento(result.run.data.model_version) is None


def test_resume_after_a_failed_step_reuses_the_finished_ones(run_flow, branch, quick_config_file, planted_snapshot):
    # Something in the way of the registry's folder makes the register step fail (after its retries).
    blocker = TEST_HOME / ".metaflow" / "stockcast" / "registry" / f"test.{branch}"
    blocker.parent.mkdir(parents=True, exist_ok=True)
    blocker.write_text("not a folder")
    failed = run_flow("train", config=quick_config_file, snapshot=planted_snapshot)
    assert not failed.successful
    assert "register" in failed.output

    blocker.unlink()
    resumed = run_flow.resume("train")  # a resumed run keeps the original run's configuration
    assert resumed.successful, resumed.output
    origin = resumed.run["backtest"].task.metadata_dict.get("origin-run-id")
    assert origin == failed.run.id  # backtests were cloned, not re-run
    assert Registry(f"test.{branch}").champion_version() == f"v{resumed.run.id}"


def test_an_invalid_config_is_named(run_flow, tmp_path, planted_snapshot):
    bad = tmp_path / "bad.toml"
    bad.write_text(SMALL_CONFIG.replace('factory = "catboost"', 'factory = "catbooster"'))
    result = run_flow("train", config=str(bad), snapshot=planted_snapshot)
    assert not result.successful
    assert "candidates[4].factory" in result.output and "catbooster" in result.output


def test_the_code_package_carries_the_library_to_remote_runs():
    listing = subprocess.run(
        [sys.executable, str(REPO_ROOT / "flows" / "train.py"), "package", "list"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    listing = listing.stdout + listing.stderr  # Metaflow prints the listing on stderr
    for module in ("flows/stockcast/registry.py", "flows/stockcast/data/snapshot.py", "flows/features/build.py"):
        assert module in listing
