"""The training configuration (``configs/train.toml``): the model zoo, the walk-forward backtest, the gate and how
the work is split into tasks.

TrainFlow loads the file with Metaflow's ``Config("config", parser=parse_train_config)``: the parser validates it
(``stockcast.core.config``: strict, every problem named with its field path, such as
``candidates[2].grid.depth[1]: ...``) and returns the normalised plain dict Metaflow stores with the run; the flow's
first step types it back with ``TrainConfig.model_validate``. Hyper-parameters are checked against the signature of
their factory (``stockcast.train.factories``), so a typo fails when the run starts, not deep inside a training task.
Validating imports no model library: every process of a run validates the configuration, and most fit nothing.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, Self

from pydantic import (
    Field,
    NonNegativeInt,
    PositiveInt,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from features import FEATURE_SETS
from stockcast.core.config import CONFIG_DIR, Settings, as_stored, invalid, load_settings, one_of, parse_settings
from stockcast.train.factories import FACTORIES, hyper_parameter_types

if TYPE_CHECKING:
    from stockcast.train.candidates import CandidateSpec

TRAIN_CONFIG_FILE = CONFIG_DIR / "train.toml"
"""TrainFlow's default configuration."""
SOURCE = "training configuration"

Identifier = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*$", max_length=64)]
"""Lower-case snake_case: safe in candidate ids, Metaflow artefact names and file names."""


class BacktestConfig(Settings):
    """Walk-forward folds, in trading days (see `stockcast.train.backtest.walk_forward_folds`)."""

    n_folds: PositiveInt = 4
    test_days: PositiveInt = 63
    # At least one trading day between the last training date and the first test date, so that the last
    # training row's target (the next day's close) is realised before the test window opens.
    gap_days: Annotated[int, Field(ge=1)] = 1
    window: Literal["expanding", "rolling"] = "expanding"
    min_train_days: PositiveInt = 252
    train_days: PositiveInt | None = None
    adapt: bool = True
    """When the history is shorter than the folds need, shrink the test windows and the first training window in
    proportion (down to ``MIN_TEST_DAYS`` and ``MIN_TRAIN_DAYS``) rather than refuse: one year of prices trains."""
    max_train_rows: Annotated[int, Field(ge=1000)] | None = 1_000_000
    """Most rows a model is fitted on (each fold, and the refit): beyond it, a uniform sample of that many rows
    (``stockcast.train.backtest.training_rows``), so a training task's memory stays bounded as the market grows.
    None: every usable row, whatever it costs."""

    @model_validator(mode="after")
    def _train_days_fit_the_window(self) -> Self:
        if self.window == "rolling" and self.train_days is None:
            raise invalid("a rolling window needs train_days (the length of each training window)", "train_days")
        if self.window == "expanding" and self.train_days is not None:
            raise invalid("train_days applies only to window = 'rolling'; remove it or change window", "train_days")
        if self.train_days is not None and self.train_days < self.min_train_days:
            raise invalid(
                f"train_days ({self.train_days}) is shorter than min_train_days ({self.min_train_days})",
                "train_days",
            )
        return self


class GateConfig(Settings):
    """Promotion rule: a one-sided Diebold–Mariano test against the naive baseline and the champion."""

    alpha: Annotated[float, Field(gt=0.0, lt=0.5)] = 0.05
    min_days: Annotated[int, Field(ge=2)] = 20
    """The fewest paired test days the gate will judge on; fewer means no promotion."""
    refresh_margin: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.05
    """A refit of the champion's own spec on newer data is promoted when its daily squared return error is at most
    this much (relative) above the champion's as it served, beyond chance (a non-inferiority test on at least
    ``min_days`` served days); 0: never refresh, a refit must beat the champion like any challenger."""


class TargetConfig(Settings):
    """What counts as a next-day target, and how far a training target or a prediction may go."""

    max_missing_days: NonNegativeInt = 3
    """A target spanning more missing trading days than this (a halt, a rename's gap) is no next-day return:
    it is dropped and counted."""
    clip_quantile: Annotated[float, Field(ge=0.0, lt=0.5)] = 0.001
    """Training targets are clipped to this quantile of the training fold at each end; predictions outside that
    band are clipped too, and counted (0 keeps the fold's extremes as the band)."""


class PlanConfig(Settings):
    """How TrainFlow splits its work into tasks; the results do not depend on it (``stockcast.train.selection``)."""

    tickers_per_shard: PositiveInt = 250
    """Tickers whose per-ticker features one task builds: a task's memory grows with this, not with the market, and
    the number of shard tasks grows with the market. Tickers linked by renames share a shard, which may exceed it."""
    folds_per_task: PositiveInt = 1
    """Walk-forward folds one backtest task fits: 1 runs candidates x folds tasks at once; n_folds or more, one
    task per candidate (fewer task start-ups, for small runs)."""


