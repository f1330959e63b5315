"""IngestFlow run for real with ``metaflow.Runner``, results read back with the Client API, on local and S3."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pandas as pd
import pytest

from stockcast.core.runs import FlowOutcome
from stockcast.core.storage import datastore_store
from stockcast.data.heads import head_key, read_head
from stockcast.data.snapshot import latest_snapshot
from stockcast.data.synthetic.generator import MarketSpec, generate_market, write_market
from tests.harness import S3_BUCKET, S3_DATASTORE_ENV, FlowRunner, card_text

pytestmark = pytest.mark.slow

SPEC = MarketSpec(n_tickers=4, start="2024-01-02", end="2024-04-30", seed=11)


@pytest.fixture(scope="module")
def market():
    return generate_market(SPEC)


@pytest.fixture
def files(market, tmp_path: Path) -> dict[str, Path]:
    return write_market(market, tmp_path / "full")


def _write(frame: pd.DataFrame, path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False, date_format="%Y-%m-%d")
    return str(path)


def _ingest(run_flow, prices: str, financials: str = "", env: dict[str, str] | None = None, **params):
    return run_flow("ingest", env=env, prices=prices, financials=financials, **params)


@pytest.fixture(scope="module")
def published(market, tmp_path_factory) -> tuple[str, FlowOutcome]:
    """The full files ingested on a branch of their own. The bad-file test then fails to replace the snapshot, so it
    stays the branch's latest for every test that uses it, in any order."""
    branch = f"t{uuid.uuid4().hex[:10]}"
    files = write_market(market, tmp_path_factory.mktemp("published"))
    result = _ingest(FlowRunner(branch), str(files["prices"]), str(files["financials"]))
    assert result.successful, result.output
    return branch, result


def test_publishes_a_snapshot_that_downstream_finds(published, market):
    branch, result = published
    summary = result.run.data.snapshot
    assert summary["n_tickers"] == SPEC.n_tickers
    assert summary["rows"]["prices"] == len(market.prices)
    assert summary["has_oracle"] is True
    assert summary["merge"]["prices"] == {"appended": len(market.prices), "corrected": 0, "unchanged": 0}
    snapshot = latest_snapshot(f"test.{branch}")
    assert snapshot.version == summary["version"]
    assert snapshot.run_pathspec == result.run.pathspec
    pd.testing.assert_frame_equal(
        snapshot.prices[["date", "ticker", "close"]],
        market.prices[["date", "ticker", "close"]].sort_values(["ticker", "date"]).reset_index(drop=True),
        check_exact=False,
        rtol=1e-6,
    )
    shown = card_text(result.run["publish"].task, "snapshot")
    assert f"Data snapshot `{summary['version']}`" in shown and "Validation: every row accepted" in shown
    # Running services follow the branch's head, which names the same snapshot and reads the same rows.
    head = read_head(datastore_store(), f"test.{branch}")
    assert (head.version, head.run, head.last_day) == (
        summary["version"],
        result.run.pathspec,
        summary["date_range"][1],
    )
    pd.testing.assert_frame_equal(head.read("prices"), snapshot.prices)


def test_continuous_collection_append_correct_and_identical(run_flow, branch, market, tmp_path: Path):
    prices = market.prices
    cutoff = prices["date"].sort_values().unique()[-5]
    first = _ingest(run_flow, _write(prices[prices["date"] < cutoff], tmp_path / "d1" / "stock_price.csv"))
    assert first.successful, first.output

    # The next days arrive, with one earlier close corrected.
    later = prices[prices["date"] >= cutoff].copy()
    corrected = prices[prices["date"] < cutoff].iloc[[0]].copy()
    corrected[["close", "high"]] = corrected[["close", "high"]] * 1.01
    second = _ingest(run_flow, _write(pd.concat([later, corrected]), tmp_path / "d2" / "stock_price.csv"))
    assert second.successful, second.output
    merge = second.run.data.snapshot["merge"]["prices"]
    assert merge == {"appended": len(later), "corrected": 1, "unchanged": 0}
    assert second.run.data.snapshot["previous_version"] == first.run.data.snapshot["version"]

    # Ingesting the same file again publishes the same version.
    third = _ingest(run_flow, str(tmp_path / "d2" / "stock_price.csv"))
    assert third.successful, third.output
    assert third.run.data.snapshot["version"] == second.run.data.snapshot["version"]
    assert third.run.data.snapshot["merge"]["prices"] == {"appended": 0, "corrected": 0, "unchanged": len(later) + 1}
    assert latest_snapshot(f"test.{branch}").version == second.run.data.snapshot["version"]


