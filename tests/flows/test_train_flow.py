"""TrainFlow run for real: selection, the gate, the registry, the Bento of a champion, resume, and work split into
shards and candidate x fold tasks that changes no result. (TrainFlow on the S3 datastore is tested with the champion
that prediction and monitoring use there, in test_operate_flows.py, and here for what its split changes.)"""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features import get_feature_set
from stockcast.core.registry import Registry
from stockcast.data.calendar import trading_days
from stockcast.data.snapshot import load_snapshot
from stockcast.deploy.package import bento_bundle, build_bento, model_tag_for
from stockcast.train.backtest import backtest, evaluate_candidate
from stockcast.train.selection import BacktestResult, build_modelling_data, plan_folds, select_and_gate
from tests.factories import SMALL_CONFIG, config_with
from tests.harness import REPO_ROOT, FlowRunner, card_text, metaflow_home

pytestmark = pytest.mark.slow


def random_walk_prices(n_tickers: int, n_days: int, seed: int) -> pd.DataFrame:
    """Prices that are a driftless random walk: nothing about tomorrow is predictable beyond today's close."""
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2022-06-01", periods=n_days)
    log_close = np.log(50.0) + np.cumsum(rng.normal(0.0, 0.015, size=(n_days, n_tickers)), axis=0)
    close = np.exp(log_close)
    open_ = close * np.exp(rng.normal(0.0, 0.004, size=close.shape))
    spread = np.abs(rng.normal(0.0, 0.006, size=close.shape))
    frame = pd.DataFrame(
        {
            "date": np.repeat(dates, n_tickers),
            "ticker": np.tile([f"RW{i:02d}" for i in range(n_tickers)], n_days),
            "open": open_.ravel(),
            "high": (np.maximum(open_, close) * (1 + spread)).ravel(),
            "low": (np.minimum(open_, close) * (1 - spread)).ravel(),
            "close": close.ravel(),
            "volume": rng.integers(10_000, 100_000, size=close.size).astype(float),
        }
    )
    return frame.sort_values(["ticker", "date"], ignore_index=True)


def _mean_fold_rmse_by_candidate(run) -> dict[str, float]:
    """Each candidate's mean fold RMSE of the predicted return (the scale-free ranking), recomputed from the per-row
    predictions of its backtest tasks."""
    parts = [task.data.result for task in run["backtest"]]
    predictions = pd.concat([part.predictions for part in parts], ignore_index=True)
    per_fold = predictions.groupby(["candidate_id", "fold"]).apply(
        lambda rows: float(np.sqrt(((rows["predicted_return"] - rows["next_return"]) ** 2).mean()))
    )
    return per_fold.groupby(level="candidate_id").mean().to_dict()


def assert_split_changes_nothing(run) -> None:
    """The run built its features in more than one shard and backtested each candidate fold by fold; its modelling
    frame, folds, leaderboard, predictions and decision are exactly the library's on the same snapshot and settings
    in one piece: the whole market's frame, one backtest per candidate over every fold."""
    assert len(list(run["features"])) == 2
    tasks = [task.data.result.task for task in run["backtest"]]
    assert len(tasks) == 6 and all(len(task.folds) == 1 for task in tasks)  # 2 candidates x 3 folds

    settings, snapshot = run.data.settings, load_snapshot(run.data.snapshot_pathspec)
    data = build_modelling_data(
        snapshot.prices,
        snapshot.financials,
        snapshot.oracle,
        get_feature_set(settings.feature_set),
        actions=snapshot.actions,
        calendar=snapshot.calendar,
        target=settings.target,
    )
    folds = plan_folds(data, settings.backtest, run.data.fold_sizes)
    results = [
        BacktestResult(
            item,
            evaluate_candidate(
                item.spec.candidate_id,
                [
                    backtest(
                        item.spec,
                        data.rows,
                        folds,
                        data.feature_columns,
                        data.categorical_columns,
                        max_train_rows=settings.backtest.max_train_rows,
                        seed=settings.seed,
                    )
                ],
            ),
            seconds=0.0,
        )
        for item in run["start"].task.data.items
    ]
    selection = select_and_gate(results, run.data.champion, settings.gate)

    assert settings.backtest.max_train_rows < data.usable_rows  # the sample is taken, in tasks as at once
    pd.testing.assert_frame_equal(run.data.modelling[settings.feature_set].read(), data.read(), check_exact=True)
    assert run.data.folds == folds
    pd.testing.assert_frame_equal(
        run.data.leaderboard.drop(columns="train_seconds"),
        selection.leaderboard.drop(columns="train_seconds"),
        check_exact=True,
    )
    pd.testing.assert_frame_equal(run.data.challenger_predictions, selection.challenger_predictions, check_exact=True)
    pd.testing.assert_frame_equal(run.data.naive_predictions, selection.naive_predictions, check_exact=True)
    assert run.data.decision == selection.decision.to_dict()


