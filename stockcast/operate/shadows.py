"""Shadow scoring: models that do not serve, scored every day on the closes that follow, beside the champion.

The champion's realised record says how it does; it does not say whether another model would do better. So every
day BatchPredictFlow also predicts with the branch's **shadows** and publishes their tables beside the champion's
(``stockcast.operate.tables``: keyed by as-of date and model version, written once), never acting on them:

- the **previous champion**, the model the current one replaced (was replacing it right?);
- the **latest challenger**, the newest registered model the gate did not promote (was refusing it right?).

MonitorFlow realises their tables as it realises the champion's and compares each shadow with the champion, and
with the naive baseline, on the days and tickers the shadow and the champion both predicted, by the gate's
one-sided Diebold–Mariano test on daily squared return errors (``stockcast.train.gate``). A shadow significantly
better than both, over at least ``min_days`` realised days, is promoted: realised evidence is what the gate's
backtest only estimates.

Monitoring judges every day, on a record that grows by a day each time, and there may be two shadows: each of those
looks is a chance of a false promotion. So a test passes only at the Bonferroni level alpha / (shadows x looks), the
looks being the realised days from ``min_days`` on: over all the days it is judged, a shadow no better than the
champion is promoted with probability at most ``alpha``. (Conservative: a clearly better shadow, p far below it,
still passes within weeks.)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from stockcast.core.registry import ModelRecord, Registry
from stockcast.data.snapshot import Snapshot, load_snapshot
from stockcast.operate.monitoring import MonitorThresholds, join_realised
from stockcast.operate.tables import Publication, load_predictions, publish_predictions
from stockcast.train.gate import diebold_mariano

ShadowRole = Literal["previous champion", "latest challenger"]
SCORE_COLUMNS = [
    "version",
    "role",
    "n_days",
    "return_rmse",
    "champion_return_rmse",
    "naive_return_rmse",
    "p_vs_champion",
    "p_vs_naive",
    "level",
    "promote",
]


@dataclass(frozen=True)
class Shadow:
    """A model scored beside the champion, and why it is one."""

    version: str
    role: ShadowRole


def shadow_models(registry: Registry) -> list[Shadow]:
    """The branch's shadows: the champion's predecessor and the newest model never promoted (none before the first
    champion)."""
    history = registry.history()
    if not history:
        return []
    champion, previous = history[-1].version, history[-1].previous
    shadows = [Shadow(previous, "previous champion")] if previous and previous != champion else []
    promoted = {event.version for event in history}
    unpromoted = [registry.get(version) for version in registry.versions() if version not in promoted]
    if unpromoted:
        latest = max(unpromoted, key=lambda record: (record.registered_at, record.version))
        shadows.append(Shadow(latest.version, "latest challenger"))
    return shadows


def publish_shadow_predictions(
    registry: Registry,
    snapshot: Snapshot,
    *,
    load_model: Callable[[ModelRecord], Any] = ModelRecord.load_model,
) -> list[dict[str, str]]:
    """Predict the snapshot's last day with every shadow and publish each table beside the registry (once per day and
    model); what was done for each, as rows for the run's artefact. A shadow this code cannot predict with (another
    feature-set version, nothing to answer) is skipped with the reason: shadows never stop the champion's day.
    ``load_model`` gives a record's fitted model (by default from its training task; a replay keeps its models in
    memory)."""
    from stockcast.serve.batch import predict_snapshot

    done = []
    for shadow in shadow_models(registry):
        record: ModelRecord = registry.get(shadow.version)
        try:
            table = predict_snapshot(record, snapshot, load_model(record))
            publication = publish_predictions(table, registry.store, registry.branch)
        except (ValueError, RuntimeError) as exc:  # FeatureSetMismatch, IncompatibleInputsError, NaN predictions
            done.append({"version": shadow.version, "role": shadow.role, "outcome": f"skipped: {exc}"})
            continue
        outcome = "published" if publication.written else "already published"
        done.append({"version": shadow.version, "role": shadow.role, "outcome": f"{outcome}: {publication.url}"})
    return done


@dataclass(frozen=True)
class DayTables:
    """A day's prediction tables of record: the champion's publication, and what was done for each shadow."""

    champion: Publication
    shadows: list[dict[str, str]]


def publish_day(
    table: pd.DataFrame,
    registry: Registry,
    snapshot: Snapshot,
    *,
    load_model: Callable[[ModelRecord], Any] = ModelRecord.load_model,
) -> DayTables:
    """BatchPredictFlow's publish step: the champion's table, written once per day and model (a table already there
    is kept, and is the one decisions and monitoring use), then each shadow's (``publish_shadow_predictions``)."""
    publication = publish_predictions(table, registry.store, registry.branch)
    shadows = publish_shadow_predictions(registry, snapshot, load_model=load_model)
    return DayTables(publication, shadows)


