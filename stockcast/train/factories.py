"""The model factories: a registry of names, each a function(**hyper-parameters, **context) -> unfitted estimator;
and a candidate built and fitted from its spec.

A factory's keyword parameters, with their annotated types and constraints, are its hyper-parameter schema. The
configuration validator (`stockcast.train.config`) checks names and values against them, so a typo in
`configs/train.toml` fails when the configuration is loaded, not deep inside a training task.

The model libraries (scikit-learn, CatBoost, and the estimators of `stockcast.train.zoo`) are imported when a factory
is called, not with this module: every process of a TrainFlow run validates its configuration, and most fit nothing.
Importing them costs about a second a process.
"""

from __future__ import annotations

import os
import sys
import typing
from collections.abc import Callable, Sequence
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal, Protocol

import numpy as np
import pandas as pd
from pydantic import Field

from stockcast.core.frames import require_columns
from stockcast.train.candidates import MODELLING_FRAME, NAIVE_FACTORY, TARGET_COLUMN, CandidateSpec, usable_mask

TaskType = Literal["CPU", "GPU"]
"""Where CatBoost trains."""


class Estimator(Protocol):
    """Anything with scikit-learn's `fit(X, y)`, `predict(X)` and `get_params()`; fitted on `frame[feature_columns]`."""

    def fit(self, X: Any, y: Any) -> Any: ...

    def predict(self, X: Any) -> Any: ...

    def get_params(self, deep: bool = True) -> dict[str, Any]: ...


Factory = Callable[..., Estimator]

CONTEXT_PARAMETERS = frozenset({"feature_columns", "categorical_columns", "random_seed"})
"""Factory keywords supplied by `build_estimator`, never by the configuration."""


def naive(*, feature_columns: Sequence[str], categorical_columns: Sequence[str], random_seed: int) -> Estimator:
    """Tomorrow's close equals today's: a constant zero return. Every model must beat it to be promoted."""
    from sklearn.dummy import DummyRegressor

    return DummyRegressor(strategy="constant", constant=0.0)


def drift(*, feature_columns: Sequence[str], categorical_columns: Sequence[str], random_seed: int) -> Estimator:
    """A random walk with drift: every row gets the training fold's mean next-day return."""
    from sklearn.dummy import DummyRegressor

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
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    from stockcast.train.zoo import QuantileClipper, missing_category_imputer

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
            missing_category_imputer(),
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
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import OrdinalEncoder

    from stockcast.train.zoo import ObservedColumns, missing_category_imputer

    categories = list(categorical_columns)
    # Missing sectors become their own category; unseen ones become NaN, the trees' "missing" branch.
    encoder = _categories_through(
        make_pipeline(
            missing_category_imputer(),
            OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=np.nan),
        ),
        categories,
    )
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
    from catboost import CatBoostRegressor
    from sklearn.pipeline import Pipeline

    from stockcast.train.zoo import missing_category_imputer

    categories = list(categorical_columns)
    # CatBoost refuses missing categorical values: give them an explicit category of their own.
    filler = _categories_through(missing_category_imputer(), categories)
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
    from catboost.utils import get_gpu_device_count

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


# --- Building and fitting a candidate -------------------------------------------------------------------------


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
    if spec.factory == NAIVE_FACTORY:
        return estimator
    from stockcast.train.zoo import BoundedReturns

    return BoundedReturns(estimator, spec.target_clip_quantile)


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


def _categories_through(encoder: Any, categories: list[str]) -> Any:
    """A column transformer for the tree models: the categorical columns through ``encoder``, every other column as it
    is, out as a DataFrame under the input's column names."""
    from sklearn.compose import ColumnTransformer

    return ColumnTransformer(
        [("categorical", encoder, categories)], remainder="passthrough", verbose_feature_names_out=False
    ).set_output(transform="pandas")


def _numeric_columns(feature_columns: Sequence[str], categorical_columns: Sequence[str]) -> list[str]:
    categorical = set(categorical_columns)
    return [column for column in feature_columns if column not in categorical]
