"""Prediction for a deployed model, shared by the BentoML service (``bentos/``) and batch prediction.

A ``ServingBundle`` is everything a prediction needs besides the request, frozen when the model is deployed: the
fitted estimator and its registry record (lineage), the feature set it was trained with (name and fingerprint),
the latest feature row of every ticker in the data snapshot it was trained on, and a small *context* panel. Two
questions are answered from it, with the feature library's one code path, so they cannot disagree:

- ``predict_tickers``: tomorrow's close for tickers the snapshot knows, from their latest feature rows;
- ``predict_from_history``: the same answer for one ticker whose recent daily rows the caller sends. Its features
  come from ``features_from_history``; cross-sectional ranks compare it with the other tickers' rows in the context
  panel, and fundamentals use the context's reports unless the caller sends the ticker's own.

Every answer is about the close *after* the as-of date: the model predicts the next-day return from features known
at the close of the as-of date, and the price is that close times one plus the return.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features import (
    FeatureSet,
    InsufficientHistory,
    check_fingerprint,
    features_from_history,
    get_feature_set,
    latest_feature_rows,
)
from stockcast.data.contract import FINANCIALS, PRICES
from stockcast.data.snapshot import empty_financials
from stockcast.models import Estimator, next_close_from_return, predict_next_return
from stockcast.registry import ModelRecord

BENTO_MODEL_NAME = "stockcast-model"
"""Name of the BentoML model that holds a pickled ``ServingBundle``; its version derives from the registry's."""
MODEL_TAG_ENV = "STOCKCAST_MODEL_TAG"
"""Environment variable naming the BentoML model (``name:version``) the service loads."""
DEFAULT_MODEL_TAG = f"{BENTO_MODEL_NAME}:latest"
BUNDLE_FILE = "bundle.pkl"
"""The file inside the BentoML model directory that holds the pickled bundle."""

CONTEXT_MARGIN_DAYS = 21
"""Trading days kept in the context panel beyond ``min_history``. A history ending up to this many trading days
before the snapshot's last day gets the same cross-sectional ranks as the batch answer for that day; before that,
the other tickers lack the look-back and the ranks are missing (which the models handle as missing)."""

PREDICTION_COLUMNS = ["ticker", "as_of", "last_close", "predicted_return", "predicted_close", "model_version"]


class ServingInputError(ValueError):
    """A prediction request the bundle cannot answer as asked; ``field`` names the request field at fault.

    The HTTP service turns it into a 400 response whose error names that field; it is never a server error.
    """

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True, eq=False)
class ServingBundle:
    """A deployed model with what it needs to answer: picklable, built once per deployment by ``build_bundle``.

    ``latest_rows`` holds one feature row per ticker (columns ``date``, ``ticker``, ``close``, the feature columns
    and ``is_warm``); ``context_prices`` the last ``min_history + CONTEXT_MARGIN_DAYS`` price rows per ticker and
    ``context_financials`` every report of the snapshot, both in contract columns.
    """

    estimator: Estimator
    record: dict[str, Any]
    feature_set: str
    feature_fingerprint: str
    feature_columns: tuple[str, ...]
    min_history: int
    latest_rows: pd.DataFrame
    context_prices: pd.DataFrame
    context_financials: pd.DataFrame

    @property
    def model_version(self) -> str:
        """The registry version of the model, such as ``v123``."""
        return self.record["version"]

    @property
    def tickers(self) -> list[str]:
        """Every ticker ``predict_tickers`` can answer for, sorted."""
        return self.latest_rows["ticker"].tolist()

    @property
    def as_of(self) -> pd.Timestamp:
        """The last trading day of the snapshot: the date ``predict_tickers`` answers as of."""
        return self.latest_rows["date"].max()