class CandidateConfig(Settings):
    """One entry of the model zoo: a factory from `stockcast.train.factories.FACTORIES`, fixed params and a grid."""

    name: Identifier
    factory: str
    params: dict[Identifier, Any] = Field(default_factory=dict)
    grid: dict[Identifier, Annotated[list[Any], Field(min_length=1)]] = Field(default_factory=dict)

    @field_validator("factory")
    @classmethod
    def _factory_is_registered(cls, factory: str) -> str:
        return one_of(factory, FACTORIES, "factory", "factories")

    @field_validator("params")
    @classmethod
    def _params_fit_the_factory(cls, params: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        if "factory" not in info.data:  # an unknown factory is reported on its own field
            return params
        return {key: _hyper_parameter(info.data["factory"], key, value, key) for key, value in params.items()}

    @field_validator("grid")
    @classmethod
    def _grid_fits_the_factory(cls, grid: dict[str, list[Any]], info: ValidationInfo) -> dict[str, list[Any]]:
        if "factory" not in info.data:
            return grid
        normalised = {
            key: [_hyper_parameter(info.data["factory"], key, value, key, index) for index, value in enumerate(values)]
            for key, values in grid.items()
        }
        for key, values in normalised.items():
            # After normalisation 1 and 1.0 are the same setting, and would give two candidates one id.
            if len({repr(value) for value in values}) != len(values):
                raise invalid(f"the grid repeats a value: {values}", key)
        return normalised

    @model_validator(mode="after")
    def _params_and_grid_disjoint(self) -> Self:
        both = sorted(set(self.params) & set(self.grid))
        if both:
            raise invalid(f"{both[0]!r} is both a fixed param and a grid key; keep one", "grid", both[0])
        return self


def asks_for_gpu(config: Mapping[str, Any]) -> bool:
    """Whether a candidate of a parsed training configuration (the plain dict ``parse_train_config`` returns, as
    Metaflow stores it) sets ``task_type = "GPU"``, as a fixed param or in its grid. TrainFlow's ``@engines`` gives its
    model-fitting steps a GPU then. It reads the dict as it is, already validated by the parser."""
    return any(
        candidate["params"].get("task_type") == "GPU" or "GPU" in candidate["grid"].get("task_type", [])
        for candidate in config["candidates"]
    )


def _hyper_parameter(factory: str, key: str, value: Any, *at: str | int) -> Any:
    """`value` checked against, and normalised to, the type the factory's signature declares for `key`."""
    types = hyper_parameter_types(factory)
    if key not in types:
        known = ", ".join(sorted(types)) or "none"
        raise invalid(f"unknown hyper-parameter {key!r} for factory {factory!r}; known: {known}", at[0])
    try:
        return TypeAdapter(types[key]).validate_python(value, strict=True)
    except ValidationError as error:
        raise invalid(f"{value!r} is not a valid {key!r}: {error.errors()[0]['msg']}", *at) from None


class TrainConfig(Settings):
    """The whole training configuration: feature set, backtest, gate, task plan and the candidate models."""

    feature_set: Identifier = "full"
    seed: NonNegativeInt = 0
    backtest: BacktestConfig = Field(default_factory=BacktestConfig)
    gate: GateConfig = Field(default_factory=GateConfig)
    target: TargetConfig = Field(default_factory=TargetConfig)
    plan: PlanConfig = Field(default_factory=PlanConfig)
    candidates: Annotated[list[CandidateConfig], Field(min_length=2)]

    @field_validator("feature_set")
    @classmethod
    def _feature_set_is_defined(cls, name: str) -> str:
        return one_of(name, FEATURE_SETS, "feature set", "feature sets")

    @field_validator("candidates")
    @classmethod
    def _names_unique_and_naive_present(cls, candidates: list[CandidateConfig]) -> list[CandidateConfig]:
        from stockcast.train.candidates import NAIVE_FACTORY

        names = [candidate.name for candidate in candidates]
        for index, name in enumerate(names):
            if name in names[:index]:
                raise invalid(f"duplicate candidate name {name!r}", index, "name")
        naive = [candidate for candidate in candidates if candidate.factory == NAIVE_FACTORY]
        if len(naive) != 1:
            raise invalid(
                f"exactly one candidate must use factory {NAIVE_FACTORY!r} (found {len(naive)}): "
                "the gate compares every challenger with the naive baseline"
            )
        return candidates

    def candidate_specs(self) -> list[CandidateSpec]:
        """Every candidate × grid setting, in configuration order: the models TrainFlow backtests.

        A candidate's fixed ``params`` are merged with each grid setting; only the grid keys appear in the id, since
        they are what distinguishes the settings of one candidate.
        """
        from stockcast.train.candidates import CandidateSpec, candidate_id

        specs = []
        for candidate in self.candidates:
            keys = sorted(candidate.grid)
            for values in itertools.product(*(candidate.grid[key] for key in keys)):
                setting = dict(zip(keys, values, strict=True))
                specs.append(
                    CandidateSpec(
                        candidate_id=candidate_id(candidate.name, setting),
                        name=candidate.name,
                        factory=candidate.factory,
                        params={**candidate.params, **setting},
                        random_seed=self.seed,
                        target_clip_quantile=self.target.clip_quantile,
                    )
                )
        return specs


def parse_train_config(text: str) -> dict[str, Any]:
    """TOML text validated into the normalised plain dict Metaflow stores: the parser of TrainFlow's ``Config``.

    Raises ``ConfigError`` listing every problem with its field path.
    """
    return as_stored(parse_settings(text, TrainConfig, source=SOURCE))


def load_train_config(path: str | Path = TRAIN_CONFIG_FILE) -> TrainConfig:
    """The typed configuration of a TOML file (for tools, notebooks and tests)."""
    return load_settings(path, TrainConfig, source=SOURCE)
