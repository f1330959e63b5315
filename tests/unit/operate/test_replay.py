"""The replay: the daily loop over history by the library, on a small market with the quirks of real data. What it
records (a row per day and ticker served, with data and model versions), that its decisions are the published ones,
that it is deterministic and never overwrites, and the one message a bad window gets."""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd
import pytest

from stockcast.core.storage import LocalStore
from stockcast.data.config import DataConfig
from stockcast.data.synthetic.generator import MarketSpec, generate_market, write_market
from stockcast.operate.replay import (
    ReplayInputError,
    ReplaySettings,
    check_fresh,
    read_history,
    replay_branch,
    replay_window,
    run_replay,
)
from stockcast.operate.replay_command import main
from stockcast.operate.replay_report import AUDIT_COLUMNS, build_audit, write_outputs
from stockcast.operate.tables import decision_key, load_decisions, load_predictions
from stockcast.train.config import TrainConfig, parse_train_config
from tests.factories import QUICK_CONFIG

FIRST, LAST = "2024-11-15", "2024-11-29"


@pytest.fixture(scope="module")
def market_files(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("market")
    market = generate_market(MarketSpec(n_tickers=8, start="2023-06-01", end="2024-12-31", seed=3, quirks=True))
    write_market(market, folder)
    return folder


@pytest.fixture(scope="module")
def history(market_files):
    return read_history(str(market_files / "stock_price.csv"), str(market_files / "financial_info.csv"), DataConfig())


def settings(branch: str) -> ReplaySettings:
    return ReplaySettings(train=TrainConfig.model_validate(parse_train_config(QUICK_CONFIG)), branch=branch)


@pytest.fixture(scope="module")
def replayed(history, tmp_path_factory):
    store = LocalStore(tmp_path_factory.mktemp("store"))
    days = replay_window(history.price_dates, FIRST, LAST)
    lines: list[str] = []
    replay = run_replay(history, days, settings("test.replay_a"), store, progress=lines.append)
    return replay, store, days, lines


def test_the_audit_has_a_row_for_every_day_and_ticker_served_with_data_and_model_versions(replayed, history) -> None:
    replay, store, days, _ = replayed
    audit = build_audit(load_decisions(store, "test.replay_a"), history, replay.days)
    predictions = load_predictions(store, "test.replay_a")

    assert list(audit.columns) == AUDIT_COLUMNS
    assert sorted(audit["date"].unique()) == list(days)
    for day in replay.days:
        served = predictions[(predictions["as_of"] == day.date) & (predictions["model_version"] == day.model_version)]
        rows = audit[audit["date"] == day.date]
        assert set(served["ticker"]) <= set(rows["ticker"])  # closed positions without a prediction come on top
        assert (rows["model_version"] == day.model_version).all()
        assert (rows["data_version"] == f"{history.version}@{day.date:%Y-%m-%d}").all()
    # Every day but the last is realised by the next day's close; a position earns its weight times the move.
    realised = audit[audit["date"] < days[-1]].dropna(subset=["predicted_return"])
    assert realised["realised_close"].notna().all()
    assert (realised["position_pnl"] == realised["target_weight"] * realised["realised_return"]).all()


def test_each_days_decision_table_is_the_audits_decisions_for_that_day(replayed, history) -> None:
    replay, store, _, _ = replayed
    audit = build_audit(load_decisions(store, "test.replay_a"), history, replay.days)
    for day in replay.days:
        key = decision_key("test.replay_a", day.date, day.model_version)
        published = pd.read_csv(io.BytesIO(store.get(key)), dtype={"ticker": "str"})
        rows = audit[audit["date"] == day.date].reset_index(drop=True)
        assert published["ticker"].tolist() == rows["ticker"].tolist()
        assert published["action"].tolist() == rows["action"].tolist()
        assert published["target_weight"].tolist() == rows["target_weight"].tolist()


def test_progress_says_the_day_the_champion_and_the_time_left(replayed) -> None:
    _, _, days, lines = replayed
    assert lines[0].startswith("first champion v20241114 (")
    assert len(lines) == len(days) + 1
    assert lines[-1].startswith(f"[{len(days)}/{len(days)}] {LAST} champion v")
    assert lines[-1].endswith("about 0 s left")


def test_the_same_inputs_replay_to_the_same_audit(replayed, history, tmp_path) -> None:
    replay, store, _, _ = replayed
    days = replay_window(history.price_dates, FIRST, "2024-11-19")
    again = run_replay(history, days, settings("test.replay_b"), store)
    first = build_audit(load_decisions(store, "test.replay_a"), history, replay.days)
    second = build_audit(load_decisions(store, "test.replay_b"), history, again.days)
    pd.testing.assert_frame_equal(first[first["date"] <= days[-1]], second)


def test_outputs_and_branches_are_never_overwritten(replayed, history, tmp_path) -> None:
    replay, store, _, _ = replayed
    out = tmp_path / "out"
    paths = write_outputs(out, store, settings("test.replay_a"), history, replay.days)
    before = {path: path.read_bytes() for path in paths}

    with pytest.raises(FileExistsError):
        write_outputs(out, store, settings("test.replay_a"), history, replay.days)
    with pytest.raises(ReplayInputError, match=r"already holds a replay \(audit.csv, days.csv, report.html\)"):
        check_fresh(out, store, "test.replay_new")
    with pytest.raises(ReplayInputError, match=r"branch test\.replay_a already has a registry or published tables"):
        check_fresh(tmp_path / "elsewhere", store, "test.replay_a")
    assert {path: path.read_bytes() for path in paths} == before
    assert "<svg" in paths[2].read_text() and "Replay on branch test.replay_a" in paths[2].read_text()


@pytest.mark.parametrize(
    ("first", "last", "message"),
    [
        ("2024-11-29", "2024-11-01", "--from 2024-11-29 is after --to 2024-11-01: the window is reversed"),
        ("2024-11-01", "2025-01-06", "--to 2025-01-06 is outside the data: the data's prices run from 2023-06-01"),
        (
            "2024-11-28",
            "2024-11-29",
            "--from 2024-11-28 is not a trading day of the data (no prices that day); "
            "the nearest are 2024-11-27 and 2024-11-29",
        ),
        ("2024-11-01", "2024-11-31", "--to must be a date as YYYY-MM-DD, got '2024-11-31'"),
        ("2023-06-01", "2024-11-29", "--from 2023-06-01 is the data's first day"),
    ],
)
def test_a_bad_window_gets_one_message(history, first, last, message) -> None:
    with pytest.raises(ReplayInputError) as raised:
        replay_window(history.price_dates, first, last)
    assert str(raised.value).startswith(message)


def test_the_command_refuses_a_bad_window_before_it_writes_anything(market_files, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    code = main(
        [
            "--prices",
            str(market_files / "stock_price.csv"),
            "--from",
            "2024-12-25",
            "--to",
            "2024-12-31",
            "--out",
            str(out),
            "--branch",
            "bad window",
        ]
    )
    assert code == 1
    assert capsys.readouterr().err == (
        "stockcast-replay: --from 2024-12-25 is not a trading day of the data (no prices that day); the nearest are "
        "2024-12-24 and 2024-12-26\n"
    )
    assert not out.exists()


def test_a_replay_branch_is_named_as_metaflow_names_a_branch() -> None:
    assert replay_branch("Year 2025!") == "test.year_2025"
    with pytest.raises(ReplayInputError, match="no letter or digit"):
        replay_branch("---")
