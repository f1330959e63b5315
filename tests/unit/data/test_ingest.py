"""IngestFlow's library steps without Metaflow: loading, validating a batch, building the snapshot."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from stockcast.data.ingest import build_snapshot, load_sources, validate_batch
from stockcast.data.synthetic.generator import MarketSpec, generate_market, write_market
from stockcast.data.validation import ContractViolationError

TODAY = pd.Timestamp("2026-01-15")


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    market = generate_market(MarketSpec(n_tickers=3, start="2025-09-01", end="2025-12-31", seed=2))
    return write_market(market, tmp_path_factory.mktemp("market"))


def test_the_oracle_beside_the_prices_is_picked_up(files):
    raw = load_sources(str(files["prices"]), str(files["financials"]))
    assert raw.oracle_uri == str(files["oracle"]) and raw.oracle is not None
    assert raw.financials == files["financials"].read_bytes()


def test_without_financials_or_oracle(tmp_path, files):
    prices = tmp_path / "stock_price.csv"
    prices.write_bytes(files["prices"].read_bytes())
    raw = load_sources(str(prices), "")
    assert raw.financials is None and raw.oracle is None
    batch = validate_batch(raw, None, today=TODAY)
    assert batch.financials.empty and batch.oracle is None
    summary = build_snapshot(None, batch).summary
    assert summary["prices_only_tickers"] == summary["tickers"] and summary["has_oracle"] is False


def test_a_rejected_file_raises_with_every_message(tmp_path, files):
    prices = tmp_path / "stock_price.csv"
    prices.write_text("date,ticker\n2025-01-02,AAA\n")
    financials = tmp_path / "financial_info.csv"
    financials.write_text("ticker\n")
    with pytest.raises(ContractViolationError) as caught:
        validate_batch(load_sources(str(prices), str(financials)), None, today=TODAY)
    message = str(caught.value)
    assert f"{prices}: rule 'required_columns'" in message
    assert f"{financials}: rule 'required_columns'" in message


def test_financials_may_name_tickers_known_only_from_the_snapshot(tmp_path, files):
    raw = load_sources(str(files["prices"]), str(files["financials"]))
    batch = validate_batch(raw, None, today=TODAY)
    day_prices = batch.prices[batch.prices["ticker"] == batch.prices["ticker"].iloc[0]]
    only_one = tmp_path / "stock_price.csv"
    day_prices.to_csv(only_one, index=False, date_format="%Y-%m-%d")
    previous = SimpleNamespace(tickers=sorted(batch.prices["ticker"].unique()))
    later = validate_batch(load_sources(str(only_one), str(files["financials"])), previous, today=TODAY)
    assert set(later.financials["ticker"]) == set(previous.tickers)


def test_snapshot_summary_and_version(files):
    batch = validate_batch(load_sources(str(files["prices"]), str(files["financials"])), None, today=TODAY)
    content = build_snapshot(None, batch)
    again = build_snapshot(None, batch)
    assert content.version == again.version == content.summary["version"]
    assert content.summary["rows"] == {"prices": len(batch.prices), "financials": len(batch.financials)}
    assert content.summary["date_range"] == ["2025-09-02", "2025-12-31"]  # 1 September was Labor Day
    assert content.summary["merge"]["prices"]["appended"] == len(batch.prices)
    oracle_changed = replace(batch, oracle=batch.oracle.assign(expected_next_close=1.0))
    assert build_snapshot(None, oracle_changed).version == content.version  # the oracle is not data
