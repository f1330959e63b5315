"""Merge semantics of continuous collection and the content version of a snapshot."""

from __future__ import annotations

import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from stockcast.data.partitions import partition_table, snapshot_version
from stockcast.data.snapshot import MergeStats, implausible_corrections, merge_table

KEY = ("ticker", "date")


def content_version(tables: dict[str, pd.DataFrame | None]) -> str:
    """The version of whole tables, computed as ``build_snapshot`` does: from their partitions' content hashes."""
    return snapshot_version({name: None if t is None else partition_table(name, t) for name, t in tables.items()})


def _prices(rows: list[tuple[str, str, float]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["ticker", "date", "close"])
    frame["date"] = pd.to_datetime(frame["date"])
    return frame


DAY1 = _prices([("AAA", "2024-01-02", 10.0), ("BBB", "2024-01-02", 20.0)])


def test_first_batch_is_all_appended_and_sorted():
    merged, stats = merge_table(None, DAY1.iloc[::-1], KEY)
    assert stats == MergeStats(appended=2, corrected=0, unchanged=0)
    assert merged["ticker"].tolist() == ["AAA", "BBB"]


def test_a_new_day_appends_and_keeps_history():
    merged, stats = merge_table(DAY1, _prices([("AAA", "2024-01-03", 10.5)]), KEY)
    assert stats == MergeStats(appended=1, corrected=0, unchanged=0)
    assert len(merged) == 3
    assert merged[merged["ticker"] == "AAA"]["close"].tolist() == [10.0, 10.5]


def test_a_corrected_row_replaces_the_old_one_and_is_counted():
    merged, stats = merge_table(DAY1, _prices([("AAA", "2024-01-02", 10.1), ("BBB", "2024-01-02", 20.0)]), KEY)
    assert stats == MergeStats(appended=0, corrected=1, unchanged=1)
    assert merged.set_index("ticker").loc["AAA", "close"] == 10.1
    assert len(merged) == 2


def test_missing_values_compare_equal_when_unchanged():
    previous = DAY1.assign(adj=[float("nan"), 1.0])
    _, stats = merge_table(previous, previous.copy(), KEY)
    assert stats == MergeStats(appended=0, corrected=0, unchanged=2)


def test_merge_does_not_mutate_its_inputs():
    previous, new = DAY1.copy(), _prices([("AAA", "2024-01-02", 11.0)])
    merge_table(previous, new, KEY)
    pd.testing.assert_frame_equal(previous, DAY1)


def test_identical_content_gives_the_same_version_whatever_the_arrival_order():
    day2 = _prices([("AAA", "2024-01-03", 10.5)])
    once, _ = merge_table(None, pd.concat([DAY1, day2]), KEY)
    in_two, _ = merge_table(DAY1, day2, KEY)
    again, _ = merge_table(in_two, day2, KEY)
    versions = {content_version({"prices": t, "financials": None}) for t in (once, in_two, again)}
    assert len(versions) == 1


def test_any_change_gives_a_new_version():
    base = content_version({"prices": DAY1})
    assert content_version({"prices": DAY1.assign(close=[10.0, 20.000001])}) != base
    assert content_version({"prices": DAY1.iloc[:1]}) != base
    assert content_version({"quotes": DAY1}) != base
    assert len(base) == 16 and int(base, 16) >= 0


# --- The version is a function of the content alone -------------------------------------------------------------

TABLE = pd.DataFrame(
    {
        "date": pd.to_datetime(["2024-01-02", "2024-01-02", "2024-01-03", "2024-01-03"]),
        "ticker": ["AAA", "BBB", "AAA", "BBB"],
        "close": [10.0, 20.0, 10.5, float("nan")],
        "volume": [100.0, 200.0, 150.0, 250.0],
    }
)


@settings(max_examples=60, deadline=None)
@given(rows=st.permutations(range(len(TABLE))), columns=st.permutations(list(TABLE.columns)))
def test_the_version_ignores_row_and_column_order(rows, columns):
    shuffled = TABLE.iloc[list(rows)][list(columns)].reset_index(drop=True)
    assert content_version({"prices": shuffled, "financials": None}) == content_version(
        {"prices": TABLE, "financials": None}
    )


@settings(max_examples=30, deadline=None)
@given(row=st.integers(0, len(TABLE) - 1), change=st.floats(1e-9, 1e3))
def test_the_version_sees_any_change_of_a_value(row, change):
    changed = TABLE.copy()
    changed.loc[row, "volume"] += change
    assert content_version({"prices": changed}) != content_version({"prices": TABLE})


def test_a_merge_that_reorders_columns_keeps_the_version():
    reordered = TABLE[["volume", "close", "ticker", "date"]]
    merged, stats = merge_table(TABLE, reordered, KEY)
    assert stats.corrected == 0
    assert content_version({"prices": merged}) == content_version({"prices": TABLE})


# --- Corrections beyond the plausibility band are held back ------------------------------------------------------


def test_a_correction_beyond_the_band_is_held_with_both_values():
    corrected = TABLE.assign(close=[10.1, 20.0 * 100, 10.5, 30.0])
    held = implausible_corrections(TABLE, corrected, KEY, ("close",), max_change=0.2)
    assert held[["ticker", "close_before", "close"]].values.tolist() == [["BBB", 20.0, 2000.0]]
    assert held.index.tolist() == [1]  # indexed like the new rows, so the caller can drop them


def test_new_rows_and_a_first_batch_are_never_held():
    later = TABLE.assign(date=TABLE["date"] + pd.Timedelta(days=7), close=TABLE["close"] * 100)
    assert implausible_corrections(TABLE, later, KEY, ("close",), max_change=0.2).empty
    assert implausible_corrections(None, TABLE, KEY, ("close",), max_change=0.2).empty
