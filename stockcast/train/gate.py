"""The promotion gate: does the challenger beat the naive baseline and the champion, beyond chance?

A lower mean RMSE over a few folds can be luck. The gate pairs the models' predictions day by day on the same
test rows and runs a one-sided Diebold–Mariano test on the daily loss differential

    d_t = L_challenger(t) - L_reference(t),   L(t) = mean over tickers of (predicted_return - next_return)^2,

with a Newey–West (HAC) long-run variance, because squared errors cluster in volatile spells, and the
Harvey–Leybourne–Newbold small-sample correction with Student-t critical values. H0: E[d] = 0; H1: E[d] < 0.
The challenger is promoted only if both tests reject at `alpha`. Requiring every test to pass (an
intersection-union test) keeps the overall false-promotion rate at most `alpha`, with no multiplicity correction.
Losses are on the predicted next-day return, which is scale-free: on price, a $500 stock would weigh 10,000 times
as much as a $5 one. (The squared return error is the squared price error divided by the close squared, so it is
the price loss with every ticker brought to one scale.) RMSE on price stays in every report.

The champion's predictions must come from re-scoring it on the new data with the same folds (the flow does
that), never from its old numbers: the decision is only meaningful on the same days and the same rows.

Two more rules keep the served model fresh without letting a worse one through:

- **The champion is also judged as it served.** What the deployed, frozen champion predicted on the days after its
  training data ended is genuine out-of-sample evidence (``served``: its published predictions, paired with the
  challenger's walk-forward predictions and realised returns on the same rows). For a new spec it is a third
  comparison under the champion's rule, judged once there are ``min_days`` such days (before that it is shown, not
  required).
- **A refresh needs to be no worse, not better, and that is judged on what the champion served.** A challenger that
  is the champion's own spec refitted on newer data is, re-scored on the same folds, the champion itself: identical
  predictions, no evidence either way (p = 0.5), so that comparison is left out. Instead the refit must beat naive
  and pass a non-inferiority test against the champion as it served, with a relative margin m
  (``refresh_margin``): H0: E[L_refit] >= (1 + m) E[L_served], the same one-sided DM test on
  L_refit - (1 + m) L_served, required, on at least ``min_days`` served days. A champion that has not served that
  long is not refreshed yet. At the boundary of H0 it is passed at the nominal rate ``alpha`` (tested).

And one rule does no harm while no model is good: **a champion that, as it served, does significantly worse than
naive is replaced by naive** (``as_fallback``), by the same one-sided test of naive's walk-forward losses against the
champion's served ones on at least ``min_days`` days, when the challenger is refused, or is a refresh that naive also
beats on those days (its bar, "no worse than what the champion served", says nothing then). When the world changes
under a model (a momentum spell where it learnt reversal), it can do worse than "tomorrow = today" for weeks before a
refit learns the new regime; nothing may pass the gate in that time, but naive needs no evidence of skill. Each
retrain's test passes a champion as good as naive at rate ``alpha`` at most (retrains at every cooldown look again),
and a fallback is harmless.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from stockcast.core.frames import require_columns

PAIRED_COLUMNS = ["candidate_id", "date", "ticker", "next_return", "predicted_return"]
"""What the gate reads of each model's backtest predictions (``stockcast.train.backtest.backtest``)."""


@dataclass(frozen=True)
class DMResult:
    """A one-sided Diebold–Mariano test of "loss A is lower than loss B" (HLN-corrected)."""

    statistic: float
    p_value: float
    mean_difference: float
    n: int
    max_lag: int


@dataclass(frozen=True)
class GateDecision:
    """Whether to promote the challenger, a readable reason with the numbers, and every comparison as data."""

    challenger_id: str
    promote: bool
    reason: str
    alpha: float
    comparisons: list[dict[str, Any]] = field(default_factory=list)
    baseline: bool = False
    """True when the naive baseline is promoted: the branch had no champion and nothing beat naive, or the champion
    served worse than naive (``as_fallback``)."""

    def to_dict(self) -> dict[str, Any]:
        """A plain dict, for the model's lineage record and cards."""
        return asdict(self)


def newey_west_lag(n: int) -> int:
    """Newey and West's (1994) rule-of-thumb truncation lag, floor(4 (n/100)^(2/9)): 4 for a year of days."""
    return math.floor(4 * (n / 100) ** (2 / 9))


