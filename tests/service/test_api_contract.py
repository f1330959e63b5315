"""The OpenAPI document is the service's contract, and the real server keeps it: schemathesis generates over a thousand
requests from ``/docs.json`` (valid ones and deliberately invalid ones, seeded, so every run sends the same) against
the built Bento under ``bentoml serve``, and checks every answer: no server error, a status the document declares,
a body and headers matching the declared schema, and every request the schema forbids refused.

Schemathesis runs through its command line, its stable interface (its pytest plugin's lazy loader does not work
with pytest 9.2), and reports in JSON: the test reads the counts from there.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.service.conftest import API_TOKEN

pytestmark = pytest.mark.slow

SEED = 20261205
MAX_EXAMPLES = 500
"""Fuzzing examples per operation: with the examples and coverage phases, over 1,000 requests in all (the two POST
APIs take nearly all of them; the GET endpoints have no input to vary), in about 15 s on two cores. (Twice as many
found nothing more in every run since the test was written, and cost 15 s of the tiers' 10 minutes.)"""
MIN_CASES = 1000
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    "negative_data_rejection",
)
"""Every check that holds of any correct implementation of this document. Left out: positive_data_acceptance, since
a schema cannot say which tickers a model knows, so a well-formed request may rightly get a 400."""


CONFIG = """
# Nothing carried over from an earlier run, so every run sends the same requests.
cache.enabled = false

# Error feedback learns from 4xx answers what the server wants; here nearly every generated request gets a 400 (a
# schema cannot say which tickers a model knows, and no random history is 127 consistent days), and with it on,
# fuzzing stops after about 25 requests per API. Off, each API gets its full budget.
[phases.fuzzing.error-feedback]
enabled = false
"""


def run_schemathesis(
    url: str, folder: Path, *options: str, checks: tuple[str, ...] = CHECKS
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    """``schemathesis run`` against the document at ``url`` with ``checks``, in ``folder`` (where it finds ``CONFIG``
    and leaves its files); its process and its JSON report."""
    (folder / "schemathesis.toml").write_text(CONFIG)
    report = folder / "schemathesis.json"
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "run",
        url,
        f"--checks={','.join(checks)}",
        "--phases=examples,coverage,fuzzing",
        f"--seed={SEED}",
        "--workers=1",
        "--generation-database=none",
        "--request-timeout=10",
        "--report=json",
        f"--report-json-path={report}",
        *options,
    ]
    process = subprocess.run(command, cwd=folder, capture_output=True, text=True, timeout=300, check=False)
    return process, json.loads(report.read_text()) if report.exists() else {}


@pytest.mark.timeout(360)
def test_a_thousand_generated_requests_meet_the_documented_contract(server: str, tmp_path: Path) -> None:
    process, report = run_schemathesis(f"{server}/docs.json", tmp_path, f"--max-examples={MAX_EXAMPLES}")

    assert report, process.stdout[-5000:] + process.stderr[-5000:]
    print(f"schemathesis: {report['test_cases']['generated']} cases in {report['running_time']:.1f} s")
    assert (report["failures"], report["errors"]) == ([], []), process.stdout[-20000:]
    assert process.returncode == 0, process.stdout[-20000:]
    assert report["stop_reason"] == "completed" and report["complete"]
    assert report["operations"]["tested"] == report["operations"]["total"] == 7
    assert report["test_cases"]["generated"] >= MIN_CASES
    assert report["test_cases"]["with_failures"] == 0


@pytest.mark.timeout(180)
def test_the_protected_server_meets_its_contract_and_refuses_requests_without_the_token(
    protected_server: str, tmp_path: Path
) -> None:
    """With the token sent, the protected server keeps the same contract; ``ignored_auth`` also sends each request of
    an operation the document marks as secured without the token and with a wrong one, and requires a 401."""
    process, report = run_schemathesis(
        f"{protected_server}/docs.json",
        tmp_path,
        "--max-examples=50",
        f"--header=Authorization: Bearer {API_TOKEN}",
        checks=(*CHECKS, "ignored_auth"),
    )

    assert report, process.stdout[-5000:] + process.stderr[-5000:]
    assert (report["failures"], report["errors"]) == ([], []), process.stdout[-20000:]
    assert process.returncode == 0, process.stdout[-20000:]
    assert report["operations"]["tested"] == report["operations"]["total"] == 7
