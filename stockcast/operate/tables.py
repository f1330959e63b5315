"""Published prediction tables, and the positions the previous day's decisions left open.

A table is the ``predictions`` artefact of its BatchPredictFlow run and is also written to the object store beside
the Metaflow datastore, keyed by its as-of date and model version
(``predictions/<branch>/<as_of>/<model_version>.csv``): MonitorFlow needs every table ever published on the branch,
once per day and model however often a run was repeated. Tables are records of what was predicted, so they are
written once: a re-run for the same pair keeps the table already there, and monitoring later scores exactly what was
predicted at the time, not a recomputation.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import pandas as pd

from stockcast.core.runs import successful_runs
from stockcast.core.storage import ObjectExistsError, ObjectStore
from stockcast.serve.schema import TABLE_COLUMNS

BATCH_PREDICT_FLOW = "BatchPredictFlow"
PREDICTIONS_PREFIX = "predictions"


@dataclass(frozen=True)
class Publication:
    """Where a prediction table lives, whether this call wrote it, and the table stored there (the one kept, when
    one was already published for that day and model)."""

    url: str
    written: bool
    table: pd.DataFrame


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
