"""The rollout for real on this machine: Bentos brought back from their archives, served by ``bentoml serve``
replicas behind nginx on 127.0.0.1, smoke-tested over HTTP; a champion that fails its smoke test is rolled back in
the registry and the previous champion is served again; a rolling switch between two Bentos loses no request. (Every
strategy, and every kind of failure, on small stand-in servers: tests/unit/deploy/test_fleet.py.)"""

from __future__ import annotations

import copy
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import replace

import httpx
import numpy as np
import pytest
import yaml

from stockcast.core.registry import ModelRecord, Registry
from stockcast.core.storage import LocalStore
from stockcast.deploy.config import RolloutSettings, SmokeSettings
from stockcast.deploy.fleet import LocalFleet
from stockcast.deploy.load import ConstantLoad
from stockcast.deploy.package import BENTOFILE, build_bento, export_bento, save_bento_model
from stockcast.deploy.rollout import RolloutError, follow, rollout
from stockcast.serve.client import StockcastClient
from stockcast.serve.prediction_log import read_prediction_log
from tests.factories import make_bundle, with_record
from tests.service.conftest import make_fleet

pytestmark = pytest.mark.slow

SMOKE = SmokeSettings(tickers=2)


@pytest.fixture
def target(tmp_path) -> Iterator[LocalFleet]:
    serving = make_fleet(tmp_path / "fleet")
    yield serving
    serving.stop()


@pytest.fixture(scope="module")
def nan_bento(served_model) -> tuple[ModelRecord, str]:
    """A later model whose refit went wrong: its ridge coefficients are NaN, so every prediction is NaN. The
    library builds, saves and packages it without complaint; only serving it shows the problem."""
    record = replace(served_model.bundle.record, version="v9001", run_pathspec="TrainFlow/9001")
    estimator = copy.deepcopy(served_model.bundle.estimator)
    estimator.regressor_.named_steps["model"].coef_ = np.full_like(
        estimator.regressor_.named_steps["model"].coef_, np.nan
    )
    bundle = make_bundle(served_model.market, record, estimator=estimator)
    try:
        return record, build_bento(save_bento_model(bundle))
    finally:
        # Building imports the service module bound to the model being built; drop it, so that no later in-process
        # load of the service (tests/service/test_service_asgi.py) reuses it with this broken model.
        sys.modules.pop(yaml.safe_load(BENTOFILE.read_text())["service"].partition(":")[0], None)


@pytest.fixture
def registry(tmp_path, served_model, bento_tag) -> Registry:
    """A registry whose champion is the session's model, with its Bento exported and recorded."""
    record = served_model.bundle.record
    registry = Registry(record.branch, LocalStore(tmp_path / "store"))
    registry.register(record)
    registry.promote(record.version, reason="first champion", expected_champion=None)
    registry.record_bento(record.version, export_bento(bento_tag, registry.store))
    return registry


def _promote(registry: Registry, record: ModelRecord, bento_tag: str) -> None:
    """As TrainFlow's deploy step does (``release``): the Bento recorded first, then the promotion."""
    registry.register(record)
    registry.record_bento(record.version, export_bento(bento_tag, registry.store))
    registry.promote(record.version, reason="beats the champion", expected_champion=registry.champion_version())


def test_a_healthy_champion_is_served_and_nothing_is_rolled_back(registry, target, served_model) -> None:
    result = rollout(registry, target, SMOKE)

    assert not result.rolled_back and result.model_version == "v7" and result.bento_tag == "stockcast:v7"
    with StockcastClient(result.endpoint) as client:
        assert client.model()["model_version"] == "v7"
    assert [event.action for event in registry.history()] == ["promote"]


def test_a_champion_failing_its_smoke_test_is_rolled_back_and_the_previous_one_serves(
    registry, target, nan_bento
) -> None:
    record, bento_tag = nan_bento
    _promote(registry, record, bento_tag)

    result = rollout(registry, target, SMOKE)

    assert result.rolled_back and result.failed_version == "v9001"
    assert result.model_version == "v7" and result.bento_tag == "stockcast:v7"
    assert registry.champion_version() == "v7"
    last = registry.history()[-1]
    assert (last.action, last.version, last.previous) == ("rollback", "v7", "v9001")
    assert last.reason.startswith("rollout of v9001 failed:")
    with StockcastClient(result.endpoint) as client:  # the previous champion answers, at the same address
        assert client.model()["model_version"] == "v7"
        assert all(np.isfinite(row["predicted_close"]) for row in client.predict(client.model()["tickers"][:2]))


