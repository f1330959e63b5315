"""Bad input through IngestFlow itself: a rejected file publishes nothing and changes no stored byte; implausible
corrections are held and listed, and the same version is published as before. The full corpus runs through the
library in ``tests/unit/data/test_bad_inputs.py`` (quarantined rows keep the version there); here two of its files
show how those outcomes reach the user."""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

import pytest

from stockcast.data.snapshot import latest_snapshot
from tests.harness import FlowRunner, metaflow_home

pytestmark = pytest.mark.slow

CORPUS = Path(__file__).resolve().parents[1] / "data" / "bad_inputs"
TODAY = "2024-04-30"


def _stored_files() -> dict[Path, str]:
    """Every file of the local datastore (artefacts, metadata, registry) with the sha256 of its bytes, except the
    pointer Metaflow keeps to a flow's last attempted run (what ``resume`` starts from), which is not published."""
    return {
        path: hashlib.sha256(path.read_bytes()).hexdigest()
        for path in metaflow_home().rglob("*")
        if path.is_file() and path.name != "latest_run"
    }


@pytest.fixture(scope="module")
def ingested() -> tuple[FlowRunner, str]:
    """A branch whose snapshot holds the corpus' base files; its version."""
    runner = FlowRunner(f"bad{uuid.uuid4().hex[:8]}")
    runner.succeed(
        "ingest", prices=str(CORPUS / "stock_price.csv"), financials=str(CORPUS / "financial_info.csv"), today=TODAY
    )
    return runner, latest_snapshot(f"test.{runner.branch}").version


def test_a_rejected_file_says_why_first_and_changes_no_stored_byte(ingested):
    runner, version = ingested
    before = _stored_files()
    outcome = runner("ingest", prices=str(CORPUS / "prices_extra_field.csv"), financials="", today=TODAY)
    assert not outcome.successful
    assert "prices_extra_field.csv: rule 'field_count' broken: line 5 has 8 fields, the header has 7" in outcome.output
    assert "Traceback" not in outcome.output
    after = _stored_files()
    assert {path: after.get(path) for path in before} == before, "a stored object changed"
    assert latest_snapshot(f"test.{runner.branch}").version == version


def test_implausible_corrections_are_held_listed_and_leave_the_version_as_it_was(ingested):
    runner, version = ingested
    outcome = runner("ingest", prices=str(CORPUS / "prices_every_price_x100.csv"), financials="", today=TODAY)
    assert outcome.require_success().data.snapshot["version"] == version
    assert "Held back 60 correction(s) of published prices" in outcome.output
    assert "--apply-corrections" in outcome.output
