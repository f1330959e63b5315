"""Shadows: which models are scored beside the champion, how their realised errors are judged, and a shadow that is
clearly better replacing the champion (a model without a Bento would be packaged first: see the flow tests)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pytest

from stockcast.core.registry import Registry
from stockcast.core.storage import LocalStore
from stockcast.operate.monitoring import MonitorThresholds
from stockcast.operate.shadows import (
    SCORE_COLUMNS,
    Shadow,
    judge_shadows,
    score_shadows,
    shadow_models,
    shadow_to_promote,
)
from stockcast.operate.tables import publish_predictions
from stockcast.serve.schema import TABLE_COLUMNS
from tests.factories import make_record, year_market

BRANCH = "user.shadow"


@pytest.fixture
def registry(tmp_path) -> Registry:
    return Registry(BRANCH, LocalStore(tmp_path / "store"))


def register(registry: Registry, version: str, registered_at: str) -> None:
    registry.register(make_record(version, branch=BRANCH, registered_at=registered_at))


def test_the_shadows_are_the_previous_champion_and_the_newest_model_never_promoted(registry) -> None:
    assert shadow_models(registry) == []
    for version, at in (("v1", "2026-01-01"), ("v2", "2026-02-01"), ("v10", "2026-03-01"), ("v9", "2026-02-15")):
        register(registry, version, at)
    registry.promote("v1", reason="first", expected_champion=None)
    assert shadow_models(registry) == [Shadow("v10", "latest challenger")]  # newest by registration, not by name

    registry.promote("v2", reason="better", expected_champion="v1")
    assert shadow_models(registry) == [Shadow("v1", "previous champion"), Shadow("v10", "latest challenger")]

    registry.rollback(reason="v2 misbehaved")  # v1 serves again; v2, which it replaced, is now the one to watch
    assert shadow_models(registry)[0] == Shadow("v2", "previous champion")


@pytest.fixture(scope="module")
def market() -> Any:
    return year_market(n_tickers=6, seed=7)


def tables(market: Any, version: str, noise: float, days: int, seed: int) -> list[pd.DataFrame]:
    """A model's published tables for the market's last ``days`` days but one: the realised close times a random
    error of size ``noise``."""
    prices = market.prices.sort_values(["ticker", "date"])
    realised = prices.groupby("ticker")["close"].shift(-1)
    rows = prices.assign(next_close=realised).dropna(subset=["next_close"])
    dates = sorted(rows["date"].unique())[-days:]
    rng = np.random.default_rng(seed)
    out = []
    for day in dates:
        today = rows[rows["date"] == day]
        predicted = today["next_close"].to_numpy() * (1 + rng.normal(0, noise, len(today)))
        out.append(
            pd.DataFrame(
                {
                    "ticker": today["ticker"].to_numpy(),
                    "as_of": day,
                    "last_close": today["close"].to_numpy(),
                    "predicted_return": predicted / today["close"].to_numpy() - 1,
                    "predicted_close": predicted,
                    "model_version": version,
                    "data_version": "d",
                    "feature_fingerprint": "f",
                }
            )[TABLE_COLUMNS]
        )
    return out


def score(market: Any, *, shadow_noise: float, days: int) -> pd.DataFrame:
    published = pd.concat(tables(market, "v1", 0.02, days, 1) + tables(market, "v2", shadow_noise, days, 2))
    return score_shadows(
        published,
        market.prices,
        market.actions,
        champion="v1",
        shadows=[Shadow("v2", "latest challenger")],
        alpha=0.05,
        min_days=20,
    )


def test_a_shadow_clearly_better_over_enough_days_is_to_be_promoted(market) -> None:
    scores = score(market, shadow_noise=0.005, days=30)

    assert list(scores.columns) == SCORE_COLUMNS
    (row,) = scores.itertuples()
    assert row.n_days == 30 and row.return_rmse < row.champion_return_rmse and row.return_rmse < row.naive_return_rmse
    assert row.p_vs_champion < 0.05 and row.p_vs_naive < 0.05 and row.promote
    assert shadow_to_promote(scores)["version"] == "v2"


def test_a_shadow_no_better_or_not_yet_judged_is_not_promoted(market) -> None:
    same = score(market, shadow_noise=0.02, days=30)
    early = score(market, shadow_noise=0.005, days=10)

    assert not same.loc[0, "promote"] and same.loc[0, "p_vs_champion"] > 0.05
    assert not early.loc[0, "promote"] and np.isnan(early.loc[0, "p_vs_champion"]) and early.loc[0, "n_days"] == 10
    assert shadow_to_promote(same) is None and shadow_to_promote(early) is None


@dataclass(frozen=True)
class Prices:
    """The part of a snapshot shadow scoring reads."""

    prices: pd.DataFrame
    actions: pd.DataFrame


def test_monitoring_promotes_a_clearly_better_shadow_with_its_numbers_in_the_reason(registry, market) -> None:
    for version, at in (("v1", "2026-01-01"), ("v2", "2026-02-01")):
        register(registry, version, at)
        registry.record_bento(version, {"bento_tag": f"stockcast:{version}"})
    registry.promote("v2", reason="first", expected_champion=None)
    registry.promote("v1", reason="gate", expected_champion="v2")  # v2 is now the previous champion: a shadow
    for table in tables(market, "v1", 0.02, 30, 1) + tables(market, "v2", 0.005, 30, 2):
        publish_predictions(table, registry.store, BRANCH)

    scores, reason = judge_shadows(
        registry, Prices(market.prices, market.actions), registry.get("v1"), MonitorThresholds()
    )

    assert scores.loc[0, "role"] == "previous champion" and scores.loc[0, "promote"]
    assert registry.champion_version() == "v2" and registry.history()[-1].reason == reason
    assert reason.startswith("Promote v2 (previous champion, scored in shadow): over 30 realised days its return RMSE")
    # Judged again against a champion that has changed since, nothing more happens.
    _, none = judge_shadows(registry, Prices(market.prices, market.actions), registry.get("v1"), MonitorThresholds())
    assert none == "" and registry.champion_version() == "v2"
