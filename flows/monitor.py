"""MonitorFlow: is the champion still trustworthy? Realised accuracy against the naive baseline and the backtest's
promise, input drift against the training window, data freshness and model age; alerts and a retraining trigger.

    python flows/monitor.py run [--snapshot IngestFlow/<run_id>] [--today YYYY-MM-DD]

Thresholds are in ``configs/operate.toml``. Alerts are recorded beside the registry. When they call for
retraining (and the last training run is not too recent), the run sets its ``retrain`` artefact and publishes the
``retrain`` event of its project branch: on Argo Workflows that starts TrainFlow; on a laptop the daily loop
(``stockcast-day``) reads the artefact and runs TrainFlow itself. Deployed, the flow runs after every
BatchPredictFlow of its branch, and on a weekday schedule so that stale data is noticed even when none arrives.
"""

import pandas as pd
from metaflow import (
    Config,
    FlowSpec,
    Parameter,
    card,
    current,
    namespaced_event_name,
    project,
    resources,
    retry,
    schedule,
    step,
    trigger_on_finish,
)
from metaflow.integrations import ArgoEvent

from features import get_feature_set
from stockcast.cards import monitoring_card
from stockcast.config import OPERATE_CONFIG_FILE, OperateConfig, parse_operate_config
from stockcast.data.snapshot import latest_snapshot, load_snapshot
from stockcast.events import RETRAIN_EVENT
from stockcast.monitor_inputs import (
    calibrated_drift,
    days_between,
    drift_windows,
    last_training_data_end,
    realised_predictions,
    record_alerts,
    retrain_call,
)
from stockcast.monitoring import assess, daily_performance
from stockcast.params import parse_optional_date
from stockcast.registry import Registry


# Deployed: after every batch prediction, and every weekday evening even when no data came (freshness is watched).
@schedule(cron="0 23 * * 1-5", timezone="Etc/UTC")
@trigger_on_finish(flow="BatchPredictFlow")
@project(name="stockcast")
class MonitorFlow(FlowSpec):
    """Realised performance, drift, freshness and age of the champion; alerts and the retraining trigger."""

    config = Config(
        "config", default=lambda _ctx: str(OPERATE_CONFIG_FILE), parser=parse_operate_config, help="operations TOML"
    )
    snapshot_run = Parameter(
        "snapshot", default="", help="IngestFlow run pathspec to monitor with; empty means the branch's latest."
    )
    today = Parameter(
        "today", default="", help="The date treated as today for freshness and age (YYYY-MM-DD); empty: the real date."
    )

    @step
    def start(self):
        """Pin today, the snapshot and the champion being watched."""
        self.as_of_today = parse_optional_date("today", self.today) or pd.Timestamp.today().normalize()
        snapshot = load_snapshot(self.snapshot_run) if self.snapshot_run else latest_snapshot(current.branch_name)
        self.snapshot_pathspec = snapshot.run_pathspec
        self.data_end = snapshot.summary["date_range"][1]
        self.champion = Registry(current.branch_name).require_champion()
        self.training_end = load_snapshot(self.champion.snapshot_run).summary["date_range"][1]
        self.next(self.measure)

    @resources(memory=8000, cpu=2)
    @step
    def measure(self):
        """Score the champion's past predictions on the closes that followed, and measure input drift."""
        from stockcast.batch import load_predictions  # it loads scikit-learn (for serving): only this step needs it

        settings = OperateConfig.model_validate(self.config).monitor
        snapshot = load_snapshot(self.snapshot_pathspec)
        published = load_predictions(Registry(current.branch_name).store, current.branch_name)
        self.realised = realised_predictions(published, snapshot.prices, self.champion.version)
        self.performance = daily_performance(self.realised, window=settings.window_days)
        feature_set = get_feature_set(self.champion.feature_set)
        windows = drift_windows(
            snapshot.prices,
            snapshot.financials,
            feature_set,
            training_end=pd.Timestamp(self.training_end),
            reference_days=settings.reference_window_days,
            current_days=settings.drift_window_days,
            calibration_windows=settings.calibration_windows,
        )
        self.drift = calibrated_drift(windows, feature_set.feature_columns, psi_threshold=settings.psi_threshold)
        self.next(self.assess)

    @card(type="blank", id="monitoring")
    @retry(times=2, minutes_between_retries=0)
    @step
    def assess(self):
        """Compare with the thresholds; record alerts and call for retraining when the champion has decayed."""
        settings = OperateConfig.model_validate(self.config).monitor
        self.backtest_rmse_vs_naive = self.champion.metrics.get("rmse_vs_naive")
        self.report = assess(
            self.performance,
            self.drift,
            data_age_days=days_between(self.data_end, self.as_of_today),
            model_age_days=days_between(self.training_end, self.as_of_today),
            backtest_rmse_vs_naive=self.backtest_rmse_vs_naive,
            thresholds=settings,
        )
        self.retrain, self.retrain_reason = retrain_call(
            self.report,
            data_end=self.data_end,
            last_trained_on=last_training_data_end(current.branch_name),
            cooldown_days=settings.retrain_cooldown_days,
        )
        self.alerts_url = record_alerts(
            Registry(current.branch_name).store,
            current.branch_name,
            self.as_of_today,
            f"{current.flow_name}/{current.run_id}",
            self.report,
        )
        current.card["monitoring"].extend(
            monitoring_card(
                self.performance, self.drift, self.report, backtest_rmse_vs_naive=self.backtest_rmse_vs_naive
            )
        )
        self.next(self.end)

    @step
    def end(self):
        """Say whether the champion is trusted; call for retraining (published once, here, after every retry)."""
        for alert in self.report.alerts:
            print(f"ALERT [{alert.kind}] {alert.message}")
        if self.retrain:
            # Starts TrainFlow when deployed on Argo Workflows; a no-op elsewhere (the daily loop takes over).
            ArgoEvent(namespaced_event_name(RETRAIN_EVENT)).safe_publish(payload={"reason": self.retrain_reason})
        verdict = "retrain the champion" if self.retrain else "keep the champion"
        print(f"Monitoring {self.champion.version} on {self.as_of_today.date()}: {verdict} ({self.retrain_reason}).")
        print(f"Card: python flows/monitor.py card view {current.run_id}/assess --id monitoring")


if __name__ == "__main__":
    MonitorFlow()
