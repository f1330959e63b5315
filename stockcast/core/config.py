"""Configuration files: the one TOML → validated-model parser every stage's configuration goes through.

Each stage owns its configuration model (``stockcast.train.config.TrainConfig``,
``stockcast.operate.config.OperateConfig``, ``stockcast.deploy.config.DeployConfig``), built from ``Settings`` so that
all of them are strict the same way: unknown keys, wrong types (a TOML string ``"4"`` is not the number 4) and
out-of-range values are errors. ``parse_settings`` reports every problem at once, each with its field path
(``candidates[2].grid.depth[1]: ...``), because a configuration mistake found after an hour of training is an hour
lost.

Flows load their configuration with Metaflow's ``Config`` and a stage's ``parse_*`` function as its parser: the
parser returns the validated, normalised plain dict (every default filled in) that Metaflow stores with the run.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic_core import PydanticCustomError

from stockcast.core.errors import UserError

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"
"""The shipped configuration files (``configs/`` at the repository root)."""

SettingsModel = TypeVar("SettingsModel", bound=BaseModel)


class ConfigError(UserError):
    """A configuration is invalid; the message lists every problem with its field path."""

    headline = "Invalid configuration"


class Settings(BaseModel):
    """Base of every configuration section: strict types, no unknown keys, immutable once loaded."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


def invalid(message: str, *at: str | int) -> PydanticCustomError:
    """An error for a validator to raise; ``at`` extends the field path pydantic reports for the validator."""
    # The message travels as a context value, never as the template, so braces in it are not format fields.
    return PydanticCustomError("invalid_config", "{message}", {"message": message, "at": at})


def one_of(value: str, known: Iterable[str], kind: str, kinds: str) -> str:
    """``value`` when it is one of the ``known`` names, else an error for a validator that lists them (``kind`` and
    ``kinds``: what they are called, one and several)."""
    names = sorted(known)
    if value not in names:
        raise invalid(f"unknown {kind} {value!r}; known {kinds}: {', '.join(names)}")
    return value


def parse_settings(text: str, schema: type[SettingsModel], *, source: str) -> SettingsModel:
    """TOML text validated against ``schema``; ``ConfigError`` naming ``source`` and every problem otherwise."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"the {source} is not valid TOML: {error}") from None
    try:
        return schema.model_validate(raw)
    except ValidationError as error:
        raise ConfigError(describe_errors(error, source)) from None


def load_settings(path: str | Path, schema: type[SettingsModel], *, source: str) -> SettingsModel:
    """A configuration file read and validated against ``schema`` (for tools, notebooks and tests)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"the {source} {path} cannot be read: {error.strerror}") from None
    return parse_settings(text, schema, source=f"{source} {path}")


def as_stored(settings: BaseModel) -> dict[str, Any]:
    """The plain dict Metaflow stores for a validated configuration (JSON types, every default filled in)."""
    return settings.model_dump(mode="json")


def describe_errors(error: ValidationError, source: str) -> str:
    """Every problem of a validation error on its own line, each with its field path."""
    problems = [
        f"{field_path(tuple(item['loc']) + tuple(item.get('ctx', {}).get('at', ())))}: {item['msg']}"
        for item in error.errors()
    ]
    return f"invalid {source}:\n  " + "\n  ".join(problems)


def field_path(loc: tuple[str | int, ...]) -> str:
    """``("candidates", 2, "grid", "depth")`` -> ``candidates[2].grid.depth``."""
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "(top level)"
