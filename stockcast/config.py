"""The training configuration (`configs/train.toml`): its schema, validation and the parser TrainFlow uses.

TrainFlow loads the file with Metaflow's `Config("train", default="configs/train.toml",
parser=parse_train_config)`: the parser turns the TOML text into a validated, normalised plain dict (every default
filled in), which Metaflow stores with the run; a step gets the typed object back with
`TrainConfig.model_validate(self.train)`.

Validation is strict: unknown keys, unknown factories, unknown or ill-typed hyper-parameters, empty grids and
out-of-range settings are all errors, and each error names its field path (`candidates[2].grid.depth[1]: ...`),
because a configuration mistake found after an hour of training is an hour lost.

The operations configuration (`configs/operate.toml`: the decision rule and the monitoring thresholds) is parsed
the same way by `parse_operate_config` into an `OperateConfig`.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
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
from pydantic_core import PydanticCustomError

from stockcast.decisions import DecisionRule
from stockcast.monitoring import MonitorThresholds

# The training validators import the model zoo (`stockcast.models`: scikit-learn and CatBoost, about two seconds)
# when they run, not with this module: BatchPredictFlow and MonitorFlow load the operations configuration in every
# task and need none of it.

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
TRAIN_CONFIG_FILE = CONFIG_DIR / "train.toml"
"""TrainFlow's default configuration."""
OPERATE_CONFIG_FILE = CONFIG_DIR / "operate.toml"
"""BatchPredictFlow's and MonitorFlow's default configuration."""

Identifier = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*$", max_length=64)]
"""Lower-case snake_case: safe in candidate ids, Metaflow artefact names and file names."""


class ConfigError(ValueError):
    """A configuration is invalid; the message lists every problem with its field path."""


def _invalid(message: str, *at: str | int) -> PydanticCustomError:
    """An error for a validator to raise; `at` extends the field path pydantic reports for the validator."""
    # The message travels as a context value, never as the template, so braces in it are not format fields.
    return PydanticCustomError("invalid_config", "{message}", {"message": message, "at": at})


class _Section(BaseModel):
    # strict: a TOML string "4" is not silently a number 4; extra="forbid": a misspelt key is an error.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class BacktestConfig(_Section):
    """Walk-forward folds, in trading days (see `stockcast.evaluation.walk_forward_folds`)."""

    n_folds: PositiveInt = 4
    test_days: PositiveInt = 63
    # At least one trading day between the last training date and the first test date, so that the last
    # training row's target (the next day's close) is realised before the test window opens.
    gap_days: Annotated[int, Field(ge=1)] = 1
    window: Literal["expanding", "rolling"] = "expanding"
    min_train_days: PositiveInt = 252
    train_days: PositiveInt | None = None

    @model_validator(mode="after")
    def _train_days_fit_the_window(self) -> Self:
        if self.window == "rolling" and self.train_days is None:
            raise _invalid("a rolling window needs train_days (the length of each training window)", "train_days")
        if self.window == "expanding" and self.train_days is not None:
            raise _invalid("train_days applies only to window = 'rolling'; remove it or change window", "train_days")
        if self.train_days is not None and self.train_days < self.min_train_days:
            raise _invalid(
                f"train_days ({self.train_days}) is shorter than min_train_days ({self.min_train_days})",
                "train_days",
            )
        return self


class GateConfig(_Section):
    """Promotion rule: a one-sided Diebold–Mariano test against the naive baseline and the champion."""

    alpha: Annotated[float, Field(gt=0.0, lt=0.5)] = 0.05
    min_days: Annotated[int, Field(ge=2)] = 20
    """The fewest paired test days the gate will judge on; fewer means no promotion."""


class CandidateConfig(_Section):
    """One entry of the model zoo: a factory from `stockcast.models.FACTORIES`, fixed params and a grid."""

    name: Identifier
    factory: str
    params: dict[Identifier, Any] = Field(default_factory=dict)
    grid: dict[Identifier, Annotated[list[Any], Field(min_length=1)]] = Field(default_factory=dict)

    @field_validator("factory")
    @classmethod
    def _factory_is_registered(cls, factory: str) -> str:
        from stockcast.models import FACTORIES

        if factory not in FACTORIES:
            raise _invalid(f"unknown factory {factory!r}; known factories: {', '.join(sorted(FACTORIES))}")
        return factory

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
                raise _invalid(f"the grid repeats a value: {values}", key)
        return normalised

    @model_validator(mode="after")
    def _params_and_grid_disjoint(self) -> Self:
        both = sorted(set(self.params) & set(self.grid))
        if both:
            raise _invalid(f"{both[0]!r} is both a fixed param and a grid key; keep one", "grid", both[0])
        return self


