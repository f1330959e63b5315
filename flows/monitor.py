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
    Parameter,
    card,
    current,
    exit_hook,
    namespaced_event_name,
    project,
    retry,
    schedule,
    step,
    trigger_on_finish,
)
from metaflow.integrations import ArgoEvent

from stockcast.core.engines import engines
from stockcast.core.events import RETRAIN_EVENT
from stockcast.core.params import parse_optional_date
from stockcast.core.storage import STORAGE_OUTAGE_HOOK
from stockcast.flowbase import SnapshotFlow, only_storage_faults_retried
from stockcast.operate.cards import monitoring_card
from stockcast.operate.config import OPERATE_CONFIG_FILE, OperateConfig, parse_operate_config
from stockcast.operate.watch import (
    Measurement,
    backtest_expectation,
    judge_day,
    last_training_data_end,
    measure,
    training_data_end,
)


# Deployed: after every batch prediction, and every weekday evening even when no data came (freshness is watched).
@schedule(cron="0 23 * * 1-5", timezone="Etc/UTC")
@trigger_on_finish(flow="BatchPredictFlow")
@exit_hook(on_error=[STORAGE_OUTAGE_HOOK])
@engines
@project(name="stockcast")
class MonitorFlow(SnapshotFlow):
    """Realised performance, drift, freshness and age of the champion; alerts and the retraining trigger."""

    config = Config(
        "config", default=lambda _ctx: str(OPERATE_CONFIG_FILE), parser=parse_operate_config, help="operations TOML"
    )
    today = Parameter(
        "today", default="", help="The date treated as today for freshness and age (YYYY-MM-DD); empty: the real date."
    )

    @step
    def start(self):
        """Pin today, the snapshot and the champion being watched."""
        self.settings = OperateConfig.model_validate(self.config)
        self.as_of_today = parse_optional_date("today", self.today) or pd.Timestamp.today().normalize()
        self.pin_snapshot()
        self.champion = self.branch_registry().require_champion()
        self.training_end = training_data_end(self.champion)
        self.next(self.measure)

    @step
    def measure(self):
        """Score the champion's past predictions and decisions on the closes that followed; measure input drift."""
        measured = measure(
            self.champion,
            self.snapshot(),
            self.branch_registry().store,
            current.branch_name,
            self.settings.monitor,
            training_end=self.training_end,
            cost=self.settings.decisions.cost,
        )
        self.realised, self.performance, self.drift = measured.realised, measured.performance, measured.drift
        self.decision_quality = measured.decisions
        self.next(self.assess)

    @card(type="blank", id="monitoring")
    @retry(times=2, minutes_between_retries=0)
    @only_storage_faults_retried
    @step
    def assess(self):
        """Compare with the thresholds; record alerts and call for retraining when the champion has decayed. Score the
        shadows on the closes that followed, beside the champion; promote one whose realised errors beat the
        champion's and naive's beyond chance (packaged first when it has no Bento)."""
        day = judge_day(
            Measurement(self.realised, self.performance, self.drift, self.decision_quality),
            self.champion,
            self.settings.monitor,
            registry=self.branch_registry(),
            snapshot=self.snapshot(),
            data_end=self.data_end,
            training_end=self.training_end,
            today=self.as_of_today,
            last_trained_on=last_training_data_end(current.branch_name),
            run_pathspec=f"{current.flow_name}/{current.run_id}",
        )
        verdict = day.verdict
        self.report, self.retrain, self.retrain_reason = verdict.report, verdict.retrain, verdict.reason
        self.alerts_url = verdict.alerts_url
        self.shadow_scores, self.shadow_promotion = day.shadow_scores, day.shadow_promotion
        self.backtest_return_rmse_vs_naive = backtest_expectation(self.champion)
        current.card["monitoring"].extend(
            monitoring_card(
                self.performance,
                self.drift,
                self.report,
                backtest_return_rmse_vs_naive=self.backtest_return_rmse_vs_naive,
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
        for shadow in self.shadow_scores.itertuples():
            print(
                f"Shadow {shadow.version} ({shadow.role}): return RMSE {shadow.return_rmse:.4g} against the champion's "
                f"{shadow.champion_return_rmse:.4g} over {shadow.n_days} realised days"
            )
        if self.shadow_promotion:
            print(self.shadow_promotion)
        verdict = "retrain the champion" if self.retrain else "keep the champion"
        print(f"Monitoring {self.champion.version} on {self.as_of_today.date()}: {verdict} ({self.retrain_reason}).")
        print(f"Card: python flows/monitor.py card view {current.run_id}/assess --id monitoring")


if __name__ == "__main__":
    MonitorFlow()
