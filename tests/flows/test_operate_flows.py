"""Operating the champion for real: BatchPredictFlow, MonitorFlow and the daily loop, on the local datastore and S3.

One market serves every test here: a history the champion is trained on, then held-out days that arrive one at a
time, with a volatility regime that starts part-way through them. On S3, the champion's TrainFlow run is checked
here too: where it put the registry and the Bento.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd
import pytest
from metaflow import Run

from conftest import MAX_WORKERS, S3_DATASTORE_ENV, TEST_HOME, FlowRunner, card_text
from flow_inputs import PLANTED, QUICK_CONFIG
from stockcast.batch import TABLE_COLUMNS, prediction_key
from stockcast.client import StockcastClient
from stockcast.data.generator import generate_market, split_days, write_days, write_market
from stockcast.deploy import LocalServe, import_bento
from stockcast.operate import LoopSettings, run_day
from stockcast.registry import Registry
from stockcast.storage import LocalStore, S3Store

pytestmark = pytest.mark.slow

HELD_OUT_DAYS = 2
SHIFT_DAY = 2  # a calm held-out day, then volatility sixteen times higher from the second one on
REGIME_VOL_MULTIPLIER = 16.0
# Drift is judged on 1-day windows, so that the regime shows on its first day: on this market 4 of 53 features are
# beyond their usual distance on the calm day, 20 on the first day of the regime. Performance alerts are held off,
# and a retrain may follow the previous one at once, so that only the regime change calls for retraining, as soon
# as it shows.
OPERATE_CONFIG = """
[monitor]
window_days = 5
min_days = 2
max_rmse_vs_naive = 1.5
max_decay_vs_backtest = 1.5
drift_window_days = 1
max_drifted_share = 0.2
retrain_cooldown_days = 0
"""


@dataclass(frozen=True)
class Market:
    """The files of the shared market: the history, an earlier cut of it, and one folder per held-out day."""

    history: dict[str, Path]
    earlier: dict[str, Path]
    days: list[Path]
    shift_date: str


@pytest.fixture(scope="module")
def market(tmp_path_factory) -> Market:
    folder = tmp_path_factory.mktemp("operate-market")
    dates = pd.bdate_range(PLANTED.start, PLANTED.end)
    shift_date = f"{dates[-HELD_OUT_DAYS + SHIFT_DAY - 1]:%Y-%m-%d}"
    spec = replace(PLANTED, regime_shift_date=shift_date, regime_vol_multiplier=REGIME_VOL_MULTIPLIER)
    history, days = split_days(generate_market(spec), HELD_OUT_DAYS)
    earlier, _ = split_days(history, 10)
    return Market(
        history=write_market(history, folder / "history"),
        earlier=write_market(earlier, folder / "earlier"),
        days=write_days(days, folder / "days"),
        shift_date=shift_date,
    )


@pytest.fixture(scope="module")
def configs(tmp_path_factory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("operate-configs")
    (folder / "train.toml").write_text(QUICK_CONFIG)
    (folder / "operate.toml").write_text(OPERATE_CONFIG)
    return {"train": str(folder / "train.toml"), "operate": str(folder / "operate.toml")}


def _trained(
    branch: str, market: Market, configs: dict[str, str], env: dict[str, str] | None = None, *, earlier: bool = True
) -> dict:
    """Ingest an earlier cut of the history (unless not ``earlier``), then all of it, and train on that: the branch
    has a champion."""
    runner = FlowRunner(branch)
    snapshots = {}
    cuts = (("earlier", market.earlier), ("history", market.history)) if earlier else (("history", market.history),)
    for name, files in cuts:
        result = runner("ingest", env=env, prices=str(files["prices"]), financials=str(files["financials"]))
        assert result.successful, result.output
        snapshots[name] = result.run.pathspec
    trained = runner("train", env=env, config=configs["train"], snapshot=snapshots["history"])
    assert trained.successful, trained.output
    assert trained.run.data.promoted, trained.run.data.decision["reason"]
    return {**snapshots, "training": trained.run}


@pytest.fixture(scope="module")
def trained(market, configs) -> tuple[str, dict]:
    branch = f"op{pd.Timestamp.now():%H%M%S%f}"
    return branch, _trained(branch, market, configs)


def test_batch_prediction_is_what_the_served_bento_answers_and_is_published_once(trained, configs, tmp_path):
    branch, runs = trained
    runner = FlowRunner(branch)
    first = runner("predict", config=configs["operate"])
    assert first.successful, first.output
    table = first.run.data.predictions
    registry = Registry(f"test.{branch}")
    champion = registry.champion()

    assert list(table.columns) == TABLE_COLUMNS and len(table) == PLANTED.n_tickers
    assert (table["model_version"] == champion.version).all()
    assert (table["feature_fingerprint"] == champion.feature_fingerprint).all()
    as_of = table["as_of"].max()
    assert as_of == pd.Timestamp(runs["training"].data.modelling["full"].frame["date"].max())
    key = prediction_key(f"test.{branch}", as_of, champion.version)
    assert first.run.data.predictions_url == registry.store.url(key) and first.run.data.published

    # The champion's Bento, served for real, answers /predict exactly as the batch table says.
    bento = registry.bento(champion.version)
    with LocalServe(log_path=tmp_path / "serve.log") as target:
        endpoint = target.deploy(import_bento(bento["archive"], registry.store))
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
    assert strategies["strategy"].tolist() == ["model rule", "naive rule", "buy and hold"]
    assert strategies.set_index("strategy").loc["naive rule", "trades"] == 0  # naive predicts no move: never trades
    shown = card_text(first.run["decide"].task, "decisions")
    assert "buy and hold" in shown and "model rule" in shown


def test_batch_prediction_refuses_a_snapshot_older_than_the_training_data(trained, configs):
    branch, runs = trained
    result = FlowRunner(branch)("predict", config=configs["operate"], snapshot=runs["earlier"])
    assert not result.successful
    assert "before the data model" in result.output and "ingest newer data" in result.output


def test_the_daily_loop_notices_the_regime_change_and_retrains(trained, market, configs):
    branch, _ = trained
    settings = LoopSettings(
        branch=branch,
        train_config=configs["train"],
        operate_config=configs["operate"],
        max_workers=MAX_WORKERS,
        show_output=False,
    )

    reports = []
    for folder in market.days:  # day by day, until monitoring calls for a retrain
        reports.append(run_day(folder, settings))
        if reports[-1].retrain:
            break

    retrained = reports[-1]
    assert retrained.retrain and retrained.today >= market.shift_date, [(r.today, r.alerts) for r in reports]
    assert all(not report.alerts for report in reports if report.today < market.shift_date)
    assert len([report for report in reports if report.today < market.shift_date]) == SHIFT_DAY - 1
    assert any(alert.startswith("[drift]") for alert in retrained.alerts)
    assert retrained.training is not None and retrained.training.startswith("TrainFlow/")

    registry = Registry(f"test.{branch}")
    assert registry.store.list(f"alerts/test.{branch}/{retrained.today}/")
    monitor = Run(retrained.monitor)
    drifted = monitor.data.drift[monitor.data.drift["drifted"]]
    assert {"range_pct", "volatility_5d"} & set(drifted["feature"])  # what a volatility regime moves first
    assert len(monitor.data.performance) >= len(reports) - 1  # every day's prediction but today's is realised
    assert "drift" in card_text(monitor["assess"].task, "monitoring").lower()


@pytest.fixture(scope="module")
def s3_trained(market, configs, s3_server) -> tuple[str, dict]:
    """The history ingested and a champion trained on the S3 datastore, on a branch of its own, for the S3 tests
    below (a task on S3 costs seconds more than a local one, so they share it)."""
    branch = f"s3op{pd.Timestamp.now():%H%M%S%f}"
    return branch, _trained(branch, market, configs, env=S3_DATASTORE_ENV, earlier=False)


@pytest.mark.s3
def test_training_on_the_s3_datastore_keeps_the_registry_and_the_bento_there(s3_trained, s3_client):
    branch, runs = s3_trained
    run = runs["training"]
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
    assert not LocalStore(TEST_HOME / ".metaflow" / "stockcast").list(f"registry/test.{branch}/")


@pytest.mark.s3
def test_prediction_and_monitoring_on_the_s3_datastore(s3_trained, market, configs, s3_client):
    branch, runs = s3_trained
    runner = FlowRunner(branch)
    predicted = runner("predict", env=S3_DATASTORE_ENV, config=configs["operate"])
    assert predicted.successful, predicted.output
    # Monitored on the next trading day: the data is fresh, the model new.
    monitored = runner("monitor", env=S3_DATASTORE_ENV, config=configs["operate"], today=market.days[0].name)
    assert monitored.successful, monitored.output

    prefix = f"metaflow/stockcast/predictions/test.{branch}/"
    keys = [item["Key"] for item in s3_client.list_objects_v2(Bucket="stockcast-test", Prefix=prefix)["Contents"]]
    assert keys == [
        f"{prefix}{predicted.run.data.predictions['as_of'].max():%Y-%m-%d}/{runs['training'].data.model_version}.csv"
    ]
    assert monitored.run["assess"].task.metadata_dict["ds-type"] == "s3"
    assert monitored.run.data.retrain is False and len(monitored.run.data.drift) > 0