def _hyper_parameter(factory: str, key: str, value: Any, *at: str | int) -> Any:
    """`value` checked against, and normalised to, the type the factory's signature declares for `key`."""
    from stockcast.models import hyper_parameter_types

    types = hyper_parameter_types(factory)
    if key not in types:
        known = ", ".join(sorted(types)) or "none"
        raise _invalid(f"unknown hyper-parameter {key!r} for factory {factory!r}; known: {known}", at[0])
    try:
        return TypeAdapter(types[key]).validate_python(value, strict=True)
    except ValidationError as error:
        raise _invalid(f"{value!r} is not a valid {key!r}: {error.errors()[0]['msg']}", *at) from None


class TrainConfig(_Section):
    """The whole training configuration: feature set, backtest, gate and the candidate models."""

    feature_set: Identifier = "full"
    seed: NonNegativeInt = 0
    backtest: BacktestConfig = Field(default_factory=BacktestConfig)
    gate: GateConfig = Field(default_factory=GateConfig)
    candidates: Annotated[list[CandidateConfig], Field(min_length=2)]

    @field_validator("candidates")
    @classmethod
    def _names_unique_and_naive_present(cls, candidates: list[CandidateConfig]) -> list[CandidateConfig]:
        from stockcast.models import NAIVE_FACTORY

        names = [candidate.name for candidate in candidates]
        for index, name in enumerate(names):
            if name in names[:index]:
                raise _invalid(f"duplicate candidate name {name!r}", index, "name")
        naive = [candidate for candidate in candidates if candidate.factory == NAIVE_FACTORY]
        if len(naive) != 1:
            raise _invalid(
                f"exactly one candidate must use factory {NAIVE_FACTORY!r} (found {len(naive)}): "
                "the gate compares every challenger with the naive baseline"
            )
        return candidates


def parse_train_config(text: str) -> dict[str, Any]:
    """Parse and validate TOML text into a normalised plain dict: the parser for Metaflow's `Config`.

    Raises `ConfigError` listing every problem with its field path.
    """
    return _parse(text, TrainConfig, "training")


def load_train_config(path: str | Path) -> TrainConfig:
    """Read, validate and return the typed configuration from a TOML file (for notebooks, tests and tools)."""
    return TrainConfig.model_validate(parse_train_config(Path(path).read_text(encoding="utf-8")))


class OperateConfig(_Section):
    """The operations configuration (`configs/operate.toml`): the decision rule and the monitoring thresholds."""

    decisions: DecisionRule = Field(default_factory=DecisionRule)
    monitor: MonitorThresholds = Field(default_factory=MonitorThresholds)


def parse_operate_config(text: str) -> dict[str, Any]:
    """Parse and validate the operations TOML into a normalised plain dict: the parser for Metaflow's `Config`
    in BatchPredictFlow and MonitorFlow. Raises `ConfigError` listing every problem with its field path."""
    return _parse(text, OperateConfig, "operations")


def load_operate_config(path: str | Path) -> OperateConfig:
    """Read, validate and return the typed operations configuration from a TOML file."""
    return OperateConfig.model_validate(parse_operate_config(Path(path).read_text(encoding="utf-8")))


def _parse(text: str, schema: type[BaseModel], configuration: str) -> dict[str, Any]:
    """TOML text validated against ``schema``, as the normalised plain dict Metaflow stores with a run."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"the {configuration} configuration is not valid TOML: {error}") from None
    try:
        config = schema.model_validate(raw)
    except ValidationError as error:
        raise ConfigError(_describe(error, configuration)) from None
    return config.model_dump(mode="json")


def _describe(error: ValidationError, configuration: str) -> str:
    problems = [
        f"{_field_path(tuple(item['loc']) + tuple(item.get('ctx', {}).get('at', ())))}: {item['msg']}"
        for item in error.errors()
    ]
    return f"invalid {configuration} configuration:\n  " + "\n  ".join(problems)


def _field_path(loc: tuple[str | int, ...]) -> str:
    """`("candidates", 2, "grid", "depth")` -> `candidates[2].grid.depth`."""
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "(top level)"
