"""Deterministic failures, as a user meets them on the command line: one clear message, a non-zero exit, no retry.

A bad parameter, a rejected file, an invalid configuration, a history too short for the backtest and a branch without
a champion fail the same way however often they are tried. Each row of the table runs the flow's own command and
checks what a person sees: the headline and message, no traceback, and a single attempt of the step that refused.
(The messages themselves are tested in the unit tests; here it is how they reach the user.)
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from stockcast.data.synthetic.generator import MarketSpec, generate_market, write_market
from tests.harness import REPO_ROOT

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def short_history(tmp_path_factory) -> tuple[str, Path]:
    """A branch whose only snapshot holds three months of three tickers, and the folder of its files."""
    folder = tmp_path_factory.mktemp("short")
    write_market(generate_market(MarketSpec(n_tickers=3, start="2025-09-01", end="2025-11-28", seed=4)), folder)
    branch = f"err{uuid.uuid4().hex[:8]}"
    ingested = command("ingest", branch, "--prices", str(folder / "stock_price.csv"))
    assert ingested.returncode == 0, ingested.stdout + ingested.stderr
    return branch, folder


def command(flow: str, branch: str, *options: str, config: str | None = None) -> subprocess.CompletedProcess:
    """``python flows/<flow>.py [--config config F] --branch B run OPTIONS`` as a user types it."""
    configured = ["--config", "config", config] if config else []
    return subprocess.run(
        [sys.executable, str(REPO_ROOT / "flows" / f"{flow}.py"), *configured, "--branch", branch, "run", *options],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        cwd=Path.cwd(),
        timeout=300,
        check=False,
    )


CASES = [
    pytest.param(
        "ingest",
        lambda folder, tmp: ["--prices", str(folder / "stock_price.csv"), "--max-quarantined-fraction", "2"],
        None,
        "Invalid parameter",
        "--max-quarantined-fraction must be between 0 and 1, got 2.0",
        id="bad-parameter",
    ),
    pytest.param(
        "ingest",
        lambda folder, tmp: ["--prices", str(tmp / "broken.csv")],
        None,
        "Input rejected",
        "rule 'required_columns' broken in column 'open, high, low, close, volume'",
        id="rejected-file",
    ),
    pytest.param(
        "ingest",
        lambda folder, tmp: ["--prices", str(tmp / "no-such-folder" / "stock_price.csv")],
        None,
        "Cannot read the input",
        "stock_price.csv: file not found",
        id="missing-file",
    ),
    pytest.param(
        "train",
        lambda folder, tmp: [],
        "bad.toml",
        "",
        "backtest.n_folds: Input should be greater than 0",
        id="invalid-config",
    ),
    pytest.param(
        "train",
        lambda folder, tmp: [],
        None,
        "History too short",
        "trading days; feature set 'full' spends the first 126 of each ticker's history warming up its longest",
        id="history-too-short",
    ),
    pytest.param(
        "predict", lambda folder, tmp: [], None, "No champion", "has no champion yet: train one", id="predict"
    ),
    pytest.param(
        "monitor", lambda folder, tmp: [], None, "No champion", "has no champion yet: train one", id="monitor"
    ),
]


@pytest.mark.parametrize(("flow", "options", "config", "headline", "message"), CASES)
def test_a_deterministic_failure_prints_one_message_exits_non_zero_and_is_tried_once(  # noqa: PLR0917 - the table
    short_history, tmp_path, flow, options, config, headline, message
):
    branch, folder = short_history
    (tmp_path / "broken.csv").write_text("date,ticker\n2025-10-01,AAA\n")
    (tmp_path / "bad.toml").write_text(
        (REPO_ROOT / "configs" / "train.toml").read_text().replace("n_folds = 4", "n_folds = 0")
    )

    result = command(flow, branch, *options(folder, tmp_path), config=str(tmp_path / config) if config else None)

    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert message in output and headline in output, output
    assert "Traceback" not in output and "Internal error" not in output, output
    assert "(retry)" not in output and output.count(message) == 1, output  # attempted once, said once
