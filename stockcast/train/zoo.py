"""The model zoo: a registry of factories, grid expansion into candidate specs, fitting and prediction.

Every candidate predicts the next-day **return** (`next_return`), never the price: returns are roughly stationary
across tickers and years, prices are not. `predict_next_close` converts back to price, so metrics and the gate
work on prices. Each factory returns a scikit-learn compatible estimator whose every learned statistic (clipping
bounds, imputation values, scaling, category codes) is fitted inside the estimator, hence on the training fold
only: the walk-forward backtest relies on it.

A factory's keyword parameters, with their annotated types and constraints, are its hyper-parameter schema. The
configuration validator (`stockcast.train.config`) checks names and values against them, so a typo in
`configs/train.toml` fails when the configuration is loaded, not deep inside a training task.
"""

from __future__ import annotations

import copy
import os
import sys
import typing
import warnings
from collections.abc import Callable, Sequence
from dataclasses import replace
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
from catboost import CatBoostRegressor
from catboost.utils import get_gpu_device_count
from pydantic import Field
from sklearn.base import BaseEstimator, OneToOneFeatureMixin, RegressorMixin, TransformerMixin
from sklearn.compose import ColumnTransformer
from sklearn.dummy import DummyRegressor
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.impute import SimpleImputer
from sklearn.linear_model import Ridge
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

from stockcast.core.frames import require_columns
from stockcast.train.candidates import (
    MODELLING_FRAME,
    NAIVE_FACTORY,
    TARGET_COLUMN,
    CandidateSpec,
    next_close_from_return,
    usable_mask,
)

TaskType = Literal["CPU", "GPU"]
"""Where CatBoost trains."""
Estimator = BaseEstimator
"""Anything with scikit-learn's `fit(X, y)` and `predict(X)`; fitted on `frame[feature_columns]`."""
Factory = Callable[..., Estimator]

MISSING_CATEGORY = "__missing__"
CONTEXT_PARAMETERS = frozenset({"feature_columns", "categorical_columns", "random_seed"})
"""Factory keywords supplied by `build_estimator`, never by the configuration."""


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


def _missing_category() -> SimpleImputer:
    """Missing categories become their own value, "__missing__". The column is kept even when no training row
    has a value (prices-only data has no sector at all), so the model's input shape never depends on the data."""
    return SimpleImputer(strategy="constant", fill_value=MISSING_CATEGORY, keep_empty_features=True)


# --- Factories: name -> function(**hyper_parameters, **context) -> unfitted estimator -----------------------


def naive(*, feature_columns: Sequence[str], categorical_columns: Sequence[str], random_seed: int) -> Estimator:
    """Tomorrow's close equals today's: a constant zero return. Every model must beat it to be promoted."""
    return DummyRegressor(strategy="constant", constant=0.0)


def drift(*, feature_columns: Sequence[str], categorical_columns: Sequence[str], random_seed: int) -> Estimator:
    """A random walk with drift: every row gets the training fold's mean next-day return."""
    return DummyRegressor(strategy="mean")


def ridge(
    *,
    feature_columns: Sequence[str],
    categorical_columns: Sequence[str],
    random_seed: int,
    alpha: Annotated[float, Field(gt=0)] = 1.0,
    clip_quantile: Annotated[float, Field(ge=0, lt=0.5)] = 0.005,
) -> Estimator:
    """L2-regularised linear model on clipped, imputed, standardised features (sectors one-hot encoded).

    Missing values are imputed with the training median plus a missing-indicator column, so "no fundamentals
    yet" stays visible to the model instead of being disguised as a typical value.
    """
    numeric = make_pipeline(
        QuantileClipper(quantile=clip_quantile),
        SimpleImputer(strategy="median", add_indicator=True),
        StandardScaler(),
    )
    transformers: list[tuple[str, Any, list[str]]] = [
        ("numeric", numeric, _numeric_columns(feature_columns, categorical_columns))
    ]
    if categorical_columns:
        categorical = make_pipeline(
            _missing_category(),
            # A sector first seen in the test fold gets all-zero indicators: the model's average sector.
            OneHotEncoder(handle_unknown="ignore", sparse_output=False),
        )
        transformers.append(("categorical", categorical, list(categorical_columns)))
    return Pipeline([("features", ColumnTransformer(transformers)), ("model", Ridge(alpha=alpha))])


