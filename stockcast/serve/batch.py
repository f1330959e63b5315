"""Batch prediction: tomorrow's close for every ticker of a snapshot, by the code path the HTTP service answers with.

``pin_model`` chooses the model a batch run predicts with and refuses a snapshot it must not predict on;
``predict_snapshot`` builds the model's ``ServingBundle`` from the snapshot and answers for every ticker that can be
answered, exactly as ``POST /predict`` would (``stockcast.serve.answers``). Publishing the table and deciding on it
are operations' business (``stockcast.operate``).
"""

from __future__ import annotations

import weakref
from typing import Any

import pandas as pd

from features import FeatureSet, get_feature_set, latest_feature_rows
from stockcast.core.registry import ModelRecord, Registry
from stockcast.data.snapshot import Snapshot, load_snapshot
from stockcast.serve.answers import predict_tickers
from stockcast.serve.bundle import ServingBundle, build_bundle
from stockcast.serve.schema import TABLE_COLUMNS
from stockcast.train.factories import Estimator


class IncompatibleInputsError(ValueError):
    """The snapshot and the model cannot be used together; the message says why and what to do."""


def pin_model(registry: Registry, version: str, snapshot: Snapshot) -> ModelRecord:
    """The model to predict ``snapshot`` with: ``version`` (empty: the branch's champion), refused by
    ``check_snapshot_not_older`` when the snapshot ends before the model's training data did."""
    record = registry.get(version) if version else registry.require_champion()
    check_snapshot_not_older(record, snapshot.last_day, record.data_end or load_snapshot(record.snapshot_run).last_day)
    return record


def check_snapshot_not_older(record: ModelRecord, snapshot_end: str, training_end: str) -> None:
    """Refuse to predict with ``record`` on a snapshot ending before its training data did: an older snapshot would
    answer for a day the model has already seen. (A feature set the model was not trained with is refused when the
    serving bundle is built, by ``stockcast.serve.bundle.build_bundle``.)"""
    if pd.Timestamp(snapshot_end) < pd.Timestamp(training_end):
        raise IncompatibleInputsError(
            f"the snapshot ends on {snapshot_end}, before the data model {record.version} was trained on "
            f"(up to {training_end}); ingest newer data or pass a newer --snapshot"
        )


def predict_snapshot(record: ModelRecord, snapshot: Snapshot, estimator: Estimator | None = None) -> pd.DataFrame:
    """The model's prediction table for the snapshot's last day (``TABLE_COLUMNS``, sorted by ticker); the fitted
    ``estimator``, when given, saves loading it from the training task the record points at."""
    bundle = build_bundle(
        record,
        snapshot.prices,
        snapshot.financials,
        actions=snapshot.actions,
        estimator=estimator,
        data_version=snapshot.version,
        latest_rows=snapshot_feature_rows(snapshot, get_feature_set(record.feature_set)),
    )
    return predict_batch(bundle)


_FEATURE_ROWS: weakref.WeakKeyDictionary[Any, dict[str, pd.DataFrame]] = weakref.WeakKeyDictionary()
"""Each live snapshot object's latest feature rows, by feature-set fingerprint."""


def snapshot_feature_rows(snapshot: Snapshot, feature_set: FeatureSet) -> pd.DataFrame:
    """The latest feature row of each of the snapshot's tickers (``latest_feature_rows``), computed once per snapshot
    and feature set while the snapshot lives: the champion and each of its shadows predict the same day from the same
    rows, and computing them was most of a prediction's cost. Read-only."""
    computed = _FEATURE_ROWS.setdefault(snapshot, {})
    if feature_set.fingerprint not in computed:
        computed[feature_set.fingerprint] = latest_feature_rows(
            snapshot.prices, snapshot.financials, actions=snapshot.actions, feature_set=feature_set
        )
    return computed[feature_set.fingerprint]


def predict_batch(bundle: ServingBundle) -> pd.DataFrame:
    """Tomorrow's close for every ticker whose latest row is the snapshot's last day and has a full look-back, with
    the version of the snapshot the bundle was built from.

    Tickers that stopped trading before that day or lack history are left out (their count is the difference with
    the snapshot's tickers); the rest are answered by ``predict_tickers``, exactly as ``POST /predict`` would.
    """
    rows = bundle.latest_rows
    answerable = rows.loc[rows["is_warm"].eq(True) & rows["date"].eq(bundle.as_of), "ticker"].tolist()
    if not answerable:
        raise IncompatibleInputsError(
            f"no ticker has {bundle.min_history} days of history up to {bundle.as_of.date()}: nothing to predict"
        )
    answer = predict_tickers(bundle, answerable)
    return answer.assign(feature_fingerprint=bundle.feature_fingerprint).sort_values("ticker", ignore_index=True)[
        TABLE_COLUMNS
    ]