def build_bundle(
    record: ModelRecord,
    prices: pd.DataFrame,
    financials: pd.DataFrame | None,
    *,
    estimator: Estimator | None = None,
) -> ServingBundle:
    """The serving bundle of a registered model, from the snapshot it was trained on.

    ``estimator`` is the fitted model; when None it is loaded from the training task the record points at. The
    feature set is checked against the record's fingerprint first: this code must compute exactly the features the
    model was trained on (``FeatureSetMismatch`` names both versions otherwise).
    """
    feature_set = get_feature_set(record.feature_set)
    check_fingerprint(record.feature_fingerprint, feature_set)
    reports = empty_financials() if financials is None else financials
    return ServingBundle(
        estimator=record.load_model() if estimator is None else estimator,
        record=asdict(record),
        feature_set=feature_set.name,
        feature_fingerprint=feature_set.fingerprint,
        feature_columns=tuple(feature_set.feature_columns),
        min_history=feature_set.min_history,
        latest_rows=latest_feature_rows(prices, reports, feature_set=feature_set),
        context_prices=_recent_rows(prices, feature_set.min_history + CONTEXT_MARGIN_DAYS),
        context_financials=reports[FINANCIALS.required_names].reset_index(drop=True),
    )


def bundle_feature_set(bundle: ServingBundle) -> FeatureSet:
    """The bundle's feature set as this code defines it.

    Raises ``FeatureSetMismatch`` when the running code would compute different features from those the model was
    trained on (another version of the feature library was deployed): the service checks it when it starts.
    """
    feature_set = get_feature_set(bundle.feature_set)
    check_fingerprint(bundle.feature_fingerprint, feature_set)
    return feature_set


def predict_tickers(
    bundle: ServingBundle, tickers: Iterable[str], as_of: date | str | pd.Timestamp | None = None
) -> pd.DataFrame:
    """Tomorrow's close for each requested ticker, in request order, from its latest feature row.

    Columns ``PREDICTION_COLUMNS``; ``as_of`` is the date of each ticker's latest row. Only the snapshot's last day
    can be asked for explicitly: the bundle keeps no older feature rows (send a history to ``predict_from_history``
    for another day). Unknown or repeated tickers, another ``as_of``, a ticker whose last row is older than the
    ``as_of`` asked for, and a ticker without enough gap-free history (not warm) are ``ServingInputError``s.
    """
    requested = pd.Index(list(tickers), dtype="str")
    if requested.empty:
        raise ServingInputError("no tickers requested; list at least one", field="tickers")
    if requested.has_duplicates:
        repeated = sorted(requested[requested.duplicated()].unique())
        raise ServingInputError(f"tickers listed more than once: {repeated}", field="tickers")
    unknown = requested[~requested.isin(bundle.latest_rows["ticker"])]
    if not unknown.empty:
        raise ServingInputError(
            f"unknown ticker(s) {sorted(unknown)}: model {bundle.model_version} knows {len(bundle.tickers)} tickers "
            "(GET /model lists them); for another ticker send its history to /predict_from_history",
            field="tickers",
        )
    rows = bundle.latest_rows.set_index("ticker").loc[requested].reset_index()
    if as_of is not None:
        _check_as_of(bundle, rows, pd.Timestamp(as_of))
    _require_warm(bundle, rows, field="tickers")
    return _predictions(bundle, rows)


