"""The library behind MonitorFlow: what it compares, gathered from the datastore (the champion's realised
predictions, the feature windows drift is measured between, how old the data and the model are), the verdict, and
the alerts it records. The statistics themselves are in ``stockcast.operate.monitoring``; this module decides which
rows they see. ``measure`` and ``judge`` are MonitorFlow's two working steps.

Drift compares the feature rows of the *current* window (the snapshot's last days) with those of the *reference*
window (the last days of the data the champion was trained on). Both come from one ``build_features`` call on the
current snapshot: snapshots only ever grow or correct rows, so the training window's rows are in it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pandas as pd

from features import FeatureSet, build_features, get_feature_set
from stockcast.core.registry import ModelRecord, Registry
from stockcast.core.runs import successful_runs
from stockcast.core.storage import ObjectStore
from stockcast.data.snapshot import Snapshot, load_snapshot
from stockcast.operate.decisions import realised_decisions
from stockcast.operate.monitoring import (
    MonitorReport,
    MonitorThresholds,
    assess,
    daily_performance,
    feature_drift,
    join_realised,
    psi_reference,
)
from stockcast.operate.shadows import judge_shadows
from stockcast.operate.tables import load_decisions, load_predictions
from stockcast.train.candidates import NAIVE_FACTORY

TRAIN_FLOW = "TrainFlow"

ALERTS_PREFIX = "alerts"


def backtest_expectation(champion: ModelRecord) -> float | None:
    """The champion's backtest return RMSE over naive's: what monitoring expects of it. Models registered before the
    scale-free comparison only recorded the ratio on price, the nearest figure there is for them."""
    return champion.metrics.get("rmse_return_vs_naive", champion.metrics.get("rmse_vs_naive"))


def realised_predictions(
    predictions: pd.DataFrame, prices: pd.DataFrame, model_version: str, actions: pd.DataFrame | None = None
) -> pd.DataFrame:
    """The published predictions of ``model_version`` whose next close is known, joined with it (on the as-of day's
    share basis when a corporate action came in between)."""
    return join_realised(predictions[predictions["model_version"] == model_version], prices, actions)


@dataclass(frozen=True)
class DriftWindows:
    """Warm feature rows of the windows drift is measured between.

    ``reference`` is the last days of the training data, ``current`` the snapshot's last days, and ``calibration``
    the windows of the current window's length that came before the reference window: how far a window of that
    length usually sits from the reference when nothing has changed.
    """

    reference: pd.DataFrame
    current: pd.DataFrame
    calibration: list[pd.DataFrame]


def drift_windows(
    prices: pd.DataFrame,
    financials: pd.DataFrame,
    feature_set: FeatureSet,
    *,
    training_end: pd.Timestamp,
    reference_days: int,
    current_days: int,
    calibration_windows: int,
    actions: pd.DataFrame | None = None,
) -> DriftWindows:
    """The reference window (the last ``reference_days`` trading days up to ``training_end``), the current window
    (the snapshot's last ``current_days`` trading days) and up to ``calibration_windows`` consecutive windows of
    ``current_days`` just before the reference window."""
    features = build_features(prices, financials, actions=actions, feature_set=feature_set)
    features = features[features["is_warm"].eq(True)]
    dates = pd.Index(sorted(features["date"].unique()))
    trained_on = dates[dates <= training_end]
    earlier = trained_on[:-reference_days]
    starts = range(len(earlier) - current_days, -1, -current_days)
    calibration = [
        features[features["date"].isin(earlier[start : start + current_days])]
        for start in list(starts)[:calibration_windows]
    ]
    return DriftWindows(
        reference=features[features["date"].isin(trained_on[-reference_days:])],
        current=features[features["date"].isin(dates[-current_days:])],
        calibration=calibration,
    )


def calibrated_drift(windows: DriftWindows, feature_columns: Sequence[str], *, psi_threshold: float) -> pd.DataFrame:
    """``feature_drift`` of the current window, where a feature counts as drifted only when its PSI reaches
    ``psi_threshold`` and exceeds the highest PSI any calibration window reached (``usual_psi``): its usual distance.

    Why: a few days of a slow feature (days since the last report, a 21-day trend) are always far from half a
    year of it, so a fixed PSI threshold flags them every day; what signals a new regime is a window further from
    the reference than windows of the same length ever were while the model was being trained.
    """
    drift = feature_drift(windows.reference, windows.current, feature_columns, psi_threshold=psi_threshold)
    assessed = list(drift.loc[drift["psi"].notna(), "feature"])
    # Each window as one array (a column per assessed feature): read once, not once per feature.
    reference = windows.reference[assessed].to_numpy(dtype=float, na_value=np.nan)
    calibration = [window[assessed].to_numpy(dtype=float, na_value=np.nan) for window in windows.calibration]
    usual = {
        feature: _usual_psi(reference[:, column], [window[:, column] for window in calibration])
        for column, feature in enumerate(assessed)
    }
    usual_psi = drift["feature"].map(usual).to_numpy(dtype=float)
    psi = drift["psi"].to_numpy(dtype=float)
    beyond_usual = np.isnan(usual_psi) | (psi > usual_psi)  # no calibration window: the fixed threshold alone
    return drift.assign(usual_psi=usual_psi, drifted=(psi >= psi_threshold) & beyond_usual)


def _usual_psi(reference_values: np.ndarray, calibration: list[np.ndarray]) -> float:
    """The largest PSI of a feature among the calibration windows that have enough values (NaN if none has)."""
    try:
        reference = psi_reference(reference_values)
    except ValueError:  # too few reference values to bin
        return float("nan")
    largest = float("nan")
    for window in calibration:
        try:
            psi = reference.psi(window)
        except ValueError:  # too few values to bin, as feature_drift treats it
            continue
        largest = psi if np.isnan(largest) else max(largest, psi)
    return largest


def days_between(earlier: str | pd.Timestamp, later: str | pd.Timestamp) -> int:
    """Calendar days from ``earlier`` to ``later`` (dates, time of day ignored).

    Ages are measured on the data's calendar: the data's age from the snapshot's last day, the model's from the last
    day of its training data (not its registration time), so replaying past days ages a model as it would have aged.
    """
    return int((pd.Timestamp(later).normalize() - pd.Timestamp(earlier).normalize()).days)


def last_training_data_end(branch: str) -> str | None:
    """The last day of the data the branch's latest successful TrainFlow run trained on (None before the first)."""
    runs = successful_runs(TRAIN_FLOW, branch)
    return load_snapshot(runs[0].data.snapshot_pathspec).last_day if runs else None


def retrain_call(
    report: MonitorReport, *, data_end: str, last_trained_on: str | None, cooldown_days: int
) -> tuple[bool, str]:
    """Whether to call for a retrain now, and why: when the alerts say so, unless the latest training run trained on
    data ending fewer than ``cooldown_days`` calendar days before the current data's end."""
    if not report.retrain:
        return False, "no alert calls for retraining"
    if last_trained_on is not None and days_between(last_trained_on, data_end) < cooldown_days:
        return False, (
            f"alerts call for retraining, but the latest training run trained on data up to {last_trained_on}, "
            f"fewer than {cooldown_days} days before {data_end}: not retraining again yet"
        )
    return True, "; ".join(alert.message for alert in report.alerts if alert.kind != "freshness")


def record_alerts(
    store: ObjectStore, branch: str, today: pd.Timestamp, run_pathspec: str, report: MonitorReport
) -> str | None:
    """Write the report's alerts, once per monitoring run, under ``alerts/<branch>/``; return where (None if none)."""
    if not report.alerts:
        return None
    key = f"{ALERTS_PREFIX}/{branch}/{today:%Y-%m-%d}/{run_pathspec.replace('/', '-')}.json"
    payload = {
        "run": run_pathspec,
        "today": f"{today:%Y-%m-%d}",
        "recorded_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "retrain": report.retrain,
        "alerts": [
            {"kind": alert.kind, "message": alert.message, "value": alert.value, "threshold": alert.threshold}
            for alert in report.alerts
        ],
    }
    store.put(key, json.dumps(payload, indent=2, default=str).encode())
    return store.url(key)


@dataclass(frozen=True)
class Measurement:
    """What MonitorFlow measured of the champion: its realised predictions, realised performance per day against the
    naive baseline's, the drift of every feature against the training window, and what its decisions earned."""

    realised: pd.DataFrame
    performance: pd.DataFrame
    drift: pd.DataFrame
    decisions: pd.DataFrame


@dataclass(frozen=True)
class Verdict:
    """MonitorFlow's conclusion: the report (alerts and figures), whether to call for a retrain and why, and where
    the alerts were recorded (None when there were none)."""

    report: MonitorReport
    retrain: bool
    reason: str
    alerts_url: str | None


def age_origin(champion: ModelRecord, training_end: str, last_trained_on: str | None) -> str:
    """The day a champion's age counts from: the last day of the data it was trained on; for the naive baseline,
    which learns nothing from data, the last day of the data of the branch's latest training run, which found nothing
    better. So a learned champion is refreshed as it ages, and a naive one is re-examined every
    ``max_model_age_days`` (not retrained again at every cooldown: a refresh of naive is naive)."""
    if champion.candidate.get("factory") == NAIVE_FACTORY and last_trained_on is not None:
        return max(training_end, last_trained_on)
    return training_end


def training_data_end(record: ModelRecord) -> str:
    """The last day of the data ``record`` was trained on: the model's age is counted from it (read from its
    snapshot for models registered before records carried it)."""
    return record.data_end or load_snapshot(record.snapshot_run).last_day


def measure(
    champion: ModelRecord,
    snapshot: Snapshot,
    store: ObjectStore,
    branch: str,
    thresholds: MonitorThresholds,
    *,
    training_end: str,
    cost: float,
) -> Measurement:
    """Score the champion's published predictions on the closes that followed, measure input drift between the
    snapshot's last days and the last months of its training data, and realise its published decisions (net of
    ``cost`` per unit of turnover)."""
    published = load_predictions(store, branch)
    realised = realised_predictions(published, snapshot.prices, champion.version, snapshot.actions)
    feature_set = get_feature_set(champion.feature_set)
    windows = drift_windows(
        snapshot.prices,
        snapshot.financials,
        feature_set,
        training_end=pd.Timestamp(training_end),
        reference_days=thresholds.reference_window_days,
        current_days=thresholds.drift_window_days,
        calibration_windows=thresholds.calibration_windows,
        actions=snapshot.actions,
    )
    return Measurement(
        realised=realised,
        performance=daily_performance(realised, window=thresholds.window_days),
        drift=calibrated_drift(windows, feature_set.feature_columns, psi_threshold=thresholds.psi_threshold),
        decisions=realised_decisions(
            load_decisions(store, branch), snapshot.prices, snapshot.actions, model_version=champion.version, cost=cost
        ),
    )


def judge(
    performance: pd.DataFrame,
    drift: pd.DataFrame,
    decisions: pd.DataFrame,
    champion: ModelRecord,
    thresholds: MonitorThresholds,
    *,
    data_end: str,
    training_end: str,
    today: pd.Timestamp,
    last_trained_on: str | None,
    store: ObjectStore,
    branch: str,
    run_pathspec: str,
) -> Verdict:
    """Compare what ``measure`` measured with the thresholds, decide whether to call for a retrain (respecting the
    cooldown after the branch's latest training run, which trained on data up to ``last_trained_on``) and record the
    alerts."""
    report = assess(
        performance,
        drift,
        data_age_days=days_between(data_end, today),
        model_age_days=days_between(age_origin(champion, training_end, last_trained_on), today),
        backtest_return_rmse_vs_naive=backtest_expectation(champion),
        thresholds=thresholds,
        decision_quality=decisions,
    )
    retrain, reason = retrain_call(
        report,
        data_end=data_end,
        last_trained_on=last_trained_on,
        cooldown_days=thresholds.retrain_cooldown_days,
    )
    return Verdict(report, retrain, reason, record_alerts(store, branch, today, run_pathspec, report))


@dataclass(frozen=True)
class DayVerdict:
    """Monitoring's conclusions on a day: the champion's verdict, its shadows' scores, and the reason a shadow
    replaced it (empty when none did)."""

    verdict: Verdict
    shadow_scores: pd.DataFrame
    shadow_promotion: str


def judge_day(
    measured: Measurement,
    champion: ModelRecord,
    thresholds: MonitorThresholds,
    *,
    registry: Registry,
    snapshot: Snapshot,
    data_end: str,
    training_end: str,
    today: pd.Timestamp,
    last_trained_on: str | None,
    run_pathspec: str,
    promote: Callable[..., None] | None = None,
) -> DayVerdict:
    """MonitorFlow's assess step: the champion's verdict on what ``measure`` measured (``judge``: alerts and the
    retraining call), then its shadows scored on the snapshot's closes and the best one promoted when it earned it
    (``stockcast.operate.shadows.judge_shadows``, which ``promote`` is handed to)."""
    verdict = judge(
        measured.performance,
        measured.drift,
        measured.decisions,
        champion,
        thresholds,
        data_end=data_end,
        training_end=training_end,
        today=today,
        last_trained_on=last_trained_on,
        store=registry.store,
        branch=registry.branch,
        run_pathspec=run_pathspec,
    )
    scores, promotion = judge_shadows(registry, snapshot, champion, thresholds, promote=promote)
    return DayVerdict(verdict, scores, promotion)
