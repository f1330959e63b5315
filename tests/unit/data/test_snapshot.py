"""Merge semantics of continuous collection and the content version of a snapshot."""

from __future__ import annotations

import pandas as pd

from stockcast.data.snapshot import MergeStats, content_version, merge_table

KEY = ("ticker", "date")


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