def hist_gradient_boosting(
    *,
    feature_columns: Sequence[str],
    categorical_columns: Sequence[str],
    random_seed: int,
    learning_rate: Annotated[float, Field(gt=0, le=1)] = 0.05,
    max_iter: Annotated[int, Field(ge=1, le=5000)] = 200,
    max_leaf_nodes: Annotated[int, Field(ge=2)] = 15,
    min_samples_leaf: Annotated[int, Field(ge=1)] = 100,
    l2_regularization: Annotated[float, Field(ge=0)] = 1.0,
) -> Estimator:
    """scikit-learn's histogram gradient boosting; missing values are handled natively, sectors as categories."""
    categories = list(categorical_columns)
    encoder = ColumnTransformer(
        # Missing sectors become their own category; unseen ones become NaN, the trees' "missing" branch.
        [
            (
                "categorical",
                make_pipeline(
                    _missing_category(),
                    OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=np.nan),
                ),
                categories,
            )
        ],
        remainder="passthrough",
        verbose_feature_names_out=False,
    ).set_output(transform="pandas")
    model = HistGradientBoostingRegressor(
        learning_rate=learning_rate,
        max_iter=max_iter,
        max_leaf_nodes=max_leaf_nodes,
        min_samples_leaf=min_samples_leaf,
        l2_regularization=l2_regularization,
        categorical_features=categories or None,
        # Early stopping would hold out a *random* tenth of the training rows, mixing dates across the split;
        # the number of iterations is a hyper-parameter chosen by the walk-forward backtest instead.
        early_stopping=False,
        random_state=random_seed,
    )
    return Pipeline([("features", encoder), ("observed", ObservedColumns()), ("model", model)])


def catboost(
    *,
    feature_columns: Sequence[str],
    categorical_columns: Sequence[str],
    random_seed: int,
    iterations: Annotated[int, Field(ge=1, le=5000)] = 300,
    depth: Annotated[int, Field(ge=1, le=10)] = 4,
    learning_rate: Annotated[float, Field(gt=0, le=1)] = 0.05,
    l2_leaf_reg: Annotated[float, Field(gt=0)] = 3.0,
    thread_count: Annotated[int, Field(ge=1)] = 2,
    task_type: TaskType = "CPU",
) -> Estimator:
    """CatBoost with the sector as a native categorical feature (ordered target statistics, no one-hot).

    ``task_type = "GPU"`` trains on a GPU where CatBoost finds one, and on the CPU elsewhere (``usable_task_type``).
    """
    categories = list(categorical_columns)
    filler = ColumnTransformer(
        # CatBoost refuses missing categorical values: give them an explicit category of their own.
        [("categorical", _missing_category(), categories)],
        remainder="passthrough",
        verbose_feature_names_out=False,
    ).set_output(transform="pandas")
    model = CatBoostRegressor(
        iterations=iterations,
        depth=depth,
        learning_rate=learning_rate,
        l2_leaf_reg=l2_leaf_reg,
        loss_function="RMSE",
        cat_features=categories or None,
        random_seed=random_seed,
        thread_count=thread_count,
        task_type=usable_task_type(task_type),
        allow_writing_files=False,
        verbose=False,
    )
    return Pipeline([("features", filler), ("model", model)])


@cache
def usable_task_type(requested: TaskType) -> TaskType:
    """The CatBoost task type this machine can run: "GPU" becomes "CPU" where CatBoost sees no GPU, said in one
    printed line. Cached, so the line is printed once per process, not once per fold: a task that was given no GPU
    still finishes, and `as_trained` records what it trained on."""
    if requested == "GPU" and _gpu_count() == 0:
        print('CatBoost: task_type = "GPU" asked for, but no GPU is usable here: training on the CPU instead.')
        return "CPU"
    return requested


