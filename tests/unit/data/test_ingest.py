"""IngestFlow's library steps without Metaflow: loading, validating a batch, building the snapshot."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from features import build_features
from features.adjust import ACTION_KINDS
from stockcast.data.calendar import trading_days
from stockcast.data.ingest import (
    build_snapshot,
    held_corrections_summary,
    load_sources,
    new_actions,
    quarantine_summary,
    validate_batch,
)
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


# --- Real-data quirks: corporate actions, missing days, vendor layouts, sectors alone ----------------------------

QUIRKY = MarketSpec(n_tickers=50, start="2024-01-01", end="2024-12-31", seed=3, quirks=True)
PRICE_ACTIONS = ["split", "reverse_split", "spinoff"]


def _ingest(folder: Path, **load) -> dict:
    batch = validate_batch(load_sources(str(folder / "stock_price.csv"), "", **load), None, today=TODAY)
    return build_snapshot(None, batch)


def _found(content) -> set[tuple[str, str, str]]:
    return {(a["ticker"], a["ex_date"], a["kind"]) for a in content.summary["actions"]}


def _truth(market, kinds) -> set[tuple[str, str, str]]:
    rows = market.actions[market.actions["kind"].isin(kinds)]
    return {(r.ticker, str(r.ex_date.date()), r.kind) for r in rows.itertuples()}


@pytest.fixture(scope="module")
def quirky(tmp_path_factory):
    market = generate_market(QUIRKY)
    folder = tmp_path_factory.mktemp("quirky")
    write_market(market, folder, with_actions=True)
    return market, folder


def test_every_declared_action_and_every_missing_day_is_in_the_snapshot_summary(quirky):
    market, folder = quirky
    content = _ingest(folder)
    assert _found(content) == _truth(market, ACTION_KINDS)
    assert {a["source"] for a in content.summary["actions"]} == {"declared"}
    missing = content.summary["missing_days"]
    all_days = trading_days("XNYS", market.prices["date"].min(), market.prices["date"].max())
    assert missing["market"] == [str(d.date()) for d in all_days.difference(pd.DatetimeIndex(market.prices["date"]))]
    assert missing["market"] and missing["tickers"]  # the generator skips one market day and some ticker days
    assert "CSV" not in content.summary  # plain data only
    assert all(a["description"].startswith(a["ticker"]) for a in content.summary["actions"])


def test_without_the_file_splits_and_the_spinoff_are_read_off_adj_close(quirky, tmp_path):
    market, folder = quirky
    (tmp_path / "stock_price.csv").write_bytes((folder / "stock_price.csv").read_bytes())
    content = _ingest(tmp_path)
    assert _found(content) == _truth(market, PRICE_ACTIONS)
    assert {a["source"] for a in content.summary["actions"]} == {"adj_close"}


def test_with_prices_alone_the_splits_are_suspected(tmp_path):
    market = generate_market(replace(QUIRKY, with_adj_close=False))
    write_market(market, tmp_path)
    content = _ingest(tmp_path)
    suspected = _found(content)
    assert suspected == _truth(market, ["split", "reverse_split"])  # a spin-off is no usual ratio: not guessed
    assert {a["source"] for a in content.summary["actions"]} == {"suspected"}


def test_a_vendor_folder_of_one_file_per_ticker_ingests_like_stock_price_csv(quirky, tmp_path):
    market, folder = quirky
    vendor = tmp_path / "vendor"
    vendor.mkdir()
    for ticker, rows in market.prices.groupby("ticker"):
        rows.drop(columns="ticker").rename(
            columns={"date": "Date", "open": "Open", "high": "High", "low": "Low", "close": "Close",
                     "adj_close": "Adj Close", "volume": "Volume"}
        ).to_csv(vendor / f"{ticker}.csv", index=False, date_format="%Y-%m-%d")  # fmt: skip
    (vendor / "corporate_actions.csv").write_bytes((folder / "corporate_actions.csv").read_bytes())

    raw = load_sources(str(vendor), "")
    assert raw.per_ticker_files and len(raw.price_files) == market.prices["ticker"].nunique()
    from_folder = build_snapshot(None, validate_batch(raw, None, today=TODAY))
    from_file = _ingest(folder)
    assert from_folder.version == from_file.version
    pd.testing.assert_frame_equal(from_folder.prices, from_file.prices)


def test_a_sector_file_gives_sectors_without_inventing_fundamentals(quirky, tmp_path):
    market, folder = quirky
    (tmp_path / "stock_price.csv").write_bytes((folder / "stock_price.csv").read_bytes())
    sectors = market.financials.drop_duplicates("ticker")[["ticker", "sector"]]
    sectors.to_csv(tmp_path / "sectors.csv", index=False)
    content = _ingest(tmp_path)

    assert set(content.financials["ticker"]) == set(sectors["ticker"])
    assert content.financials[["period_end", "report_date", "revenue", "eps"]].isna().all().all()
    features = build_features(content.prices, content.financials, actions=content.actions)
    warm = features[features["is_warm"]]
    assert warm["sector"].notna().all() and warm["pe_ratio"].isna().all()


def test_the_quarantine_summary_names_rule_count_and_lines(tmp_path):
    lines = ["date,ticker,open,high,low,close,volume", *(f"2024-06-{d:02d},AAA,10,11,9,10,100" for d in (3, 4, 5))]
    lines.append("2024-06-08,AAA,10,11,9,10,100")  # a Saturday
    (tmp_path / "stock_price.csv").write_text("\n".join(lines) + "\n")
    batch = validate_batch(
        load_sources(str(tmp_path / "stock_price.csv"), ""), None, today=TODAY, max_quarantined_fraction=0.5
    )
    (line,) = quarantine_summary([report.to_dict() for report in batch.reports])
    assert "rule 'trading_day'" in line and "1 row at line 5" in line and "XNYS" in line


def test_a_day_reports_only_the_actions_it_brought():
    old = {"ticker": "A", "ex_date": "2024-01-02", "kind": "split"}
    new = {"ticker": "B", "ex_date": "2024-03-01", "kind": "spinoff"}
    assert new_actions([old, new], [old]) == [new]
    assert new_actions([old], []) == [old]


def test_a_bad_ticker_pattern_in_the_configuration_is_refused():
    from stockcast.core.config import ConfigError
    from stockcast.data.config import parse_data_config

    with pytest.raises(ConfigError, match="ticker_pattern"):
        parse_data_config('ticker_pattern = "[A-Z"\n')


def test_corrections_beyond_the_band_are_held_unless_applied(files):
    first = validate_batch(load_sources(str(files["prices"]), ""), None, today=TODAY)
    content = build_snapshot(None, first)
    previous = SimpleNamespace(
        prices=content.prices, financials=content.financials, oracle=None, actions=content.actions,
        version=content.version, tickers=content.summary["tickers"],
    )  # fmt: skip
    scaled = first.prices.assign(**{c: first.prices[c] * 100 for c in ("open", "high", "low", "close")})
    resent = replace(first, prices=scaled)
    held = build_snapshot(previous, resent)
    assert held.version == content.version
    assert held.summary["held_corrections"]["count"] == len(scaled)
    lines = held_corrections_summary(held.summary["held_corrections"])
    assert "more than 20%" in lines[0] and "--apply-corrections" in lines[-1]
    applied = build_snapshot(previous, resent, apply_corrections=True)
    assert applied.version != content.version and applied.summary["merge"]["prices"]["corrected"] == len(scaled)