def test_winner_is_the_argmin_and_is_registered_with_lineage(champion):
    run = champion.training
    scores = _mean_fold_rmse_by_candidate(run)
    assert len(scores) == 5
    assert run.data.selection.challenger.candidate_id == min(scores, key=scores.get)
    assert run.data.promoted is True
    assert run.data.decision["promote"] and "beats the naive baseline" in run.data.decision["reason"]

    registry = Registry(champion.registry_branch)
    record = registry.champion()
    assert record.version == run.data.model_version == f"v{run.id}"
    assert record.snapshot_run == champion.history
    assert record.run_pathspec == run.pathspec
    assert record.feature_set == "full" and len(record.feature_fingerprint) >= 16
    assert record.metrics["candidate_id"] == record.candidate_id
    assert record.gate["promote"] is True

    model = record.load_model()
    frame = run.data.modelling["full"].read()
    columns = run.data.modelling["full"].feature_columns
    assert np.isfinite(model.predict(frame[columns].tail(5))).all()

    shown = card_text(run["deploy"].task, "training")
    assert "PROMOTED to champion" in shown and record.candidate_id in shown and "Leaderboard" in shown
    assert record.run_pathspec in shown  # the lineage table
    assert f"Model v{run.id} ({record.candidate_id}): promoted to champion." in champion.output
    assert "Card: python flows/train.py card get" in champion.output


def test_the_promoted_champion_is_packaged_with_its_lineage(champion):
    run, registry = champion.training, Registry(champion.registry_branch)
    version = run.data.model_version
    bento = registry.bento(version)
    assert bento == run.data.bento
    assert bento["model_tag"] == model_tag_for(version) and bento["bento_tag"] == f"stockcast:{version}"
    assert bento["archive"] == registry.store.url(f"bentos/stockcast/{version}.bento")
    assert Path(bento["archive"]).stat().st_size > 10_000
    assert build_bento(bento["model_tag"]) == bento["bento_tag"]  # the same champion gives the same Bento
    assert f"Bento stockcast:{version}" in champion.output

    # What the Bento serves: the registered model, with the registry's lineage (served for real in tests/e2e).
    bundle = bento_bundle(bento["bento_tag"])
    assert bundle.record == registry.get(version)
    assert bundle.record.lineage()["model_task"] == run["refit"].task.pathspec
    assert bundle.feature_fingerprint == run.data.modelling["full"].fingerprint


def test_an_equal_champion_is_kept_and_rollback_restores_the_previous(champion, tmp_path):
    first = champion.training
    winner = first.data.selection.challenger
    # The naive baseline and the champion's own entry of the configuration: the challenger is exactly the champion.
    config = tmp_path / "same.toml"
    config.write_text(config_with(SMALL_CONFIG, ["naive", winner.name]))
    second = FlowRunner(champion.branch).succeed("train", config=str(config), snapshot=champion.history)

    assert second.data.promoted is False and second.data.selection.challenger == winner
    reason = second.data.decision["reason"]
    assert "does not beat" in reason and f"champion v{first.id}" in reason
    registry = Registry(champion.registry_branch)
    assert registry.champion_version() == f"v{first.id}"
    assert registry.bento(f"v{second.id}") is None
    assert {f"v{first.id}", f"v{second.id}"} <= set(registry.versions())

    # An operator promotes the second model by hand, then rolls back with one call.
    registry.promote(f"v{second.id}", reason="manual", expected_champion=f"v{first.id}")
    event = registry.rollback(reason="smoke test failed")
    assert event.version == f"v{first.id}" and registry.champion_version() == f"v{first.id}"


@pytest.fixture(scope="module")
def interrupted_random_walk(tmp_path_factory, configs):
    """TrainFlow on a random walk, its work split into shards and fold tasks, on a branch of its own, stopped at its
    register step (something in the way of the registry's folder), then resumed once the way is clear."""
    folder = tmp_path_factory.mktemp("random-walk")
    random_walk_prices(40, 650, seed=3).to_csv(folder / "stock_price.csv", index=False, date_format="%Y-%m-%d")
    runner = FlowRunner(f"rw{uuid.uuid4().hex[:8]}")
    snapshot = runner.succeed("ingest", prices=str(folder / "stock_price.csv"), financials="").pathspec
    blocker = metaflow_home() / ".metaflow" / "stockcast" / "registry" / f"test.{runner.branch}"
    blocker.parent.mkdir(parents=True, exist_ok=True)
    blocker.write_text("not a folder")
    failed = runner("train", config=configs["split"], snapshot=snapshot)
    blocker.unlink()
    resumed = runner.resume("train")  # a resumed run keeps the original run's configuration
    return runner.branch, failed, resumed


def test_resume_after_a_failed_step_reuses_the_finished_ones(interrupted_random_walk):
    branch, failed, resumed = interrupted_random_walk
    assert not failed.successful and "register" in failed.output
    assert resumed.successful, resumed.output
    backtests = resumed.run["backtest"].task.metadata_dict
    assert backtests.get("origin-run-id") == failed.run.id and "origin-task-id" in backtests  # cloned, not re-run
    assert Registry(f"test.{branch}").versions() == [f"v{resumed.run.id}"]


