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
from pathlib import Path

import bentoml
import pytest
import yaml

from stockcast.core.network import free_port
from stockcast.data.synthetic.generator import MarketData
from stockcast.deploy.config import LocalSettings, RolloutSettings, SmokeSettings, Strategy
from stockcast.deploy.fleet import LocalFleet, local_fleet
from stockcast.deploy.package import BENTOFILE, REPO_ROOT, build_bento, save_bento_model
from stockcast.deploy.targets import LocalServe
from stockcast.serve.auth import PROTECT_METRICS_ENV, TOKEN_ENV, TOKEN_FILE_ENV
from stockcast.serve.bundle import MODEL_TAG_ENV, ServingBundle
from stockcast.serve.client import StockcastClient
from stockcast.serve.feed import MAX_AGE_ENV
from tests.factories import make_bundle, make_record, year_market

with warnings.catch_warnings():
    # Starlette asks for the `httpx2` fork, which this project does not depend on, and falls back to httpx.
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")  # no usage analytics from test runs (set before any server)
for _name in (TOKEN_ENV, TOKEN_FILE_ENV, PROTECT_METRICS_ENV):
    # The tests choose which server needs a token, and which token: none from the developer's environment.
    os.environ.pop(_name, None)


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


STALE_AFTER_DAYS = 30
"""The largest data age the in-process service (``asgi_client``) accepts."""


@pytest.fixture(scope="session")
def asgi_client(served_model: ServedModel) -> Iterator[TestClient]:
    """The service in process, through ``to_asgi()``; entering the client runs its startup (loads the model). Its
    data may be at most ``STALE_AFTER_DAYS`` old, which the model's 2024 snapshot is not: its ``/readyz`` says so."""
    service_path = yaml.safe_load(BENTOFILE.read_text())["service"]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(MODEL_TAG_ENV, served_model.model_tag)
        patch.setenv(MAX_AGE_ENV, str(STALE_AFTER_DAYS))
        # The service module reads its model tag when imported; a Bento built earlier in the session for another
        # model left its import behind, which bentoml.load would reuse.
        patch.delitem(sys.modules, service_path.partition(":")[0], raising=False)
        service = bentoml.load(service_path, working_dir=str(REPO_ROOT))
    with TestClient(service.to_asgi()) as client:
        yield client


@pytest.fixture(scope="session")
def server_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where ``server`` writes its log (the output of ``bentoml serve`` and its workers)."""
    return tmp_path_factory.mktemp("serve") / "bentoml-serve.log"


def serve_apart(target: LocalServe, bento_tag: str, folder: Path, **environment: str) -> str:
    """``target.deploy(bento_tag)`` in a BentoML home of the server's own in ``folder`` (``own_bentoml_home``: the
    deploy and rollout tests start servers while this one runs, and each would wipe the others' metrics);
    ``environment`` adds variables for the server alone."""
    target.home = folder / "bentoml-home"
    with pytest.MonkeyPatch.context() as patch:
        # LocalServe hands the server a copy of this process' environment when it starts it.
        for name, value in environment.items():
            patch.setenv(name, value)
        return target.deploy(bento_tag)


@pytest.fixture(scope="session")
def server(bento_tag: str, server_log: Path) -> Iterator[str]:
    """The built Bento under a real ``bentoml serve`` on a free 127.0.0.1 port; yields its base URL."""
    with LocalServe(startup_timeout=60, log_path=server_log) as target:
        yield serve_apart(target, bento_tag, server_log.parent)


API_TOKEN = "stockcast-test-token_0123456789"
"""The token ``protected_server`` requires."""


@pytest.fixture(scope="session")
def protected_server(bento_tag: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The same Bento served with a token required, on /metrics too: the token comes from a file, as a mounted
    secret would (``STOCKCAST_API_TOKEN_FILE``). A second server costs a few seconds, so only the tests of
    authentication ask for it."""
    folder = tmp_path_factory.mktemp("protected")
    token_file = folder / "token"
    token_file.write_text(f"{API_TOKEN}\n")
    with LocalServe(startup_timeout=60, log_path=folder / "bentoml-serve.log") as target:
        yield serve_apart(target, bento_tag, folder, **{TOKEN_FILE_ENV: str(token_file), PROTECT_METRICS_ENV: "true"})


@pytest.fixture(scope="session")
def client(server: str) -> Iterator[StockcastClient]:
    with StockcastClient(server) as service_client:
        yield service_client


def make_fleet(
    folder: Path, *, replicas: int = 1, strategy: Strategy = "rolling", rollout: RolloutSettings | None = None
) -> LocalFleet:
    """The ``local`` deploy target on free loopback ports: nginx in front of ``replicas`` ``bentoml serve`` replicas,
    smoke-tested on two tickers, its files in ``folder``."""
    settings = LocalSettings(port=free_port(), preview_port=free_port(), replicas=replicas, startup_timeout_s=60.0)
    return local_fleet(
        settings,
        strategy=strategy,
        rollout=rollout or RolloutSettings(),
        smoke=SmokeSettings(tickers=2),
        workdir=folder,
    )
