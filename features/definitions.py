"""What a feature definition is: a family of columns (code) plus the parameters it is used with.

A *family* is code: a pure ``compute`` function and a ``columns`` function that names and documents the columns
``compute`` returns, with each column's look-back. A *definition* binds a family to parameters (windows etc.).
Feature sets (``features.sets``) are ordered lists of definitions; their fingerprint hashes each definition's
parameters and its ``code_version``, so editing a family's code or its parameters yields a new feature-set version.
"""

from __future__ import annotations

import ast
import hashlib
import inspect
import textwrap
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

_PACKAGE = __name__.split(".")[0]


class Kind(StrEnum):
    """What a family reads, which fixes the order in which the engine computes it."""

    PRICE = "price"  # one ticker's own price rows
    FUNDAMENTAL = "fundamental"  # the ticker's financial reports known at t, and its close at t
    CROSS_SECTIONAL = "cross_sectional"  # other features of every ticker on the same date


@dataclass(frozen=True)
class ColumnSpec:
    """One output column: its name, what it means, and how many trading days of its ticker it looks back.

    ``lookback`` counts price rows of the ticker up to and including t that the value depends on. For
    cross-sectional columns the feature set raises it to the look-back of the ``inputs`` they are computed from.
    """

    name: str
    meaning: str
    lookback: int
    categorical: bool = False
    inputs: tuple[str, ...] = ()


@dataclass(frozen=True)
class Family:
    """A group of feature columns computed together by one pure function."""

    name: str
    group: str
    kind: Kind
    compute: Callable[..., Mapping[str, Any]]
    columns: Callable[..., tuple[ColumnSpec, ...]]

    def __post_init__(self) -> None:
        # compute and columns must take the same parameters, or a definition could document windows it does not use.
        computed_with = {
            name
            for name, parameter in inspect.signature(self.compute).parameters.items()
            if parameter.kind is inspect.Parameter.KEYWORD_ONLY
        }
        documented_with = set(inspect.signature(self.columns).parameters)
        if computed_with != documented_with:
            raise TypeError(
                f"family '{self.name}': compute takes {sorted(computed_with)} but columns takes "
                f"{sorted(documented_with)}"
            )


@dataclass(frozen=True)
class FeatureDefinition:
    """A family bound to parameters; ``params`` is a sorted tuple of (name, value) so it is hashable."""

    family: Family
    params: tuple[tuple[str, Any], ...]

    @property
    def name(self) -> str:
        """The family's name, unique within a feature set."""
        return self.family.name

    @property
    def kwargs(self) -> dict[str, Any]:
        """The parameters as keyword arguments for ``compute`` and ``columns``."""
        return dict(self.params)

    def column_specs(self) -> tuple[ColumnSpec, ...]:
        """The columns this definition produces, in output order."""
        return self.family.columns(**self.kwargs)

    def code_version(self) -> str:
        """A hash of the family's code (see ``code_version``)."""
        return code_version(self.family.compute, self.family.columns)


def define(family: Family, **params: Any) -> FeatureDefinition:
    """Bind ``family`` to ``params``, refusing names its functions do not take (a typo must not go unnoticed).

    Lists become tuples, so a definition stays immutable and hashable.
    """
    accepted = set(inspect.signature(family.columns).parameters)
    if set(params) != accepted:
        raise ValueError(f"feature family '{family.name}' takes parameters {sorted(accepted)}, got {sorted(params)}")
    frozen = {name: _freeze(value) for name, value in params.items()}
    return FeatureDefinition(family=family, params=tuple(sorted(frozen.items())))


def _freeze(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return tuple(_freeze(item) for item in value)
    if isinstance(value, bool | int | float | str):
        return value
    raise TypeError(f"feature parameters must be numbers, strings or sequences of them, got {value!r}")


def code_version(*functions: Callable[..., Any]) -> str:
    """A sha256 of the normalised source of ``functions`` and of every helper they call in this package.

    Helpers are found by following names in the source to functions of the ``features`` package (recursively)
    and module-level constants they read. The source is parsed and unparsed with docstrings removed, so editing
    comments, docstrings or layout keeps the version while any change to what runs gives a new one. ``hash()``
    is never used: the result is identical across processes and machines (for one Python minor version).
    """
    parts: dict[str, str] = {}
    for function in functions:
        _collect_sources(function, parts)
    canonical = "\n".join(f"## {key}\n{text}" for key, text in sorted(parts.items()))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _collect_sources(function: Callable[..., Any], parts: dict[str, str]) -> None:
    key = f"{function.__module__}.{function.__qualname__}"
    if key in parts:
        return
    tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
    _strip_docstrings(tree)
    parts[key] = ast.unparse(tree)
    referenced = sorted({node.id for node in ast.walk(tree) if isinstance(node, ast.Name)})
    for name in referenced:
        target = function.__globals__.get(name)
        if inspect.isfunction(target) and target.__module__.split(".")[0] == _PACKAGE:
            _collect_sources(target, parts)
        elif isinstance(target, frozenset):  # a set's repr follows hash order, which varies between processes
            parts[f"{function.__module__}.{name}"] = repr(sorted(target, key=repr))
        elif isinstance(target, int | float | str | tuple):
            parts[f"{function.__module__}.{name}"] = repr(target)


def _strip_docstrings(tree: ast.AST) -> None:
    for node in ast.walk(tree):
        if not isinstance(node, ast.Module | ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            continue
        first = node.body[0] if node.body else None
        if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
            node.body = node.body[1:] or [ast.Pass()]