def test_prices_alone_are_enough_and_reported(run_flow, files):
    result = _ingest(run_flow, str(files["prices"]))
    assert result.successful, result.output
    summary = result.run.data.snapshot
    assert summary["rows"]["financials"] == 0
    assert sorted(summary["prices_only_tickers"]) == summary["tickers"]


def test_a_bad_file_fails_the_run_and_keeps_the_previous_snapshot(published, market, tmp_path: Path):
    branch, good = published
    broken = market.prices.drop(columns=["volume"])
    bad = _ingest(FlowRunner(branch), _write(broken, tmp_path / "bad" / "stock_price.csv"))
    assert not bad.successful
    assert "rule 'required_columns' broken in column 'volume'" in bad.output
    assert "stock_price.csv" in bad.output
    assert latest_snapshot(f"test.{branch}").version == good.run.data.snapshot["version"]
    assert read_head(datastore_store(), f"test.{branch}").version == good.run.data.snapshot["version"]


def test_quarantined_rows_are_reported_not_published(run_flow, market, tmp_path: Path):
    prices = market.prices.copy()
    prices.loc[3, "low"] = prices.loc[3, "high"] * 2  # breaks the OHLC order
    result = _ingest(run_flow, _write(prices, tmp_path / "q" / "stock_price.csv"))
    assert result.successful, result.output
    (report,) = result.run.data.snapshot["validation"]
    (violation,) = report["violations"]
    assert violation["rule"] == "ohlc_order" and list(violation["lines"]) == [5]
    assert result.run.data.snapshot["rows"]["prices"] == len(prices) - 1


@pytest.fixture(scope="module")
def published_on_s3(market, tmp_path_factory, s3_server) -> tuple[str, dict[str, Path], FlowOutcome]:
    """The full files uploaded to S3 and ingested from there on the S3 datastore, on a branch of their own. The S3
    bad-file test then fails to replace the snapshot, so it stays the branch's latest for every test that uses it."""
    import boto3

    branch = f"t{uuid.uuid4().hex[:10]}"
    files = write_market(market, tmp_path_factory.mktemp("s3-sources"))
    s3_client = boto3.client("s3", endpoint_url=s3_server)
    for name in ("prices", "financials", "oracle"):
        s3_client.upload_file(str(files[name]), S3_BUCKET, f"inputs/{branch}/{files[name].name}")
    result = _ingest(
        FlowRunner(branch),
        f"s3://{S3_BUCKET}/inputs/{branch}/stock_price.csv",
        f"s3://{S3_BUCKET}/inputs/{branch}/financial_info.csv",
        env=S3_DATASTORE_ENV,
    )
    assert result.successful, result.output
    return branch, files, result


@pytest.mark.s3
def test_on_the_s3_datastore_with_s3_sources(published_on_s3, s3_client):
    branch, files, result = published_on_s3
    assert result.run["publish"].task.metadata_dict["ds-type"] == "s3"
    snapshot = latest_snapshot(f"test.{branch}")
    assert snapshot.version == result.run.data.snapshot["version"] and snapshot.summary["has_oracle"]
    assert len(snapshot.prices) == len(pd.read_csv(files["prices"]))
    run_id = result.run.id
    keys = [
        item["Key"]
        for item in s3_client.list_objects_v2(Bucket=S3_BUCKET, Prefix=f"metaflow/IngestFlow/{run_id}/")["Contents"]
    ]
    assert any(key.startswith(f"metaflow/IngestFlow/{run_id}/publish/") for key in keys)
    artefacts = s3_client.list_objects_v2(Bucket=S3_BUCKET, Prefix="metaflow/IngestFlow/data/")
    assert artefacts["KeyCount"] > 0
    head = s3_client.get_object(Bucket=S3_BUCKET, Key=f"metaflow/stockcast/{head_key(f'test.{branch}')}")
    assert json.loads(head["Body"].read())["version"] == snapshot.version


@pytest.mark.s3
def test_on_s3_a_bad_file_publishes_nothing(published_on_s3, market, tmp_path: Path):
    branch, _, good = published_on_s3
    broken = market.prices.assign(close=-1.0)  # every row breaks a rule: far over the quarantine limit
    bad = _ingest(FlowRunner(branch), _write(broken, tmp_path / "bad" / "stock_price.csv"), env=S3_DATASTORE_ENV)
    assert not bad.successful
    assert "rule 'max_quarantined_fraction' broken" in bad.output and "rule 'positive_price'" in bad.output
    assert latest_snapshot(f"test.{branch}").version == good.run.data.snapshot["version"]
