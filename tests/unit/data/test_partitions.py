"""Snapshots as content-addressed partitions, on the local store and on the S3 test server: what is read back equals
the whole tables the previous layout stored, the version depends on content alone, a day writes only its own
partitions, and snapshots published as whole-table artefacts stay readable."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
from metaflow import metaflow_config
from metaflow.client.core import MetaflowData

from stockcast.core.errors import UserError
from stockcast.core.storage import LocalStore, S3Store
from stockcast.data.contract import FINANCIALS
from stockcast.data.ingest import SnapshotContent, build_snapshot, load_sources, publish_snapshot, validate_batch
from stockcast.data.partitions import (
    PARTITION_CACHE_FOLDER,
    WriteReport,
    chunk_key,
    partition_key,
    partition_table,
    read_table,
    snapshot_version,
    write_tables,
)
from stockcast.data.snapshot import Snapshot
from stockcast.data.synthetic.generator import MarketSpec, generate_market, split_days, write_days, write_market

TODAY = pd.Timestamp("2026-01-15")
TABLES = ("prices", "financials", "oracle", "actions")
SPEC = MarketSpec(n_tickers=6, start="2024-12-02", end="2025-01-15", seed=5, quirks=True)


def _ingest(folder: Path, previous: Snapshot | None = None) -> SnapshotContent:
    """What IngestFlow builds from a market's files written in ``folder``, merged into ``previous``."""
    financials = folder / "financial_info.csv"
    load = load_sources(str(folder / "stock_price.csv"), str(financials) if financials.exists() else "")
    return build_snapshot(previous, validate_batch(load, previous, today=TODAY))


@pytest.fixture(scope="module")
def history_and_day(tmp_path_factory) -> tuple[SnapshotContent, SnapshotContent]:
    """The market's history, and the history with its last day (a day of the new year) merged in."""
    history, [(day_of, day)] = split_days(generate_market(SPEC), 1)
    folder = tmp_path_factory.mktemp("history")
    write_market(history, folder, with_actions=True)
    first = _ingest(folder)
    day_folder = tmp_path_factory.mktemp("day")
    write_days([(day_of, day)], day_folder)
    return first, _ingest(day_folder / f"{day_of:%Y-%m-%d}", _legacy_snapshot(first))


def _run(**artefacts) -> SimpleNamespace:
    """A stand-in for a metaflow.Run of IngestFlow, holding ``artefacts`` in Metaflow's own data container."""
    data = MetaflowData([SimpleNamespace(id=name, data=value) for name, value in artefacts.items()])
    return SimpleNamespace(pathspec="IngestFlow/1", data=data)


def _legacy_snapshot(content: SnapshotContent) -> Snapshot:
    """A snapshot as runs before the manifest published it: the whole tables as artefacts."""
    tables = {name: getattr(content, name) for name in TABLES}
    return Snapshot(_run(snapshot=content.summary, **tables))


def _published(content: SnapshotContent, store, previous: Snapshot | None = None) -> tuple[Snapshot, WriteReport]:
    """``content`` published on ``store`` after ``previous``, and what appeared in the store, counted there."""
    before = _keys(store)
    manifest, summary = publish_snapshot(content, previous, store)
    report = WriteReport({key: len(store.get(key)) for key in _keys(store) - before})
    assert summary["storage"] == report.to_dict()
    return Snapshot(_run(snapshot=summary, manifest=manifest)), report


def _keys(store) -> set[str]:
    return set(store.list("snapshots"))


def test_reads_back_exactly_the_tables_the_whole_table_artefacts_held(history_and_day, store):
    content, _ = history_and_day
    snapshot, _ = _published(content, store)
    assert snapshot.manifest["store"] == store.root  # read from there, not from the default datastore (local here)
    legacy = _legacy_snapshot(content)
    for name in TABLES:
        pd.testing.assert_frame_equal(getattr(snapshot, name), getattr(legacy, name), check_exact=True)
    if isinstance(store, S3Store):  # what came from S3 is kept on the local disk, under its content hash
        cache = LocalStore(Path(metaflow_config.CLIENT_CACHE_PATH) / PARTITION_CACHE_FOLDER)
        assert set(cache.list("snapshots")) >= {key for key in store.list("snapshots") if "/chunks/" not in key}
    some = sorted(content.summary["tickers"])[1:4]
    for name in ("prices", "financials", "oracle"):
        pd.testing.assert_frame_equal(snapshot.read(name, some), legacy.read(name, some), check_exact=True)
        assert set(snapshot.read(name, some)["ticker"]) == set(some) & set(getattr(content, name)["ticker"])


def test_the_same_content_in_another_order_has_the_same_version_and_partitions(history_and_day, tmp_path):
    content, _ = history_and_day
    shuffled = {
        name: getattr(content, name).sample(frac=1.0, random_state=7).iloc[:, ::-1] for name in ("prices", "actions")
    }
    ordered = {name: partition_table(name, getattr(content, name)) for name in shuffled}
    again = {name: partition_table(name, frame) for name, frame in shuffled.items()}
    assert snapshot_version(again) == snapshot_version(ordered)
    assert {name: t.chunks() for name, t in again.items()} == {name: t.chunks() for name, t in ordered.items()}
    changed = content.prices.assign(volume=content.prices["volume"].where(content.prices.index != 5, 1.0))
    assert snapshot_version({**ordered, "prices": partition_table("prices", changed)}) != snapshot_version(ordered)


