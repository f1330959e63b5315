"""Test objects built in code, shared by the tests and the benchmarks: markets, registry records, fitted models,
serving bundles and training configurations.

Every test that needs one of these builds it here, so a change to what a record or a bundle holds is made once.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd

from features import FeatureSet, get_feature_set
from stockcast.core.registry import ModelRecord
from stockcast.data.synthetic.generator import (
    MarketData,
    MarketSpec,
    generate_market,
    split_days,
    write_days,
    write_market,
)

FULL = get_feature_set("full")
RIDGE_PARAMS: dict[str, Any] = {"alpha": 1.0}


def year_market(*, n_tickers: int = 6, seed: int = 11, n_sectors: int = 2, year: int = 2024) -> MarketData:
    """A small generated market over one calendar year: enough for every feature to warm up (``min_history`` 127)."""
    return generate_market(
        MarketSpec(n_tickers=n_tickers, n_sectors=n_sectors, start=f"{year}-01-01", end=f"{year}-12-31", seed=seed)
    )


def with_split(
    prices: pd.DataFrame, financials: pd.DataFrame, ticker: str, ex_date: pd.Timestamp, shares: float
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Raw data of a ``shares``-for-1 split of ``ticker`` at ``ex_date`` (copies): earlier prices × k, volumes ÷ k,
    and earlier reports' EPS × k and share counts ÷ k, as they were before the split."""
    prices, financials = prices.copy(), financials.copy()
    before = (prices["ticker"] == ticker) & (prices["date"] < ex_date)
    prices.loc[before, ["open", "high", "low", "close"]] *= shares
    prices.loc[before, "volume"] /= shares
    earlier = (financials["ticker"] == ticker) & (financials["report_date"] < ex_date)
    financials.loc[earlier, "eps"] *= shares
    financials.loc[earlier, "shares_outstanding"] /= shares
    return prices, financials


def make_record(
    version: str = "v42",
    *,
    branch: str = "user.test",
    feature_set: FeatureSet = FULL,
    candidate_id: str = "ridge[alpha=1.0]",
    factory: str = "ridge",
    params: dict[str, Any] | None = None,
    **fields: Any,
) -> ModelRecord:
    """A registry record of a model trained by ``TrainFlow/<number of version>``; any field can be overridden."""
    run = version.lstrip("v") or "0"
    values: dict[str, Any] = {
        "version": version,
        "branch": branch,
        "run_pathspec": f"TrainFlow/{run}",
        "model_task": f"TrainFlow/{run}/refit/7",
        "candidate": {
            "candidate_id": candidate_id,
            "name": factory,
            "factory": factory,
            "params": RIDGE_PARAMS if params is None else params,
            "random_seed": 0,
        },
        "data_version": "abc123",
        "snapshot_run": "IngestFlow/1",
        "feature_set": feature_set.name,
        "feature_fingerprint": feature_set.fingerprint,
        "code_version": None,
        "metrics": {"mean_fold_rmse": 1.0, "rmse_vs_naive": 0.99},
        "gate": {"promote": True, "reason": "beats the naive baseline"},
    }
    return ModelRecord(**(values | fields))


def fit_model(market: MarketData, record: ModelRecord) -> Any:
    """The record's model (its candidate spec) fitted on every usable row of the market."""
    from stockcast.train.factories import fit_candidate
    from stockcast.train.selection import build_modelling_data, champion_spec

    data = build_modelling_data(
        market.prices, market.financials, None, get_feature_set(record.feature_set), actions=market.actions
    )
    return fit_candidate(champion_spec(record), data.read(), data.feature_columns, data.categorical_columns)


def make_bundle(
    market: MarketData,
    record: ModelRecord | None = None,
    *,
    estimator: Any | None = None,
    prices: pd.DataFrame | None = None,
) -> Any:  # -> ServingBundle
    """The serving bundle of ``record`` (default ``make_record()``) on ``market`` (or on ``prices`` cut from it), with
    ``estimator`` or the record's model fitted on the market."""
    from stockcast.serve.bundle import build_bundle

    record = record or make_record()
    fitted = estimator if estimator is not None else fit_model(market, record)
    return build_bundle(
        record,
        market.prices if prices is None else prices,
        market.financials,
        actions=market.actions,
        estimator=fitted,
    )


def market_until(market: MarketData, last_day: str | pd.Timestamp) -> dict[str, pd.DataFrame]:
    """The market's tables as known at the close of ``last_day``: prices up to it, reports published by it, actions
    effective by it (what a snapshot ingested that evening holds)."""
    day = pd.Timestamp(last_day)
    return {
        "prices": market.prices[market.prices["date"] <= day].reset_index(drop=True),
        "financials": market.financials[market.financials["report_date"] <= day].reset_index(drop=True),
        "actions": market.actions[market.actions["ex_date"] <= day].reset_index(drop=True),
    }


def publish_market(store: Any, branch: str, market: MarketData, last_day: str | pd.Timestamp) -> Any:
    """Publish the market as known at ``last_day`` as the branch's newest snapshot, by the code IngestFlow publishes
    with (partitions, manifest, head), and return its ``SnapshotHead``."""
    from stockcast.data.calendar import DATA_CALENDAR
    from stockcast.data.config import DEFAULT_TICKER_PATTERN
    from stockcast.data.heads import SnapshotHead, publish_head
    from stockcast.data.partitions import partition_table, snapshot_version, write_tables

    tables = market_until(market, last_day)
    partitions = {name: partition_table(name, table) for name, table in tables.items()}
    manifest, _ = write_tables(store, {**partitions, "oracle": None}, None)
    summary = {
        "version": snapshot_version(partitions),
        "date_range": [str(tables["prices"]["date"].min().date()), str(tables["prices"]["date"].max().date())],
        "calendar": DATA_CALENDAR,
        "ticker_pattern": DEFAULT_TICKER_PATTERN,
    }
    head = SnapshotHead.of(summary, manifest, run="IngestFlow/1")
    publish_head(store, branch, head)
    return head


