"""The README's quickstart, end to end: the commands ``make demo`` runs, then ``make serve``, on a small market; and
``stockcast-replay``'s loop over the same days, which must give what the flows gave.

The market is the planted one (``tests.factories.write_planted_market``): a history that a model beats the naive
baseline on, then held-out days, one calm and one in a volatility regime sixteen times stronger. The commands are the
demo's own, as a user types them (the flow files and the console scripts, in fresh processes, on the user's
``@project`` branch), with the small training and operations configurations of the tests; results are read back the
way a user would: the command output, the registry, the Client API and the HTTP service.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pandas as pd
import pytest

from stockcast.core.network import free_port
from stockcast.core.registry import Registry
from stockcast.core.runs import successful_runs, user_branch
from stockcast.core.storage import LocalStore
from stockcast.data.config import DataConfig
from stockcast.data.contract import FINANCIALS, PRICES
from stockcast.deploy.targets import is_ready
from stockcast.operate.config import load_operate_config
from stockcast.operate.replay import ReplaySettings, read_history, run_replay
from stockcast.operate.tables import load_decisions, load_predictions
from stockcast.serve.client import ServiceRequestError, StockcastClient
from stockcast.train.config import load_train_config
from tests.factories import PLANTED, Market
from tests.harness import MAX_WORKERS, REPO_ROOT, card_text, metaflow_home

pytestmark = pytest.mark.slow


def _command(*words: str, env: dict[str, str] | None = None) -> str:
    """Run one command of the quickstart in a fresh process; its output, or the test fails with it."""
    done = subprocess.run(
        list(words),
        cwd=metaflow_home(),
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{' '.join(words)} exited with {done.returncode}:\n{output}"
    return output


def _script(name: str) -> str:
    """A console script of this environment (``pyproject.toml``'s ``[project.scripts]``)."""
    return str(Path(sys.executable).with_name(name))


def test_the_demo_ingests_trains_operates_day_by_day_retrains_on_the_regime_change_and_serves(
    market, configs, tmp_path
) -> None:
    python, flows, workers = sys.executable, REPO_ROOT / "flows", str(MAX_WORKERS)
    # make demo: ingest the history, train (and deploy) a champion, then operate it one day at a time.
    ingested = _command(
        python,
        str(flows / "ingest.py"),
        "run",
        "--prices",
        str(market.history["prices"]),
        "--financials",
        str(market.history["financials"]),
    )
    trained = _command(
        python,
        str(flows / "train.py"),
        "--config",
        "config",
        configs["quick"],
        "run",
        "--max-workers",
        workers,
    )
    # make serve, in another terminal, before the daily loop: stockcast-rollout --follow (nginx in front of the
    # replicas), on a machine whose BentoML store is empty: the champion's Bento comes back from its archive. It
    # follows the promotions and the snapshots the daily loop publishes.
    port, log, config = free_port(), tmp_path / "serve.log", tmp_path / "deploy.toml"
    config.write_text(
        f'target = "local"\n[data]\nrefresh_s = 1.0\n[local]\nport = {port}\npreview_port = {free_port()}\n'
        "replicas = 1\n"
    )
    server = subprocess.Popen(
        [_script("stockcast-rollout"), "--follow", "--poll-s", "1", "--config", str(config)],
        cwd=metaflow_home(),
        env={**os.environ, "BENTOML_HOME": str(tmp_path / "bentoml")},
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        days = sorted(str(folder) for folder in market.days)
        operated = _command(
            _script("stockcast-day"),
            *days,
            "--train-config",
            configs["quick"],
            "--operate-config",
            configs["operate"],
            "--max-workers",
            workers,
        )
        served, answers, batch = _served_after_the_loop(endpoint, server, log)
    finally:
        server.send_signal(signal.SIGINT)  # Ctrl-C: the follower stops the replicas and nginx it started
        server.wait(timeout=60)
    assert not is_ready(endpoint), "the proxy still answers after the follower stopped"

    renamed = market.actions[market.actions["kind"] == "rename"]
    assert f"{PLANTED.n_tickers + len(renamed)} tickers" in ingested and "Published snapshot" in ingested
    for action in market.actions[market.actions["kind"].isin(["split", "reverse_split", "spinoff"])].itertuples():
        assert f"Corporate action: {action.ticker} {action.ex_date:%Y-%m-%d}" in ingested  # read off adj_close
    assert "promoted to champion" in trained and "Serve it: python -m stockcast.deploy serve" in trained
    branch = user_branch()
    registry = Registry(branch)
    first_champion = registry.history()[0].version
    # One report per day, in order; the calm day raises no alert, the regime's first day calls for a retrain.
    lines = operated.splitlines()
    day_lines = [line for line in lines if line[:10] in {Path(day).name for day in days}]
    assert [line[:10] for line in day_lines] == [Path(day).name for day in days], operated
    calm, shifted = operated.split(day_lines[1])
    assert "alert:" not in calm and market.shift_date == Path(days[1]).name
    assert "[drift]" in shifted and "retrained: TrainFlow/" in shifted, operated

    # The retrain ran the full chain: a new model registered; when promoted, it has a Bento and predicted again.
    monitor = successful_runs("MonitorFlow", branch)[0]  # the regime's first day
    drifted = monitor.data.drift[monitor.data.drift["drifted"]]
    assert {"range_pct", "volatility_5d"} & set(drifted["feature"])  # what a volatility regime moves first
    assert len(monitor.data.performance) >= 1  # the calm day's prediction was realised on the regime's first day
    assert "drift" in card_text(monitor["assess"].task, "monitoring").lower()
    assert registry.store.list(f"alerts/{branch}/{market.shift_date}/")
    assert len(registry.versions()) == 2
    champion = registry.require_champion()
    assert registry.bento(champion.version) is not None
    assert ("promoted; predicted again" in shifted) == (champion.version != first_champion)
    # The last batch prediction also predicted with the shadows: the champion a promotion replaced, if any.
    last_batch = successful_runs("BatchPredictFlow", branch)[0]
    shadows = [(row["version"], row["role"]) for row in last_batch.data.shadow_tables]
    assert shadows == ([(first_champion, "previous champion")] if champion.version != first_champion else []), shadows
    # (Its table of that day is the one it published as champion before the retrain: kept, as every table is.)
    outcomes = [row["outcome"] for row in last_batch.data.shadow_tables]
    assert all(outcome.startswith("already published: ") for outcome in outcomes), outcomes

    # What serves after the loop: the champion, on the last day's snapshot (published by IngestFlow after the service
    # started), answering every ticker exactly as that day's batch prediction did.
    assert served["model_version"] == champion.version and served["lineage"] == champion.lineage()
    assert served["data"]["version"] == batch["data_version"].iloc[0] and served["data"]["following"] is True
    assert answers["ticker"].tolist() == batch["ticker"].tolist()
    for column in ("as_of", "last_close", "predicted_return", "predicted_close", "model_version"):
        assert answers[column].tolist() == batch[column].tolist(), column

    _assert_the_replay_equals_the_loop(market, configs, days, registry, tmp_path / "replay")


def _assert_the_replay_equals_the_loop(
    market: Market, configs: dict[str, str], days: list[str], flows: Registry, folder: Path
) -> None:
    """``stockcast-replay``'s library loop over the same days, from the same price and financial files (the history
    and the day folders, concatenated; the generator's oracle.csv, which only scores, left out), with the same
    configurations, in one process: the same models registered in the same order, the same champion at the end, and
    the same prediction and decision tables, row for row, bit for bit. Only the versions differ (run ids there,
    training days here) and the data versions (snapshot runs there, content hashes here)."""
    folder.mkdir()
    inputs = {}
    for name, file_name in (("prices", PRICES.file_name), ("financials", FINANCIALS.file_name)):
        pieces = [pd.read_csv(market.history[name], dtype=str)]
        pieces += [pd.read_csv(Path(day) / file_name, dtype=str) for day in days if (Path(day) / file_name).exists()]
        inputs[name] = folder / file_name
        pd.concat(pieces).to_csv(inputs[name], index=False)
    history = read_history(str(inputs["prices"]), str(inputs["financials"]), DataConfig())
    settings = ReplaySettings(
        train=load_train_config(configs["quick"]), operate=load_operate_config(configs["operate"]), branch="test.e2e"
    )
    replayed = Registry(settings.branch, LocalStore(folder / "store"))
    run_replay(history, pd.DatetimeIndex([Path(day).name for day in days]), settings, replayed.store)

    def registered(registry: Registry) -> list[str]:
        return sorted(registry.versions(), key=lambda version: registry.get(version).registered_at)

    same = dict(zip(registered(flows), registered(replayed), strict=True))
    assert list(same.values())[1:] == [f"v{Path(days[1]).name.replace('-', '')}"]  # both retrained on the regime
    for flows_version, replay_version in same.items():
        assert flows.get(flows_version).candidate == replayed.get(replay_version).candidate
    assert same[flows.require_champion().version] == replayed.require_champion().version
    for load in (load_predictions, load_decisions):
        flows_tables, replay_tables = (load(registry.store, registry.branch) for registry in (flows, replayed))
        flows_tables = flows_tables.assign(model_version=flows_tables["model_version"].map(same))
        tables = [
            table.drop(columns="data_version").sort_values(["as_of", "model_version", "ticker"], ignore_index=True)
            for table in (flows_tables, replay_tables)
        ]
        assert tables[0]["as_of"].nunique() == len(days) and len(tables[0]) > PLANTED.n_tickers
        pd.testing.assert_frame_equal(*tables, check_exact=True)


def _served_after_the_loop(
    endpoint: str, server: subprocess.Popen[bytes], log: Path
) -> tuple[dict, pd.DataFrame, pd.DataFrame]:
    """Once the service serves the champion on the newest snapshot: ``GET /model``, its answers for every ticker of
    the last batch prediction, and that prediction's table."""
    batch = successful_runs("BatchPredictFlow", user_branch())[0].data.predictions.reset_index(drop=True)
    champion = Registry(user_branch()).require_champion().version
    deadline = time.monotonic() + 120
    while True:
        if server.poll() is not None:
            raise AssertionError(f"stockcast-rollout exited:\n{log.read_text()}")
        served = {}
        with contextlib.suppress(httpx.HTTPError, ServiceRequestError):
            served = StockcastClient(endpoint).model()
        if served.get("model_version") == champion and served["data"]["version"] == batch["data_version"].iloc[0]:
            break
        if time.monotonic() > deadline:
            raise AssertionError(f"{endpoint} serves {served or 'nothing'}, not {champion}:\n{log.read_text()}")
        time.sleep(1)
    with StockcastClient(endpoint) as client:
        answers = pd.DataFrame(client.predict(batch["ticker"].tolist()))
    answers["as_of"] = pd.to_datetime(answers["as_of"])
    return served, answers, batch
