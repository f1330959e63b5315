"""What MonitorFlow compares: the windows drift is measured between, ages, and the alert records it leaves; and its
verdict on a champion's age: a promoted refresh is young again, so the model-age alert stops; a naive champion, which
learns nothing, ages from the branch's latest training run instead of calling for a retrain at every cooldown."""

from __future__ import annotations

import json
from itertools import pairwise

import numpy as np
import pandas as pd
import pytest

from features import get_feature_set
from stockcast.core.storage import LocalStore
from stockcast.data.synthetic.generator import MarketSpec, generate_market
from stockcast.operate.monitoring import DRIFT_COLUMNS, PERFORMANCE_COLUMNS, Alert, MonitorReport, MonitorThresholds
from stockcast.operate.watch import (
    DriftWindows,
    age_origin,
    calibrated_drift,
    days_between,
    drift_windows,
    judge,
    realised_predictions,
    record_alerts,
)
from tests.factories import make_record


def test_the_windows_are_the_training_tail_and_the_latest_days() -> None:
    market = generate_market(MarketSpec(n_tickers=5, n_sectors=2, start="2024-01-01", end="2024-12-31", seed=4))
    training_end = pd.Timestamp("2024-10-31")

    windows = drift_windows(
        market.prices,
        market.financials,
        get_feature_set("full"),
        training_end=training_end,
        reference_days=30,
        current_days=10,
        calibration_windows=4,
    )

    dates = sorted(market.prices["date"].unique())
    assert sorted(windows.current["date"].unique()) == dates[-10:]
    reference_dates = sorted(windows.reference["date"].unique())
    assert len(reference_dates) == 30 and reference_dates[-1] == training_end
    assert windows.reference["is_warm"].all() and windows.current["is_warm"].all()
    assert set(windows.reference["ticker"]) == set(market.prices["ticker"])
    # Four windows of ten days, the latest ending the day before the reference window starts, none overlapping.
    assert len(windows.calibration) == 4
    spans = [sorted(window["date"].unique()) for window in windows.calibration]
    assert all(len(span) == 10 for span in spans)
    assert dates.index(spans[0][-1]) == dates.index(reference_dates[0]) - 1
    assert all(later[0] > earlier[-1] for later, earlier in pairwise(spans))


def _window(rng: np.random.Generator, days: range, *, spread: float = 1.0) -> pd.DataFrame:
    """20 tickers over ``days``: ``slow`` is the day number (a trend, as days since a report), ``fast`` noise."""
    day_numbers = np.repeat(np.array(days), 20)
    return pd.DataFrame({"slow": day_numbers.astype(float), "fast": rng.normal(0.0, spread, size=len(day_numbers))})


def test_drift_counts_a_feature_only_beyond_its_usual_distance() -> None:
    rng = np.random.default_rng(0)
    reference = _window(rng, range(100, 226))
    calibration = [_window(rng, range(start, start + 5)) for start in range(95, 45, -5)]

    calm = calibrated_drift(
        DriftWindows(reference, _window(rng, range(226, 231)), calibration), ["slow", "fast"], psi_threshold=0.25
    ).set_index("feature")
    shifted = calibrated_drift(
        DriftWindows(reference, _window(rng, range(226, 231), spread=4.0), calibration),
        ["slow", "fast"],
        psi_threshold=0.25,
    ).set_index("feature")

    # Five days of a trend are always far from half a year of it: a large PSI, but no further than usual.
    assert calm.loc["slow", "psi"] > 1.0 and calm.loc["slow", "psi"] <= calm.loc["slow", "usual_psi"]
    assert not calm["drifted"].any()
    assert shifted.loc["fast", "drifted"] and not shifted.loc["slow", "drifted"]
    assert shifted.loc["fast", "psi"] > shifted.loc["fast", "usual_psi"]
    # Without calibration windows the fixed threshold decides alone.
    alone = calibrated_drift(DriftWindows(reference, _window(rng, range(226, 231)), []), ["slow"], psi_threshold=0.25)
    assert alone["drifted"].tolist() == [True]


def test_ages_are_calendar_days_on_the_data_calendar() -> None:
    assert days_between("2025-12-24", pd.Timestamp("2025-12-29 17:45")) == 5
    assert days_between("2025-12-29", "2025-12-29") == 0


