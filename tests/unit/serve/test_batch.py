"""Batch prediction: the table is the service's answer for every answerable ticker, published once per day and
model, and a snapshot or feature set that does not fit the model is refused with the reason."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pandas as pd
import pytest

from features import get_feature_set
from stockcast.serve.answers import predict_tickers
from stockcast.serve.batch import IncompatibleInputsError, check_snapshot_not_older, predict_batch
from stockcast.serve.schema import TABLE_COLUMNS
from tests.factories import make_bundle, make_record, year_market

FEATURE_SET = get_feature_set("full")
RECORD = make_record("v42")


@pytest.fixture(scope="module")
def bundle() -> Any:
    """Eight tickers over 2024, one of them listed too late to be warm and one that stopped trading in November."""
    market = year_market(n_tickers=8, seed=3)
    prices = market.prices
    late, stopped = sorted(prices["ticker"].unique())[:2]
    prices = prices[
        ~((prices["ticker"] == late) & (prices["date"] < "2024-10-01"))
        & ~((prices["ticker"] == stopped) & (prices["date"] > "2024-11-15"))
    ].reset_index(drop=True)
    return make_bundle(market, RECORD, prices=prices)


def test_the_table_is_the_service_answer_for_every_answerable_ticker(bundle) -> None:
    snapshot = replace(bundle, data_version="snap-v2")
    table = predict_batch(snapshot)

    late, stopped = sorted(bundle.tickers)[:2]
    answerable = sorted(set(bundle.tickers) - {late, stopped})
    assert list(table.columns) == TABLE_COLUMNS
    assert table["ticker"].tolist() == answerable
    assert (table["as_of"] == pd.Timestamp("2024-12-31")).all()
    assert (table["feature_fingerprint"] == FEATURE_SET.fingerprint).all() and (
        table["data_version"] == "snap-v2"
    ).all()
    served = predict_tickers(snapshot, answerable)
    pd.testing.assert_frame_equal(table[served.columns], served)


def test_a_snapshot_older_than_the_training_data_is_refused() -> None:
    check_snapshot_not_older(RECORD, "2024-12-31", "2024-12-31")
    with pytest.raises(IncompatibleInputsError, match=r"ends on 2024-11-29, before the data model v42 was trained on"):
        check_snapshot_not_older(RECORD, "2024-11-29", "2024-12-31")
