"""Feature sets: named, ordered lists of feature definitions with their parameters, declared here and only here.

A feature set's ``fingerprint`` is its version: the sha256 of a canonical JSON document holding, per definition,
its name, kind, parameters and code version (the normalised source of the family's functions and of the helpers
they call), plus the warm-up rule. The set's *name* is deliberately left out: two sets that compute the same
columns the same way are the same features. Models record the fingerprint, and ``check_fingerprint`` refuses
to serve them features of any other version. Not covered: ``features.build``, which only types, orders and
assembles what the definitions compute, and the versions of numpy and pandas.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from functools import cached_property
from types import MappingProxyType
from typing import Any

from features.cross_section import MARKET_RANK, SECTOR_RANK
from features.definitions import ColumnSpec, FeatureDefinition, Kind, code_version, define
from features.errors import FeatureSetMismatch
from features.fundamentals import FUNDAMENTALS
from features.price import (
    AVERAGE_TRUE_RANGE,
    BOLLINGER,
    EMA,
    INTRADAY_RANGE,
    LOG_DOLLAR_VOLUME,
    LOG_RETURNS,
    MACD,
    MOMENTUM,
    OBV_TREND,
    RETURNS,
    RSI,
    SMA,
    SMA_CROSSOVER,
    TREND_SLOPE,
    VOLATILITY,
    VOLUME_RATIO,
    ZSCORES,
)
from features.windows import warm_up_mask

KEY_COLUMNS = ("date", "ticker", "close")
WARM_COLUMN = "is_warm"
FINGERPRINT_FORMAT = 1


@dataclass(frozen=True)
class FeatureSet:
    """A named, ordered list of feature definitions; the unit a model is trained and served with."""

    name: str
    definitions: tuple[FeatureDefinition, ...]
    description: str = ""
    # Consecutive rows of a ticker further apart than this (calendar days) are a gap: see ``warm_up_mask``.
    max_gap_days: int = 10
    _columns: tuple[ColumnSpec, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_columns", _resolve_columns(self.name, self.definitions))

    @property
    def columns(self) -> tuple[ColumnSpec, ...]:
        """Every output column's spec, in output order; cross-sectional look-backs include their inputs'."""
        return self._columns

    @property
    def feature_columns(self) -> list[str]:
        """Names of the feature columns, in the order ``build_features`` returns them."""
        return [spec.name for spec in self._columns]

    @property
    def categorical_columns(self) -> list[str]:
        """Names of the feature columns holding categories (strings) rather than numbers."""
        return [spec.name for spec in self._columns if spec.categorical]

    @property
    def min_history(self) -> int:
        """Trading days of a ticker's prices (t included) needed for every feature at t to be defined."""
        return max((spec.lookback for spec in self._columns), default=1)

    def definitions_of(self, kind: Kind) -> tuple[FeatureDefinition, ...]:
        """The definitions of one kind, in declaration order."""
        return tuple(definition for definition in self.definitions if definition.family.kind is kind)

    @cached_property
    def fingerprint(self) -> str:
        """The feature-set version: sha256 of the canonical JSON of definitions, parameters and code versions."""
        document = {
            "format": FINGERPRINT_FORMAT,
            "definitions": [
                {
                    "name": definition.name,
                    "kind": str(definition.family.kind),
                    "params": definition.kwargs,
                    "code": definition.code_version(),
                }
                for definition in self.definitions
            ],
            "warm_up": {"max_gap_days": self.max_gap_days, "code": code_version(warm_up_mask)},
        }
        canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
        return hashlib.sha256(canonical.encode("ascii")).hexdigest()

    def with_params(self, definition_name: str, *, name: str | None = None, **params: Any) -> FeatureSet:
        """A copy with one definition's parameters changed (others kept), for experiments and tests."""
        names = [definition.name for definition in self.definitions]
        if definition_name not in names:
            raise ValueError(f"feature set '{self.name}' has no definition '{definition_name}'; it has {names}")
        definitions = tuple(
            define(definition.family, **{**definition.kwargs, **params})
            if definition.name == definition_name
            else definition
            for definition in self.definitions
        )
        return replace(self, name=name or self.name, definitions=definitions)


