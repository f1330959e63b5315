"""Fresh data in a running service: a real ``bentoml serve`` follows its branch's snapshot head and, day after day,
answers as batch prediction does for that day, without a restart and without failing a request. (The feed's rules
one by one: tests/unit/serve/test_feed.py; ``/readyz`` on stale data: tests/service/test_service_asgi.py.)"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import httpx
import pandas as pd
import pytest
import yaml

from stockcast.core.registry import ModelRecord
from stockcast.core.storage import LocalStore
from stockcast.deploy.load import ConstantLoad
from stockcast.deploy.package import BENTOFILE, build_bento, save_bento_model
from stockcast.deploy.targets import LocalServe
from stockcast.serve.batch import predict_batch
from stockcast.serve.bundle import build_bundle
from stockcast.serve.client import StockcastClient
from stockcast.serve.feed import FeedSettings
from tests.factories import market_until, publish_market
from tests.service.conftest import ServedModel

SERVED_WITHIN_S = 60.0
"""The longest a published snapshot may wait before the service answers from it (issue 15's acceptance)."""
SERVICE = yaml.safe_load(BENTOFILE.read_text())["service"]


@dataclass(frozen=True)
class Following:
    """A served model deployed four trading days before its market ends, following heads in ``store``."""

    endpoint: str
    record: ModelRecord
    estimator: Any
    store: LocalStore
    days: list[pd.Timestamp]


@pytest.fixture(scope="module")
def following(served_model: ServedModel, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Following]:
    market = served_model.market
    days = sorted(market.prices["date"].unique())[-4:]
    record = replace(served_model.bundle.record, version="v11", run_pathspec="TrainFlow/11", data_version="d4y0")
    tables = market_until(market, days[0])
    bundle = build_bundle(
        record,
        tables["prices"],
        tables["financials"],
        actions=tables["actions"],
        estimator=served_model.bundle.estimator,
    )
    try:
        bento_tag = build_bento(save_bento_model(bundle))
    finally:
        sys.modules.pop(SERVICE.partition(":")[0], None)  # as tests/service/test_rollout_local.py says
    folder = tmp_path_factory.mktemp("feed")
    store = LocalStore(folder / "store")
    feed = FeedSettings(store=store.root, refresh_s=1.0)
    with LocalServe(
        startup_timeout=60, log_path=folder / "serve.log", home=folder / "home", environment=feed.environment()
    ) as target:
        yield Following(target.deploy(bento_tag), record, bundle.estimator, store, days)


def _served_as_of(client: StockcastClient, tickers: list[str], day: pd.Timestamp, deadline: float) -> bool:
    """True once ten answers in a row (from either worker process) are as of ``day``."""
    in_a_row = 0
    while time.monotonic() < deadline:
        answers = client.predict(tickers)
        in_a_row = in_a_row + 1 if all(pd.Timestamp(row["as_of"]) == day for row in answers) else 0
        if in_a_row == 10:
            return True
        time.sleep(0.05)
    return False


def test_each_published_snapshot_is_served_within_a_minute_as_batch_predicts_it(following, served_model) -> None:
    market, first, later = served_model.market, following.days[0], following.days[1:]
    tickers = sorted(market.prices["ticker"].unique())
    request = {"tickers": tickers[:2], "as_of": None}
    waits: list[float] = []
    with StockcastClient(following.endpoint) as client:
        assert client.model()["data"]["version"] == following.record.data_version
        assert {pd.Timestamp(row["as_of"]) for row in client.predict(tickers)} == {first}
        with ConstantLoad(following.endpoint, lambda http: http.post("/predict", json=request), rate=40) as load:
            for day in later:
                head = publish_market(following.store, following.record.branch, market, day)
                published = time.monotonic()
                assert _served_as_of(client, tickers, day, published + SERVED_WITHIN_S), f"{day.date()} not served"
                waits.append(time.monotonic() - published)

                tables = market_until(market, day)
                batch = predict_batch(
                    build_bundle(
                        following.record,
                        tables["prices"],
                        tables["financials"],
                        actions=tables["actions"],
                        estimator=following.estimator,
                        data_version=head.version,
                    )
                )
                served = pd.DataFrame(client.predict(batch["ticker"].tolist()))
                for column in ("ticker", "last_close", "predicted_return", "predicted_close", "model_version"):
                    assert served[column].tolist() == batch[column].tolist(), column
                assert (pd.to_datetime(served["as_of"]) == day).all()
                data = client.model()["data"]
                assert (data["version"], data["as_of"], data["published_at"]) == (
                    head.version,
                    str(day.date()),
                    head.published_at,
                )
                assert data["following"] is True and data["last_error"] is None
    print(f"snapshots served {', '.join(f'{wait:.1f}' for wait in waits)} s after publication; {load.report.summary()}")
    assert not load.report.failed, load.report.summary()
    assert load.report.requests > 40 * sum(waits) * 0.5, "the load ran through every switch"


def test_an_older_snapshot_is_refused_and_the_service_keeps_answering(following, served_model) -> None:
    with StockcastClient(following.endpoint) as client:
        before = client.model()["data"]
        publish_market(following.store, following.record.branch, served_model.market, following.days[0])
        deadline = time.monotonic() + SERVED_WITHIN_S
        while time.monotonic() < deadline and not (client.model()["data"]["last_error"] or "").startswith("Refused"):
            time.sleep(0.2)
        data = client.model()["data"]
        assert data["last_error"].startswith("RefusedSnapshotError: snapshot"), data
        assert data["version"] == before["version"] and data["as_of"] == before["as_of"]
        assert httpx.get(f"{following.endpoint}/readyz").status_code == 200
        assert {row["as_of"] for row in client.predict(client.model()["tickers"])} == {before["as_of"]}
