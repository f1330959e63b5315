"""The bad-input corpus (``tests/data/bad_inputs``): every broken file a vendor, a spreadsheet or an attacker sends.

Each file of ``expected.csv`` is ingested on top of a snapshot of the corpus' base files, in its role (prices,
financials, corporate actions, sectors), through the library steps IngestFlow runs. It either

- is **rejected** with one line per broken rule naming the file, the rule, the column and the CSV line;
- has its bad rows **quarantined** (listed with rule, column and line), and the snapshot keeps the base's version;
- has its corrections **held** back for review, the snapshot keeping the base's version; or
- is the base's data written another way (a byte-order mark, Windows line ends, time-zone stamps of the same day):
  the **same** version, nothing quarantined.

Every quarantine case re-sends the base rows with one broken, so the version staying put proves that nothing but
the broken row was left out and that re-ingesting identical data changes nothing. How a rejection reaches the user of
the flow (no traceback, nothing published) is tested in ``tests/flows/test_bad_inputs_flow.py``.
"""

from __future__ import annotations

import csv
import re
import shutil
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from stockcast.core.errors import UserError
from stockcast.data.ingest import SnapshotContent, build_snapshot, load_sources, validate_batch

CORPUS = Path(__file__).resolve().parents[2] / "data" / "bad_inputs"
BASE_PRICES = CORPUS / "stock_price.csv"
BASE_FINANCIALS = CORPUS / "financial_info.csv"
TODAY = pd.Timestamp("2024-04-30")
CASES = list(csv.DictReader((CORPUS / "expected.csv").open()))


def _ingest(previous: SimpleNamespace | None, prices: Path, financials: Path, **companions: Path) -> SnapshotContent:
    raw = load_sources(str(prices), str(financials), str(companions.get("actions", "")))
    return build_snapshot(previous, validate_batch(raw, previous, today=TODAY))


@pytest.fixture(scope="module")
def base() -> SimpleNamespace:
    """The snapshot of the base files, in the shape ``build_snapshot`` reads a previous snapshot in."""
    content = _ingest(None, BASE_PRICES, BASE_FINANCIALS)
    assert not [v for report in content.summary["validation"] for v in report["violations"]]
    return SimpleNamespace(
        prices=content.prices,
        financials=content.financials,
        oracle=None,
        actions=content.actions,
        version=content.version,
        tickers=content.summary["tickers"],
    )


def _ingest_case(case: dict[str, str], base: SimpleNamespace, folder: Path) -> SnapshotContent:
    path = CORPUS / case["file"]
    if case["role"] == "sectors":
        shutil.copy(BASE_PRICES, folder / "stock_price.csv")
        shutil.copy(path, folder / "sectors.csv")
        return _ingest(base, folder / "stock_price.csv", BASE_FINANCIALS)
    return _ingest(
        base,
        path if case["role"] == "prices" else BASE_PRICES,
        path if case["role"] == "financials" else BASE_FINANCIALS,
        **({"actions": path} if case["role"] == "actions" else {}),
    )


def test_the_corpus_is_large_and_every_file_is_listed():
    listed = {case["file"] for case in CASES}
    on_disk = {p.name for p in CORPUS.glob("*.csv")} - {"expected.csv", BASE_PRICES.name, BASE_FINANCIALS.name}
    assert listed == on_disk
    assert len(listed) >= 40


@pytest.mark.parametrize("case", CASES, ids=[case["file"] for case in CASES])
def test_a_bad_file_is_rejected_or_loses_only_its_bad_rows(case, base, tmp_path):
    if case["outcome"] == "reject":
        with pytest.raises(UserError) as caught:
            _ingest_case(case, base, tmp_path)
        message = str(caught.value)
        if case["rule"]:
            file = "sectors.csv" if case["role"] == "sectors" else case["file"]  # a companion file has its own name
            assert f"{file}: rule '{case['rule']}' broken" in message
        else:  # contradicting corporate actions: named by the actions themselves
            assert "corporate_actions.csv" in message
        if case["column"]:
            assert f"column '{case['column']}'" in message
        if case["line"]:
            assert re.search(rf"\blines? {case['line']}\b", message), message
        return
    content = _ingest_case(case, base, tmp_path)
    assert content.version == base.version, "the published data changed"
    violations = [v for report in content.summary["validation"] for v in report["violations"]]
    held = content.summary["held_corrections"]["count"]
    if case["outcome"] == "quarantine":
        (violation,) = violations
        assert (violation["rule"], violation["column"], violation["action"]) == (
            case["rule"],
            case["column"],
            "quarantine",
        )
        assert int(case["line"]) in violation["lines"] and violation["file"].endswith(case["file"])
    elif case["outcome"] == "held":
        assert held >= 1 and not violations
    else:
        assert case["outcome"] == "same" and not violations and held == 0