def test_features_in_shards_and_backtests_fold_by_fold_give_the_unsplit_result(interrupted_random_walk):
    _, _, resumed = interrupted_random_walk
    assert_split_changes_nothing(resumed.run)


@pytest.mark.s3
def test_on_s3_too_shards_and_fold_tasks_give_the_unsplit_result(s3_champion):
    """The S3 champion's run (resumed after two outages) trained on the planted market, whose rename joins two
    tickers' histories: they share a shard."""
    run = s3_champion.training
    assert run["join_features"].task.metadata_dict["ds-type"] == "s3"
    assert_split_changes_nothing(run)


def test_on_a_random_walk_naive_becomes_the_baseline_champion_and_says_why(interrupted_random_walk):
    branch, _, resumed = interrupted_random_walk
    decision = resumed.run.data.decision
    assert decision["promote"] is True and decision["baseline"] is True
    assert decision["reason"].startswith("Promote naive as the baseline champion: the branch has no champion")
    assert "does not beat the naive baseline" in decision["reason"]
    registry = Registry(f"test.{branch}")
    champion = registry.champion()
    assert champion.candidate_id == "naive" and champion.version == resumed.run.data.model_version
    assert registry.bento(champion.version) == resumed.run.data.bento  # naive has a Bento of its own: it serves


def test_an_invalid_config_stops_the_run_before_it_starts_naming_the_field(run_flow, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(SMALL_CONFIG.replace('factory = "catboost"', 'factory = "catbooster"'))
    result = run_flow("train", config=str(bad))
    assert not result.successful and result.run is None
    assert "candidates[4].factory" in result.output and "catbooster" in result.output


def test_the_code_package_carries_the_library_to_remote_runs():
    listing = subprocess.run(
        [sys.executable, str(REPO_ROOT / "flows" / "train.py"), "package", "list"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    listing = listing.stdout + listing.stderr  # Metaflow prints the listing on stderr
    for module in (
        "flows/stockcast/flowbase.py",
        "flows/stockcast/core/registry.py",
        "flows/stockcast/data/snapshot.py",
        "flows/features/build.py",
    ):
        assert module in listing


def test_real_data_quirks_are_named_at_ingest_and_harm_no_target_or_prediction(champion, market):
    """The planted market carries every quirk of real data, its actions known from adj_close alone."""
    from metaflow import Run

    ingest = Run(champion.history)
    price_actions = market.actions[market.actions["kind"].isin(["split", "reverse_split", "spinoff"])]
    found = {(a["ticker"], a["ex_date"], a["kind"]) for a in ingest.data.snapshot["actions"]}
    assert found == {(r.ticker, f"{r.ex_date:%Y-%m-%d}", r.kind) for r in price_actions.itertuples()}
    shown = card_text(ingest["publish"].task, "snapshot")
    missing = ingest.data.snapshot["missing_days"]
    assert missing["market"] and missing["tickers"]
    for ticker, ex_date in price_actions[["ticker", "ex_date"]].itertuples(index=False):
        assert ticker in shown and f"{ex_date:%Y-%m-%d}" in shown
    assert missing["market"][0] in shown and next(iter(missing["tickers"])) in shown

    frame = champion.training.data.modelling["full"].read()
    targets = frame[frame["next_return"].notna()]
    # No target spans a split: the day before each ex-date earns an ordinary return, not -50 % or +900 %.
    for ticker, ex_date in price_actions[["ticker", "ex_date"]].itertuples(index=False):
        before = targets[(targets["ticker"] == ticker) & (targets["date"] < ex_date)].tail(1)
        assert abs(before["next_return"].item()) < 0.25, (ticker, ex_date, before["next_return"].item())
    # ...nor an over-long gap: no target skips more trading days than the configuration allows (3; the generator's
    # vendor gaps are 1 to 3 days, a rename's about 20), and the renamed company's last day under its old ticker has
    # none.
    sessions = trading_days("XNYS", frame["date"].min(), frame["date"].max())
    position = pd.Series(sessions.searchsorted(frame["date"]), index=frame.index)
    skipped = position.groupby(frame["ticker"]).shift(-1) - position - 1
    assert skipped[frame["next_return"].notna()].max() <= 3
    (rename,) = market.actions[market.actions["kind"] == "rename"].itertuples()
    assert frame.loc[frame["ticker"] == rename.ticker, "next_return"].tail(1).isna().all()

    # The walk-forward predictions on the days around each split stay in the plausible band (clipped if need be).
    predictions = champion.training.data.challenger_predictions
    around = predictions.merge(price_actions[["ticker", "ex_date"]], on="ticker")
    around = around[
        (around["date"] >= around["ex_date"]) & (around["date"] <= around["ex_date"] + pd.Timedelta(days=3))
    ]
    assert len(around), "no action inside a test window: the test would prove nothing"
    assert (around["predicted_return"].abs() < 0.1).all(), around[["ticker", "date", "predicted_return"]]
