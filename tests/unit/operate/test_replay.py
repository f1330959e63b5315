"""The replay: the daily loop over history by the library, on a small market with the quirks of real data. What it
records (a row per day and ticker served, with data and model versions), that its decisions are the published ones,
that it is deterministic and never overwrites, and the one message a bad window gets."""

from __future__ import annotations

import io
from itertools import pairwise
from pathlib import Path

import pandas as pd
import pytest

from stockcast.core.storage import LocalStore
from stockcast.data.config import DataConfig
from stockcast.data.synthetic.generator import generate_market, write_market
from stockcast.operate.config import OperateConfig
from stockcast.operate.decisions import decide
from stockcast.operate.monitoring import MonitorThresholds
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
from stockcast.operate.tables import decision_key, held_positions, load_decisions, load_predictions
from stockcast.train.config import TrainConfig, parse_train_config
from tests.factories import PLANTED, QUICK_CONFIG

FIRST, LAST = "2024-11-19", "2024-11-29"


@pytest.fixture(scope="module")
def market_files(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("market")
    # The planted market (tests.factories.PLANTED), every quirk of real data: a model beats naive there, so positions
    # are taken and carried from day to day.
    market = generate_market(PLANTED)
    write_market(market, folder)
    return folder


@pytest.fixture(scope="module")
def replay_history(market_files):
    return read_history(str(market_files / "stock_price.csv"), str(market_files / "financial_info.csv"), DataConfig())


def settings(branch: str) -> ReplaySettings:
    # A model older than four days calls for a retrain: one falls inside the window.
    operate = OperateConfig(monitor=MonitorThresholds(max_model_age_days=4))
    return ReplaySettings(
        train=TrainConfig.model_validate(parse_train_config(QUICK_CONFIG)), operate=operate, branch=branch
    )


@pytest.fixture(scope="module")
def replayed(replay_history, tmp_path_factory):
    store = LocalStore(tmp_path_factory.mktemp("store"))
    days = replay_window(replay_history.price_dates, FIRST, LAST)
    lines: list[str] = []
    replay = run_replay(replay_history, days, settings("test.replay_a"), store, progress=lines.append)
    return replay, store, days, lines


def test_the_audit_has_a_row_for_every_day_and_ticker_served_with_data_and_model_versions(
    replayed, replay_history
) -> None:
    replay, store, days, _ = replayed
    audit = build_audit(load_decisions(store, "test.replay_a"), replay_history, replay.days)
    predictions = load_predictions(store, "test.replay_a")

    assert list(audit.columns) == AUDIT_COLUMNS
    assert sorted(audit["date"].unique()) == list(days)
    for day in replay.days:
        served = predictions[(predictions["as_of"] == day.date) & (predictions["model_version"] == day.model_version)]
        rows = audit[audit["date"] == day.date]
        assert set(served["ticker"]) <= set(rows["ticker"])  # closed positions without a prediction come on top
        assert (rows["model_version"] == day.model_version).all()
        assert (rows["data_version"] == f"{replay_history.version}@{day.date:%Y-%m-%d}").all()
    # Every day is realised by the ticker's next close (the data goes on after the window), put back on the as-of day's
    # share basis where a split came in between: LQR's 2-for-1 on 2024-11-29 is no 50 % loss.
    prices = replay_history.prices.sort_values(["ticker", "date"])
    following = prices.assign(next_date=prices.groupby("ticker")["date"].shift(-1))
    following = following.assign(next_close=prices.groupby("ticker")["close"].shift(-1))
    realised = audit.dropna(subset=["predicted_return"])
    expected = realised.merge(following, left_on=["date", "ticker"], right_on=["date", "ticker"], how="left")
    split = replay_history.actions[
        (replay_history.actions["ticker"] == "LQR") & (replay_history.actions["kind"] == "split")
    ].iloc[0]
    across = (
        (expected["ticker"] == "LQR")
        & (expected["date"] < split["ex_date"])
        & (expected["next_date"] >= split["ex_date"])
    )
    assert across.sum() == 1 and split["ratio"] == 2.0
    assert (expected["realised_close"] == expected["next_close"].where(~across, expected["next_close"] * 2.0)).all()
    assert (expected["realised_date"] == expected["next_date"]).all() and len(expected) > 50


def test_each_days_decision_table_is_the_audits_decisions_for_that_day(replayed, replay_history) -> None:
    replay, store, _, _ = replayed
    audit = build_audit(load_decisions(store, "test.replay_a"), replay_history, replay.days)
    for day in replay.days:
        key = decision_key("test.replay_a", day.date, day.model_version)
        published = pd.read_csv(io.BytesIO(store.get(key)), dtype={"ticker": "str"})
        rows = audit[audit["date"] == day.date].reset_index(drop=True)
        assert published["ticker"].tolist() == rows["ticker"].tolist()
        assert published["action"].tolist() == rows["action"].tolist()
        assert published["target_weight"].tolist() == rows["target_weight"].tolist()


def test_each_day_decides_from_the_positions_the_previous_day_left(replayed) -> None:
    replay, store, _, _ = replayed
    decisions = load_decisions(store, "test.replay_a")
    predictions = load_predictions(store, "test.replay_a")
    for before, day in pairwise(replay.days):
        previous = decisions[(decisions["as_of"] == before.date) & (decisions["model_version"] == before.model_version)]
        held = held_positions(previous)
        table = predictions[(predictions["as_of"] == day.date) & (predictions["model_version"] == day.model_version)]
        again = decide(table, settings("x").operate.decisions, held)
        published = decisions[(decisions["as_of"] == day.date) & (decisions["model_version"] == day.model_version)]
        assert again["target_weight"].tolist() == published["target_weight"].tolist(), day.date
    assert any(decisions["target_weight"] != 0), "no position was ever taken: the test would prove nothing"


def test_a_retrain_called_by_monitoring_registers_a_model_scored_from_the_next_day(replayed) -> None:
    replay, store, _, _ = replayed
    retrained = [day for day in replay.days if day.retrained]
    assert retrained, [day.alerts for day in replay.days]
    first = retrained[0]
    assert "[model_age]" in first.alerts and first.retrained == f"v{first.date:%Y%m%d}"
    predictions = load_predictions(store, "test.replay_a")
    if first.promoted:  # the new champion predicted and decided that day again
        assert first.model_version == first.retrained
        assert (predictions["model_version"] == first.retrained).any()
    else:  # a shadow: the latest challenger, predicted beside the champion from the next day on
        later = predictions[predictions["as_of"] > first.date]
        assert (later["model_version"] == first.retrained).any() and first.model_version != first.retrained


def test_a_day_of_the_history_holds_only_what_was_known_at_its_close(replay_history) -> None:
    day = pd.Timestamp("2024-06-14")
    known = replay_history.as_of(day)

    assert known.prices["date"].max() == day and known.last_day == "2024-06-14"
    assert len(known.prices) == (replay_history.prices["date"] <= day).sum()
    assert (known.financials["report_date"].dropna() <= day).all()
    assert (
        len(known.financials)
        == (replay_history.financials["report_date"] <= day).sum()
        + replay_history.financials["report_date"].isna().sum()
    )
    assert (known.actions["ex_date"] <= day).all() and len(known.actions) < len(replay_history.actions)
    assert known.oracle is None or (known.oracle["date"] <= day).all()
    assert known.version == f"{replay_history.version}@2024-06-14" and known.as_of(day).version == known.version


def test_progress_says_the_day_the_champion_and_the_time_left(replayed) -> None:
    _, _, days, lines = replayed
    assert lines[0].startswith("first champion v20241118 (")
    assert len(lines) == len(days) + 1
    assert lines[-1].startswith(f"[{len(days)}/{len(days)}] {LAST} champion v")
    assert lines[-1].endswith("about 0 s left")


def test_the_same_inputs_replay_to_the_same_audit(replayed, replay_history, tmp_path) -> None:
    replay, store, _, _ = replayed
    days = replay_window(replay_history.price_dates, FIRST, "2024-11-21")
    again = run_replay(replay_history, days, settings("test.replay_b"), store)
    first = build_audit(load_decisions(store, "test.replay_a"), replay_history, replay.days)
    second = build_audit(load_decisions(store, "test.replay_b"), replay_history, again.days)
    pd.testing.assert_frame_equal(first[first["date"] <= days[-1]], second)


def test_outputs_and_branches_are_never_overwritten(replayed, replay_history, tmp_path) -> None:
    replay, store, _, _ = replayed
    out = tmp_path / "out"
    paths = write_outputs(out, store, settings("test.replay_a"), replay_history, replay.days)
    before = {path: path.read_bytes() for path in paths}

    with pytest.raises(FileExistsError):
        write_outputs(out, store, settings("test.replay_a"), replay_history, replay.days)
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
        ("2024-11-01", "2025-01-06", "--to 2025-01-06 is outside the data: the data's prices run from 2022-06-01"),
        (
            "2024-11-28",
            "2024-11-29",
            "--from 2024-11-28 is not a trading day of the data (no prices that day); "
            "the nearest are 2024-11-27 and 2024-11-29",
        ),
        ("2024-11-01", "2024-11-31", "--to must be a date as YYYY-MM-DD, got '2024-11-31'"),
        ("2022-06-01", "2024-11-29", "--from 2022-06-01 is the data's first day"),
    ],
)
def test_a_bad_window_gets_one_message(replay_history, first, last, message) -> None:
    with pytest.raises(ReplayInputError) as raised:
        replay_window(replay_history.price_dates, first, last)
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
