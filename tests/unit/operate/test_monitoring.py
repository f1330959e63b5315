"""Monitoring: drift statistics on shifts of known size, realised performance worked by hand, and the verdict."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from stockcast.operate.monitoring import (
    DRIFT_COLUMNS,
    PERFORMANCE_COLUMNS,
    MonitorThresholds,
    assess,
    daily_performance,
    feature_drift,
    join_realised,
    ks_statistic,
    population_stability_index,
)

N = 10_000
# The 95 % critical value of the two-sample KS statistic for N and N values: the sampling error allowed.
KS_TOLERANCE = 1.36 * np.sqrt(2 / N)


def normal(mean: float, sd: float = 1.0, *, seed: int, size: int = N) -> np.ndarray:
    return np.random.default_rng(seed).normal(mean, sd, size)


# --- PSI and KS ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shift", [0.0, 0.25, 0.5, 1.0])
def test_ks_matches_the_theoretical_distance_of_shifted_normals(shift: float) -> None:
    # sup |Phi(x) - Phi(x - d)| is reached half-way between the means: 2 Phi(d/2) - 1.
    expected = 2 * stats.norm.cdf(shift / 2) - 1

    assert ks_statistic(normal(0, seed=1), normal(shift, seed=2)) == pytest.approx(expected, abs=KS_TOLERANCE)


def test_ks_is_scipys_statistic_with_ties_and_unequal_sizes() -> None:
    rng = np.random.default_rng(0)
    for _ in range(50):
        discrete = rng.integers(0, 20, rng.integers(1, 300)).astype(float)
        rounded = rng.normal(8, 5, rng.integers(1, 300)).round()
        assert ks_statistic(discrete, rounded) == pytest.approx(stats.ks_2samp(discrete, rounded).statistic, abs=1e-12)


def test_psi_is_near_zero_without_a_shift_and_grows_like_the_squared_shift() -> None:
    reference = normal(0, seed=1)
    psi = {shift: population_stability_index(reference, normal(shift, seed=2)) for shift in [0.0, 0.25, 0.5, 1.0]}

    assert psi[0.0] < 0.005
    assert psi[0.0] < psi[0.25] < psi[0.5] < psi[1.0]
    # For a mean shift d of a unit normal the symmetric divergence PSI estimates is d^2 (bins lose a little,
    # sampling adds about 0.02 at this size).
    for shift in [0.25, 0.5, 1.0]:
        assert psi[shift] == pytest.approx(shift**2, rel=0.2, abs=0.02)
    assert psi[0.25] < 0.1 and psi[1.0] > 0.25  # the rule of thumb's "stable" and "shifted"


def test_a_variance_shift_is_detected() -> None:
    reference, wider = normal(0, 1, seed=1), normal(0, 2, seed=2)
    # The CDFs of N(0, 1) and N(0, 4) are furthest apart where the densities cross, x^2 = 8 ln 2 / 3.
    crossing = np.sqrt(8 * np.log(2) / 3)
    expected_ks = stats.norm.cdf(crossing) - stats.norm.cdf(crossing / 2)

    assert population_stability_index(reference, wider) > 0.25
    assert ks_statistic(reference, wider) == pytest.approx(expected_ks, abs=KS_TOLERANCE)


def test_identical_samples_score_zero() -> None:
    values = normal(0, seed=1, size=500)

    assert population_stability_index(values, values.copy()) == 0.0
    assert ks_statistic(values, values.copy()) == 0.0


def test_psi_stays_finite_when_the_current_values_fill_one_bin() -> None:
    psi = population_stability_index(normal(0, seed=1, size=1000), np.full(100, 10.0))

    # Nine bins empty on the current side count as 1e-4 each: about 0.9 ln(0.1 / 1e-4) + ln(1 / 0.1).
    assert np.isfinite(psi)
    assert psi == pytest.approx(0.9 * np.log(0.1 / 1e-4) + 0.9 * np.log(1 / 0.1), rel=0.05)


def test_psi_detects_a_shift_in_a_discrete_feature() -> None:
    rng = np.random.default_rng(0)
    reference = (rng.random(N) < 0.3).astype(float)

    assert population_stability_index(reference, (rng.random(N) < 0.3).astype(float)) < 0.005
    assert population_stability_index(reference, (rng.random(N) < 0.6).astype(float)) > 0.25


def test_nans_are_dropped_and_too_few_values_are_refused() -> None:
    values = normal(0, seed=1, size=200)

    assert population_stability_index(np.r_[values, np.nan], values) == 0.0
    assert ks_statistic(values, np.r_[values, np.nan, np.nan]) == 0.0
    with pytest.raises(ValueError, match="current has 9 non-missing values; at least 10 are needed"):
        population_stability_index(values, np.r_[values[:9], np.nan])
    with pytest.raises(ValueError, match="reference has 0 non-missing values"):
        ks_statistic([np.nan], values)


def test_feature_drift_ranks_numeric_features_and_skips_the_rest() -> None:
    size = 2000
    reference = pd.DataFrame(
        {
            "steady": normal(0, seed=1, size=size),
            "moved": normal(0, seed=2, size=size),
            "slightly_moved": normal(0, seed=3, size=size),
            "sector": ["tech"] * size,
            "no_fundamentals": np.full(size, np.nan),
        }
    )
    current = pd.DataFrame(
        {
            "steady": normal(0, seed=4, size=size // 2),
            "moved": normal(1, seed=5, size=size // 2),
            "slightly_moved": normal(0.3, seed=6, size=size // 2),
            "sector": ["energy"] * (size // 2),
            "no_fundamentals": np.full(size // 2, np.nan),
        }
    )

    drift = feature_drift(reference, current, list(reference.columns), psi_threshold=0.25)

    assert list(drift.columns) == DRIFT_COLUMNS
    assert drift["feature"].tolist() == ["moved", "slightly_moved", "steady", "no_fundamentals"]
    assert drift["drifted"].tolist() == [True, False, False, False]
    assert drift[["reference_rows", "current_rows"]].iloc[0].tolist() == [size, size // 2]
    assert drift.iloc[-1][["psi", "ks"]].isna().all()
    assert drift.iloc[-1][["reference_rows", "current_rows"]].tolist() == [0, 0]
    with pytest.raises(ValueError, match=r"current features lack column\(s\) \['steady'\]"):
        feature_drift(reference, current.drop(columns="steady"), ["steady"], psi_threshold=0.25)


# --- Realised predictions --------------------------------------------------------------------------------------

D1, D2, D3, D4 = pd.bdate_range("2025-06-02", periods=4)


def prices() -> pd.DataFrame:
    """A trades every day; B skips day 2 (a halt). Day 4 is the last day of data."""
    rows = [(D1, "A", 100.0), (D2, "A", 101.0), (D3, "A", 102.0), (D4, "A", 103.0)]
    rows += [(D1, "B", 50.0), (D3, "B", 52.0), (D4, "B", 53.0)]
    frame = pd.DataFrame(rows, columns=["date", "ticker", "close"])
    return frame.assign(open=frame["close"], high=frame["close"], low=frame["close"], volume=1000.0)


def batch(as_of: pd.Timestamp, ticker: str, last_close: float, predicted_close: float, version: str) -> dict:
    return {
        "as_of": as_of,
        "ticker": ticker,
        "last_close": last_close,
        "predicted_return": predicted_close / last_close - 1,
        "predicted_close": predicted_close,
        "model_version": version,
        "feature_fingerprint": "abc",
    }


def test_join_realised_takes_each_tickers_next_row_and_drops_what_has_not_happened() -> None:
    predictions = pd.DataFrame(
        [
            batch(D1, "A", 100.0, 100.5, "v1"),
            batch(D1, "A", 100.0, 101.5, "v2"),  # a second model's prediction for the same day is kept
            batch(D1, "B", 50.0, 51.0, "v1"),  # B skips D2: realised by its next row, D3
            batch(D3, "A", 102.0, 102.0, "v1"),
            batch(D4, "A", 103.0, 104.0, "v1"),  # D5 has not happened yet
        ]
    ).assign(as_of=lambda frame: frame["as_of"].dt.strftime("%Y-%m-%d"))  # batch tables may carry text dates

    joined = join_realised(predictions, prices())

    assert (joined["ticker"] + joined["model_version"]).tolist() == ["Av1", "Av2", "Bv1", "Av1"]
    assert joined["realised_date"].tolist() == [D2, D2, D3, D4]
    assert joined["realised_close"].tolist() == [101.0, 101.0, 52.0, 103.0]
    assert joined["error"].to_numpy() == pytest.approx([-0.5, 0.5, -1.0, -1.0])
    assert joined["naive_error"].to_numpy() == pytest.approx([-1.0, -1.0, -2.0, -1.0])
    assert joined["return_error"].to_numpy() == pytest.approx([-0.005, 0.005, -0.02, -1 / 102])
    assert "feature_fingerprint" in joined.columns


def test_a_split_between_prediction_and_outcome_is_not_a_miss() -> None:
    split_prices = prices()
    after = (split_prices["ticker"] == "A") & (split_prices["date"] >= D2)
    split_prices.loc[after, "close"] /= 2.0  # 2-for-1 from D2 on
    actions = pd.DataFrame(
        {"ticker": ["A"], "ex_date": [D2], "kind": ["split"], "ratio": [2.0], "new_ticker": [np.nan]}
    )
    predictions = pd.DataFrame([batch(D1, "A", 100.0, 100.5, "v1")])

    joined = join_realised(predictions, split_prices, actions)

    assert joined["realised_close"].tolist() == [101.0]  # back on D1's share basis
    assert joined["error"].to_numpy() == pytest.approx([-0.5])


def test_join_realised_names_a_missing_column() -> None:
    with pytest.raises(ValueError, match=r"predictions: missing column\(s\) \['last_close'\]"):
        join_realised(pd.DataFrame([batch(D1, "A", 1.0, 1.0, "v1")]).drop(columns="last_close"), prices())


def test_daily_performance_pools_squared_errors_over_the_window() -> None:
    joined = pd.DataFrame(
        {
            "realised_date": [D1, D1, D2, D3, D3, D3],
            "predicted_return": [0.0, 0.0, 0.0, 0.01, 0.02, 0.03],
            "realised_return": [0.0, 0.0, 0.0, 0.01, 0.02, -0.03],
            "error": [1.0, 3.0, 2.0, 0.0, 0.0, 6.0],
            "naive_error": [2.0, 2.0, 2.0, 2.0, 2.0, 2.0],
            # The same errors on a $100 and a $1 stock: on price the first would decide alone.
            "return_error": [0.01, 3.0, 0.02, 0.0, 0.0, 0.06],
            "naive_return_error": [0.02, 2.0, 0.02, 0.02, 0.02, 0.02],
        }
    )

    performance = daily_performance(joined, window=2)

    assert list(performance.columns) == PERFORMANCE_COLUMNS
    assert performance["date"].tolist() == [D1, D2, D3]
    assert performance["n"].tolist() == [2, 1, 3]
    assert performance["rmse"].to_numpy() == pytest.approx([np.sqrt(5), 2.0, np.sqrt(12)])
    assert performance["rmse_vs_naive"].to_numpy() == pytest.approx([np.sqrt(5) / 2, 1.0, np.sqrt(3)])
    # Day 3 pools days 2 and 3: (4 + 36) / 4 rows, not the mean of the daily RMSEs (2 + sqrt 12) / 2.
    assert performance["rolling_rmse"].to_numpy() == pytest.approx([np.sqrt(5), np.sqrt(14 / 3), np.sqrt(10)])
    assert performance["rolling_naive_rmse"].to_numpy() == pytest.approx([2.0, 2.0, 2.0])
    assert performance["rolling_rmse_vs_naive"].iloc[-1] == pytest.approx(np.sqrt(10) / 2)
    assert performance["rolling_days"].tolist() == [1, 2, 2]
    assert performance["return_rmse_vs_naive"].iloc[0] == pytest.approx(np.sqrt((1e-4 + 9) / (4e-4 + 4)))
    assert performance["rolling_return_rmse_vs_naive"].iloc[-1] == pytest.approx(np.sqrt(40e-4 / 16e-4))
    # Day 3 ranks three tickers: predicted 1 %, 2 %, 3 %; realised 1 %, 2 %, -3 %.
    assert performance["ic"].iloc[-1] == pytest.approx(np.corrcoef([0.01, 0.02, 0.03], [0.01, 0.02, -0.03])[0, 1])
    assert performance["rank_ic"].iloc[-1] == pytest.approx(-0.5)  # ranks 1, 2, 3 against 2, 3, 1
    assert performance["ic"].iloc[:2].isna().all(), "fewer than three tickers rank nothing"


def test_daily_performance_of_nothing_is_an_empty_frame() -> None:
    empty = join_realised(pd.DataFrame([batch(D4, "A", 103.0, 104.0, "v1")]), prices())

    performance = daily_performance(empty, window=20)

    assert performance.empty
    assert list(performance.columns) == PERFORMANCE_COLUMNS


# --- The verdict -----------------------------------------------------------------------------------------------

THRESHOLDS = MonitorThresholds()


def performance_of(days: int, rmse_vs_naive: float) -> pd.DataFrame:
    """`days` realised days whose errors are `rmse_vs_naive` times the naive errors."""
    dates = pd.bdate_range("2025-01-02", periods=days)
    joined = pd.DataFrame(
        {
            "realised_date": dates,
            "predicted_return": 0.0,
            "realised_return": 0.0,
            "error": rmse_vs_naive,
            "naive_error": 1.0,
            "return_error": rmse_vs_naive / 100,
            "naive_return_error": 0.01,
        }
    )
    return daily_performance(joined, window=THRESHOLDS.window_days)


def drift_of(drifted: int, total: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "feature": [f"f{i}" for i in range(total)],
            "psi": [0.5] * drifted + [0.01] * (total - drifted),
            "ks": 0.1,
            "reference_rows": 1000,
            "current_rows": 1000,
            "drifted": [True] * drifted + [False] * (total - drifted),
        }
    )


HEALTHY = {
    "performance": performance_of(30, 0.98),
    "drift": drift_of(1, 10),
    "data_age_days": 1,
    "model_age_days": 10,
    "backtest_return_rmse_vs_naive": 0.98,
}


def verdict(**changes) -> tuple[list[str], bool]:
    report = assess(**{**HEALTHY, **changes}, thresholds=THRESHOLDS)
    return [alert.kind for alert in report.alerts], report.retrain


def test_a_healthy_model_raises_no_alert() -> None:
    report = assess(**HEALTHY, thresholds=THRESHOLDS)

    assert report.alerts == []
    assert report.retrain is False
    assert report.summary["rolling_return_rmse_vs_naive"] == pytest.approx(0.98)
    assert report.summary["drifted_share"] == pytest.approx(0.1)


@pytest.mark.parametrize(
    ("changes", "kinds"),
    [
        ({"performance": performance_of(30, 1.05)}, ["performance", "decay"]),
        ({"backtest_return_rmse_vs_naive": 0.95}, ["decay"]),  # 0.98 / 0.95 = 1.03: the edge decayed, still beats naive
        ({"drift": drift_of(5, 10)}, ["drift"]),
        ({"model_age_days": 91}, ["model_age"]),
    ],
)
def test_each_retraining_alert_fires_on_its_own_and_triggers_retraining(changes: dict, kinds: list[str]) -> None:
    assert verdict(**changes) == (kinds, True)


def test_stale_data_alerts_but_does_not_retrain() -> None:
    assert verdict(data_age_days=5) == (["freshness"], False)
    assert verdict(data_age_days=4) == ([], False)


def test_performance_waits_for_min_days_and_decay_for_a_backtest_figure() -> None:
    assert verdict(performance=performance_of(4, 1.5)) == ([], False)
    assert verdict(performance=performance_of(5, 1.5)) == (["performance", "decay"], True)
    assert verdict(performance=performance_of(30, 1.01), backtest_return_rmse_vs_naive=None) == ([], False)
    assert verdict(performance=performance_of(30, 1.01)) == (["decay"], True)


def test_nothing_realised_and_no_features_raise_no_alert() -> None:
    report = assess(
        **{**HEALTHY, "performance": performance_of(0, 1.0), "drift": drift_of(0, 0)}, thresholds=THRESHOLDS
    )

    assert report.alerts == []
    assert report.summary["realised_days"] == 0
    assert report.summary["rolling_return_rmse_vs_naive"] is None


def test_features_without_statistics_do_not_count_towards_the_drifted_share() -> None:
    drift = pd.concat([drift_of(2, 4), drift_of(0, 6).assign(psi=np.nan, ks=np.nan)], ignore_index=True)

    assert verdict(drift=drift) == (["drift"], True)  # 2 of 4 assessed, not 2 of 10


def test_thresholds_refuse_min_days_beyond_the_window() -> None:
    with pytest.raises(ValueError, match=r"min_days \(30\) must not exceed window_days \(20\)"):
        MonitorThresholds(min_days=30)


def test_join_realised_refuses_a_prediction_without_a_date() -> None:
    predictions = pd.DataFrame([batch(D1, "A", 100.0, 100.5, "v1"), batch(D1, "A", 100.0, 100.5, "v1")])
    predictions.loc[1, "as_of"] = None

    with pytest.raises(ValueError, match="predictions: column 'as_of' has 1 missing or unreadable dates"):
        join_realised(predictions, prices())


def decisions_of(days: int, net_return: float, benchmark_return: float) -> pd.DataFrame:
    """Realised decision quality (``realised_decisions``' columns that are judged) of constant daily returns."""
    return pd.DataFrame({"net_return": [net_return] * days, "benchmark_return": [benchmark_return] * days})


def test_decisions_trailing_the_basket_alert_for_people_not_for_a_retrain() -> None:
    # Over the 20-day window: 1.001^20 = 1.020 against 1.004^20 = 1.083, a shortfall of 6.3 % > 5 %.
    trailing = decisions_of(30, 0.001, 0.004)
    report = assess(**HEALTHY, thresholds=THRESHOLDS, decision_quality=trailing)

    assert [alert.kind for alert in report.alerts] == ["decisions"] and report.retrain is False
    assert "the decisions trail the equal-weight basket of their tickers by 6.3% over the last 20 realised days" in (
        report.alerts[0].message
    )
    assert report.summary["decision_shortfall"] == pytest.approx(1.004**20 - 1.001**20)
    assert verdict(decision_quality=decisions_of(30, 0.002, 0.004)) == ([], False)  # 4.1 %: within the limit
    assert verdict(decision_quality=decisions_of(4, -0.05, 0.01)) == ([], False)  # fewer than min_days


def noisy_performance(true_ratio: float, *, seed: int, days: int = 20, tickers: int = 40) -> pd.DataFrame:
    """`days` realised days of independent errors: the model's `true_ratio` times as spread as naive's."""
    rng = np.random.default_rng(seed)
    naive = 0.02 * rng.standard_normal(days * tickers)
    model = 0.02 * true_ratio * rng.standard_normal(days * tickers)
    joined = pd.DataFrame(
        {
            "realised_date": np.repeat(pd.bdate_range("2025-01-02", periods=days), tickers),
            "predicted_return": 0.0,
            "realised_return": 0.0,
            "error": model,
            "naive_error": naive,
            "return_error": model,
            "naive_return_error": naive,
        }
    )
    return daily_performance(joined, window=THRESHOLDS.window_days)


def test_performance_and_decay_alert_only_on_an_excess_beyond_chance() -> None:
    # As good as naive and as its backtest, unlucky over the month: past both limits by chance, which the test of the
    # daily losses sees.
    unlucky = next(
        frame
        for frame in (noisy_performance(1.0, seed=seed) for seed in range(100))
        if frame["rolling_return_rmse_vs_naive"].iloc[-1] > 1.03
    )
    report = assess(**{**HEALTHY, "performance": unlucky, "backtest_return_rmse_vs_naive": 1.0}, thresholds=THRESHOLDS)
    assert report.alerts == []
    assert report.summary["performance_p_value"] >= THRESHOLDS.alert_alpha
    assert report.summary["decay_p_value"] >= THRESHOLDS.alert_alpha

    # Truly 30 % worse: both fire, each with its p-value in the message.
    worse = assess(**{**HEALTHY, "performance": noisy_performance(1.3, seed=1)}, thresholds=THRESHOLDS)
    assert [alert.kind for alert in worse.alerts] == ["performance", "decay"]
    assert all("one-sided p = " in alert.message for alert in worse.alerts)
    assert worse.summary["performance_p_value"] < THRESHOLDS.alert_alpha
