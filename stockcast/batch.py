"""Batch prediction: tomorrow's close for every ticker of a snapshot, from the champion, as a published table.

BatchPredictFlow is three calls into this module: ``check_snapshot_not_older`` (refuse a snapshot the model has
already seen), ``predict_batch`` (the same ``stockcast.serving`` code path the HTTP service answers with, so the two can
never disagree) and ``publish_predictions`` (write the table to the object store beside the Metaflow datastore).

Published tables are records of what was predicted, so they are written once: the key is the as-of date and the
model version (``predictions/<branch>/<as_of>/<model_version>.csv``), a re-run for the same pair keeps the table
already there, and MonitorFlow later scores exactly what was predicted at the time, not a recomputation.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import pandas as pd

from stockcast.registry import ModelRecord
from stockcast.runs import successful_runs
from stockcast.serving import PREDICTION_COLUMNS, ServingBundle, predict_tickers
from stockcast.storage import ObjectExistsError, ObjectStore

BATCH_PREDICT_FLOW = "BatchPredictFlow"
PREDICTIONS_PREFIX = "predictions"
TABLE_COLUMNS = [*PREDICTION_COLUMNS, "feature_fingerprint", "data_version"]
"""Columns of a published prediction table: the serving answer plus the feature-set and data versions behind it."""


class IncompatibleInputsError(ValueError):
    """The snapshot and the model cannot be used together; the message says why and what to do."""


@dataclass(frozen=True)
class Publication:
    """Where a prediction table lives, whether this call wrote it, and the table stored there (the one kept, when
    one was already published for that day and model)."""

    url: str
    written: bool
    table: pd.DataFrame


def check_snapshot_not_older(record: ModelRecord, snapshot_last_date: str, training_last_date: str) -> None:
    """Refuse to predict with ``record`` on a snapshot ending before its training data did: an older snapshot would
    answer for a day the model has already seen. (A feature set the model was not trained with is refused when the
    serving bundle is built, by ``stockcast.serving.build_bundle``.)"""
    if pd.Timestamp(snapshot_last_date) < pd.Timestamp(training_last_date):
        raise IncompatibleInputsError(
            f"the snapshot ends on {snapshot_last_date}, before the data model {record.version} was trained on "
            f"(up to {training_last_date}); ingest newer data or pass a newer --snapshot"
        )


def predict_batch(bundle: ServingBundle, data_version: str) -> pd.DataFrame:
    """Tomorrow's close for every ticker whose latest row is the snapshot's last day and has a full look-back;
    ``data_version`` is the version of the snapshot the bundle was built from, recorded in the table.

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
    return answer.assign(feature_fingerprint=bundle.feature_fingerprint, data_version=data_version).sort_values(
        "ticker", ignore_index=True
    )[TABLE_COLUMNS]


def previous_positions(branch: str, as_of: pd.Timestamp) -> dict[str, float]:
    """The positions the latest earlier BatchPredictFlow run of ``branch`` decided on (ticker → signed weight), for
    predictions made before ``as_of``: what is held going into today's decisions. Empty before the first."""
    for run in successful_runs(BATCH_PREDICT_FLOW, branch):
        decisions = run.data.decisions
        if decisions.empty or pd.Timestamp(decisions["as_of"].max()) >= as_of:
            continue
        held = decisions[decisions["target_weight"] != 0]
        return dict(zip(held["ticker"], held["target_weight"].astype(float), strict=True))
    return {}


def prediction_key(branch: str, as_of: pd.Timestamp, model_version: str) -> str:
    """The store key of the table predicted as of ``as_of`` by ``model_version`` on ``branch``."""
    return f"{PREDICTIONS_PREFIX}/{branch}/{as_of:%Y-%m-%d}/{model_version}.csv"


def publish_predictions(table: pd.DataFrame, store: ObjectStore, branch: str) -> Publication:
    """Write the table once per (as-of date, model version); a table already there is kept, and returned."""
    (as_of,) = pd.to_datetime(table["as_of"]).unique()
    (model_version,) = table["model_version"].unique()
    key = prediction_key(branch, pd.Timestamp(as_of), str(model_version))
    try:
        store.put(key, table.to_csv(index=False, date_format="%Y-%m-%d").encode(), exclusive=True)
    except ObjectExistsError:
        return Publication(store.url(key), written=False, table=_read_table(store, key))
    return Publication(store.url(key), written=True, table=table)


def load_predictions(store: ObjectStore, branch: str) -> pd.DataFrame:
    """Every prediction table published on ``branch``, concatenated (empty, with the table's columns, if none)."""
    tables = [_read_table(store, key) for key in store.list(f"{PREDICTIONS_PREFIX}/{branch}/") if key.endswith(".csv")]
    if not tables:
        return pd.DataFrame({name: pd.Series(dtype="object") for name in TABLE_COLUMNS})
    return pd.concat(tables, ignore_index=True)


def _read_table(store: ObjectStore, key: str) -> pd.DataFrame:
    table = pd.read_csv(io.BytesIO(store.get(key)), parse_dates=["as_of"], dtype={"ticker": "str"})
    return table[TABLE_COLUMNS]
