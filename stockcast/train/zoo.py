"""The model zoo: the estimators candidates are built from, and their predictions.

Every candidate predicts the next-day **return** (`next_return`), never the price: returns are roughly stationary
across tickers and years, prices are not. `predict_next_close` converts back to price, so metrics and the gate
work on prices. Each factory (`stockcast.train.factories`) returns a scikit-learn compatible estimator whose every
learned statistic (clipping bounds, imputation values, scaling, category codes) is fitted inside the estimator, hence
on the training fold only: the walk-forward backtest relies on it.

The classes here are what registered models are pickled as: they stay at these names.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, OneToOneFeatureMixin, RegressorMixin, TransformerMixin
from sklearn.impute import SimpleImputer

from stockcast.core.frames import require_columns
from stockcast.train.candidates import (
    MODELLING_FRAME,
    CandidateSpec,
    next_close_from_return,
)

MISSING_CATEGORY = "__missing__"


class QuantileClipper(OneToOneFeatureMixin, TransformerMixin, BaseEstimator):
    """Clip each column to quantiles learned from the rows it is fitted on.

    Winsorising keeps a linear model from being dragged by a few extreme feature values (a split, a ratio with a
    near-zero denominator). The bounds are statistics of the data, so they are learned here, inside the pipeline,
    from the training fold alone. Missing values stay missing for the imputer that follows.
    """

    def __init__(self, quantile: float = 0.005) -> None:
        self.quantile = quantile

    def fit(self, X: Any, y: Any = None) -> QuantileClipper:
        """Learn each column's lower and upper bound from the training rows."""
        values = np.asarray(X, dtype=float)
        self.n_features_in_ = values.shape[1]
        # An all-missing column has no quantiles: its bounds are NaN and `transform` leaves it untouched.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "All-NaN slice", RuntimeWarning)
            self.lower_ = np.nanquantile(values, self.quantile, axis=0)
            self.upper_ = np.nanquantile(values, 1.0 - self.quantile, axis=0)
        return self

    def transform(self, X: Any) -> np.ndarray:
        """The values clipped to the fitted bounds; missing values pass through."""
        values = np.asarray(X, dtype=float)
        return np.clip(values, np.nan_to_num(self.lower_, nan=-np.inf), np.nan_to_num(self.upper_, nan=np.inf))


class BoundedReturns(RegressorMixin, BaseEstimator):
    """A return model trained on clipped targets whose predictions stay inside the band it learned.

    One broken row (a split nobody declared, a ticker reused after a rename) can carry a +700 % "next-day return"
    that dominates a squared loss; real next-day returns of large stocks stay within a few percent. So the training
    targets are clipped to the ``quantile`` and ``1 - quantile`` quantiles of the training fold (learned here, from
    that fold only), and so are predictions: a prediction beyond what the model ever saw happen is not plausible.
    ``predict_bounded`` also says which predictions were clipped, so cards and ``/metrics`` can count them.
    """

    def __init__(self, regressor: BaseEstimator, quantile: float = 0.001) -> None:
        self.regressor = regressor
        self.quantile = quantile

    def fit(self, X: pd.DataFrame, y: np.ndarray) -> BoundedReturns:
        target = np.asarray(y, dtype=float)
        self.band_ = (float(np.quantile(target, self.quantile)), float(np.quantile(target, 1.0 - self.quantile)))
        self.n_targets_clipped_ = int(((target < self.band_[0]) | (target > self.band_[1])).sum())
        # A deep copy rather than sklearn's clone: CatBoost's constructor does not round-trip its parameters.
        self.regressor_ = copy.deepcopy(self.regressor).fit(X, np.clip(target, *self.band_))
        return self

    def predict_bounded(self, X: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Predictions clipped to the band, and a mask of those that needed it."""
        raw = np.asarray(self.regressor_.predict(X), dtype=float)
        outside = (raw < self.band_[0]) | (raw > self.band_[1])
        return np.clip(raw, *self.band_), outside

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return self.predict_bounded(X)[0]


class ObservedColumns(TransformerMixin, BaseEstimator):
    """Keep the columns that have at least one value in the rows it is fitted on.

    With no financials at all, every fundamental column is empty in the training fold; histogram binning cannot
    bin a column with no values, and a column with no values carries no information either. Which columns are
    kept is learned on the training fold, like every other statistic.
    """

    def fit(self, X: pd.DataFrame, y: Any = None) -> ObservedColumns:
        """Remember the columns with at least one observed value."""
        self.columns_ = [str(column) for column in X.columns[X.notna().any(axis=0).to_numpy()]]
        return self

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        """The fitted columns only, in their order."""
        return X[self.columns_]

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """Names of the kept columns."""
        return np.asarray(self.columns_, dtype=object)


def missing_category_imputer() -> SimpleImputer:
    """Missing categories become their own value, "__missing__". The column is kept even when no training row
    has a value (prices-only data has no sector at all), so the model's input shape never depends on the data."""
    return SimpleImputer(strategy="constant", fill_value=MISSING_CATEGORY, keep_empty_features=True)


# --- Candidate specs -------------------------------------------------------------------------------------------


def as_trained(spec: CandidateSpec, estimator: BaseEstimator) -> CandidateSpec:
    """The spec as its fitted ``estimator`` was actually trained: a "GPU" candidate that fell back to the CPU
    (``usable_task_type``) says "CPU" in its params, and in its id when its grid names the task type, so that the
    registry record of a model says what ran."""
    requested = spec.params.get("task_type")
    trained = next(
        (
            value
            for key, value in estimator.get_params(deep=True).items()
            if key == "task_type" or key.endswith("__task_type")
        ),
        requested,
    )
    if requested is None or trained == requested:
        return spec
    return replace(
        spec,
        candidate_id=spec.candidate_id.replace(f"task_type={requested}", f"task_type={trained}"),
        params={**spec.params, "task_type": trained},
    )


# --- Fitting and prediction ------------------------------------------------------------------------------------


def predict_returns(
    estimator: BaseEstimator, frame: pd.DataFrame, feature_columns: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    """The predicted next-day return of every row of `frame`, and which of them were clipped to the plausible band."""
    require_columns(frame, list(feature_columns), MODELLING_FRAME)
    rows = frame[list(feature_columns)]
    if isinstance(estimator, BoundedReturns):
        return estimator.predict_bounded(rows)
    predicted = np.asarray(estimator.predict(rows), dtype=float)
    return predicted, np.zeros(len(predicted), dtype=bool)


def predict_next_return(estimator: BaseEstimator, frame: pd.DataFrame, feature_columns: Sequence[str]) -> np.ndarray:
    """The fitted estimator's predicted next-day return for every row of `frame`."""
    return predict_returns(estimator, frame, feature_columns)[0]


def predict_next_close(estimator: BaseEstimator, frame: pd.DataFrame, feature_columns: Sequence[str]) -> np.ndarray:
    """The fitted estimator's predicted next-day close for every row of `frame` (needs `close`)."""
    require_columns(frame, ["close"], MODELLING_FRAME)
    return next_close_from_return(frame["close"], predict_next_return(estimator, frame, feature_columns))
