"""The serving bundle: a deployed model with everything it needs to answer, frozen when the model is deployed.

A ``ServingBundle`` holds the fitted estimator and its registry record (lineage), the feature set it was trained with
(name and fingerprint), the latest feature row of every ticker in the data snapshot it was deployed with, and a small
*context* panel for requests that bring their own history. The BentoML service (``bentos/``) and batch prediction
(``stockcast.serve.batch``) answer from the same bundle with the same code (``stockcast.serve.answers``), so they
cannot disagree.

A pickle runs code when it is loaded, so a bundle is only ever unpickled from bytes this project wrote: the deploy step
records the sha256 of the bundle and of the Bento archive that carries it (``sha256_digest``), and what deploys a
registered model checks them (``verify_sha256``, ``read_bundle(path, sha256=...)``) before it unpickles or imports
anything.
"""

from __future__ import annotations

import hashlib
import pickle
from collections.abc import Sequence
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from catboost import CatBoost
from sklearn.pipeline import Pipeline

from features import FeatureSet, check_fingerprint, get_feature_set, latest_feature_rows
from stockcast.core.registry import ModelRecord
from stockcast.data.actions import empty_actions
from stockcast.data.calendar import DATA_CALENDAR
from stockcast.data.config import DEFAULT_TICKER_PATTERN
from stockcast.data.contract import FINANCIALS, PRICES
from stockcast.train.factories import Estimator
from stockcast.train.zoo import BoundedReturns

BENTO_MODEL_NAME = "stockcast-model"
"""Name of the BentoML model that holds a pickled ``ServingBundle``; its version derives from the registry's."""
MODEL_TAG_ENV = "STOCKCAST_MODEL_TAG"
"""Environment variable naming the BentoML model (``name:version``) the service loads."""
DEFAULT_MODEL_TAG = f"{BENTO_MODEL_NAME}:latest"
BUNDLE_FILE = "bundle.pkl"
"""The file inside the BentoML model directory that holds the pickled bundle."""

SHA256_CHUNK_BYTES = 1 << 20
"""Files are hashed a mebibyte at a time: a Bento archive can be larger than one wants to hold in memory twice."""

CONTEXT_MARGIN_DAYS = 21
"""Trading days kept in the context panel beyond ``min_history``. A history ending up to this many trading days
before the snapshot's last day gets the same cross-sectional ranks as the batch answer for that day; before that,
the other tickers lack the look-back and the ranks are missing (which the models handle as missing)."""


