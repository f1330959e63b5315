"""Batch prediction: the table is the service's answer for every answerable ticker, published once per day and
model, and a snapshot or feature set that does not fit the model is refused with the reason."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

from features import get_feature_set
from stockcast.batch import (
    TABLE_COLUMNS,
    IncompatibleInputsError,
    check_snapshot_not_older,
    load_predictions,
    predict_batch,
    publish_predictions,
)
from stockcast.data.generator import MarketSpec, generate_market
from stockcast.models import CandidateSpec, fit_candidate
from stockcast.registry import ModelRecord
from stockcast.serving import build_bundle, predict_tickers
from stockcast.storage import LocalStore, S3Store
from stockcast.training import build_modelling_data

FEATURE_SET = get_feature_set("full")
RECORD = ModelRecord(
    version="v42",
    branch="user.test",
    run_pathspec="TrainFlow/42",
    model_task="TrainFlow/42/refit/7",
    candidate={"candidate_id": "ridge[alpha=1.0]", "name": "ridge", "factory": "ridge", "params": {"alpha": 1.0}},
    data_version="abc123",
    snapshot_run="IngestFlow/1",
    feature_set=FEATURE_SET.name,
    feature_fingerprint=FEATURE_SET.fingerprint,
    code_version=None,
    metrics={},
    gate={},
)


@pytest.fixture(scope="module")
def bundle() -> Any:
    """Eight tickers over 2024, one of them listed too late to be warm and one that stopped trading in November."""
    market = generate_market(MarketSpec(n_tickers=8, n_sectors=2, start="2024-01-01", end="2024-12-31", seed=3))
    prices = market.prices
    late, stopped = sorted(prices["ticker"].unique())[:2]
    prices = prices[
        ~((prices["ticker"] == late) & (prices["date"] < "2024-10-01"))
        & ~((prices["ticker"] == stopped) & (prices["date"] > "2024-11-15"))
    ].reset_index(drop=True)
    data = build_modelling_data(prices, market.financials, None, FEATURE_SET)
    spec = CandidateSpec("ridge[alpha=1.0]", "ridge", "ridge", {"alpha": 1.0})
    estimator = fit_candidate(spec, data.frame, data.feature_columns, data.categorical_columns)
    return build_bundle(RECORD, prices, market.financials, estimator=estimator)


def test_the_table_is_the_service_answer_for_every_answerable_ticker(bundle) -> None:
    table = predict_batch(bundle, "snap-v2")

    late, stopped = sorted(bundle.tickers)[:2]
    answerable = sorted(set(bundle.tickers) - {late, stopped})
    assert list(table.columns) == TABLE_COLUMNS
    assert table["ticker"].tolist() == answerable
    assert (table["as_of"] == pd.Timestamp("2024-12-31")).all()
    assert (table["feature_fingerprint"] == FEATURE_SET.fingerprint).all() and (
        table["data_version"] == "snap-v2"
    ).all()
    served = predict_tickers(bundle, answerable)
    pd.testing.assert_frame_equal(table[served.columns], served)


def test_a_snapshot_older_than_the_training_data_is_refused() -> None:
    check_snapshot_not_older(RECORD, "2024-12-31", "2024-12-31")
    with pytest.raises(IncompatibleInputsError, match=r"ends on 2024-11-29, before the data model v42 was trained on"):
        check_snapshot_not_older(RECORD, "2024-11-29", "2024-12-31")


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
def store(request, tmp_path):
    if request.param == "local":
        return LocalStore(tmp_path / "store")
    return S3Store(
        f"s3://stockcast-test/batch-tests/{tmp_path.name}", endpoint_url=request.getfixturevalue("s3_server")
    )


def test_a_table_is_published_once_per_day_and_model(bundle, store) -> None:
    table = predict_batch(bundle, "snap-v2")
    assert load_predictions(store, "user.test").empty

    first = publish_predictions(table, store, "user.test")
    changed = table.assign(predicted_close=table["predicted_close"] + 1.0)
    again = publish_predictions(changed, store, "user.test")
    other_model = publish_predictions(table.assign(model_version="v43"), store, "user.test")

    assert first.written and not again.written and other_model.written
    assert first.url == again.url == store.url("predictions/user.test/2024-12-31/v42.csv")
    pd.testing.assert_frame_equal(again.table, table, check_dtype=False)  # the kept table, not the changed one
    loaded = load_predictions(store, "user.test")
    assert sorted(loaded["model_version"].unique()) == ["v42", "v43"]
    kept = loaded[loaded["model_version"] == "v42"].reset_index(drop=True)
    pd.testing.assert_frame_equal(kept, table, check_dtype=False)  # the first table, not the changed one
    assert load_predictions(store, "user.other").empty