def with_record(bundle: Any, **fields: Any) -> Any:  # -> ServingBundle
    """The bundle with some fields of its record changed (another version, another run)."""
    return replace(bundle, record=replace(bundle.record, **fields))


# --- Training configurations and the planted market ---------------------------------------------------------------

SMALL_CONFIG = """
feature_set = "full"
seed = 7

[backtest]
n_folds = 3
test_days = 60
gap_days = 1
window = "expanding"
min_train_days = 120

[gate]
alpha = 0.05
min_days = 20

[plan]
folds_per_task = 3        # one backtest task per candidate: every factory, without three times the task start-ups

[[candidates]]
name = "naive"
factory = "naive"

[[candidates]]
name = "drift"
factory = "drift"

[[candidates]]
name = "ridge"
factory = "ridge"
grid = { alpha = [10.0] }

[[candidates]]
name = "hist_gbm"
factory = "hist_gradient_boosting"
params = { max_iter = 30, min_samples_leaf = 50 }
grid = { learning_rate = [0.1] }

[[candidates]]
name = "catboost"
factory = "catboost"
params = { iterations = 40, thread_count = 1 }
grid = { depth = [3] }
"""
"""Every factory of the zoo, each small: the configuration of the test that compares a full model selection. The work
is split as little as it can be (one features task, one backtest task per candidate): task start-ups cost."""


def config_with(config: str, names: list[str]) -> str:
    """A training configuration keeping only the candidates named (in their order in ``config``)."""
    head, *blocks = config.split("[[candidates]]")
    kept = [block for block in blocks if any(f'name = "{name}"' in block.split("\n")[1] for name in names)]
    return head + "".join(f"[[candidates]]{block}" for block in kept)


QUICK_CONFIG = config_with(SMALL_CONFIG, ["naive", "ridge"])
"""Naive and ridge only: a quick TrainFlow run that still beats naive on the planted market, for the tests that need
a champion (or a run to resume) rather than a model selection."""

SPLIT_CONFIG = QUICK_CONFIG.replace(
    "[plan]\nfolds_per_task = 3", "[plan]\ntickers_per_shard = 21\nfolds_per_task = 1"
).replace("[backtest]\n", "[backtest]\nmax_train_rows = 1000\n")
"""``QUICK_CONFIG`` with its work split as far as it goes: the planted market's 41 tickers (a rename makes one more)
or the random walk's 40 in two features shards, one backtest task per candidate and fold, each fold trained on a
sample of 1,000 rows (the memory bound of a large market, binding here). The flow tests on each datastore check that
the split changes no result."""

PLANTED = MarketSpec(
    n_tickers=40,
    start="2022-06-01",
    end="2024-12-31",
    seed=5,
    reversal_speed=0.5,
    overreaction_share=1.0,
    earnings_drift_share=0.5,
    valuation_pull=0.01,
    quirks=True,
)
"""A market whose predictable part is strong enough that 40 tickers × 2.5 years settle the gate clearly, with every
quirk of real data (splits both ways, a spin-off, a rename with a gap, delistings, late listings, missing days and
exchange holidays; actions known from adj_close, as a vendor's file gives them)."""

HELD_OUT_DAYS = 2
"""The planted market's last days, held out as day folders for the daily loop."""
SHIFT_DAY = 2  # a calm held-out day, then volatility sixteen times higher from the second one on
REGIME_VOL_MULTIPLIER = 16.0
# Drift is judged on 1-day windows, so that the regime shows on its first day: on this market 4 of 53 features are
# beyond their usual distance on the calm day, 20 on the first day of the regime. Performance alerts are held off,
# and a retrain may follow the previous one at once, so that only the regime change calls for retraining, as soon
# as it shows.
OPERATE_CONFIG = """
[monitor]
window_days = 5
min_days = 2
max_rmse_vs_naive = 1.5
max_decay_vs_backtest = 1.5
drift_window_days = 1
max_drifted_share = 0.2
retrain_cooldown_days = 0
"""


@dataclass(frozen=True)
class Market:
    """The files of the planted market: the history, and one folder per held-out day; and the truth of its corporate
    actions (the files carry them in adj_close only, as a vendor's prices do)."""

    history: dict[str, Path]
    days: list[Path]
    shift_date: str
    actions: pd.DataFrame


def write_planted_market(folder: Path) -> Market:
    """``PLANTED`` with a volatility regime from its ``SHIFT_DAY``-th held-out day on, written as the history's files
    and one folder per held-out day."""
    dates = PLANTED.trading_days()
    shift_date = f"{dates[-HELD_OUT_DAYS + SHIFT_DAY - 1]:%Y-%m-%d}"
    spec = replace(PLANTED, regime_shift_date=shift_date, regime_vol_multiplier=REGIME_VOL_MULTIPLIER)
    generated = generate_market(spec)
    history, days = split_days(generated, HELD_OUT_DAYS)
    return Market(
        history=write_market(history, folder / "history"),
        days=write_days(days, folder / "days"),
        shift_date=shift_date,
        actions=generated.actions,
    )
