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
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from catboost import CatBoost
from sklearn.pipeline import Pipeline

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

    When a bundle is made or unpickled it prepares ``latest_rows`` for answering (``_LatestRows``), so that
    ``predict_tickers`` only looks rows up and runs the model's last step; the pickle holds only the fields above.
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
    _latest: _LatestRows = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_latest", _LatestRows.prepare(self.estimator, self.latest_rows, self.feature_columns))

    def __getstate__(self) -> dict[str, Any]:
        return {name: value for name, value in self.__dict__.items() if name != "_latest"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.__post_init__()

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


@dataclass(frozen=True)
class _LatestRows:
    """The bundle's latest rows laid out for answering a request without pandas: plain arrays indexed by each
    ticker's position, and the rows already through the estimator's fitted preprocessing.

    Preprocessing them once is exact because a fitted pipeline transforms every row on its own (imputation,
    clipping, scaling and encoding use statistics learned in training; ``tests/unit/test_models.py`` checks that
    predictions are row-wise for every factory): the final step then sees, for the rows asked for, exactly what
    ``estimator.predict`` on those rows would give it.
    """

    positions: dict[str, int]
    tickers: np.ndarray
    dates: np.ndarray
    close: np.ndarray
    warm: np.ndarray
    model: Estimator
    """The estimator's final step (the estimator itself when it is not a pipeline)."""
    predict_options: dict[str, Any]
    """Options of ``model.predict``: CatBoost is told to use one thread. Its default wakes a thread pool for every
    call, whose threads then spin waiting for more work: for the few rows a request asks for, that costs more CPU
    than the prediction itself (in process: 0.66 ms of CPU for four rows with the pool, 0.24 ms without; the Bento's
    CPU per request fell by a third, BENCHMARKS.md "Serving"). Predictions are the same either way."""
    model_input: np.ndarray | pd.DataFrame
    """Every latest row as the final step takes it: a DataFrame when it was fitted on named columns (scikit-learn
    records ``feature_names_in_`` then, and checks them), otherwise an array, which is much faster to pick rows
    from and to predict on (CatBoost predicts one row of a DataFrame in about 1.3 ms, of an array in 0.2 ms)."""

    @classmethod
    def prepare(cls, estimator: Estimator, rows: pd.DataFrame, feature_columns: Sequence[str]) -> _LatestRows:
        """Index ``rows`` by ticker and run the estimator's preprocessing over all of them."""
        features = rows[list(feature_columns)]
        model = estimator
        if isinstance(estimator, Pipeline) and len(estimator.steps) > 1:
            features, model = estimator[:-1].transform(features), estimator[-1]
        model_input = features if hasattr(model, "feature_names_in_") else np.asarray(features)
        tickers = rows["ticker"].astype("str").to_numpy()
        return cls(
            positions={ticker: position for position, ticker in enumerate(tickers)},
            tickers=tickers,
            dates=rows["date"].to_numpy(),
            close=rows["close"].to_numpy(dtype=float),
            warm=rows["is_warm"].eq(True).to_numpy(dtype=bool),
            model=model,
            predict_options={"thread_count": 1} if isinstance(model, CatBoost) else {},
            model_input=model_input,
        )

    def predict_return(self, positions: list[int]) -> np.ndarray:
        """The model's predicted next-day return for the rows at ``positions``."""
        if isinstance(self.model_input, pd.DataFrame):
            chosen = self.model_input.iloc[positions]
        else:
            chosen = self.model_input[positions]
        return np.asarray(self.model.predict(chosen, **self.predict_options), dtype=float)


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
    positions = _positions(bundle, tickers, as_of)
    latest = bundle._latest
    return _answer(
        bundle,
        latest.tickers[positions],
        latest.dates[positions],
        latest.close[positions],
        latest.predict_return(positions),
    )


@dataclass(frozen=True)
class TickerQuery:
    """One ``predict_tickers`` question: the tickers and the as-of date asked for (None: the snapshot's last day)."""

    tickers: Sequence[str]
    as_of: date | str | pd.Timestamp | None = None


def answer_queries(bundle: ServingBundle, queries: Sequence[TickerQuery]) -> list[list[dict[str, Any]] | Exception]:
    """Answer several queries with one model call: for each, ``prediction_records(predict_tickers(...))`` of that
    query alone, or the exception it would raise instead (a ``ServingInputError`` for a query the bundle cannot
    answer, a ``RuntimeError`` when the model gives a non-finite prediction for one of its tickers).

    Why one call: a model call costs about as much for one row as for a dozen, so the HTTP service answers the
    requests that arrive together with one call (``stockcast.coalescing``). Every model predicts each row on its own
    (``tests/unit/test_models.py`` checks it for every factory), so a query's answer does not depend on the others:
    bit for bit for tree models, to the last bits of a BLAS product for linear ones (as for ``predict_tickers``
    asked for one ticker or several). One query's error never reaches the others.
    """
    latest = bundle._latest
    checked: list[list[int] | Exception] = []
    for query in queries:
        try:
            checked.append(_positions(bundle, query.tickers, query.as_of))
        except ServingInputError as error:
            checked.append(error)
    wanted = sorted({position for positions in checked if isinstance(positions, list) for position in positions})
    predicted_return = latest.predict_return(wanted) if wanted else np.empty(0)
    close = latest.close[wanted]
    columns = {
        "ticker": latest.tickers[wanted].tolist(),
        "as_of": np.datetime_as_string(latest.dates[wanted], unit="D").tolist(),
        "last_close": close.tolist(),
        "predicted_return": predicted_return.tolist(),
        "predicted_close": next_close_from_return(close, predicted_return).tolist(),
        "model_version": [bundle.model_version] * len(wanted),
    }
    records = {
        position: dict(zip(PREDICTION_COLUMNS, row, strict=True))
        for position, row in zip(wanted, zip(*(columns[name] for name in PREDICTION_COLUMNS), strict=True), strict=True)
    }
    finite = dict(zip(wanted, np.isfinite(predicted_return).tolist(), strict=True))
    answers: list[list[dict[str, Any]] | Exception] = []
    for positions in checked:
        if isinstance(positions, Exception):
            answers.append(positions)
        elif not all(finite[position] for position in positions):
            broken = sorted(str(latest.tickers[position]) for position in positions if not finite[position])
            answers.append(_non_finite(bundle, broken))
        else:
            answers.append([dict(records[position]) for position in positions])
    return answers


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
    latest = features.tail(1)
    _require_warm(bundle, [ticker], latest["is_warm"].eq(True).to_numpy(dtype=bool), field="prices")
    predicted_return = predict_next_return(bundle.estimator, latest, list(bundle.feature_columns))
    return _answer(
        bundle,
        latest["ticker"].astype("str").to_numpy(),
        latest["date"].to_numpy(),
        latest["close"].to_numpy(dtype=float),
        predicted_return,
    )


def prediction_records(answer: pd.DataFrame) -> list[dict[str, Any]]:
    """The rows of a ``predict_tickers`` or ``predict_from_history`` answer as JSON-ready dicts, in answer order,
    ``as_of`` as an ISO date: what the HTTP service sends. Built from the columns' arrays: pandas' ``to_dict`` of a
    one-row answer costs more than the model's prediction."""
    columns = {name: answer[name].to_numpy() for name in PREDICTION_COLUMNS}
    columns["as_of"] = np.datetime_as_string(columns["as_of"], unit="D")
    rows = zip(*(columns[name].tolist() for name in PREDICTION_COLUMNS), strict=True)
    return [dict(zip(PREDICTION_COLUMNS, row, strict=True)) for row in rows]


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


def _check_as_of(bundle: ServingBundle, tickers: list[str], dates: np.ndarray, as_of: pd.Timestamp) -> None:
    """Refuse an ``as_of`` other than the snapshot's last day, and tickers whose last row is older than it."""
    if as_of != bundle.as_of:
        raise ServingInputError(
            f"as_of {as_of.date()} is not available: model {bundle.model_version} answers as of "
            f"{bundle.as_of.date()}, the last day of its data; for another day send the ticker's history to "
            "/predict_from_history",
            field="as_of",
        )
    stale = [
        f"{ticker} ({day.date()})"
        for ticker, day in zip(tickers, map(pd.Timestamp, dates), strict=True)
        if day != as_of
    ]
    if stale:
        raise ServingInputError(f"no prices on {as_of.date()} for: {', '.join(stale)}", field="tickers")


def _require_warm(bundle: ServingBundle, tickers: list[str], warm: np.ndarray, *, field: str) -> None:
    """Refuse rows whose features are not all defined (``is_warm`` False) rather than answer from NaNs."""
    cold = [ticker for ticker, is_warm in zip(tickers, warm, strict=True) if not is_warm]
    if cold:
        raise ServingInputError(
            f"not enough recent history to predict {sorted(cold)}: the features need {bundle.min_history} "
            "consecutive trading days, without a gap of more than a few days, up to the as-of date",
            field=field,
        )


def _positions(bundle: ServingBundle, tickers: Iterable[str], as_of: date | str | pd.Timestamp | None) -> list[int]:
    """Where the requested tickers' latest rows are, in request order, after every check ``predict_tickers``
    documents."""
    requested = [str(ticker) for ticker in tickers]
    if not requested:
        raise ServingInputError("no tickers requested; list at least one", field="tickers")
    repeated = sorted(ticker for ticker, count in Counter(requested).items() if count > 1)
    if repeated:
        raise ServingInputError(f"tickers listed more than once: {repeated}", field="tickers")
    latest = bundle._latest
    unknown = [ticker for ticker in requested if ticker not in latest.positions]
    if unknown:
        raise ServingInputError(
            f"unknown ticker(s) {sorted(unknown)}: model {bundle.model_version} knows {len(latest.positions)} tickers "
            "(GET /model lists them); for another ticker send its history to /predict_from_history",
            field="tickers",
        )
    positions = [latest.positions[ticker] for ticker in requested]
    if as_of is not None:
        _check_as_of(bundle, requested, latest.dates[positions], pd.Timestamp(as_of))
    _require_warm(bundle, requested, latest.warm[positions], field="tickers")
    return positions


def _non_finite(bundle: ServingBundle, tickers: list[str]) -> RuntimeError:
    """The error for a model that predicted NaN or infinity: the model's fault, never an answer."""
    return RuntimeError(f"model {bundle.model_version} returned a non-finite prediction for {tickers}")


def _answer(
    bundle: ServingBundle, tickers: np.ndarray, dates: np.ndarray, close: np.ndarray, predicted_return: np.ndarray
) -> pd.DataFrame:
    """The answer for feature rows: predicted return and close, with the close and date they start from."""
    if not np.isfinite(predicted_return).all():
        raise _non_finite(bundle, sorted(tickers[~np.isfinite(predicted_return)].tolist()))
    return pd.DataFrame(
        {
            "ticker": tickers,
            "as_of": dates,
            "last_close": close,
            "predicted_return": predicted_return,
            "predicted_close": next_close_from_return(close, predicted_return),
            "model_version": bundle.model_version,
        },
        columns=PREDICTION_COLUMNS,
    )
