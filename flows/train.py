"""TrainFlow: backtest every candidate model walk-forward, gate the best against the naive baseline and the
champion, refit it on its training window and register it with its lineage; a promoted champion is packaged as a
Bento.

    python flows/train.py run [--snapshot IngestFlow/<run_id>] [--max-workers N]
    python flows/train.py --config config my_train.toml run     # another model zoo / backtest / gate

The configuration (``configs/train.toml`` by default) is validated when the run starts; the data snapshot is the
latest IngestFlow run of this project branch unless ``--snapshot`` names one. Each step calls one function of
``stockcast.train.selection`` (or ``stockcast.deploy.package`` for the deploy step).
"""

from metaflow import (
    Config,
    card,
    config_expr,
    current,
    exit_hook,
    namespaced_event_name,
    project,
    retry,
    step,
    timeout,
    trigger,
)

from stockcast.core.engines import engines
from stockcast.core.events import RETRAIN_EVENT
from stockcast.core.registry import current_code_version
from stockcast.core.storage import STORAGE_OUTAGE_HOOK, datastore_store
from stockcast.flowbase import SnapshotFlow, only_storage_faults_retried
from stockcast.train.card import training_card
from stockcast.train.config import (
    TRAIN_CONFIG_FILE,
    TrainConfig,
    asks_for_gpu,  # noqa: F401 -- called by the config_expr of @engines
    parse_train_config,
)

# The model zoo and what builds on it (stockcast.train.selection, stockcast.deploy.package) load scikit-learn,
# CatBoost and BentoML, about two seconds in every process that imports them: the steps that use them import them,
# so that the processes that do not (the card, the end step) start at once.


