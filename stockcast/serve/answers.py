"""Answers from a ``ServingBundle``, shared by the BentoML service (``bentos/``) and batch prediction.

Two questions are answered, with the feature library's one code path, so they cannot disagree:

- ``predict_tickers`` (and ``answer_queries``, several requests in one model call): tomorrow's close for tickers the
  snapshot knows, from their latest feature rows;
- ``predict_from_history``: the same answer for one ticker whose recent daily rows the caller sends. Its features
  come from ``features_from_history``; cross-sectional ranks compare it with the other tickers' rows in the bundle's
  context panel, and fundamentals use the context's reports unless the caller sends the ticker's own.

Every answer is about the close *after* the as-of date: the model predicts the next-day return from features known
at the close of the as-of date, and the price is that close times one plus the return. ``PREDICTION_COLUMNS`` is the
answer's schema, which published prediction tables extend (``stockcast.operate.tables``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

import numpy as np
import pandas as pd

from features import InsufficientHistory, features_from_history
from stockcast.data.contract import PRICES
from stockcast.serve.bundle import ServingBundle, bundle_feature_set
from stockcast.serve.schema import PREDICTION_COLUMNS
from stockcast.train.candidates import next_close_from_return
from stockcast.train.zoo import predict_next_return


@dataclass(frozen=True)
class FieldError:
    """One thing wrong with a request: where (``loc``, as pydantic names a place: the field, then a row's position and
    a column), why (``msg``), and which rule it breaks (``type``)."""

    loc: tuple[str | int, ...]
    msg: str
    type: str = "invalid_request"


class ServingInputError(ValueError):
    """A prediction request the bundle cannot answer as asked; ``field`` names the request field at fault.

    ``errors`` says where exactly, one ``FieldError`` per place (by default the field itself, with the message). The
    HTTP service turns it into a 400 response listing them; it is never a server error.
    """

    def __init__(self, message: str, *, field: str, errors: Sequence[FieldError] = ()) -> None:
        super().__init__(message)
        self.field = field
        self.errors = tuple(errors) or (FieldError((field,), message),)


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
    latest = bundle.prepared
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
    requests that arrive together with one call (``stockcast.serve.coalescing``). Every model predicts each row on its
    own (``tests/unit/train/test_zoo.py`` checks it for every factory), so a query's answer does not depend on the
    others: bit for bit for tree models, to the last bits of a BLAS product for linear ones (as for ``predict_tickers``
    asked for one ticker or several). One query's error never reaches the others.
    """
    latest = bundle.prepared
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
        "data_version": [bundle.data_version] * len(wanted),
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
            actions=bundle.context_actions,
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
    latest = bundle.prepared
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
            "data_version": bundle.data_version,
        },
        columns=PREDICTION_COLUMNS,
    )