def test_only_the_champions_realised_predictions_are_scored() -> None:
    prices = pd.DataFrame(
        {
            "date": pd.to_datetime(["2025-01-02", "2025-01-03"]),
            "ticker": ["A", "A"],
            "open": [10.0, 11.0],
            "high": [10.0, 11.0],
            "low": [10.0, 11.0],
            "close": [10.0, 11.0],
            "volume": [1.0, 1.0],
        }
    )
    predictions = pd.DataFrame(
        {
            "as_of": pd.to_datetime(["2025-01-02", "2025-01-02"]),
            "ticker": ["A", "A"],
            "last_close": [10.0, 10.0],
            "predicted_return": [0.05, 0.2],
            "predicted_close": [10.5, 12.0],
            "model_version": ["v1", "v2"],
        }
    )
    realised = realised_predictions(predictions, prices, "v2")
    assert realised["model_version"].tolist() == ["v2"] and realised["realised_close"].tolist() == [11.0]


def test_alerts_are_recorded_once_per_run_and_nothing_when_all_is_well(tmp_path) -> None:
    store = LocalStore(tmp_path)
    quiet = MonitorReport(alerts=[], retrain=False, summary={})
    assert record_alerts(store, "user.x", pd.Timestamp("2025-12-29"), "MonitorFlow/9", quiet) is None
    assert store.list("alerts/") == []

    drift = Alert(kind="drift", message="12 of 40 features drifted", value=0.3, threshold=0.25)
    loud = MonitorReport(alerts=[drift], retrain=True, summary={})
    url = record_alerts(store, "user.x", pd.Timestamp("2025-12-29"), "MonitorFlow/9", loud)

    assert url == store.url("alerts/user.x/2025-12-29/MonitorFlow-9.json")
    recorded = json.loads(store.get("alerts/user.x/2025-12-29/MonitorFlow-9.json"))
    assert recorded["retrain"] is True and recorded["run"] == "MonitorFlow/9"
    assert recorded["alerts"] == [{"kind": "drift", "message": drift.message, "value": 0.3, "threshold": 0.25}]


TODAY = pd.Timestamp("2025-06-30")
THRESHOLDS = MonitorThresholds()  # max_model_age_days 90, retrain_cooldown_days 5


def verdict(champion, tmp_path, *, last_trained_on: str | None):
    return judge(
        pd.DataFrame(columns=PERFORMANCE_COLUMNS),
        pd.DataFrame(columns=DRIFT_COLUMNS),
        pd.DataFrame(),
        champion,
        THRESHOLDS,
        data_end="2025-06-30",
        training_end=champion.data_end,
        today=TODAY,
        last_trained_on=last_trained_on,
        store=LocalStore(tmp_path),
        branch="user.test",
        run_pathspec="MonitorFlow/1",
    )


def test_an_old_champion_calls_for_a_retrain_and_its_promoted_refresh_does_not(tmp_path) -> None:
    old = make_record("v1", data_end="2025-03-01")
    refreshed = make_record("v2", data_end="2025-06-27")  # the same spec, trained on newer data and promoted

    aged = verdict(old, tmp_path, last_trained_on="2025-03-01")
    young = verdict(refreshed, tmp_path, last_trained_on="2025-06-27")

    assert [alert.kind for alert in aged.report.alerts] == ["model_age"] and aged.retrain
    assert young.report.alerts == [] and not young.retrain
    # A refresh the gate refused leaves the old champion: its alert stands, and the cooldown spaces the retrains.
    refused = verdict(old, tmp_path, last_trained_on="2025-06-27")
    assert [alert.kind for alert in refused.report.alerts] == ["model_age"] and not refused.retrain
    assert "fewer than 5 days before 2025-06-30: not retraining again yet" in refused.reason


@pytest.mark.parametrize(
    ("factory", "last_trained_on", "origin"),
    [
        ("ridge", "2025-06-27", "2025-03-01"),  # a learned model ages from its own data, whatever ran since
        ("naive", "2025-06-27", "2025-06-27"),  # naive: from the latest training run, which found nothing better
        ("naive", None, "2025-03-01"),
    ],
)
def test_the_age_of_a_champion_counts_from_its_data_or_for_naive_from_the_latest_training(
    factory: str, last_trained_on: str | None, origin: str
) -> None:
    champion = make_record("v1", factory=factory, candidate_id=factory, params={}, data_end="2025-03-01")
    assert age_origin(champion, "2025-03-01", last_trained_on) == origin


def test_a_naive_champion_is_not_retrained_at_every_cooldown(tmp_path) -> None:
    naive = make_record("v1", factory="naive", candidate_id="naive", params={}, data_end="2025-03-01")
    assert not verdict(naive, tmp_path, last_trained_on="2025-06-20").report.alerts
    assert verdict(naive, tmp_path, last_trained_on="2025-03-20").retrain  # 102 days since anything was tried