def diebold_mariano(loss_a: Any, loss_b: Any, *, horizon: int = 1, max_lag: int | None = None) -> DMResult:
    """Test whether loss series A is lower on average than loss series B, pairing them day by day.

    The long-run variance of d = A - B uses Bartlett (Newey–West) weights up to `max_lag`, by default the larger
    of `horizon - 1` (the lag the original test uses) and `newey_west_lag(n)`. The statistic is multiplied by the
    Harvey–Leybourne–Newbold factor sqrt((n + 1 - 2h + h(h-1)/n) / n) and compared with Student-t(n - 1);
    the p-value is one-sided (small when A is better). HLN derived the factor for the truncated (h - 1 lag)
    variance; with Bartlett weights it is the customary small-sample adjustment. With `max_lag=0` and
    `horizon=1` the test reduces to the one-sample t-test of d. Identical series give statistic 0 and p-value
    0.5: no evidence either way.
    """
    a = np.asarray(loss_a, dtype=float)
    b = np.asarray(loss_b, dtype=float)
    if a.ndim != 1 or a.shape != b.shape:
        raise ValueError(f"loss series must be 1-D and of equal length, got shapes {a.shape} and {b.shape}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("loss series must be finite")
    n = len(a)
    if n < 2:
        raise ValueError(f"the Diebold–Mariano test needs at least 2 paired observations, got {n}")
    if horizon < 1:
        raise ValueError(f"horizon must be at least 1, got {horizon}")

    difference = a - b
    mean_difference = float(difference.mean())
    lag = max(horizon - 1, newey_west_lag(n)) if max_lag is None else max_lag
    lag = min(max(lag, 0), n - 1)
    centred = difference - mean_difference
    autocovariances = np.array([centred[k:] @ centred[: n - k] / n for k in range(lag + 1)])
    bartlett_weights = 1.0 - np.arange(1, lag + 1) / (lag + 1)
    long_run_variance = autocovariances[0] + 2.0 * float(bartlett_weights @ autocovariances[1:])

    if long_run_variance > 0:
        dm_statistic = mean_difference / math.sqrt(long_run_variance / n)
    else:
        # A constant differential: no sampling noise at all, so the sign of the mean decides outright.
        dm_statistic = math.copysign(math.inf, mean_difference) if mean_difference != 0 else 0.0
    hln_factor = math.sqrt((n + 1 - 2 * horizon + horizon * (horizon - 1) / n) / n)
    statistic = hln_factor * dm_statistic
    from scipy import stats  # about half a second to import: only when a test is computed, not for the card

    p_value = float(stats.t.cdf(statistic, df=n - 1))
    return DMResult(statistic=statistic, p_value=p_value, mean_difference=mean_difference, n=n, max_lag=lag)


def daily_losses(predictions: pd.DataFrame) -> pd.Series:
    """Mean squared return error across tickers for each test date, in date order: the gate's loss series."""
    require_columns(predictions, ["date", "next_return", "predicted_return"], "predictions")
    squared_error = (predictions["predicted_return"] - predictions["next_return"]) ** 2
    return squared_error.groupby(predictions["date"]).mean().sort_index()


def compare(
    challenger_predictions: pd.DataFrame,
    reference_predictions: pd.DataFrame,
    *,
    against: str,
    alpha: float,
    min_days: int,
    margin: float = 0.0,
    required: bool = True,
) -> dict[str, Any]:
    """One gate comparison, as data: the DM test of challenger vs. reference on their common (date, ticker) rows;
    with a ``margin``, of non-inferiority (the challenger's loss is at most ``1 + margin`` times the reference's).

    Both must have been scored against the same realised closes; otherwise a ValueError says so, since comparing
    predictions of different data would be meaningless. A comparison that is not ``required`` counts only once it
    has ``min_days`` paired days (``judged``); before that it passes, shown as not yet judged.
    """
    require_columns(challenger_predictions, PAIRED_COLUMNS, "challenger predictions")
    require_columns(reference_predictions, PAIRED_COLUMNS, f"{against} predictions")
    paired = challenger_predictions[PAIRED_COLUMNS].merge(
        reference_predictions[PAIRED_COLUMNS],
        on=["date", "ticker"],
        suffixes=("_challenger", "_reference"),
        validate="one_to_one",
    )
    if not np.allclose(paired["next_return_challenger"], paired["next_return_reference"], rtol=1e-9, atol=1e-12):
        raise ValueError(
            f"the challenger and the {against} were scored against different realised closes: "
            "re-score the reference on the same data before comparing"
        )
    loss_challenger = daily_losses(paired.rename(columns=_strip_suffix("_challenger")))
    loss_reference = daily_losses(paired.rename(columns=_strip_suffix("_reference")))
    n_days = len(loss_challenger)
    result = diebold_mariano(loss_challenger, (1.0 + margin) * loss_reference) if n_days >= 2 else None
    judged = required or n_days >= min_days
    return {
        "challenger_id": str(challenger_predictions["candidate_id"].iloc[0]),
        "against": against,
        "reference_id": str(reference_predictions["candidate_id"].iloc[0]) if len(reference_predictions) else "",
        "statistic": result.statistic if result else float("nan"),
        "p_value": result.p_value if result else float("nan"),
        "mean_loss_difference": float((loss_challenger - loss_reference).mean()) if n_days else float("nan"),
        "n_days": n_days,
        "margin": margin,
        "judged": judged,
        "passed": bool(not judged or (result is not None and n_days >= min_days and result.p_value < alpha)),
    }


def decide(
    challenger_predictions: pd.DataFrame,
    naive_predictions: pd.DataFrame,
    champion_predictions: pd.DataFrame | None,
    *,
    alpha: float,
    min_days: int = 20,
    refresh_margin: float | None = None,
    served_predictions: pd.DataFrame | None = None,
) -> GateDecision:
    """Promote the challenger only if it significantly beats the naive baseline and the champion (if any), and the
    champion as it served (``served_predictions``, ``served_reference``) once that has ``min_days`` paired days. A
    refresh (``refresh_margin`` given: the champion's own spec refitted) must beat naive and be no worse than the
    champion as it served by more than that margin, beyond chance, on at least ``min_days`` served days.

    All inputs but the served ones are backtest predictions (`stockcast.train.backtest.backtest`) on the same folds;
    each comparison pairs the rows both frames share and needs at least `min_days` paired days. A new spec whose
    predictions equal the champion's is not promoted: it does not beat it.
    """
    if not 0 < alpha < 0.5:
        raise ValueError(f"alpha must be in (0, 0.5), got {alpha}")
    require_columns(challenger_predictions, PAIRED_COLUMNS, "challenger predictions")
    if challenger_predictions.empty:
        raise ValueError("the challenger has no backtest predictions to judge")
    challenger_id = str(challenger_predictions["candidate_id"].iloc[0])
    references = [("naive", naive_predictions, 0.0, True)]
    if champion_predictions is not None and refresh_margin is not None:
        # The refit re-scored on the folds is the champion itself: only what the champion served tells them apart.
        served = served_predictions if served_predictions is not None else champion_predictions.iloc[0:0]
        references.append(("served champion", served, refresh_margin, True))
    elif champion_predictions is not None:
        references.append(("champion", champion_predictions, 0.0, True))
        if served_predictions is not None:
            references.append(("served champion", served_predictions, 0.0, False))
    comparisons = [
        compare(
            challenger_predictions,
            reference,
            against=against,
            alpha=alpha,
            min_days=min_days,
            margin=reference_margin,
            required=required,
        )
        for against, reference, reference_margin, required in references
    ]
    failed = [comparison for comparison in comparisons if not comparison["passed"]]
    kind = "refresh " if refresh_margin is not None and champion_predictions is not None else ""
    if failed:
        reason = f"Do not promote {kind}{challenger_id}: it " + "; and it ".join(
            f"{_claim(comparison, negated=True)} ({_evidence(comparison, alpha, min_days)})" for comparison in failed
        )
    else:
        reason = f"Promote {kind}{challenger_id}: it " + " and ".join(
            f"{_claim(comparison)} ({_evidence(comparison, alpha, min_days)})" for comparison in comparisons
        )
        if champion_predictions is None:
            reason += "; there is no champion yet"
    return GateDecision(
        challenger_id=challenger_id, promote=not failed, reason=reason + ".", alpha=alpha, comparisons=comparisons
    )


def as_baseline(refused: GateDecision, naive_id: str) -> GateDecision:
    """The decision to promote the naive baseline itself, when a branch has no champion and the gate refused the
    challenger: so the API, batch prediction, decisions and monitoring run from the first day, and a later model
    replaces naive through the normal gate (it must beat naive, which is then also the champion)."""
    return GateDecision(
        challenger_id=naive_id,
        promote=True,
        reason=(
            f"Promote {naive_id} as the baseline champion: the branch has no champion, and nothing beat the naive "
            f"baseline ({refused.reason.rstrip('.')}). It serves until a model beats it through the gate."
        ),
        alpha=refused.alpha,
        comparisons=refused.comparisons,
        baseline=True,
    )


def as_fallback(judged: GateDecision, naive_id: str, harm: dict[str, Any], *, min_days: int) -> GateDecision:
    """The decision to fall back to the naive baseline: naive beat the champion as it served (``harm``: naive's
    walk-forward predictions compared with the served ones, passed), and the challenger was refused or was a refresh
    naive also beat on those days (``judged``). It serves until a model beats it through the gate."""
    return GateDecision(
        challenger_id=naive_id,
        promote=True,
        reason=(
            f"Fall back to {naive_id}: it {_claim(harm)} ({_evidence(harm, judged.alpha, min_days)}), so the "
            f"champion does harm as it serves; the challenger: {judged.reason.rstrip('.')}. {naive_id} serves until "
            "a model beats it through the gate."
        ),
        alpha=judged.alpha,
        comparisons=[*judged.comparisons, harm],
        baseline=True,
    )


def served_reference(challenger_predictions: pd.DataFrame, served: pd.DataFrame, label: str) -> pd.DataFrame:
    """The champion as it served, as gate rows: its published ``predicted_return`` for each (``as_of``, ticker), on
    the rows of the challenger's walk-forward predictions (whose realised ``next_return`` both are judged against),
    named ``label``. Rows it did not predict are left out."""
    require_columns(served, ["as_of", "ticker", "predicted_return"], "served predictions")
    dates = pd.to_datetime(served["as_of"]).astype(challenger_predictions["date"].dtype)
    published = served.assign(date=dates, ticker=served["ticker"].astype(str))
    published = published.drop_duplicates(["date", "ticker"], keep="last")
    rows = challenger_predictions[["date", "ticker", "next_return"]].merge(
        published[["date", "ticker", "predicted_return"]], on=["date", "ticker"], validate="one_to_one"
    )
    return rows.assign(candidate_id=label)[PAIRED_COLUMNS]


def _strip_suffix(suffix: str) -> dict[str, str]:
    return {f"next_return{suffix}": "next_return", f"predicted_return{suffix}": "predicted_return"}


def _name(comparison: dict[str, Any]) -> str:
    if comparison["against"] == "naive":
        return "the naive baseline"
    return f"the {comparison['against']} {comparison['reference_id']}".rstrip()


def _claim(comparison: dict[str, Any], *, negated: bool = False) -> str:
    """What the challenger showed against one reference: "beats X", or, for a refresh, "is not worse than X by more
    than m"; negated, what it failed to show."""
    name, margin = _name(comparison), comparison.get("margin")
    if not comparison.get("judged", True):
        return f"is not yet judged against {name}"
    if margin:
        if negated:
            return f"is not shown to be within {margin:.0%} of {name}"
        return f"is not worse than {name} by more than {margin:.0%}"
    return f"does not beat {name}" if negated else f"beats {name}"


def _evidence(comparison: dict[str, Any], alpha: float, min_days: int) -> str:
    if not comparison.get("judged", True):
        return f"{comparison['n_days']} paired days, fewer than {min_days}"
    if comparison["n_days"] < min_days:
        return f"only {comparison['n_days']} paired test days, fewer than the {min_days} required"
    relation = "<" if comparison["p_value"] < alpha else ">="
    margin = f" against a {comparison['margin']:.0%} margin" if comparison.get("margin") else ""
    return (
        f"mean daily squared return error difference {comparison['mean_loss_difference']:+.4g}, "
        f"DM statistic {comparison['statistic']:.2f}{margin}, one-sided p = {comparison['p_value']:.3g} {relation} "
        f"alpha {alpha:g}, over {comparison['n_days']} days"
    )
