"""BatchPredictFlow: tomorrow's close for every ticker from the champion, published as a versioned table, and the
buy / sell / hold decisions taken on it.

    python flows/predict.py run [--snapshot IngestFlow/<run_id>] [--model v<run_id>] [--service http://...]

The snapshot defaults to the branch's latest, the model to the branch's champion. The table goes to
``<datastore root>/stockcast/predictions/<branch>/<as_of>/<model version>.csv``, once per as-of date and model.
Deployed on Argo Workflows, the flow starts whenever IngestFlow finishes on the same project branch.
"""

from metaflow import Config, FlowSpec, Parameter, card, current, project, resources, retry, step, trigger_on_finish

from stockcast.cards import decisions_card
from stockcast.client import StockcastClient
from stockcast.config import OPERATE_CONFIG_FILE, OperateConfig, parse_operate_config
from stockcast.data.snapshot import latest_snapshot, load_snapshot
from stockcast.decisions import compare_strategies, decide
from stockcast.registry import Registry
from stockcast.runs import run_by_pathspec

# stockcast.batch and stockcast.serving load scikit-learn and CatBoost, about two seconds in every process that
# imports them: the steps that use them import them, so that the run's other processes (the run itself, the card,
# the end step) start at once.


@trigger_on_finish(flow="IngestFlow")
@project(name="stockcast")
class BatchPredictFlow(FlowSpec):
    """Daily batch prediction with the champion, and the decisions taken on it."""

    config = Config(
        "config", default=lambda _ctx: str(OPERATE_CONFIG_FILE), parser=parse_operate_config, help="operations TOML"
    )
    snapshot_run = Parameter(
        "snapshot", default="", help="IngestFlow run pathspec to predict from; empty means the branch's latest."
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
        from stockcast.batch import check_snapshot_not_older

        registry = Registry(current.branch_name)
        snapshot = load_snapshot(self.snapshot_run) if self.snapshot_run else latest_snapshot(current.branch_name)
        self.model_record = registry.get(self.model_version) if self.model_version else registry.require_champion()
        training = load_snapshot(self.model_record.snapshot_run)
        check_snapshot_not_older(
            self.model_record, snapshot.summary["date_range"][1], training.summary["date_range"][1]
        )
        self.snapshot_pathspec, self.data_version = snapshot.run_pathspec, snapshot.version
        self.next(self.predict)

    @resources(memory=8000, cpu=2)
    @step
    def predict(self):
        """Every ticker's next close, by the code path the HTTP service answers with; a model trained on another
        feature-set version than this code computes is refused here, naming both."""
        from stockcast.batch import predict_batch
        from stockcast.serving import build_bundle

        snapshot = load_snapshot(self.snapshot_pathspec)
        bundle = build_bundle(self.model_record, snapshot.prices, snapshot.financials)
        self.predictions = predict_batch(bundle, self.data_version)
        self.next(self.publish)

    @retry(times=2, minutes_between_retries=0)
    @step
    def publish(self):
        """Write the table once per (as-of date, model); a table already published is kept as it was."""
        from stockcast.batch import publish_predictions

        publication = publish_predictions(self.predictions, Registry(current.branch_name).store, current.branch_name)
        # Decisions and monitoring both use the table of record: the one published first for this day and model.
        self.predictions, self.predictions_url, self.published = publication.table, publication.url, publication.written
        print(f"{'Published' if publication.written else 'Already published, kept'}: {publication.url}")
        self.next(self.decide)

    @card(type="blank", id="decisions")
    @step
    def decide(self):
        """Buy / sell / hold on today's predictions, given the positions the previous day's run decided on; and the
        same rule backtested on the champion's walk-forward predictions against buy-and-hold and the naive baseline."""
        from stockcast.batch import previous_positions

        rule = OperateConfig.model_validate(self.config).decisions
        predictions = self.predictions
        if self.service_url:
            as_of = self.predictions["as_of"].max()
            with StockcastClient(self.service_url) as client:  # refused (400, naming as_of) if it serves another day
                predictions = client.predict_table(self.predictions["ticker"].tolist(), as_of=as_of.date())
            served = set(predictions["model_version"])
            if served != {self.model_record.version}:
                raise ValueError(
                    f"the service at {self.service_url} answers with model {sorted(served)}, "
                    f"not {self.model_record.version}: deploy the champion or drop --service"
                )
        held = previous_positions(current.branch_name, self.predictions["as_of"].max())
        self.decisions = decide(predictions, rule, held)
        selection = run_by_pathspec(self.model_record.run_pathspec).data.selection
        self.strategies = compare_strategies(selection.challenger_predictions, selection.naive_predictions, rule)
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
