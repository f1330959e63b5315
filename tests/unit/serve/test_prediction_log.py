"""The prediction log keeps every answer a worker gave, with its data version, and reads back whole lines only."""

from __future__ import annotations

import datetime as dt

import pandas as pd

from stockcast.serve.prediction_log import LOG_COLUMNS, PREDICTION_LOG_ENV, PredictionLog, read_prediction_log

ANSWER = {
    "ticker": "ABC",
    "as_of": dt.date(2024, 12, 31),
    "last_close": 101.5,
    "predicted_return": 0.001,
    "predicted_close": 101.6015,
    "model_version": "v8",
    "data_version": "d1",
}


def test_answers_are_read_back_with_their_data_version_oldest_first(tmp_path) -> None:
    log = PredictionLog.from_environment({PREDICTION_LOG_ENV: str(tmp_path / "log")})
    log.write([ANSWER, {**ANSWER, "ticker": "XYZ"}])
    log.write([])
    log.write([{**ANSWER, "as_of": dt.date(2025, 1, 2), "data_version": "d2"}])

    table = read_prediction_log(tmp_path / "log")
    assert list(table.columns) == LOG_COLUMNS
    assert table["ticker"].tolist() == ["ABC", "XYZ", "ABC"]
    assert table["data_version"].tolist() == ["d1", "d1", "d2"]
    assert table["as_of"].tolist() == [pd.Timestamp("2024-12-31")] * 2 + [pd.Timestamp("2025-01-02")]
    assert table["predicted_close"].tolist() == [101.6015] * 3
    assert log.path.name.startswith("predictions-")


def test_a_line_cut_short_by_a_killed_worker_is_left_out(tmp_path) -> None:
    log = PredictionLog(tmp_path)
    log.write([ANSWER])
    with log.path.open("a") as file:
        file.write('{"ticker": "XY')

    assert read_prediction_log(tmp_path)["ticker"].tolist() == ["ABC"]


def test_without_the_variable_nothing_is_logged_and_an_empty_folder_reads_as_no_rows(tmp_path) -> None:
    assert PredictionLog.from_environment({PREDICTION_LOG_ENV: " "}) is None
    assert read_prediction_log(tmp_path).empty