def score_shadows(
    published: pd.DataFrame,
    prices: pd.DataFrame,
    actions: pd.DataFrame | None,
    *,
    champion: str,
    shadows: list[Shadow],
    alpha: float,
    min_days: int,
) -> pd.DataFrame:
    """Each shadow's realised record against the champion's and the naive baseline's (``SCORE_COLUMNS``; see the
    module's description): ``promote`` is true when it beats both beyond chance (p below ``level``, the Bonferroni
    level of its looks) over at least ``min_days`` days."""
    if not shadows:
        return pd.DataFrame(columns=SCORE_COLUMNS)
    realised = join_realised(published, prices, actions)
    rows = []
    for shadow in shadows:
        mine = realised[realised["model_version"] == shadow.version]
        paired = mine.merge(
            realised.loc[realised["model_version"] == champion, ["as_of", "ticker", "return_error"]],
            on=["as_of", "ticker"],
            suffixes=("", "_champion"),
        )
        shadow_loss = _daily_losses(paired)
        champion_loss = _daily_losses(paired, column="return_error_champion")
        naive_loss = _daily_losses(paired, column="naive_return_error")
        n_days = len(shadow_loss)
        judged = n_days >= max(min_days, 2)
        level = alpha / (len(shadows) * (n_days - min_days + 1)) if judged else float("nan")
        p_champion = diebold_mariano(shadow_loss, champion_loss).p_value if judged else float("nan")
        p_naive = diebold_mariano(shadow_loss, naive_loss).p_value if judged else float("nan")
        rows.append(
            {
                "version": shadow.version,
                "role": shadow.role,
                "n_days": n_days,
                "return_rmse": _rmse(paired["return_error"]),
                "champion_return_rmse": _rmse(paired["return_error_champion"]),
                "naive_return_rmse": _rmse(paired["naive_return_error"]),
                "p_vs_champion": p_champion,
                "p_vs_naive": p_naive,
                "level": level,
                "promote": bool(judged and p_champion < level and p_naive < level),
            }
        )
    return pd.DataFrame(rows, columns=SCORE_COLUMNS)


def shadow_to_promote(scores: pd.DataFrame) -> pd.Series | None:
    """The shadow to promote: of those that may be, the one with the lowest realised return RMSE (None if none)."""
    candidates = scores[scores["promote"]]
    if candidates.empty:
        return None
    return candidates.sort_values(["return_rmse", "version"]).iloc[0]


def promotion_reason(row: pd.Series, champion: str) -> str:
    """Why a shadow replaces the champion, with the numbers, for the registry's event."""
    return (
        f"Promote {row['version']} ({row['role']}, scored in shadow): over {row['n_days']} realised days its return "
        f"RMSE {row['return_rmse']:.4g} beats the champion {champion}'s {row['champion_return_rmse']:.4g} "
        f"(one-sided DM p = {row['p_vs_champion']:.3g} < {row['level']:.3g}, alpha shared out over the shadows and "
        f"the days judged) and the naive baseline's {row['naive_return_rmse']:.4g} (p = {row['p_vs_naive']:.3g})."
    )


def judge_shadows(
    registry: Registry,
    snapshot: Snapshot,
    champion: ModelRecord,
    thresholds: MonitorThresholds,
    *,
    promote: Callable[..., None] | None = None,
) -> tuple[pd.DataFrame, str]:
    """Score the branch's shadows on the snapshot's closes (``score_shadows``) and promote the best one that beats
    the champion and naive beyond chance; the scores, and the promotion's reason (empty when there was none). Nothing
    is promoted when the champion changed since ``champion`` was read: the scores judged another one. ``promote``
    (default ``promote_shadow``, which packages a Bento first) takes the registry, the record, ``reason`` and
    ``expected_champion``; a replay promotes in its registry alone."""
    scores = score_shadows(
        load_predictions(registry.store, registry.branch),
        snapshot.prices,
        snapshot.actions,
        champion=champion.version,
        shadows=shadow_models(registry),
        alpha=thresholds.shadow_alpha,
        min_days=thresholds.shadow_min_days,
    )
    best = shadow_to_promote(scores)
    if best is None or registry.champion_version() != champion.version:
        return scores, ""
    reason = promotion_reason(best, champion.version)
    (promote or promote_shadow)(
        registry, registry.get(best["version"]), reason=reason, expected_champion=champion.version
    )
    return scores, reason


def promote_shadow(registry: Registry, record: ModelRecord, *, reason: str, expected_champion: str) -> None:
    """Make the shadow ``record`` the champion; a model the gate never promoted has no Bento yet, and is packaged from
    the snapshot it was trained on first (``stockcast.deploy.package.release``: a champion always has a Bento)."""
    if registry.bento(record.version) is not None:
        registry.promote(record.version, reason=reason, expected_champion=expected_champion)
        return
    from stockcast.deploy.package import release

    release(
        registry,
        record,
        promote=True,
        reason=reason,
        expected_champion=expected_champion,
        snapshot=load_snapshot(record.snapshot_run),
    )


def _daily_losses(rows: pd.DataFrame, column: str = "return_error") -> pd.Series:
    """Mean squared return error per as-of day, in date order: the gate's loss series, on realised rows."""
    squared = rows[column].astype(float) ** 2
    return squared.groupby(rows["as_of"]).mean().sort_index()


def _rmse(errors: pd.Series) -> float:
    return float(np.sqrt((errors.astype(float) ** 2).mean())) if len(errors) else float("nan")