def _gpu_count() -> int:
    """CatBoost's count of the GPUs it can use. Without a CUDA driver its probe writes its own complaint ("Error 35
    ... ignored while obtaining device count") straight to the process's standard error, beside our one line; the
    probe's standard error goes to the null device instead."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with Path(os.devnull).open("w", encoding="utf-8") as null:
            os.dup2(null.fileno(), 2)
            return get_gpu_device_count()
    finally:
        os.dup2(saved, 2)
        os.close(saved)


FACTORIES: dict[str, Factory] = {
    "naive": naive,
    "drift": drift,
    "ridge": ridge,
    "hist_gradient_boosting": hist_gradient_boosting,
    "catboost": catboost,
}
"""The one way to build a candidate: configuration names a factory from this registry."""


def hyper_parameter_types(factory_name: str) -> dict[str, Any]:
    """A factory's configurable hyper-parameters and their annotated types (with constraints).

    The configuration validator checks `configs/train.toml` against this, so the factory's signature is the
    single statement of what a candidate accepts.
    """
    hints = typing.get_type_hints(FACTORIES[factory_name], include_extras=True)
    return {name: hint for name, hint in hints.items() if name not in CONTEXT_PARAMETERS and name != "return"}


# --- Candidate specs -------------------------------------------------------------------------------------------


def as_trained(spec: CandidateSpec, estimator: Estimator) -> CandidateSpec:
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


def build_estimator(
    spec: CandidateSpec, feature_columns: Sequence[str], categorical_columns: Sequence[str]
) -> Estimator:
    """The unfitted estimator for a spec; it expects `frame[feature_columns]` and predicts `next_return`, within
    the band of returns its training fold saw (`BoundedReturns`; the naive baseline's zero needs no band)."""
    if len(set(feature_columns)) != len(feature_columns):
        raise ValueError(f"feature_columns has duplicates: {list(feature_columns)}")
    unknown = sorted(set(categorical_columns) - set(feature_columns))
    if unknown:
        raise ValueError(f"categorical columns {unknown} are not among the feature columns")
    if spec.factory not in FACTORIES:
        raise KeyError(f"unknown factory {spec.factory!r}; known factories: {', '.join(sorted(FACTORIES))}")
    estimator = FACTORIES[spec.factory](
        **spec.params,
        feature_columns=list(feature_columns),
        categorical_columns=list(categorical_columns),
        random_seed=spec.random_seed,
    )
    return estimator if spec.factory == NAIVE_FACTORY else BoundedReturns(estimator, spec.target_clip_quantile)


def fit_candidate(
    spec: CandidateSpec,
    frame: pd.DataFrame,
    feature_columns: Sequence[str],
    categorical_columns: Sequence[str],
) -> Estimator:
    """Fit a candidate on every usable row of `frame`.

    The backtest calls it with one training fold; the flow calls it with the modelling frame's training window to
    refit the winner before registering it.
    """
    require_columns(frame, list(feature_columns), MODELLING_FRAME)
    rows = frame.loc[usable_mask(frame)]
    if rows.empty:
        raise ValueError(f"no usable rows (warm, with a known target) to fit {spec.candidate_id}")
    estimator = build_estimator(spec, feature_columns, categorical_columns)
    estimator.fit(rows[list(feature_columns)], rows[TARGET_COLUMN].to_numpy(dtype=float))
    return estimator


def predict_returns(
    estimator: Estimator, frame: pd.DataFrame, feature_columns: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    """The predicted next-day return of every row of `frame`, and which of them were clipped to the plausible band."""
    require_columns(frame, list(feature_columns), MODELLING_FRAME)
    rows = frame[list(feature_columns)]
    if isinstance(estimator, BoundedReturns):
        return estimator.predict_bounded(rows)
    predicted = np.asarray(estimator.predict(rows), dtype=float)
    return predicted, np.zeros(len(predicted), dtype=bool)


def predict_next_return(estimator: Estimator, frame: pd.DataFrame, feature_columns: Sequence[str]) -> np.ndarray:
    """The fitted estimator's predicted next-day return for every row of `frame`."""
    return predict_returns(estimator, frame, feature_columns)[0]


def predict_next_close(estimator: Estimator, frame: pd.DataFrame, feature_columns: Sequence[str]) -> np.ndarray:
    """The fitted estimator's predicted next-day close for every row of `frame` (needs `close`)."""
    require_columns(frame, ["close"], MODELLING_FRAME)
    return next_close_from_return(frame["close"], predict_next_return(estimator, frame, feature_columns))


def _numeric_columns(feature_columns: Sequence[str], categorical_columns: Sequence[str]) -> list[str]:
    categorical = set(categorical_columns)
    return [column for column in feature_columns if column not in categorical]
