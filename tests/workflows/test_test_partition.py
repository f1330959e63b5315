"""Every test belongs to exactly one tier of ``make test``: what the tiers select, collected by pytest itself,
adds up to the whole suite with no test selected twice, so the CI jobs (one per tier) run the suite once, whole."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter

from workflow_checks import REPO_ROOT, make_prerequisites, pytest_arguments


def _collect(arguments: list[str]) -> subprocess.Popen[str]:
    """``pytest --collect-only`` with these arguments, started in the background (collections run side by side)."""
    return subprocess.Popen(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *arguments],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={key: value for key, value in os.environ.items() if not key.startswith("PYTEST_")},
    )


def _test_ids(collection: subprocess.Popen[str], what: str) -> list[str]:
    output, _ = collection.communicate(timeout=300)
    assert collection.returncode in (0, 5), f"collecting {what} failed:\n{output}"  # 5: nothing selected
    return [line for line in output.splitlines() if "::" in line]


def test_the_tiers_of_make_test_partition_the_suite() -> None:
    tiers = {
        target: arguments
        for target in make_prerequisites("test")
        if (arguments := pytest_arguments(target)) is not None
    }
    assert set(tiers) >= {"test-unit", "test-flows", "test-service", "test-workflows"}
    collections = {target: _collect(arguments) for target, arguments in tiers.items()}
    everything = _collect(["tests"])

    selected = {target: _test_ids(collection, f"make {target}") for target, collection in collections.items()}
    suite = _test_ids(everything, "the whole suite")

    counts = Counter(test for tests in selected.values() for test in tests)
    assert len(suite) > 100
    assert sorted(set(suite) - set(counts)) == [], "tests no tier of `make test` runs"
    assert sorted(test for test, count in counts.items() if count > 1) == [], "tests two tiers run"
    assert set(counts) == set(suite)
    assert all(selected.values()), f"a tier selects no test: {[target for target, ids in selected.items() if not ids]}"