def _resolve_columns(set_name: str, definitions: tuple[FeatureDefinition, ...]) -> tuple[ColumnSpec, ...]:
    """All column specs of a set, checked for clashes and unmet inputs, with cross-sectional look-backs resolved."""
    definition_names = [definition.name for definition in definitions]
    if len(set(definition_names)) != len(definition_names):
        raise ValueError(f"feature set '{set_name}' repeats a definition: {definition_names}")
    reserved = {*KEY_COLUMNS, WARM_COLUMN}
    resolved: dict[str, ColumnSpec] = {}
    # Cross-sectional columns are computed last, from the others, so their inputs must be among the others.
    ordered = sorted(definitions, key=lambda definition: definition.family.kind is Kind.CROSS_SECTIONAL)
    for definition in ordered:
        for spec in definition.column_specs():
            if spec.name in resolved or spec.name in reserved:
                raise ValueError(f"feature set '{set_name}': column '{spec.name}' is defined twice or reserved")
            missing = [name for name in spec.inputs if name not in resolved]
            if missing:
                raise ValueError(
                    f"feature set '{set_name}': '{spec.name}' needs {missing}, which no other definition provides"
                )
            lookback = max([spec.lookback, *(resolved[name].lookback for name in spec.inputs)])
            resolved[spec.name] = replace(spec, lookback=lookback)
    return tuple(resolved[spec.name] for definition in definitions for spec in definition.column_specs())


_PRICE_DEFINITIONS = (
    define(RETURNS, windows=(1, 5, 21, 63)),
    define(LOG_RETURNS, windows=(1, 5, 21, 63)),
    define(TREND_SLOPE, windows=(21, 63)),
    define(MOMENTUM, lookback=126, skip=21),
    define(SMA, windows=(5, 10, 21, 63)),
    define(EMA, spans=(5, 12, 26), window_per_span=3),
    define(SMA_CROSSOVER, pairs=((5, 21), (21, 63))),
    define(VOLATILITY, windows=(5, 21, 63)),
    define(AVERAGE_TRUE_RANGE, window=14),
    define(INTRADAY_RANGE),
    define(BOLLINGER, window=20, num_std=2.0),
    define(RSI, window=14),
    define(MACD, fast=12, slow=26, signal=9, window_per_span=3),
    define(VOLUME_RATIO, windows=(5, 21)),
    define(OBV_TREND, window=21),
    define(LOG_DOLLAR_VOLUME),
    define(ZSCORES, windows=(21, 63)),
)
_RANKED = ("return_21d", "momentum_126_21")

PRICES_ONLY_FEATURE_SET = FeatureSet(
    name="prices_only",
    description="Daily price and volume features plus market-wide ranks; needs no financials.",
    definitions=(*_PRICE_DEFINITIONS, define(MARKET_RANK, columns=_RANKED, min_tickers=2)),
)

DEFAULT_FEATURE_SET = FeatureSet(
    name="full",
    description="Price and volume features, point-in-time fundamentals, and market and sector ranks.",
    definitions=(
        *_PRICE_DEFINITIONS,
        define(FUNDAMENTALS, quarter_gap_days=(80, 100)),
        define(MARKET_RANK, columns=_RANKED, min_tickers=2),
        define(SECTOR_RANK, columns=_RANKED, min_tickers=2),
    ),
)

FEATURE_SETS: MappingProxyType[str, FeatureSet] = MappingProxyType(
    {feature_set.name: feature_set for feature_set in (DEFAULT_FEATURE_SET, PRICES_ONLY_FEATURE_SET)}
)


def get_feature_set(name: str) -> FeatureSet:
    """The feature set registered under ``name`` (as recorded with a model or given as a flow parameter)."""
    try:
        return FEATURE_SETS[name]
    except KeyError:
        raise ValueError(f"unknown feature set '{name}'; known: {sorted(FEATURE_SETS)}") from None


def check_fingerprint(expected: str, feature_set: FeatureSet) -> None:
    """Refuse to build features for a model trained on another feature-set version (names both versions)."""
    if expected == feature_set.fingerprint:
        return
    expected_name = next((known.name for known in FEATURE_SETS.values() if known.fingerprint == expected), None)
    raise FeatureSetMismatch(
        expected=expected, expected_name=expected_name, actual=feature_set.fingerprint, actual_name=feature_set.name
    )