def test_a_day_writes_its_own_partitions_and_one_chunk_per_table(history_and_day, store):
    history, with_day = history_and_day
    first, _ = _published(history, store)
    before = _keys(store)
    manifest, summary = publish_snapshot(with_day, first, store)
    new = _keys(store) - before
    day = with_day.summary["date_range"][1]
    assert day.startswith("2025")
    expected = {partition_key(name, with_day.partitions[name].hashes[day]) for name in ("prices", "oracle")}
    expected |= {chunk_key(name, manifest["tables"][name]["chunks"][day[:4]]) for name in ("prices", "oracle")}
    assert new == expected  # no financials reported, no action that day: nothing else
    assert summary["storage"] == {"objects_written": len(new), "bytes_written": sum(len(store.get(k)) for k in new)}
    snapshot = Snapshot(_run(snapshot=summary, manifest=manifest))
    pd.testing.assert_frame_equal(snapshot.prices, with_day.prices, check_exact=True)
    # Publishing the same content again writes nothing: every partition and chunk is there.
    assert publish_snapshot(with_day, snapshot, store)[1]["storage"] == {"objects_written": 0, "bytes_written": 0}


def test_a_correction_of_an_old_day_rewrites_that_day_alone(history_and_day, store):
    history, _ = history_and_day
    first, _ = _published(history, store)
    prices = history.prices.copy()
    row = prices.index[len(prices) // 3]
    prices.loc[row, "close"] += 0.01
    old_day = f"{prices.loc[row, 'date']:%Y-%m-%d}"
    corrected = replace(history, partitions={**history.partitions, "prices": partition_table("prices", prices)})
    before = _keys(store)
    manifest, summary = publish_snapshot(corrected, first, store)
    new = _keys(store) - before
    assert new == {
        partition_key("prices", corrected.partitions["prices"].hashes[old_day]),
        chunk_key("prices", manifest["tables"]["prices"]["chunks"][old_day[:4]]),
    }
    snapshot = Snapshot(_run(snapshot=summary, manifest=manifest))
    pd.testing.assert_frame_equal(snapshot.prices, prices, check_exact=True)
    pd.testing.assert_frame_equal(first.prices, history.prices, check_exact=True)  # the previous one is intact


def test_a_snapshot_published_as_whole_tables_stays_readable_and_is_migrated(history_and_day, store):
    _, with_day = history_and_day
    legacy = _legacy_snapshot(with_day)
    assert legacy.manifest is None
    some = sorted(with_day.summary["tickers"])[:2]
    expected = with_day.prices[with_day.prices["ticker"].isin(some)].reset_index(drop=True)
    pd.testing.assert_frame_equal(legacy.read("prices", some), expected, check_exact=True)
    assert legacy.prices is with_day.prices
    without_actions = Snapshot(_run(snapshot=with_day.summary, prices=with_day.prices))
    assert without_actions.actions.empty  # runs from before actions were published
    # The first ingest after it writes every partition, and reads back the same tables.
    migrated, report = _published(with_day, store, legacy)
    assert report.objects == sum(len(t.hashes) + len(t.chunks()) for t in with_day.partitions.values() if t)
    for name in TABLES:
        pd.testing.assert_frame_equal(getattr(migrated, name), getattr(legacy, name), check_exact=True)


def test_an_absent_oracle_reads_as_none_and_an_unknown_table_is_refused(history_and_day, tmp_path):
    content, _ = history_and_day
    without = replace(content, oracle=None, partitions={**content.partitions, "oracle": None})
    snapshot, _ = _published(without, LocalStore(tmp_path))
    assert snapshot.oracle is None
    assert read_table(LocalStore(tmp_path), snapshot.manifest, "oracle") is None
    with pytest.raises(UserError, match="no table 'quotes'"):
        snapshot.read("quotes")


def test_an_empty_table_keeps_its_columns_and_dtypes(tmp_path):
    empty = FINANCIALS.empty()
    manifest, report = write_tables(LocalStore(tmp_path), {"financials": partition_table("financials", empty)}, None)
    assert report.objects == 0
    pd.testing.assert_frame_equal(read_table(LocalStore(tmp_path), manifest, "financials"), empty, check_exact=True)


def test_a_previous_snapshot_in_another_store_is_not_taken_as_stored_here(history_and_day, tmp_path):
    history, with_day = history_and_day
    first, _ = _published(history, LocalStore(tmp_path / "one"))
    moved, report = _published(with_day, LocalStore(tmp_path / "other"), first)
    assert report.objects == sum(len(t.hashes) + len(t.chunks()) for t in with_day.partitions.values() if t)
    pd.testing.assert_frame_equal(moved.prices, with_day.prices, check_exact=True)
