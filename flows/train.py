"""TrainFlow: backtest every candidate model walk-forward, gate the best against the naive baseline and the
champion, refit it on all data and register it with its lineage; a promoted champion is packaged as a Bento.

    python flows/train.py run [--snapshot IngestFlow/<run_id>] [--max-workers N]
    python flows/train.py --config config my_train.toml run     # another model zoo / backtest / gate

The configuration (``configs/train.toml`` by default) is validated when the run starts; the data snapshot is the
latest IngestFlow run of this project branch unless ``--snapshot`` names one.
"""

import time

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
    step,
    timeout,
    trigger,
)

from stockcast.cards import training_card
from stockcast.config import TRAIN_CONFIG_FILE, TrainConfig, parse_train_config
from stockcast.data.snapshot import latest_snapshot, load_snapshot
from stockcast.events import RETRAIN_EVENT
from stockcast.registry import Registry, current_code_version

# The model zoo (stockcast.models) and what builds on it (stockcast.evaluation, stockcast.training) load scikit-learn
# and CatBoost, about two seconds in every process that imports them: the steps that use them import them, so that
# the processes that do not (the card, the end step) start at once.


# Deployed on Argo Workflows: MonitorFlow of the same project branch publishes this when the champion decays.
@trigger(event=namespaced_event_name(RETRAIN_EVENT))
@project(name="stockcast")
class TrainFlow(FlowSpec):
    """Walk-forward model selection with a champion/challenger gate and a model registry."""

    config = Config(
        "config", default=lambda _ctx: str(TRAIN_CONFIG_FILE), parser=parse_train_config, help="training TOML"
    )
    snapshot_run = Parameter(
        "snapshot",
        default="",
        help="IngestFlow run pathspec (IngestFlow/<run_id>) to train on; empty means the branch's latest snapshot.",
    )

    @retry(times=2, minutes_between_retries=0)
    @step
    def start(self):
        """Pin the data snapshot, the champion to beat and the list of models to backtest."""
        from stockcast.models import expand_candidates
        from stockcast.training import backtest_items, feature_sets_needed

        settings = TrainConfig.model_validate(self.config)
        snapshot = load_snapshot(self.snapshot_run) if self.snapshot_run else latest_snapshot(current.branch_name)
        self.snapshot_pathspec, self.data_version = snapshot.run_pathspec, snapshot.version
        registry = Registry(current.branch_name)
        self.champion = registry.champion()
        self.items = backtest_items(expand_candidates(settings), settings.feature_set, self.champion)
        feature_sets_needed(self.items)  # an unknown feature set in the configuration stops the run here
        self.next(self.features)

    @retry(times=1, minutes_between_retries=0)
    @resources(memory=8000, cpu=2)
    @step
    def features(self):
        """Build the modelling frame once per feature set in use and plan the folds every model shares."""
        from stockcast.training import build_modelling_data, feature_sets_needed, plan_folds

        snapshot = load_snapshot(self.snapshot_pathspec)
        self.modelling = {
            feature_set.name: build_modelling_data(snapshot.prices, snapshot.financials, snapshot.oracle, feature_set)
            for feature_set in feature_sets_needed(self.items)
        }
        self.folds = plan_folds(
            self.modelling[self.config.feature_set], TrainConfig.model_validate(self.config).backtest
        )
        self.next(self.backtest, foreach="items")

    @timeout(minutes=30)
    @resources(memory=8000, cpu=2)
    @step
    def backtest(self):
        """Fit and score one model on every fold."""
        from stockcast.evaluation import evaluate_candidate
        from stockcast.training import BacktestResult

        item, data = self.input, self.modelling[self.input.feature_set]
        started = time.perf_counter()
        evaluation = evaluate_candidate(
            item.spec, data.frame, self.folds, data.feature_columns, data.categorical_columns
        )
        self.result = BacktestResult(item, evaluation, time.perf_counter() - started)
        self.next(self.select)

    @step
    def select(self, inputs):
        """Rank the candidates and run the gate: beat the naive baseline and the re-scored champion."""
        from stockcast.training import select_and_gate

        self.merge_artifacts(inputs, include=["snapshot_pathspec", "data_version", "champion", "folds"])
        self.modelling = inputs[0].modelling
        settings = TrainConfig.model_validate(self.config)
        self.selection = select_and_gate(
            [i.result for i in inputs], self.champion, alpha=settings.gate.alpha, min_days=settings.gate.min_days
        )
        self.leaderboard, self.decision = self.selection.leaderboard, self.selection.decision.to_dict()
        print(self.leaderboard[["rank", "candidate_id", "mean_fold_rmse", "rmse_vs_naive", "hit_rate"]].to_string())
        print(self.selection.decision.reason)
        self.next(self.refit)

    @timeout(minutes=30)
    @resources(memory=8000, cpu=2)
    @step
    def refit(self):
        """Refit the challenger on all the data before it is registered."""
        from stockcast.models import fit_candidate

        data = self.modelling[self.config.feature_set]
        started = time.perf_counter()
        self.model = fit_candidate(
            self.selection.challenger, data.frame, data.feature_columns, data.categorical_columns
        )
        self.refit_seconds = time.perf_counter() - started
        self.model_task = current.pathspec
        self.next(self.register)

    @retry(times=2, minutes_between_retries=0)
    @step
    def register(self):
        """Register the challenger with its lineage (promotion waits until its Bento has served)."""
        from stockcast.training import model_record

        registry = Registry(current.branch_name)
        self.record = model_record(
            version=f"v{current.run_id}",
            branch=current.branch_name,
            run_pathspec=f"{current.flow_name}/{current.run_id}",
            model_task=self.model_task,
            spec=self.selection.challenger,
            data=self.modelling[self.config.feature_set],
            data_version=self.data_version,
            snapshot_run=self.snapshot_pathspec,
            code_version=current_code_version(),
            metrics=self.leaderboard.iloc[0].to_dict(),
            decision=self.selection.decision,
        )
        if self.record.version not in registry.versions():  # a retried step must not register twice
            registry.register(self.record)
        self.model_version = self.record.version
        self.next(self.deploy)

    @card(type="blank", id="training")
    @retry(times=1, minutes_between_retries=0)
    @step
    def deploy(self):
        """If the gate said so: package the model as a Bento that must serve on loopback, export it beside the
        registry, and only then promote it; a champion always has a Bento. Otherwise build nothing."""
        registry = Registry(current.branch_name)
        self.promoted, self.bento = self.selection.decision.promote, None
        if self.promoted:
            from stockcast.deploy import package_champion  # BentoML: only this step needs it

            snapshot = load_snapshot(self.snapshot_pathspec)
            self.bento = package_champion(
                self.record, snapshot.prices, snapshot.financials, registry.store, estimator=self.model
            )
            registry.record_bento(self.model_version, self.bento)
            if registry.champion_version() != self.model_version:
                # Fails, naming both, if the champion changed since start: the gate judged against the old one.
                expected = self.champion.version if self.champion else None
                registry.promote(self.model_version, reason=self.selection.decision.reason, expected_champion=expected)
        else:
            print(f"{self.model_version} was not promoted: no Bento built; the champion's Bento stays as it is.")
        self.champion_version = registry.champion_version()
        current.card["training"].extend(training_card(self.selection, self.folds, self.record, self.promoted))
        self.next(self.end)

    @step
    def end(self):
        """Say what was decided and where to look (from plain artefacts: the selection would load the model zoo)."""
        verdict = "promoted to champion" if self.promoted else "registered, not promoted"
        print(f"Model {self.model_version} ({self.record.candidate_id}): {verdict}.")
        print(self.decision["reason"])
        print(f"Champion of branch {current.branch_name}: {self.champion_version or 'none'}")
        if self.bento:
            print(f"Bento {self.bento['bento_tag']} (archive {self.bento['archive']})")
            print("Serve it: python -m stockcast.deploy serve   (then: curl http://127.0.0.1:3000/model)")
        print(f"Registry: {Registry(current.branch_name).store.url(f'registry/{current.branch_name}')}")
        print(
            f"Card: python flows/train.py card get {current.run_id}/deploy --id training training.html"
            f"  (or: python flows/train.py card view {current.run_id}/deploy --id training)"
        )


if __name__ == "__main__":
    TrainFlow()
