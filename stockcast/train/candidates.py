"""Candidates as data: what a model of the zoo is (``CandidateSpec``), which rows a model may learn from, and the
conversion of a predicted return into a price.

Kept apart from the estimators (``stockcast.train.zoo``), which load scikit-learn and CatBoost: planning the work,
building features and joining them handle candidates and rows but never fit a model, and their tasks start without
those libraries (about a second each).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from stockcast.core.frames import require_columns

HyperParameter = int | float | str | bool
TARGET_COLUMN = "next_return"
NAIVE_FACTORY = "naive"
MODELLING_FRAME = "the modelling frame"


@dataclass(frozen=True)
class CandidateSpec:
    """One candidate × hyper-parameter setting: everything needed to build its estimator, and a stable id."""

    candidate_id: str
    name: str
    factory: str
    params: dict[str, HyperParameter] = field(hash=False)
    random_seed: int = 0
    target_clip_quantile: float = 0.001
    """Training targets are clipped to this quantile of the fold at each end, and predictions to the same band."""


def candidate_id(name: str, setting: dict[str, HyperParameter]) -> str:
    """A stable, readable id such as `catboost[depth=4,learning_rate=0.1]` (keys sorted; bare name if no grid)."""
    if not setting:
        return name
    return f"{name}[{','.join(f'{key}={_format_value(setting[key])}' for key in sorted(setting))}]"


def _format_value(value: HyperParameter) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return repr(value) if isinstance(value, float) else str(value)


def naive_spec(specs: Sequence[CandidateSpec]) -> CandidateSpec:
    """The naive baseline among the specs (the configuration guarantees there is exactly one)."""
    naive_specs = [spec for spec in specs if spec.factory == NAIVE_FACTORY]
    if len(naive_specs) != 1:
        raise ValueError(f"expected exactly one '{NAIVE_FACTORY}' candidate, found {len(naive_specs)}")
    return naive_specs[0]


def usable_mask(frame: pd.DataFrame) -> pd.Series:
    """Rows a model may be trained or scored on: warm (enough history) and with a known target."""
    require_columns(frame, ["is_warm", "next_close", TARGET_COLUMN], MODELLING_FRAME)
    # `eq(True)` treats a missing flag as "not warm" whether the column is numpy bool or nullable boolean.
    return frame["is_warm"].eq(True) & frame[TARGET_COLUMN].notna() & frame["next_close"].notna()


def next_close_from_return(close: Any, predicted_return: Any) -> np.ndarray:
    """Convert a predicted next-day return into a predicted next-day close."""
    return np.asarray(close, dtype=float) * (1.0 + np.asarray(predicted_return, dtype=float))
