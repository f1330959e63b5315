"""BatchPredictFlow: tomorrow's close for every ticker from the champion, published as a versioned table, and the
buy / sell / hold decisions taken on it; the shadows' tables beside it (``stockcast.operate.shadows``).

    python flows/predict.py run [--snapshot IngestFlow/<run_id>] [--model v<run_id>] [--service http://...]

The snapshot defaults to the branch's latest, the model to the branch's champion. The table goes to
``<datastore root>/stockcast/predictions/<branch>/<as_of>/<model version>.csv``, once per as-of date and model.
Deployed on Argo Workflows, the flow starts whenever IngestFlow finishes on the same project branch.
"""

from metaflow import Config, Parameter, card, current, exit_hook, project, retry, step, trigger_on_finish

from stockcast.core.engines import engines
from stockcast.core.storage import STORAGE_OUTAGE_HOOK
from stockcast.flowbase import SnapshotFlow, only_storage_faults_retried
from stockcast.operate.cards import decisions_card
from stockcast.operate.config import OPERATE_CONFIG_FILE, OperateConfig, parse_operate_config

# stockcast.serve.batch loads scikit-learn and CatBoost, about two seconds in every process that imports it: the
# steps that use it import it, so that the run's other processes (the card, the end step) start at once.


@trigger_on_finish(flow="IngestFlow")
@exit_hook(on_error=[STORAGE_OUTAGE_HOOK])
@engines
@project(name="stockcast")
class BatchPredictFlow(SnapshotFlow):
    """Daily batch prediction with the champion, and the decisions taken on it."""

    config = Config(
        "config", default=lambda _ctx: str(OPERATE_CONFIG_FILE), parser=parse_operate_config, help="operations TOML"
    )
    model_version = Parameter("model", default="", help="Registry version to predict with; empty means the champion.")
    service_url = Parameter(
        "service",
        default="",
        help="Base URL of a deployed stockcast service; when set, decisions use its /predict answers, not the table.",
    )

    @step
    def start(self):
        """Pin the snapshot and the model, and refuse a pair that does not go together."""
        from stockcast.serve.batch import pin_model

        self.settings = OperateConfig.model_validate(self.config)
        snapshot = self.pin_snapshot()
        self.model_record = pin_model(self.branch_registry(), self.model_version, snapshot)
        self.next(self.predict)

    @step
    def predict(self):
        """Every ticker's next close, by the code path the HTTP service answers with; a model trained on another
        feature-set version than this code computes is refused here, naming both."""
        from stockcast.serve.batch import predict_snapshot

        self.predictions = predict_snapshot(self.model_record, self.snapshot())
        self.next(self.publish)

    @retry(times=2, minutes_between_retries=0)
    @only_storage_faults_retried
    @step
    def publish(self):
        """Write the table once per (as-of date, model); a table already published is kept as it was. Predict with the
        shadows too (the previous champion, the latest unpromoted challenger) and publish their tables beside it:
        MonitorFlow scores them on the closes that follow; nothing acts on them."""
        from stockcast.operate.shadows import publish_day

        registry = self.branch_registry()
        day = publish_day(self.predictions, registry, self.snapshot())
        # Decisions and monitoring both use the table of record: the one published first for this day and model.
        publication = day.champion
        self.predictions, self.predictions_url, self.published = publication.table, publication.url, publication.written
        self.shadow_tables = day.shadows
        print(f"{'Published' if publication.written else 'Already published, kept'}: {publication.url}")
        for shadow in self.shadow_tables:
            print(f"Shadow {shadow['version']} ({shadow['role']}): {shadow['outcome']}")
        self.next(self.decide)

    @card(type="blank", id="decisions")
    @step
    def decide(self):
        """Buy / sell / hold on today's predictions, given the positions the previous day's run decided on, published
        once per day and model beside the predictions; and the same rule backtested on the champion's walk-forward
        predictions against buy-and-hold and a momentum rule."""
        from stockcast.operate.decisions import compare_strategies, decide_today, walk_forward_predictions
        from stockcast.operate.tables import previous_positions

        rule = self.settings.decisions
        today = decide_today(
            self.predictions,
            self.model_record,
            rule,
            held=previous_positions(current.branch_name, self.predictions["as_of"].max()),
            branch=current.branch_name,
            store=self.branch_registry().store,
            service_url=self.service_url,
        )
        self.decisions, self.decisions_url = today.table, today.url
        self.strategies = compare_strategies(walk_forward_predictions(self.model_record), rule)
        print(f"{'Published' if today.written else 'Already published, kept'}: {today.url}")
        current.card["decisions"].extend(decisions_card(self.strategies, self.decisions, rule))
        self.next(self.end)

    @step
    def end(self):
        """Say what was predicted and decided, and where to look."""
        as_of = self.predictions["as_of"].max().date()
        counts = self.decisions["action"].value_counts().to_dict()
        print(f"{len(self.predictions)} tickers predicted as of {as_of} by {self.model_record.version}")
        print(f"Decisions: {counts}. Table: {self.predictions_url}")
        print(f"Card: python flows/predict.py card view {current.run_id}/decide --id decisions")


if __name__ == "__main__":
    BatchPredictFlow()
