"""Operating the champion for real: BatchPredictFlow and MonitorFlow, on the local datastore and S3.

Prediction reads the session's champion (``tests/flows/conftest.py``); the S3 tests use the S3 champion, promoted by
the TrainFlow run that completed after two storage outages (``tests/flows/outage.py``): on S3, that run is checked
here too (where it put the registry and the Bento), and predicting and monitoring with its model is the "next
BatchPredictFlow" that must work after a resume. The
daily loop, day by day until a retrain, is the end-to-end test of the demo (``tests/e2e``).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from metaflow import Run

from stockcast.core.registry import Registry
from stockcast.core.storage import LocalStore, S3Store
from stockcast.deploy.package import registered_bento
from stockcast.deploy.targets import LocalServe
from stockcast.operate.tables import prediction_key
from stockcast.serve.client import StockcastClient
from stockcast.serve.schema import TABLE_COLUMNS
from tests.factories import PLANTED
from tests.harness import S3_DATASTORE_ENV, FlowRunner, card_text, metaflow_home

pytestmark = pytest.mark.slow


def test_batch_prediction_is_what_the_served_bento_answers_and_is_published_once(champion, market, configs, tmp_path):
    runner = FlowRunner(champion.branch)
    first = runner("predict", config=configs["operate"])
    assert first.successful, first.output
    table = first.run.data.predictions
    branch = champion.branch
    registry = Registry(champion.registry_branch)
    champion = registry.champion()
    training = Run(champion.run_pathspec)

    # Every ticker trading on the last day with a full look-back; the delisted ones and a renamed ticker's old symbol
    # are not predicted.
    frame = training.data.modelling["full"].read()
    last_day = frame[frame["date"] == frame["date"].max()]
    ended = market.actions.loc[market.actions["kind"].isin(["delisting", "rename"]), "ticker"]
    assert list(table.columns) == TABLE_COLUMNS and len(table) == int(last_day["is_warm"].sum())
    assert len(table) >= PLANTED.n_tickers - len(ended) - 1 and not set(ended) & set(table["ticker"])
    assert (table["model_version"] == champion.version).all()
    assert (table["feature_fingerprint"] == champion.feature_fingerprint).all()
    as_of = table["as_of"].max()
    assert as_of == pd.Timestamp(training.data.modelling["full"].read()["date"].max())
    key = prediction_key(f"test.{branch}", as_of, champion.version)
    assert first.run.data.predictions_url == registry.store.url(key) and first.run.data.published

    # The champion's Bento, served for real (its archive checked against the digest recorded at deploy), answers
    # /predict exactly as the batch table says.
    with LocalServe(log_path=tmp_path / "serve.log") as target:
        endpoint = target.deploy(registered_bento(registry, champion.version))
        with StockcastClient(endpoint) as client:
            served = client.predict_table(table["ticker"].tolist())
        # Decisions taken from the HTTP API are those taken from the table; the table is not written twice.
        again = runner("predict", config=configs["operate"], service=endpoint)
    assert again.successful, again.output
    pd.testing.assert_series_equal(served["predicted_close"], table["predicted_close"])
    assert again.run.data.published is False and "Already published, kept" in again.output
    pd.testing.assert_frame_equal(
        again.run.data.decisions[["ticker", "action", "target_weight"]],
        first.run.data.decisions[["ticker", "action", "target_weight"]],
    )

    strategies = first.run.data.strategies.metrics
    assert strategies["strategy"].tolist() == ["model rule", "momentum rule", "buy and hold"]
    shown = card_text(first.run["decide"].task, "decisions")
    assert "buy and hold" in shown and "model rule" in shown


@pytest.mark.s3
def test_training_on_the_s3_datastore_keeps_the_registry_and_the_bento_there(s3_champion, s3_client):
    branch, run = s3_champion.branch, s3_champion.training
    assert run["register"].task.metadata_dict["ds-type"] == "s3"
    store = S3Store("s3://stockcast-test/metaflow/stockcast", endpoint_url=s3_client.meta.endpoint_url)
    registry = Registry(f"test.{branch}", store)
    assert registry.champion_version() == f"v{run.id}"
    keys = s3_client.list_objects_v2(Bucket="stockcast-test", Prefix=f"metaflow/stockcast/registry/test.{branch}/")
    assert {Path(item["Key"]).parent.name for item in keys["Contents"]} == {"models", "events", "bentos"}
    archive = f"metaflow/stockcast/bentos/stockcast/v{run.id}.bento"
    assert registry.bento(f"v{run.id}")["archive"] == f"s3://stockcast-test/{archive}"
    assert s3_client.head_object(Bucket="stockcast-test", Key=archive)["ContentLength"] > 10_000
    assert registry.champion().load_model() is not None
    # Nothing of this run went to the local registry.
    assert not LocalStore(metaflow_home() / ".metaflow" / "stockcast").list(f"registry/test.{branch}/")


@pytest.mark.s3
def test_prediction_and_monitoring_on_the_s3_datastore(s3_champion, market, configs, s3_client):
    branch, training = s3_champion.branch, s3_champion.training
    runner = FlowRunner(branch)
    predicted = runner("predict", env=S3_DATASTORE_ENV, config=configs["operate"])
    assert predicted.successful, predicted.output
    assert predicted.run.data.model_record.version == training.data.model_version  # the resumed run's model
    # Monitored on the next trading day: the data is fresh, the model new.
    monitored = runner("monitor", env=S3_DATASTORE_ENV, config=configs["operate"], today=market.days[0].name)
    assert monitored.successful, monitored.output

    prefix = f"metaflow/stockcast/predictions/test.{branch}/"
    keys = [item["Key"] for item in s3_client.list_objects_v2(Bucket="stockcast-test", Prefix=prefix)["Contents"]]
    day = f"{prefix}{predicted.run.data.predictions['as_of'].max():%Y-%m-%d}"
    # The champion's table, and its shadow's: the model the run interrupted by the outage registered, never promoted.
    (shadow,) = predicted.run.data.shadow_tables
    assert shadow["role"] == "latest challenger" and shadow["outcome"].startswith("published: s3://")
    assert sorted(keys) == sorted([f"{day}/{training.data.model_version}.csv", f"{day}/{shadow['version']}.csv"])
    decisions = f"metaflow/stockcast/decisions/test.{branch}/"
    assert s3_client.list_objects_v2(Bucket="stockcast-test", Prefix=decisions)["KeyCount"] == 1
    assert monitored.run["assess"].task.metadata_dict["ds-type"] == "s3"
    assert monitored.run.data.retrain is False and len(monitored.run.data.drift) > 0