# Deployed on Argo Workflows: MonitorFlow of the same project branch publishes this when the champion decays.
@trigger(event=namespaced_event_name(RETRAIN_EVENT))
@exit_hook(on_error=[STORAGE_OUTAGE_HOOK])
@engines(gpu=config_expr("asks_for_gpu(config)"))
@project(name="stockcast")
class TrainFlow(SnapshotFlow):
    """Walk-forward model selection with a champion/challenger gate and a model registry."""

    config = Config(
        "config", default=lambda _ctx: str(TRAIN_CONFIG_FILE), parser=parse_train_config, help="training TOML"
    )

    # No @retry: what can fail here is deterministic (a snapshot too short for the backtest, a bad --snapshot) and
    # would fail the same way again; it stops the run with one message before any work.
    @step
    def start(self):
        """Pin the data snapshot, size the folds to its history, list the champion and the models to backtest, and
        split the work: shards of tickers for the features, groups of folds for the backtests."""
        from stockcast.train.selection import (
            market_trading_days,
            plan_backtest_sizes,
            plan_backtest_tasks,
            plan_backtests,
            plan_shards,
        )

        self.settings = TrainConfig.model_validate(self.config)
        snapshot = self.pin_snapshot()
        self.fold_sizes = plan_backtest_sizes(self.settings, snapshot.n_days)
        print(f"Backtest: {self.fold_sizes.describe()}.")
        self.champion = self.branch_registry().champion()
        self.items = plan_backtests(self.settings, self.champion)
        self.backtest_tasks = plan_backtest_tasks(self.items, self.fold_sizes.n_folds, self.settings.plan)
        self.shards = plan_shards(snapshot.tickers, snapshot.actions, self.settings.plan)
        self.trading_days = market_trading_days(snapshot)
        print(f"Tasks: {len(self.shards)} feature shard(s), {len(self.backtest_tasks)} backtest(s).")
        self.next(self.features, foreach="shards")

    @retry(times=1, minutes_between_retries=0)
    @only_storage_faults_retried
    @step
    def features(self):
        """Build one shard's per-ticker rows (features, target, oracle) from its tickers' rows alone, and store them by
        month beside the datastore."""
        from stockcast.train.selection import build_shard

        self.shard = build_shard(
            self.snapshot(),
            self.input,
            self.items,
            trading_days=self.trading_days,
            target=self.settings.target,
            store=datastore_store(),
        )
        self.next(self.join_features)

    @retry(times=1, minutes_between_retries=0)
    @only_storage_faults_retried
    @step
    def join_features(self, inputs):
        """Join the shards, a month at a time, into the modelling frame of each feature set in use (the
        cross-sectional ranks need every ticker), stored by month; plan the folds every model shares."""
        from stockcast.train.selection import join_shards

        # Each shard read the settings, which Metaflow then stores again: equal values whose pickles may differ
        # (pydantic keeps a set), so they are taken from one shard rather than merged.
        self.merge_artifacts(inputs, exclude=["shard", "settings"])
        self.settings = inputs[0].settings
        shards = [task.shard for task in inputs]
        self.modelling, self.folds = join_shards(shards, self.settings, self.fold_sizes, datastore_store())
        self.next(self.split_backtests)

    @step
    def split_backtests(self):
        """Start the backtest tasks planned at the start: Metaflow needs a step of its own between a join and a
        split."""
        self.next(self.backtest, foreach="backtest_tasks")

    @timeout(minutes=30)
    @step
    def backtest(self):
        """Fit and score one model on one group of folds, reading each fold's rows alone."""
        from stockcast.train.selection import run_backtest

        self.result = run_backtest(
            self.input,
            self.modelling[self.input.item.feature_set],
            self.folds,
            max_train_rows=self.settings.backtest.max_train_rows,
            seed=self.settings.seed,
        )
        self.next(self.select)

    @step
    def select(self, inputs):
        """Combine each model's fold groups, rank the candidates and run the gate: beat the naive baseline and the
        re-scored champion (a refit of the champion on newer data: be no worse), also as it served; or fall back to
        naive when the champion served worse than it."""
        from stockcast.operate.tables import load_predictions
        from stockcast.train.selection import combine_backtests, data_notes, select_and_gate

        self.merge_artifacts(
            inputs, include=["snapshot_pathspec", "data_version", "data_end", "champion", "folds", "fold_sizes"]
        )
        self.settings = inputs[0].settings  # read by every backtest: see join_features
        self.modelling = inputs[0].modelling
        results = combine_backtests([i.result for i in inputs], self.folds)
        # What the champion predicted while it served: out-of-sample evidence the gate weighs too.
        served = load_predictions(self.branch_registry().store, current.branch_name) if self.champion else None
        self.selection = select_and_gate(
            results, self.champion, self.settings.gate, data_version=self.data_version, served=served
        )
        self.data_notes = data_notes(
            self.modelling[self.settings.feature_set],
            self.fold_sizes,
            self.settings.target,
            self.settings.backtest.max_train_rows,
        )
        # Plain tables and dicts for readers of this run (BatchPredictFlow, the PR report), which then need no
        # class of this library to read them.
        self.leaderboard, self.decision = self.selection.leaderboard, self.selection.decision.to_dict()
        self.challenger_predictions = self.selection.challenger_predictions
        self.naive_predictions = self.selection.naive_predictions
        shown = ["rank", "candidate_id", "mean_fold_rmse_return", "rmse_return_vs_naive", "mean_fold_rmse", "hit_rate"]
        print(self.leaderboard[shown].to_string())
        print(self.selection.decision.reason)
        self.next(self.refit)

    @timeout(minutes=30)
    @step
    def refit(self):
        """Refit the challenger on its training window (all the data, or the last train_days) before registering."""
        from stockcast.train.selection import refit_challenger

        self.model = refit_challenger(
            self.selection,
            self.modelling[self.settings.feature_set],
            self.folds,
            self.settings.backtest,
            seed=self.settings.seed,
        )
        self.model_task = current.pathspec
        self.next(self.register)

    @retry(times=2, minutes_between_retries=0)
    @only_storage_faults_retried
    @step
    def register(self):
        """Register the challenger with its lineage (promotion waits until its Bento has served)."""
        from stockcast.train.selection import model_record
        from stockcast.train.zoo import as_trained

        self.record = self.branch_registry().register(
            model_record(
                version=f"v{current.run_id}",
                branch=current.branch_name,
                run_pathspec=f"{current.flow_name}/{current.run_id}",
                model_task=self.model_task,
                spec=as_trained(self.selection.challenger, self.model),  # a GPU candidate may have run on the CPU
                data=self.modelling[self.settings.feature_set],
                data_version=self.data_version,
                data_end=self.data_end,
                snapshot_run=self.snapshot_pathspec,
                code_version=current_code_version(),
                metrics=self.selection.challenger_metrics,
                decision=self.selection.decision,
            )
        )
        self.model_version = self.record.version
        self.next(self.deploy)

    @card(type="blank", id="training")
    @retry(times=1, minutes_between_retries=0)
    @only_storage_faults_retried
    @step
    def deploy(self):
        """If the gate said so: package the model as a Bento that must serve on loopback, export it beside the
        registry, and only then promote it; a champion always has a Bento. Otherwise build nothing."""
        from stockcast.deploy.package import release  # BentoML: only this step needs it

        registry = self.branch_registry()
        # In a run resumed after a failed deploy, `register` was cloned: its record names the failed run. It is
        # registered again under this run, whose lineage the champion must carry.
        self.record, expected_champion = registry.register_for_run(
            self.record,
            version=f"v{current.run_id}",
            run_pathspec=f"{current.flow_name}/{current.run_id}",
            expected_champion=self.champion.version if self.champion else None,
        )
        self.model_version = self.record.version
        outcome = release(
            registry,
            self.record,
            promote=self.selection.decision.promote,
            reason=self.selection.decision.reason,
            expected_champion=expected_champion,
            snapshot=self.snapshot(),
            estimator=self.model,
        )
        self.promoted, self.bento, self.champion_version = outcome.promoted, outcome.bento, outcome.champion_version
        current.card["training"].extend(
            training_card(self.selection, self.folds, self.record, self.promoted, data_notes=self.data_notes)
        )
        self.next(self.end)

    @step
    def end(self):
        """Say what was decided and where to look (from plain artefacts: the selection would load the model zoo)."""
        verdict = "promoted to champion" if self.promoted else "registered, not promoted"
        print(f"Model {self.model_version} ({self.record.candidate_id}): {verdict}.")
        print(self.decision["reason"])
        if not self.promoted:
            print("No Bento built: the champion's Bento stays as it is.")
        print(f"Champion of branch {current.branch_name}: {self.champion_version or 'none'}")
        if self.bento:
            print(f"Bento {self.bento['bento_tag']} (archive {self.bento['archive']})")
            print("Serve it: python -m stockcast.deploy serve   (then: curl http://127.0.0.1:3000/model)")
        print(f"Registry: {self.branch_registry().store.url(f'registry/{current.branch_name}')}")
        print(
            f"Card: python flows/train.py card get {current.run_id}/deploy --id training training.html"
            f"  (or: python flows/train.py card view {current.run_id}/deploy --id training)"
        )


if __name__ == "__main__":
    TrainFlow()