@dataclass(frozen=True, eq=False)
class ServingBundle:
    """A deployed model with what it needs to answer: picklable, built once per deployment by ``build_bundle``.

    ``latest_rows`` holds one feature row per ticker (columns ``date``, ``ticker``, ``close``, the feature columns
    and ``is_warm``); ``context_prices`` the last ``min_history + CONTEXT_MARGIN_DAYS`` price rows per ticker and
    ``context_financials`` every report of the snapshot, both in contract columns.

    When a bundle is made or unpickled it prepares ``latest_rows`` for answering (``PreparedRows``), so that
    ``predict_tickers`` only looks rows up and runs the model's last step; the pickle holds only the fields above.
    """

    estimator: Estimator
    record: ModelRecord
    feature_set: str
    feature_fingerprint: str
    feature_columns: tuple[str, ...]
    min_history: int
    latest_rows: pd.DataFrame
    context_prices: pd.DataFrame
    context_financials: pd.DataFrame
    context_actions: pd.DataFrame = field(default_factory=empty_actions)
    """The snapshot's corporate actions: a history sent in a request is adjusted with them as training was."""
    calendar: str = DATA_CALENDAR
    """The trading calendar the snapshot was checked against: a history sent in a request is checked against it too."""
    ticker_pattern: str = DEFAULT_TICKER_PATTERN
    """The ticker pattern the snapshot was checked against, which a request's tickers must match too."""
    data_version: str = ""
    """The version of the snapshot the rows come from: the model's training snapshot (the default) until a running
    service follows newer data (``stockcast.serve.feed``)."""
    data_published_at: str = ""
    """When that snapshot's head was published (ISO 8601, UTC); empty for the training snapshot."""
    prepared: PreparedRows = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.data_version:
            object.__setattr__(self, "data_version", self.record.data_version)
        object.__setattr__(
            self, "prepared", PreparedRows.prepare(self.estimator, self.latest_rows, self.feature_columns)
        )

    def __getstate__(self) -> dict[str, Any]:
        return {name: value for name, value in self.__dict__.items() if name != "prepared"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        # A bundle pickled before a field existed gets the field's default.
        defaults = {
            spec.name: spec.default if spec.default is not MISSING else spec.default_factory()
            for spec in fields(self)
            if spec.init and (spec.default is not MISSING or spec.default_factory is not MISSING)
        }
        self.__dict__.update({**defaults, **state})
        self.__post_init__()

    @property
    def model_version(self) -> str:
        """The registry version of the model, such as ``v123``."""
        return self.record.version

    @property
    def tickers(self) -> list[str]:
        """Every ticker ``predict_tickers`` can answer for, sorted."""
        return self.latest_rows["ticker"].tolist()

    @property
    def as_of(self) -> pd.Timestamp:
        """The last trading day of the snapshot: the date ``predict_tickers`` answers as of."""
        return self.latest_rows["date"].max()


@dataclass(frozen=True)
class PreparedRows:
    """The bundle's latest rows laid out for answering a request without pandas: plain arrays indexed by each
    ticker's position, and the rows already through the estimator's fitted preprocessing.

    Preprocessing them once is exact because a fitted pipeline transforms every row on its own (imputation,
    clipping, scaling and encoding use statistics learned in training; ``tests/unit/train/test_zoo.py`` checks that
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
    band: tuple[float, float] | None = None
    """The plausible band of returns the model learned (``stockcast.train.zoo.BoundedReturns``): predictions are
    clipped to it, as ``estimator.predict`` does; a prediction on an edge was clipped (``was_clipped``)."""

    @classmethod
    def prepare(cls, estimator: Estimator, rows: pd.DataFrame, feature_columns: Sequence[str]) -> PreparedRows:
        """Index ``rows`` by ticker and run the estimator's preprocessing over all of them."""
        features = rows[list(feature_columns)]
        band = None
        if isinstance(estimator, BoundedReturns):
            band, estimator = estimator.band_, estimator.regressor_
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
            band=band,
        )

    def predict_return(self, positions: list[int]) -> np.ndarray:
        """The model's predicted next-day return for the rows at ``positions``."""
        if isinstance(self.model_input, pd.DataFrame):
            chosen = self.model_input.iloc[positions]
        else:
            chosen = self.model_input[positions]
        predicted = np.asarray(self.model.predict(chosen, **self.predict_options), dtype=float)
        return predicted if self.band is None else np.clip(predicted, *self.band)

    def was_clipped(self, predicted_return: np.ndarray) -> np.ndarray:
        """Which of these predicted returns were clipped to the plausible band (they sit on one of its edges)."""
        values = np.asarray(predicted_return, dtype=float)
        if self.band is None:
            return np.zeros(values.shape, dtype=bool)
        return (values == self.band[0]) | (values == self.band[1])


def build_bundle(
    record: ModelRecord,
    prices: pd.DataFrame,
    financials: pd.DataFrame | None,
    *,
    actions: pd.DataFrame | None = None,
    estimator: Estimator | None = None,
    calendar: str = DATA_CALENDAR,
    ticker_pattern: str = DEFAULT_TICKER_PATTERN,
    data_version: str = "",
    data_published_at: str = "",
    latest_rows: pd.DataFrame | None = None,
) -> ServingBundle:
    """The serving bundle of a registered model, from a snapshot (its prices, financials and corporate actions, the
    calendar and ticker pattern its data was checked against, and its version: by default the snapshot the model
    was trained on).

    ``estimator`` is the fitted model; when None it is loaded from the training task the record points at. The
    feature set is checked against the record's fingerprint first: this code must compute exactly the features the
    model was trained on (``FeatureSetMismatch`` names both versions otherwise). ``latest_rows``, when given, are the
    prices' ``latest_feature_rows`` already computed for that feature set.
    """
    feature_set = get_feature_set(record.feature_set)
    check_fingerprint(record.feature_fingerprint, feature_set)
    reports = FINANCIALS.empty() if financials is None else financials
    return ServingBundle(
        estimator=record.load_model() if estimator is None else estimator,
        record=record,
        feature_set=feature_set.name,
        feature_fingerprint=feature_set.fingerprint,
        feature_columns=tuple(feature_set.feature_columns),
        min_history=feature_set.min_history,
        latest_rows=(
            latest_feature_rows(prices, reports, actions=actions, feature_set=feature_set)
            if latest_rows is None
            else latest_rows
        ),
        context_prices=_recent_rows(prices, feature_set.min_history + CONTEXT_MARGIN_DAYS),
        context_financials=reports[FINANCIALS.required_names].reset_index(drop=True),
        context_actions=empty_actions() if actions is None else actions.reset_index(drop=True),
        calendar=calendar,
        ticker_pattern=ticker_pattern,
        data_version=data_version,
        data_published_at=data_published_at,
    )


