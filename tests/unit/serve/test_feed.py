"""The data feed: a running service's rows follow the branch's snapshot head, equal batch prediction's on every
day, and nothing the feed meets changes what is served."""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from stockcast.core.storage import LocalStore
from stockcast.data.heads import head_key, read_head
from stockcast.serve.batch import predict_batch
from stockcast.serve.bundle import ServingBundle, build_bundle
from stockcast.serve.feed import (
    DATA_STORE_ENV,
    MAX_AGE_ENV,
    REFRESH_ENV,
    DataFeed,
    FeedConfigError,
    FeedSettings,
    RefusedSnapshotError,
    check_servable,
)
from tests.factories import fit_model, make_record, market_until, publish_market, year_market

RECORD = make_record("v42", branch="user.feed")


@pytest.fixture(scope="module")
def market() -> Any:
    return year_market(n_tickers=6, seed=11)


@pytest.fixture(scope="module")
def days(market: Any) -> list[pd.Timestamp]:
    """The market's last five trading days."""
    return sorted(market.prices["date"].unique())[-5:]


@pytest.fixture(scope="module")
def estimator(market: Any) -> Any:
    return fit_model(market, RECORD)


def bundle_until(market: Any, estimator: Any, day: pd.Timestamp, **fields: Any) -> ServingBundle:
    """The bundle batch prediction builds from the market as known at ``day``."""
    tables = market_until(market, day)
    return build_bundle(
        RECORD, tables["prices"], tables["financials"], actions=tables["actions"], estimator=estimator, **fields
    )


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "store")


@pytest.fixture
def deployed(market: Any, estimator: Any, days: list[pd.Timestamp]) -> ServingBundle:
    """What the Bento was built with: the market as known four trading days before its end."""
    return bundle_until(market, estimator, days[0])


def test_a_new_head_is_served_as_batch_prediction_serves_it_every_day(market, estimator, days, store, deployed):
    failures: list[str] = []
    feed = DataFeed(deployed, FeedSettings(store=store.root), on_failure=lambda: failures.append("failed"))
    assert feed.refresh() is False, "nothing published yet: the deployed rows stay"
    assert feed.bundle is deployed

    for day in days[1:]:
        head = publish_market(store, RECORD.branch, market, day)
        assert feed.refresh() is True
        served = feed.bundle
        assert (served.as_of, served.data_version, served.data_published_at) == (day, head.version, head.published_at)
        assert served.estimator is estimator and served.record == RECORD
        expected = predict_batch(bundle_until(market, estimator, day, data_version=head.version))
        pd.testing.assert_frame_equal(predict_batch(served), expected)
        assert feed.refresh() is False, "the same head again changes nothing"
        assert feed.bundle is served
    assert failures == [] and feed.last_error == ""
    status = feed.status()
    assert status["version"] == head.version and status["following"] is True and status["last_error"] is None


def test_an_older_snapshot_is_refused_and_reported(market, days, store, deployed):
    failures: list[str] = []
    feed = DataFeed(deployed, FeedSettings(store=store.root), on_failure=lambda: failures.append("failed"))
    publish_market(store, RECORD.branch, market, days[0] - pd.Timedelta(days=7))

    assert feed.refresh() is False
    assert feed.bundle is deployed
    assert "RefusedSnapshotError" in feed.last_error and f"before the {days[0].date()}" in feed.last_error
    assert failures == ["failed"]
    assert feed.status()["last_error"] == feed.last_error
    assert feed.refresh() is False and failures == ["failed"], "a refused snapshot is not read and counted again"
    publish_market(store, RECORD.branch, market, days[1])
    assert feed.refresh() is True and feed.last_error == "", "the next one is served"


def test_an_unreadable_snapshot_leaves_the_rows_served(market, days, store, deployed):
    head = publish_market(store, RECORD.branch, market, days[-1])
    for partition in Path(store.root, "snapshots", "prices").glob("*.parquet"):
        partition.unlink()  # the head names partitions the store lost
    feed = DataFeed(deployed, FeedSettings(store=store.root))

    assert feed.refresh() is False
    assert feed.bundle is deployed and "KeyError" in feed.last_error
    assert read_head(store, RECORD.branch) == head


def test_a_broken_head_object_leaves_the_rows_served(store, deployed):
    store.put(head_key(RECORD.branch), b"{not json")
    feed = DataFeed(deployed, FeedSettings(store=store.root))

    assert feed.refresh() is False
    assert feed.bundle is deployed and "JSONDecodeError" in feed.last_error