def test_a_failing_first_champion_cannot_be_rolled_back_and_says_so(tmp_path, target, nan_bento) -> None:
    record, bento_tag = nan_bento
    registry = Registry(record.branch, LocalStore(tmp_path / "store"))
    registry.register(record)
    registry.promote(record.version, reason="first", expected_champion=None)
    registry.record_bento(record.version, export_bento(bento_tag, registry.store))

    with pytest.raises(
        RolloutError, match=r"(?s)rollout of v9001 failed: .*\nand it cannot be rolled back: champion v9001"
    ):
        rollout(registry, target, SMOKE)
    assert registry.champion_version() == "v9001"


def test_the_follower_rolls_out_a_promotion_through_a_shadow_without_losing_a_request(
    registry, tmp_path, served_model
) -> None:
    """``stockcast-rollout --follow`` on the local target (one replica, shadow): v7 serves; v8 is promoted while 50
    requests a second go through the proxy, and the follower rolls it out: v8 gets a copy of every request for a
    second, its answers discarded but logged, then takes over. Every request is answered, and afterwards only v8
    answers. (Several replicas, every strategy and every kind of failure: tests/unit/deploy/test_fleet.py, on
    stand-in servers, and bench/rollout.py, on Bentos.)"""
    later = with_record(served_model.bundle, version="v8")
    later_bento = build_bento(save_bento_model(later))
    fleet = make_fleet(tmp_path / "fleet", replicas=1, strategy="shadow", rollout=RolloutSettings(step_s=1.0))
    tickers = served_model.market.prices["ticker"].unique()[:2].tolist()
    reports: list[object] = []
    stop = threading.Event()
    worker = threading.Thread(
        target=follow,
        args=(registry, fleet, SMOKE),
        kwargs={"poll_s": 0.2, "keep_going": lambda: not stop.is_set(), "report": reports.append},
    )
    worker.start()
    try:
        _until(lambda: len(reports) == 1)
        request = {"tickers": tickers, "as_of": None}
        answered_by: list[str] = []

        def predict(client: httpx.Client) -> httpx.Response:
            response = client.post("/predict", json=request)
            if response.status_code == 200:
                answered_by.append(response.json()["predictions"][0]["model_version"])
            return response

        with ConstantLoad(fleet.proxy.endpoint, predict, rate=50) as load:
            _promote(registry, later.record, later_bento)
            _until(lambda: len(reports) == 2)
            time.sleep(0.5)
        with StockcastClient(fleet.proxy.endpoint) as client:
            versions = {row["model_version"] for _ in range(6) for row in client.predict(tickers)}
    finally:
        stop.set()
        worker.join(timeout=30)
        fleet.stop()
    assert [getattr(report, "model_version", report) for report in reports] == ["v7", "v8"], reports
    assert not load.report.failed and load.report.requests > 50, load.report.summary()
    assert versions == {"v8"}
    steps = [step for step, _ in fleet.switches[-1].steps]
    assert steps.index("mirroring every request to the shadow") < steps.index("switched to the shadow")
    # The shadow (the fleet's second replica) logged what it answered, the mirrored requests among them.
    logged = read_prediction_log(tmp_path / "fleet" / "replica-2" / "predictions")
    assert set(logged["model_version"]) == {"v8"} and set(logged["ticker"]) == set(tickers)
    # Beyond its answers to callers (after the switch) and to the smoke tests (a few), it logged the answers it gave to
    # the copies of a second of requests at 50 a second, whose callers had v7's.
    to_callers = 2 * (answered_by.count("v8") + 6)
    assert len(logged) - to_callers > 2 * 50 * 0.5, (len(logged), to_callers)
    assert "v7" in answered_by


def _until(condition, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the follower did not get there"
        time.sleep(0.1)
