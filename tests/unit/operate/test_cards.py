"""The decisions and monitoring cards render, with data and on the first day when nothing is realised yet."""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
import pandas as pd

from stockcast.operate.cards import NOTHING_REALISED, decisions_card, monitoring_card
from stockcast.operate.decisions import DecisionRule, compare_strategies, decide
from stockcast.operate.monitoring import (
    DRIFT_COLUMNS,
    MonitorThresholds,
    assess,
    daily_performance,
    feature_drift,
    join_realised,
)

RULE = DecisionRule(cost_bps=5.0, max_positions=3, max_weight=0.3)
THRESHOLDS = MonitorThresholds()


def rendered(components: Sequence) -> str:
    """Every component rendered the way Metaflow serialises a card, as strict JSON (a NaN would break the page)."""
    page = json.dumps([component.render() for component in components], allow_nan=False)
    assert "<object>" not in page, "a table cell Metaflow cannot show (format dates as text)"
    return page


def walk_forward(days: int = 30, tickers: int = 6) -> pd.DataFrame:
    rng = np.random.default_rng(7)
    dates = pd.bdate_range("2025-01-02", periods=days)
    rows = pd.DataFrame({"date": np.repeat(dates, tickers), "ticker": np.tile([f"T{i}" for i in range(tickers)], days)})
    realised = rng.normal(0.0, 0.02, len(rows))
    return rows.assign(
        close=100.0, next_close=100.0 * (1 + realised), predicted_return=realised / 2 + rng.normal(0, 0.01, len(rows))
    )


def batch_predictions(as_of: pd.Timestamp) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "as_of": as_of,
            "ticker": ["T0", "T1", "T2"],
            "last_close": [100.0, 50.0, 20.0],
            "predicted_return": [0.01, -0.01, 0.0],
            "predicted_close": [101.0, 49.5, 20.0],
            "model_version": "v1",
            "feature_fingerprint": "abc",
        }
    )


def test_decisions_card_shows_todays_actions_metrics_and_equity_curves() -> None:
    backtest = walk_forward()
    comparison = compare_strategies(backtest, RULE)
    decisions = decide(batch_predictions(pd.Timestamp("2025-03-03")), RULE, held=["T1"])

    page = rendered(decisions_card(comparison, decisions, RULE))

    assert "Decisions as of 2025-03-03" in page
    assert "buy and hold" in page
    assert '"vegaChart"' in page
    assert NOTHING_REALISED not in page


def test_decisions_card_renders_with_nothing_to_show() -> None:
    empty = walk_forward().iloc[:0]
    comparison = compare_strategies(empty, RULE)
    decisions = decide(batch_predictions(pd.Timestamp("2025-03-03")).iloc[:0], RULE)

    page = rendered(decisions_card(comparison, decisions, RULE))

    assert NOTHING_REALISED in page
    assert "No predictions to decide on" in page


def test_monitoring_card_shows_the_verdict_rmse_series_and_drift_table() -> None:
    dates = pd.bdate_range("2025-03-03", periods=10)
    predictions = pd.concat([batch_predictions(date) for date in dates[:-1]], ignore_index=True)
    prices = pd.DataFrame(
        {"date": np.repeat(dates, 3), "ticker": np.tile(["T0", "T1", "T2"], 10), "close": 100.0 + np.arange(30)}
    )
    performance = daily_performance(join_realised(predictions, prices), window=THRESHOLDS.window_days)
    rng = np.random.default_rng(1)
    reference = pd.DataFrame({"steady": rng.normal(0, 1, 500), "moved": rng.normal(0, 1, 500), "sector": "x"})
    current = pd.DataFrame({"steady": rng.normal(0, 1, 200), "moved": rng.normal(2, 1, 200), "sector": "y"})
    drift = feature_drift(reference, current, ["steady", "moved", "sector"], psi_threshold=THRESHOLDS.psi_threshold)
    report = assess(
        performance,
        drift,
        data_age_days=9,
        model_age_days=120,
        backtest_return_rmse_vs_naive=0.99,
        thresholds=THRESHOLDS,
    )

    page = rendered(monitoring_card(performance, drift, report, backtest_return_rmse_vs_naive=0.99))

    assert report.retrain
    assert page.index("RETRAINING triggered") < page.index("Realised RMSE")
    assert all(kind in page for kind in ["freshness", "model_age", "drift"])
    assert "backtest expectation" in page
    assert page.index('"moved"') < page.index('"steady"')


def test_monitoring_card_renders_on_the_first_day() -> None:
    today = pd.Timestamp("2025-03-03")
    prices = pd.DataFrame({"date": [today], "ticker": ["T0"], "close": [100.0]})
    performance = daily_performance(join_realised(batch_predictions(today), prices), window=20)
    drift = pd.DataFrame(columns=DRIFT_COLUMNS)
    report = assess(
        performance, drift, data_age_days=0, model_age_days=0, backtest_return_rmse_vs_naive=None, thresholds=THRESHOLDS
    )

    page = rendered(monitoring_card(performance, drift, report, backtest_return_rmse_vs_naive=None))

    assert "Monitoring: all clear" in page
    assert NOTHING_REALISED in page
    assert "No features compared" in page
