"""The lifecycle under a change of regime, replayed day by day with the default monitoring thresholds (performance
alerts on): the planted market, every quirk of real data, whose reversal turns into momentum from one day on (a change
of factor loadings, volatility unchanged), beside the same market without the change.

On the changed market the champion learnt reversal and now does harm: the change must be flagged within 10 trading
days, a model promoted after it, and over the following 40 days the new champion's realised error must be below the
frozen old champion's, scored as a shadow on the same days. On the unchanged market, over the days the change was
flagged and its champion replaced and a cooldown more, nothing but a non-inferior refresh may be promoted, and no
performance alert may fire. Each replay is one test, so each runs once whatever the workers."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from stockcast.core.registry import Registry
from stockcast.core.storage import LocalStore
from stockcast.data.config import DataConfig
from stockcast.data.synthetic.generator import generate_market, write_market
from stockcast.operate.monitoring import join_realised
from stockcast.operate.replay import Replay, ReplaySettings, read_history, run_replay
from stockcast.operate.tables import load_predictions
from stockcast.train.config import TrainConfig, parse_train_config
from tests.factories import PLANTED, QUICK_CONFIG

pytestmark = pytest.mark.long

SHIFT = pd.Timestamp("2024-10-01")
BEFORE, AFTER = 5, 61  # replayed trading days before the change, and from it on
FLAGGED_WITHIN, FOLLOWING = 10, 40
AFTER_UNCHANGED = 25  # without the change: past the days the change was flagged (6) and its champion replaced (19)
PERFORMANCE_KINDS = {"performance", "decay"}


def replayed(tmp_path: Path, reversal_scale: float | None, after: int) -> tuple[Replay, pd.DatetimeIndex]:
    """The planted market (with the change from ``SHIFT`` when ``reversal_scale`` is given), replayed from ``BEFORE``
    days before ``SHIFT`` (so ``SHIFT`` is replayed day ``BEFORE``) for ``BEFORE + after`` days, on the quick zoo
    and the default operations configuration."""
    spec = PLANTED
    if reversal_scale is not None:
        spec = replace(
            PLANTED,
            regime_shift_date=f"{SHIFT:%Y-%m-%d}",
            regime_vol_multiplier=1.0,
            regime_reversal_scale=reversal_scale,
        )
    write_market(generate_market(spec), tmp_path / "market")
    history = read_history(
        str(tmp_path / "market" / "stock_price.csv"), str(tmp_path / "market" / "financial_info.csv"), DataConfig()
    )
    shift = history.price_dates.get_loc(SHIFT)
    days = history.price_dates[shift - BEFORE : shift + after]
    settings = ReplaySettings(train=TrainConfig.model_validate(parse_train_config(QUICK_CONFIG)), branch="test.regime")
    return run_replay(history, days, settings, LocalStore(tmp_path / "store")), days


def alert_kinds(alerts: str) -> set[str]:
    """The kinds of the alerts in a day's ``alerts`` text (``[decay] ...; [drift] ...``)."""
    return set(re.findall(r"\[(\w+)\]", alerts))


def realised_return_rmse(replay: Replay, version: str, as_of: pd.DatetimeIndex) -> tuple[float, pd.MultiIndex]:
    """The realised RMSE of ``version``'s published predicted returns as of ``as_of`` days, and the rows it covers."""
    predictions = load_predictions(replay.store, replay.settings.branch)
    mine = predictions[(predictions["model_version"] == version) & pd.to_datetime(predictions["as_of"]).isin(as_of)]
    joined = join_realised(mine, replay.history.prices, replay.history.actions)
    return float(np.sqrt((joined["return_error"] ** 2).mean())), pd.MultiIndex.from_frame(joined[["as_of", "ticker"]])


def test_a_change_of_regime_is_flagged_and_the_champion_replaced_by_one_that_does_better(tmp_path: Path) -> None:
    replay, days = replayed(tmp_path, reversal_scale=-1.0, after=AFTER)
    shift = BEFORE
    kinds = [alert_kinds(day.alerts) for day in replay.days]

    flagged = next(position for position, found in enumerate(kinds) if found & PERFORMANCE_KINDS)
    assert shift <= flagged < shift + FLAGGED_WITHIN, [day.alerts for day in replay.days[: shift + FLAGGED_WITHIN]]
    promoted = next(position for position, day in enumerate(replay.days) if day.promoted and position >= flagged)
    old, new = replay.days[shift].model_version, replay.days[promoted].promoted
    assert new != old and replay.days[promoted + 1].model_version == new

    # The following 40 days: the new champion served them, and the old one, frozen, was scored beside it as a shadow.
    following = days[promoted + 1 : promoted + 1 + FOLLOWING]
    assert len(following) == FOLLOWING and {day.model_version for day in replay.days[promoted + 1 :]} == {new}
    new_rmse, new_rows = realised_return_rmse(replay, new, following)
    old_rmse, old_rows = realised_return_rmse(replay, old, following)
    assert new_rows.equals(old_rows) and len(new_rows) > 30 * FOLLOWING
    # Measured: flagged 6 days after the change, naive promoted (the fallback) 19 days after it, and 0.0246 < 0.0291.
    assert new_rmse < old_rmse, (new_rmse, old_rmse)


def test_without_the_change_nothing_but_a_refresh_is_promoted_and_no_performance_alert_fires(tmp_path: Path) -> None:
    replay, _ = replayed(tmp_path, reversal_scale=None, after=AFTER_UNCHANGED)

    registry = Registry(replay.settings.branch, replay.store)
    first = registry.get(replay.days[0].model_version)
    assert first.candidate_id != "naive"  # a learned champion, whose performance can fall behind
    assert sum(np.isfinite(day.rolling_return_rmse_vs_naive) for day in replay.days) >= len(replay.days) - 1
    assert not any(alert_kinds(day.alerts) & PERFORMANCE_KINDS for day in replay.days)
    for day in replay.days:  # measured: none over these days (the model-age refresh comes on 2024-12-23)
        if day.promoted:
            record = registry.get(day.promoted)
            assert record.candidate_id == first.candidate_id
            assert record.gate["reason"].startswith("Promote refresh"), record.gate["reason"]