def bundle_feature_set(bundle: ServingBundle) -> FeatureSet:
    """The bundle's feature set as this code defines it.

    Raises ``FeatureSetMismatch`` when the running code would compute different features from those the model was
    trained on (another version of the feature library was deployed): the service checks it when it starts.
    """
    feature_set = get_feature_set(bundle.feature_set)
    check_fingerprint(bundle.feature_fingerprint, feature_set)
    return feature_set


class ArtefactIntegrityError(RuntimeError):
    """An artefact that would be unpickled or imported cannot be trusted: its bytes differ from the sha256 recorded
    when it was made (it was changed or replaced since), or no sha256 was recorded to check them against. It is
    refused before anything reads it; the message names it, and for a mismatch the expected and the actual digest."""


def sha256_digest(source: bytes | Path) -> str:
    """The hex sha256 of ``source``: bytes as they are, or a file's content read in ``SHA256_CHUNK_BYTES`` chunks.

    The one digest every artefact check uses: the deploy step records it, loading compares with it.
    """
    if isinstance(source, bytes):
        return hashlib.sha256(source).hexdigest()
    digest = hashlib.sha256()
    with Path(source).open("rb") as file:
        while chunk := file.read(SHA256_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def verify_sha256(source: bytes | Path, expected: str, *, what: str, refused: str) -> None:
    """``ArtefactIntegrityError`` unless ``source`` (bytes, or a file) has the sha256 ``expected``.

    ``what`` names the artefact (with its URL or path) and ``refused`` says what was not done because of it, so the
    message reads "<what> was changed after it was recorded: expected sha256 <e>, actual <a>; <refused>".
    """
    actual = sha256_digest(source)
    if actual != expected:
        raise ArtefactIntegrityError(
            f"{what} was changed after it was recorded: expected sha256 {expected}, actual {actual}; {refused}"
        )


def write_bundle(bundle: ServingBundle, path: str | Path) -> None:
    """Pickle the bundle to ``path`` (inside a BentoML model directory)."""
    Path(path).write_bytes(pickle.dumps(bundle, protocol=pickle.HIGHEST_PROTOCOL))


def read_bundle(path: str | Path, *, sha256: str | None = None) -> ServingBundle:
    """The bundle pickled at ``path``; only ever read bundles this project wrote (pickle runs code on load).

    With ``sha256`` (what the registry recorded when the model was packaged) the bytes are checked before they are
    unpickled, and the bytes checked are the bytes unpickled: ``ArtefactIntegrityError`` when they differ. Without it
    nothing is checked; that is for a caller whose bundle was checked on its way in: the service, which serves the
    model that the deploy path verified before starting it (``stockcast.deploy.package.registered_bento``).
    """
    data = Path(path).read_bytes()
    if sha256 is not None:
        verify_sha256(data, sha256, what=f"serving bundle {path}", refused="it was not unpickled")
    bundle = pickle.loads(data)
    if not isinstance(bundle, ServingBundle):
        raise TypeError(f"{path} holds a {type(bundle).__name__}, not a ServingBundle")
    return bundle


def _recent_rows(prices: pd.DataFrame, days: int) -> pd.DataFrame:
    """Each ticker's last ``days`` price rows, contract columns only, sorted by (ticker, date)."""
    table = prices[PRICES.required_names].sort_values(["ticker", "date"], kind="stable")
    return table.groupby("ticker", sort=False).tail(days).reset_index(drop=True)
