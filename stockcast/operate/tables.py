"""Published prediction and decision tables, and the positions the previous day's decisions left open.

A table is an artefact of its BatchPredictFlow run (``predictions``, ``decisions``) and is also written to the object
store beside the Metaflow datastore, keyed by its as-of date and model version
(``predictions/<branch>/<as_of>/<model_version>.csv``, ``decisions/<branch>/<as_of>/<model_version>.csv``):
MonitorFlow needs every table ever published on the branch, once per day and model however often a run was
repeated. Tables are records of what was predicted and decided, so they are written once: a re-run for the same pair
keeps the table already there, and monitoring later scores exactly what was predicted and decided at the time, not a
recomputation.
"""

from __future__ import annotations

import hashlib
import io
from collections import OrderedDict
from dataclasses import dataclass

import pandas as pd

from stockcast.core.runs import successful_runs
from stockcast.core.storage import ObjectExistsError, ObjectStore
from stockcast.serve.schema import TABLE_COLUMNS

BATCH_PREDICT_FLOW = "BatchPredictFlow"
PREDICTIONS_PREFIX = "predictions"
DECISIONS_PREFIX = "decisions"
DECISION_COLUMNS = [*TABLE_COLUMNS, "net_return", "action", "target_weight"]
"""A published decision table: each ticker's prediction (empty for a position closed for want of one), the return
expected net of costs, the action and the signed target weight."""
PARSED_TABLES_KEPT = 8192
"""Published tables kept parsed in memory (``_read_table``): a replayed year of the champion's and its shadows'
predictions and decisions, a few megabytes at 50 tickers."""


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
        return held_positions(decisions)
    return {}


def held_positions(decisions: pd.DataFrame) -> dict[str, float]:
    """The positions a day's decisions leave open (ticker → signed weight): what the next day starts from."""
    held = decisions[decisions["target_weight"] != 0]
    return dict(zip(held["ticker"], held["target_weight"].astype(float), strict=True))


def prediction_key(branch: str, as_of: pd.Timestamp, model_version: str) -> str:
    """The store key of the table predicted as of ``as_of`` by ``model_version`` on ``branch``."""
    return f"{PREDICTIONS_PREFIX}/{branch}/{as_of:%Y-%m-%d}/{model_version}.csv"


def decision_key(branch: str, as_of: pd.Timestamp, model_version: str) -> str:
    """The store key of the decisions taken as of ``as_of`` on ``model_version``'s predictions on ``branch``."""
    return f"{DECISIONS_PREFIX}/{branch}/{as_of:%Y-%m-%d}/{model_version}.csv"


def publish_predictions(table: pd.DataFrame, store: ObjectStore, branch: str) -> Publication:
    """Write the table once per (as-of date, model version); a table already there is kept, and returned."""
    (as_of,) = pd.to_datetime(table["as_of"]).unique()
    (model_version,) = table["model_version"].unique()
    return _publish_once(table, store, prediction_key(branch, pd.Timestamp(as_of), str(model_version)), TABLE_COLUMNS)


def publish_decisions(
    decisions: pd.DataFrame, store: ObjectStore, branch: str, *, as_of: pd.Timestamp, model_version: str
) -> Publication:
    """Write a day's decisions once per (as-of date, model version), as ``publish_predictions`` writes predictions;
    rows of positions closed for want of a prediction get the day and the model too, and decisions taken on a
    service's answers (which carry no feature fingerprint) an empty one."""
    table = decisions.assign(as_of=pd.Timestamp(as_of), model_version=model_version).reindex(columns=DECISION_COLUMNS)
    key = decision_key(branch, pd.Timestamp(as_of), model_version)
    return _publish_once(table, store, key, DECISION_COLUMNS)


def load_predictions(store: ObjectStore, branch: str) -> pd.DataFrame:
    """Every prediction table published on ``branch``, concatenated (empty, with the table's columns, if none)."""
    return _load_all(store, f"{PREDICTIONS_PREFIX}/{branch}/", TABLE_COLUMNS)


def load_decisions(store: ObjectStore, branch: str) -> pd.DataFrame:
    """Every decision table published on ``branch``, concatenated (empty, with the table's columns, if none)."""
    return _load_all(store, f"{DECISIONS_PREFIX}/{branch}/", DECISION_COLUMNS)


def _publish_once(table: pd.DataFrame, store: ObjectStore, key: str, columns: list[str]) -> Publication:
    try:
        store.put(key, table.to_csv(index=False, date_format="%Y-%m-%d").encode(), exclusive=True)
    except ObjectExistsError:
        return Publication(store.url(key), written=False, table=_read_table(store, key, columns).copy())
    return Publication(store.url(key), written=True, table=table)


def _load_all(store: ObjectStore, prefix: str, columns: list[str]) -> pd.DataFrame:
    tables = [_read_table(store, key, columns) for key in store.list(prefix) if key.endswith(".csv")]
    if not tables:
        return pd.DataFrame({name: pd.Series(dtype="object") for name in columns})
    return pd.concat(tables, ignore_index=True)


def _read_table(store: ObjectStore, key: str, columns: list[str]) -> pd.DataFrame:
    """A published table, parsed once per content (see ``_PARSED``): treat it as read-only."""
    data = store.get(key)
    digest = (hashlib.blake2b(data, digest_size=16).digest(), tuple(columns))
    table = _PARSED.pop(digest, None)
    if table is None:
        table = pd.read_csv(io.BytesIO(data), parse_dates=["as_of"], dtype={"ticker": "str"})[columns]
    _PARSED[digest] = table  # the most recently read last
    while len(_PARSED) > PARSED_TABLES_KEPT:
        _PARSED.popitem(last=False)
    return table


_PARSED: OrderedDict[tuple[bytes, tuple[str, ...]], pd.DataFrame] = OrderedDict()
"""Published tables parsed, by a hash of their content, least recently read first: monitoring reads every table ever
published each day, and a table never changes once written, so a long-running reader (a replay) parses each once."""