def predict_from_history(
    bundle: ServingBundle, history: pd.DataFrame, financials: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Tomorrow's close for one ticker from its recent daily price rows (contract columns), as of the last row.

    Needs at least ``bundle.min_history`` rows; features are computed by ``features_from_history`` against the
    bundle's context panel, so a ticker's own snapshot rows give exactly ``predict_tickers``' answer. ``financials``
    are that ticker's reports (when None, the snapshot's reports of the ticker are used). One row, columns
    ``PREDICTION_COLUMNS``. Request problems are ``ServingInputError``s naming ``prices`` or ``financials``.
    """
    feature_set = bundle_feature_set(bundle)
    missing = [name for name in PRICES.required_names if name not in history.columns]
    if missing:
        raise ServingInputError(f"price rows lack column(s) {missing}", field="prices")
    tickers = history["ticker"].astype("str").unique()
    if len(tickers) != 1:
        raise ServingInputError(
            f"a history holds the rows of exactly one ticker, got {len(tickers)}: {sorted(tickers)[:5]}", field="prices"
        )
    ticker = str(tickers[0])
    dates = pd.to_datetime(history["date"])
    if dates.duplicated().any():
        repeated = sorted(dates[dates.duplicated()].dt.strftime("%Y-%m-%d").unique())
        raise ServingInputError(f"{ticker}: dates listed more than once: {repeated[:5]}", field="prices")
    if financials is not None and not financials["ticker"].astype("str").eq(ticker).all():
        raise ServingInputError(
            f"financials sent with the history of {ticker} hold other tickers' reports", field="financials"
        )
    try:
        features = features_from_history(
            history,
            financials,
            context_prices=bundle.context_prices,
            context_financials=bundle.context_financials,
            feature_set=feature_set,
        )
    except InsufficientHistory as exc:
        raise ServingInputError(str(exc), field="prices") from exc
    latest = features.tail(1).reset_index(drop=True)
    _require_warm(bundle, latest, field="prices")
    return _predictions(bundle, latest)


def write_bundle(bundle: ServingBundle, path: str | Path) -> None:
    """Pickle the bundle to ``path`` (inside a BentoML model directory)."""
    Path(path).write_bytes(pickle.dumps(bundle, protocol=pickle.HIGHEST_PROTOCOL))


def read_bundle(path: str | Path) -> ServingBundle:
    """The bundle pickled at ``path``; only ever read bundles this project wrote (pickle runs code on load)."""
    bundle = pickle.loads(Path(path).read_bytes())
    if not isinstance(bundle, ServingBundle):
        raise TypeError(f"{path} holds a {type(bundle).__name__}, not a ServingBundle")
    return bundle


def _recent_rows(prices: pd.DataFrame, days: int) -> pd.DataFrame:
    """Each ticker's last ``days`` price rows, contract columns only, sorted by (ticker, date)."""
    table = prices[PRICES.required_names].sort_values(["ticker", "date"], kind="stable")
    return table.groupby("ticker", sort=False).tail(days).reset_index(drop=True)


def _check_as_of(bundle: ServingBundle, rows: pd.DataFrame, as_of: pd.Timestamp) -> None:
    """Refuse an ``as_of`` other than the snapshot's last day, and tickers whose last row is older than it."""
    if as_of != bundle.as_of:
        raise ServingInputError(
            f"as_of {as_of.date()} is not available: model {bundle.model_version} answers as of "
            f"{bundle.as_of.date()}, the last day of its data; for another day send the ticker's history to "
            "/predict_from_history",
            field="as_of",
        )
    stale = rows[rows["date"] != as_of]
    if not stale.empty:
        last_days = ", ".join(f"{t} ({d.date()})" for t, d in zip(stale["ticker"], stale["date"], strict=True))
        raise ServingInputError(f"no prices on {as_of.date()} for: {last_days}", field="tickers")


def _require_warm(bundle: ServingBundle, rows: pd.DataFrame, *, field: str) -> None:
    """Refuse rows whose features are not all defined (``is_warm`` False) rather than answer from NaNs."""
    cold = rows.loc[~rows["is_warm"].eq(True), "ticker"]
    if not cold.empty:
        raise ServingInputError(
            f"not enough recent history to predict {sorted(cold)}: the features need {bundle.min_history} "
            "consecutive trading days, without a gap of more than a few days, up to the as-of date",
            field=field,
        )


def _predictions(bundle: ServingBundle, rows: pd.DataFrame) -> pd.DataFrame:
    """The answer for feature rows: predicted return and close, with the close and date they start from."""
    predicted_return = predict_next_return(bundle.estimator, rows, list(bundle.feature_columns))
    if not np.isfinite(predicted_return).all():
        broken = sorted(rows.loc[~np.isfinite(predicted_return), "ticker"])
        raise RuntimeError(f"model {bundle.model_version} returned a non-finite prediction for {broken}")
    close = rows["close"].to_numpy(dtype=float)
    return pd.DataFrame(
        {
            "ticker": rows["ticker"].astype("str").to_numpy(),
            "as_of": rows["date"].to_numpy(),
            "last_close": close,
            "predicted_return": predicted_return,
            "predicted_close": next_close_from_return(close, predicted_return),
            "model_version": bundle.model_version,
        },
        columns=PREDICTION_COLUMNS,
    )
