"""Service-test fixtures: a small generated market, a quickly fitted model, its Bento built once per session.

``tests/conftest.py`` points ``BENTOML_HOME`` into the session's temporary folder, so the models and Bentos made
here never reach the developer's stores. Every server started here is stopped, also when a test fails.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import bentoml
import pytest
import yaml

from stockcast.data.synthetic.generator import MarketData
from stockcast.deploy.package import BENTOFILE, REPO_ROOT, build_bento, save_bento_model
from stockcast.deploy.targets import LocalServe
from stockcast.serve.bundle import MODEL_TAG_ENV, ServingBundle
from stockcast.serve.client import StockcastClient
from tests.factories import make_bundle, make_record, year_market

with warnings.catch_warnings():
    # Starlette asks for the `httpx2` fork, which this project does not depend on, and falls back to httpx.
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")  # no usage analytics from test runs (set before any server)


@dataclass(frozen=True)
class ServedModel:
    """The model every service test serves: its market, its serving bundle and its BentoML model tag."""

    market: MarketData
    bundle: ServingBundle
    model_tag: str


@pytest.fixture(scope="session")
def served_model() -> ServedModel:
    """Six tickers in two sectors over 2024 and a ridge model fitted on all of it, saved as a BentoML model."""
    market = year_market(n_tickers=6, seed=5)
    record = make_record(
        "v7",
        branch="user.pytest",
        data_version="d4t4",
        snapshot_run="IngestFlow/3",
        metrics={"mean_fold_rmse": 1.23, "rmse_vs_naive": 0.99, "hit_rate": None},
    )
    bundle = make_bundle(market, record)
    return ServedModel(market=market, bundle=bundle, model_tag=save_bento_model(bundle))


@pytest.fixture(scope="session")
def bento_tag(served_model: ServedModel) -> str:
    """The Bento serving the session's model, built once."""
    return build_bento(served_model.model_tag)


@pytest.fixture(scope="session")
def asgi_client(served_model: ServedModel) -> Iterator[TestClient]:
    """The service in process, through ``to_asgi()``; entering the client runs its startup (loads the model)."""
    service_path = yaml.safe_load(BENTOFILE.read_text())["service"]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(MODEL_TAG_ENV, served_model.model_tag)
        # The service module reads its model tag when imported; a Bento built earlier in the session for another
        # model left its import behind, which bentoml.load would reuse.
        patch.delitem(sys.modules, service_path.partition(":")[0], raising=False)
        service = bentoml.load(service_path, working_dir=str(REPO_ROOT))
    with TestClient(service.to_asgi()) as client:
        yield client


@pytest.fixture(scope="session")
def server(bento_tag: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The built Bento under a real ``bentoml serve`` on a free 127.0.0.1 port; yields its base URL."""
    log_path = tmp_path_factory.mktemp("serve") / "bentoml-serve.log"
    with LocalServe(startup_timeout=60, log_path=log_path) as target:
        yield target.deploy(bento_tag)


@pytest.fixture(scope="session")
def client(server: str) -> Iterator[StockcastClient]:
    with StockcastClient(server) as service_client:
        yield service_client
