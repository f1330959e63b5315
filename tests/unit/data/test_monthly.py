"""Tables stored by month (TrainFlow's shard rows and modelling frame): read back exactly, a window at a time."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from stockcast.data.monthly import FrameRows, MonthlyWriter, read_rows


def _table(n_tickers: int = 3, n_days: int = 90) -> pd.DataFrame:
    """Rows in (ticker, date) order over a few months, with the column types of a modelling frame."""
    dates = pd.bdate_range("2024-01-25", periods=n_days)
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "date": np.tile(dates.to_numpy(), n_tickers),
            "ticker": np.repeat([f"T{i}" for i in range(n_tickers)], n_days),
            "value": rng.normal(size=n_tickers * n_days),
            "missing": np.where(rng.random(n_tickers * n_days) < 0.3, np.nan, 1.0),
            "sector": np.repeat(["tech", "energy", "health"][:n_tickers], n_days).astype(object),
            "is_warm": rng.random(n_tickers * n_days) < 0.8,
            "next_date": pd.Series(np.tile(dates.to_numpy(), n_tickers)).shift(-1).to_numpy(),
        }
    )


@pytest.fixture
def endpoint_for(store, monkeypatch):
    """Reading back opens the store from its root, on Metaflow's configured S3 endpoint: the test server's here."""
    from metaflow import metaflow_config

    if hasattr(store, "endpoint"):
        monkeypatch.setattr(metaflow_config, "S3_ENDPOINT_URL", store.endpoint)
    return store


def test_a_table_written_by_month_reads_back_exactly_and_by_window(endpoint_for) -> None:
    table = _table()
    writer = MonthlyWriter(endpoint_for, "modelling")
    writer.add(table[table["date"] < "2024-03-01"])  # built a month or two at a time, as the join does
    writer.add(table[table["date"] >= "2024-03-01"])
    stored = writer.finish()

    assert stored.months == ["2024-01", "2024-02", "2024-03", "2024-04", "2024-05", "2024-06"][: len(stored.months)]
    assert stored.rows == len(table)
    pd.testing.assert_frame_equal(read_rows(stored), table, check_exact=True)
    start, end = pd.Timestamp("2024-02-14"), pd.Timestamp("2024-03-05")
    window = table[table["date"].between(start, end)].reset_index(drop=True)
    pd.testing.assert_frame_equal(read_rows(stored, start, end), window, check_exact=True)
    pd.testing.assert_frame_equal(
        read_rows(stored, start, end, ["date", "ticker", "value"]), window[["date", "ticker", "value"]]
    )
    # The same interface over the table in memory gives the same rows.
    pd.testing.assert_frame_equal(read_rows(FrameRows(table), start, end), window, check_exact=True)
    assert FrameRows(table).months == stored.months
    # What a window would hold is known without reading: the rows of the months it touches.
    assert stored.count() == len(table) and len(window) <= stored.count(start, end) < len(table)
    assert read_rows(stored, pd.Timestamp("2030-01-01")).empty


def test_a_month_is_written_once_and_the_columns_never_change(tmp_path) -> None:
    from stockcast.core.storage import LocalStore

    table = _table()
    writer = MonthlyWriter(LocalStore(tmp_path), "modelling")
    writer.add(table[table["date"] < "2024-02-01"])
    with pytest.raises(ValueError, match="month 2024-01 of modelling was written already"):
        writer.add(table[table["date"] < "2024-02-01"])
    with pytest.raises(ValueError, match="rows for modelling have columns"):
        writer.add(table[table["date"] >= "2024-02-01"].drop(columns="missing"))
    # Identical parts are stored once: the same table written again adds no object.
    objects = sorted(path.name for path in tmp_path.rglob("*.parquet"))
    again = MonthlyWriter(LocalStore(tmp_path), "modelling")
    again.add(table[table["date"] < "2024-02-01"])
    assert sorted(path.name for path in tmp_path.rglob("*.parquet")) == objects
