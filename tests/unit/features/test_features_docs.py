"""docs/features.md is generated from the definitions; this test keeps it from drifting."""

from __future__ import annotations

import re
from pathlib import Path

from features import DEFAULT_FEATURE_SET, PRICES_ONLY_FEATURE_SET, describe
from features.docs import render_docs

DOCS = Path(__file__).resolve().parents[3] / "docs" / "features.md"
FEATURE_ROW = re.compile(r"^\| `(\w+)` \| (.*) \| (\d+) \|$")


def test_docs_are_up_to_date_with_the_definitions():
    assert DOCS.read_text(encoding="utf-8") == render_docs(), (
        "docs/features.md is stale: regenerate it with `python -m features > docs/features.md`"
    )


def test_describe_lists_every_column_with_its_look_back_and_the_minimum_history():
    for feature_set in (DEFAULT_FEATURE_SET, PRICES_ONLY_FEATURE_SET):
        text = describe(feature_set)
        assert f"**{feature_set.min_history} trading days**" in text
        assert feature_set.fingerprint in text
        rows = [match.groups() for match in map(FEATURE_ROW.match, text.splitlines()) if match]
        assert [(name, int(lookback)) for name, _, lookback in rows] == [
            (spec.name, spec.lookback) for spec in feature_set.columns
        ]
        # Pipes inside a meaning are escaped, or the table would gain columns.
        assert all(" | " not in meaning.replace("\\|", "") for _, meaning, _ in rows)
