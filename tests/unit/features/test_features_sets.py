"""Feature sets: the fingerprint's stability and sensitivity, the mismatch check, declared look-backs."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from features import (
    DEFAULT_FEATURE_SET,
    PRICES_ONLY_FEATURE_SET,
    FeatureSet,
    FeatureSetMismatch,
    build_features,
    check_fingerprint,
    get_feature_set,
)
from features.cross_section import MARKET_RANK
from features.definitions import Family, Kind, code_version, define
from features.price import RETURNS, returns_columns

REPO_ROOT = Path(__file__).resolve().parents[3]


def test_fingerprint_is_identical_in_fresh_processes_whatever_the_hash_seed():
    script = "import features as f; print(f.DEFAULT_FEATURE_SET.fingerprint, f.PRICES_ONLY_FEATURE_SET.fingerprint)"
    expected = f"{DEFAULT_FEATURE_SET.fingerprint} {PRICES_ONLY_FEATURE_SET.fingerprint}"
    for hash_seed in ("1", "2"):
        result = subprocess.run(
            [sys.executable, "-c", script],
            cwd=REPO_ROOT,
            env={**os.environ, "PYTHONHASHSEED": hash_seed},
            capture_output=True,
            text=True,
            check=True,
        )
        assert result.stdout.split() == expected.split()
    assert len(DEFAULT_FEATURE_SET.fingerprint) == 64 and int(DEFAULT_FEATURE_SET.fingerprint, 16) >= 0


@pytest.mark.parametrize(
    ("definition", "params"),
    [
        ("returns", {"windows": (1, 5, 21)}),
        ("bollinger", {"num_std": 2.5}),
        ("macd", {"signal": 10}),
        ("fundamentals", {"quarter_gap_days": (85, 100)}),
        ("market_rank", {"min_tickers": 3}),
    ],
)
def test_changing_any_parameter_changes_the_fingerprint(definition, params):
    changed = DEFAULT_FEATURE_SET.with_params(definition, **params)
    assert changed.fingerprint != DEFAULT_FEATURE_SET.fingerprint


def test_same_content_same_fingerprint_whatever_the_name_or_how_it_was_declared():
    redeclared = DEFAULT_FEATURE_SET.with_params("returns", name="renamed", windows=[1, 5, 21, 63])
    assert redeclared.fingerprint == DEFAULT_FEATURE_SET.fingerprint
    assert DEFAULT_FEATURE_SET.with_params("returns", windows=(1, 5, 21, 63)) == DEFAULT_FEATURE_SET
    assert replace(DEFAULT_FEATURE_SET, max_gap_days=5).fingerprint != DEFAULT_FEATURE_SET.fingerprint


def load_probe(tmp_path: Path, file_name: str, source: str):
    """Import ``source`` as module ``features._probe`` (inside the package, so its helpers are followed)."""
    path = tmp_path / file_name
    path.write_text(textwrap.dedent(source))
    spec = importlib.util.spec_from_file_location("features._probe", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_code_version_follows_helpers_and_ignores_comments_and_docstrings(tmp_path):
    original = load_probe(
        tmp_path,
        "a.py",
        """
        SCALE = 2.0

        def helper(x):
            return x * SCALE

        def compute(x):
            return helper(x) + 1
        """,
    )
    reworded = load_probe(
        tmp_path,
        "b.py",
        '''
        SCALE = 2.0


        def helper(x):
            """Now documented."""
            return x * SCALE  # and commented

        def compute(x):
            # explained
            return helper(x) + 1
        ''',
    )
    helper_changed = load_probe(tmp_path, "c.py", "SCALE = 2.0\ndef helper(x):\n    return x * SCALE * 1\n"
                                "def compute(x):\n    return helper(x) + 1\n")  # fmt: skip
    constant_changed = load_probe(tmp_path, "d.py", "SCALE = 3.0\ndef helper(x):\n    return x * SCALE\n"
                                  "def compute(x):\n    return helper(x) + 1\n")  # fmt: skip
    assert code_version(original.compute) == code_version(reworded.compute)
    assert code_version(original.compute) != code_version(helper_changed.compute)
    assert code_version(original.compute) != code_version(constant_changed.compute)


def test_check_fingerprint_accepts_the_same_and_names_both_sides_of_a_mismatch():
    check_fingerprint(DEFAULT_FEATURE_SET.fingerprint, get_feature_set("full"))
    with pytest.raises(FeatureSetMismatch) as raised:
        check_fingerprint(PRICES_ONLY_FEATURE_SET.fingerprint, DEFAULT_FEATURE_SET)
    message = str(raised.value)
    assert PRICES_ONLY_FEATURE_SET.fingerprint in message and DEFAULT_FEATURE_SET.fingerprint in message
    assert "'prices_only'" in message and "'full'" in message
    assert raised.value.expected_name == "prices_only" and raised.value.actual_name == "full"
    with pytest.raises(FeatureSetMismatch, match="a feature set this code does not define"):
        check_fingerprint("0" * 64, PRICES_ONLY_FEATURE_SET)


def test_feature_sets_are_found_by_name_and_typos_are_refused():
    assert get_feature_set("prices_only") is PRICES_ONLY_FEATURE_SET
    with pytest.raises(ValueError, match="known: \\['full', 'prices_only'\\]"):
        get_feature_set("ful")
    with pytest.raises(ValueError, match="takes parameters \\['windows'\\]"):
        define(RETURNS, window=(1, 2))
    with pytest.raises(TypeError, match="compute takes"):
        Family("broken", "trend", Kind.PRICE, lambda panel, *, span: {}, returns_columns)


def test_inconsistent_sets_are_refused_at_declaration():
    returns = define(RETURNS, windows=(1,))
    with pytest.raises(ValueError, match="needs \\['return_5d'\\]"):
        FeatureSet("bad", (returns, define(MARKET_RANK, columns=("return_5d",), min_tickers=2)))
    with pytest.raises(ValueError, match="repeats a definition"):
        FeatureSet("bad", (returns, returns))


def test_min_history_is_the_longest_look_back():
    assert DEFAULT_FEATURE_SET.min_history == max(spec.lookback for spec in DEFAULT_FEATURE_SET.columns)
    assert DEFAULT_FEATURE_SET.min_history == 127  # momentum_126_21 needs close(t - 126)
    ranks = {spec.name: spec.lookback for spec in DEFAULT_FEATURE_SET.columns}
    assert ranks["rank_market_momentum_126_21"] == ranks["momentum_126_21"]


def test_every_declared_look_back_is_exact(make_prices, make_financials):
    """With ``lookback`` rows a column equals its full-history value; with one row fewer it is unknown."""
    prices = make_prices(n_tickers=1, n_days=DEFAULT_FEATURE_SET.min_history + 15, seed=31)
    financials = make_financials(prices, seed=31)
    full = build_features(prices, financials).iloc[-1]
    for spec in DEFAULT_FEATURE_SET.columns:
        if spec.inputs:  # cross-sectional: checked through their inputs (and need other tickers)
            continue
        enough = build_features(prices.tail(spec.lookback), financials).iloc[-1]
        if spec.categorical:
            assert enough[spec.name] == full[spec.name]
            continue
        assert enough[spec.name] == pytest.approx(full[spec.name], rel=1e-9), spec.name
        if spec.lookback > 1:
            too_few = build_features(prices.tail(spec.lookback - 1), financials).iloc[-1]
            assert np.isnan(too_few[spec.name]), spec.name
            assert not np.isnan(full[spec.name]), spec.name


def test_feature_columns_are_a_copy_callers_cannot_corrupt():
    columns = DEFAULT_FEATURE_SET.feature_columns
    columns.append("oops")
    assert "oops" not in DEFAULT_FEATURE_SET.feature_columns
    assert DEFAULT_FEATURE_SET.categorical_columns == ["sector"]
    assert len(set(columns)) == len(columns)