class NaNModel:
    """A model that answers NaN for every row."""

    def predict(self, rows: Any, **_: Any) -> np.ndarray:
        return np.full(len(rows), np.nan)


def test_a_snapshot_the_model_cannot_answer_is_refused(market, estimator, days, deployed):
    broken = bundle_until(market, NaNModel(), days[-1])

    with pytest.raises(RefusedSnapshotError, match=r"predicts no finite return .* for 6 ticker\(s\)"):
        check_servable(deployed, broken)
    check_servable(deployed, bundle_until(market, estimator, days[-1]))


@pytest.mark.parametrize(
    ("max_age_days", "age_days", "stale"), [(0.0, 900, False), (4.0, 4, False), (4.0, 5, True), (0.5, 1, True)]
)
def test_data_is_stale_past_the_configured_age(deployed, max_age_days, age_days, stale):
    now = (deployed.as_of + pd.Timedelta(days=age_days, hours=15)).timestamp()
    feed = DataFeed(deployed, FeedSettings(max_age_days=max_age_days), clock=lambda: now)

    assert feed.age_days() == age_days
    assert feed.stale is stale
    assert feed.status()["stale"] is stale and feed.status()["following"] is False


def test_a_feed_starting_on_stale_data_says_so_and_why_readyz_refuses(deployed, caplog) -> None:
    now = (deployed.as_of + pd.Timedelta(days=40)).timestamp()
    feed = DataFeed(deployed, FeedSettings(max_age_days=30.0), clock=lambda: now)
    with caplog.at_level("WARNING", logger="bentoml.stockcast.feed"):
        feed.start().set()

    assert feed.stale
    assert (
        f"the data served (snapshot {deployed.data_version}) is as of {deployed.as_of.date()}, 40 days ago, past the "
        f"30 days of {MAX_AGE_ENV}: /readyz answers 503 until a newer snapshot is served"
    ) in caplog.text


def test_a_started_feed_reads_the_head_at_once_then_follows_it(market, days, store, deployed):
    publish_market(store, RECORD.branch, market, days[1])
    feed = DataFeed(deployed, FeedSettings(store=store.root, refresh_s=0.2))
    stop = feed.start()
    try:
        assert feed.bundle.as_of == days[1], "read before the service reports ready"
        publish_market(store, RECORD.branch, market, days[2])
        deadline = time.monotonic() + 10
        while feed.bundle.as_of != days[2] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert feed.bundle.as_of == days[2]
    finally:
        stop.set()
    for thread in threading.enumerate():
        if thread.name == "stockcast-data-feed":
            thread.join(timeout=5)
            assert not thread.is_alive(), "the feed stops when told to"


def test_without_a_store_the_deployed_rows_are_served(deployed):
    feed = DataFeed(deployed, FeedSettings.from_environment({}))

    assert not feed.following and feed.refresh() is False and feed.bundle is deployed
    assert feed.status()["refresh_s"] is None


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({REFRESH_ENV: "soon"}, f"{REFRESH_ENV}='soon': not a number"),
        ({REFRESH_ENV: "0"}, f"{REFRESH_ENV}=0.0: use a number of seconds > 0"),
        ({REFRESH_ENV: "nan"}, f"{REFRESH_ENV}=nan: use a number of seconds > 0"),
        ({MAX_AGE_ENV: "-1"}, f"{MAX_AGE_ENV}=-1.0: use a number of days >= 0"),
    ],
)
def test_feed_settings_name_the_variable_at_fault(environ, message):
    with pytest.raises(FeedConfigError, match=f"^{message}"):
        FeedSettings.from_environment(environ)


def test_feed_settings_round_trip_through_the_environment():
    settings = FeedSettings(store="s3://bucket/prefix/stockcast", refresh_s=5.0, max_age_days=4.0)

    assert FeedSettings.from_environment(settings.environment()) == settings
    assert settings.environment()[DATA_STORE_ENV] == "s3://bucket/prefix/stockcast"


def test_bundles_pickled_before_data_versions_default_to_the_training_snapshot(deployed):
    state = {name: value for name, value in deployed.__getstate__().items() if not name.startswith("data_")}
    old = ServingBundle.__new__(ServingBundle)
    old.__setstate__(state)

    assert old.data_version == RECORD.data_version and old.data_published_at == ""
    assert replace(deployed, data_version="").data_version == RECORD.data_version
