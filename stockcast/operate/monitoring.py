"""Monitoring: realised performance of past predictions, input drift, freshness, and when to retrain.

- `join_realised` pairs batch predictions with the closes that realise them; `daily_performance` turns the pairs
  into realised RMSE per day and over a rolling window, next to the naive baseline's on the same rows.
- `population_stability_index` and `ks_statistic` measure how far a feature's recent values moved from the
  training window's; `feature_drift` applies both to every numeric feature.
- `assess` compares all of it with `MonitorThresholds` and says which alerts fire and whether to retrain.
  Performance falling behind naive and decay against the backtest (each beyond chance: `excess_loss_p_value`),
  feature drift and an old model call for a retraining; stale data does not: a model retrained on the same stale
  snapshot would learn nothing new, so a freshness alert asks for ingestion instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
from pydantic import Field, NonNegativeInt, PositiveInt, ValidationInfo, field_validator

from features.adjust import PRICE_ACTIONS, price_factor
from stockcast.core.config import Settings
from stockcast.core.frames import json_ready, require_columns
from stockcast.serve.schema import PREDICTION_FIELDS
from stockcast.train.backtest import daily_information_coefficients
from stockcast.train.gate import diebold_mariano

PSI_EMPTY_BIN_SHARE = 1e-4
"""The share given to a bin that one side leaves empty: PSI takes log(current / reference) per bin, infinite for
an empty bin, so an empty bin counts as this share instead (a bin empty on both sides then contributes 0)."""
PRICE_COLUMNS = ["date", "ticker", "close"]
PERFORMANCE_COLUMNS = [
    "date",
    "n",
    "rmse",
    "naive_rmse",
    "rmse_vs_naive",
    "rolling_rmse",
    "rolling_naive_rmse",
    "rolling_rmse_vs_naive",
    "return_rmse",
    "naive_return_rmse",
    "return_rmse_vs_naive",
    "rolling_return_rmse_vs_naive",
    "rolling_days",
    "ic",
    "rank_ic",
]
DRIFT_COLUMNS = ["feature", "psi", "ks", "reference_rows", "current_rows", "drifted"]
AlertKind = Literal["performance", "decay", "drift", "freshness", "model_age", "decisions"]
RETRAINING_KINDS: frozenset[str] = frozenset({"performance", "decay", "drift", "model_age"})
"""Alert kinds that trigger a retraining; "freshness" and "decisions" do not (see the module docstring)."""


# --- Drift statistics ------------------------------------------------------------------------------------------


def population_stability_index(reference: Any, current: Any, *, bins: int = 10) -> float:
    """PSI of `current` against `reference`: sum over bins of (c - r) * ln(c / r), with r and c the shares of
    each side's values in the bin.

    Bins are cut at the reference's quantiles (so each holds about 1/bins of the reference; repeated quantiles of
    a discrete feature merge), the outer ones open-ended. Empty bins count as `PSI_EMPTY_BIN_SHARE`. NaNs are
    dropped; each side needs at least `bins` values, else ValueError. Rule of thumb: below 0.1 stable, 0.1-0.25
    a moderate shift, above 0.25 a large one.
    """
    return psi_reference(reference, bins=bins).psi(current)


@dataclass(frozen=True)
class PsiReference:
    """A reference distribution cut into PSI bins, so that many windows are compared with it at the cost of
    binning each (monitoring compares every feature's current window and dozens of calibration windows with one
    reference)."""

    edges: np.ndarray
    shares: np.ndarray
    bins: int

    def psi(self, current: Any) -> float:
        """PSI of `current` against this reference (see `population_stability_index`)."""
        current_share = _bin_shares(_finite(current, "current", self.bins), self.edges)
        return float(np.sum((current_share - self.shares) * np.log(current_share / self.shares)))


def psi_reference(reference: Any, *, bins: int = 10) -> PsiReference:
    """The reference side of `population_stability_index`: its bins and each bin's share of its values."""
    if bins < 2:
        raise ValueError(f"bins must be at least 2, got {bins}")
    reference_values = _finite(reference, "reference", bins)
    quantiles = np.quantile(reference_values, np.linspace(0.0, 1.0, bins + 1)[1:-1])
    edges = np.unique(quantiles)
    # Bin i holds edges[i-1] <= x < edges[i]; values below the first edge fall in bin 0, above the last in the last.
    return PsiReference(edges, _bin_shares(reference_values, edges), bins)


def _bin_shares(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    counts = np.bincount(np.searchsorted(edges, values, side="right"), minlength=len(edges) + 1)
    return np.maximum(counts / len(values), PSI_EMPTY_BIN_SHARE)


def ks_statistic(reference: Any, current: Any) -> float:
    """The two-sample Kolmogorov–Smirnov statistic D: the largest gap between the two empirical CDFs (0 = same
    distribution, 1 = disjoint). NaNs are dropped; each side needs at least one value."""
    # D alone, as scipy.stats.ks_2samp computes it (both CDFs at every value of either sample): monitoring computes
    # it for every feature every day, and scipy's wrapper cost more than the statistic.
    reference_values = np.sort(_finite(reference, "reference", 1))
    current_values = np.sort(_finite(current, "current", 1))
    values = np.concatenate([reference_values, current_values])
    reference_cdf = np.searchsorted(reference_values, values, side="right") / len(reference_values)
    current_cdf = np.searchsorted(current_values, values, side="right") / len(current_values)
    return float(np.max(np.abs(reference_cdf - current_cdf)))


def _finite(values: Any, side: str, minimum: int) -> np.ndarray:
    array = np.asarray(values, dtype=float).ravel()
    array = array[np.isfinite(array)]
    if len(array) < minimum:
        raise ValueError(f"{side} has {len(array)} non-missing values; at least {minimum} are needed")
    return array


def feature_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    feature_columns: Sequence[str],
    *,
    psi_threshold: float,
    bins: int = 10,
) -> pd.DataFrame:
    """PSI and KS of each numeric feature's current values against its reference values, largest PSI first.

    One row per numeric feature (`DRIFT_COLUMNS`); categorical and other non-numeric columns (a sector) are
    skipped, as quantile bins do not apply to them. `drifted` is psi >= psi_threshold. A feature with fewer than
    `bins` non-missing values on either side (fundamentals on data without financials) gets NaN statistics and
    is not drifted. A feature column missing from either frame is a ValueError.
    """
    for name, frame in {"reference": reference, "current": current}.items():
        missing = [column for column in feature_columns if column not in frame.columns]
        if missing:
            raise ValueError(f"{name} features lack column(s) {missing}")
    rows = []
    for column in feature_columns:
        if not (_is_number(reference[column]) and _is_number(current[column])):
            continue
        reference_values = reference[column].to_numpy(dtype=float, na_value=np.nan)
        current_values = current[column].to_numpy(dtype=float, na_value=np.nan)
        reference_rows = int(np.isfinite(reference_values).sum())
        current_rows = int(np.isfinite(current_values).sum())
        if min(reference_rows, current_rows) >= bins:
            psi = population_stability_index(reference_values, current_values, bins=bins)
            ks = ks_statistic(reference_values, current_values)
        else:
            psi = ks = float("nan")
        rows.append((column, psi, ks, reference_rows, current_rows, bool(psi >= psi_threshold)))
    drift = pd.DataFrame(rows, columns=DRIFT_COLUMNS)
    return drift.sort_values(["psi", "feature"], ascending=[False, True], na_position="last", ignore_index=True)


def _is_number(values: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)


# --- Realised performance --------------------------------------------------------------------------------------


def join_realised(predictions: pd.DataFrame, prices: pd.DataFrame, actions: pd.DataFrame | None = None) -> pd.DataFrame:
    """Past predictions beside the closes that realised them.

    A prediction made as of day d for a ticker is realised by that ticker's first price row after d (its next
    trading day, even when it skipped days). Adds `realised_date`, `realised_close` (on the basis of day d: a split or
    spin-off in between, from ``actions``, is undone, so a 2-for-1 split is not a 50 % miss), `error`
    (predicted_close - realised_close), `naive_error` (last_close - realised_close: the naive baseline's error on the
    same row) and both as returns, `return_error` and `naive_return_error` (divided by last_close: scale-free), and
    `realised_return` (the realised close over last_close, less one). Predictions whose ticker has no later price
    yet are left out: they are judged when their close arrives. All predictions are kept, several model versions'
    for the same (as_of, ticker) included: the caller filters.
    Sorted by (as_of, ticker, model_version).
    """
    require_columns(predictions, PREDICTION_FIELDS, "predictions")
    require_columns(prices, PRICE_COLUMNS, "prices")
    left = predictions.assign(
        as_of=_dates(predictions["as_of"], "predictions", "as_of"),
        ticker=predictions["ticker"].astype(str),
        last_close=predictions["last_close"].astype(float),
        predicted_close=predictions["predicted_close"].astype(float),
    )
    right = pd.DataFrame(
        {
            "realised_date": _dates(prices["date"], "prices", "date"),
            "ticker": prices["ticker"].astype(str),
            "realised_close": pd.to_numeric(prices["close"]).astype(float),
        }
    )
    joined = pd.merge_asof(
        left.sort_values("as_of"),
        right.sort_values("realised_date"),
        left_on="as_of",
        right_on="realised_date",
        by="ticker",
        direction="forward",
        allow_exact_matches=False,  # the as-of day's own close is the input, not the outcome
    )
    joined = joined[joined["realised_date"].notna()]
    joined = joined.assign(realised_close=joined["realised_close"] * _basis_change(joined, actions))
    joined = joined.assign(
        error=joined["predicted_close"] - joined["realised_close"],
        naive_error=joined["last_close"] - joined["realised_close"],
    )
    joined = joined.assign(
        return_error=joined["error"] / joined["last_close"],
        naive_return_error=joined["naive_error"] / joined["last_close"],
        realised_return=joined["realised_close"] / joined["last_close"] - 1.0,
    )
    return joined.sort_values(["as_of", "ticker", "model_version"], ignore_index=True)


def _basis_change(joined: pd.DataFrame, actions: pd.DataFrame | None) -> np.ndarray:
    """Per joined row, the factor that brings the realised close back to the as-of day's share basis: the share
    ratio of each split, and 1 / f of each spin-off, with an ex-date after the as-of day, up to the realised day."""
    factor = np.ones(len(joined))
    if actions is None or actions.empty:
        return factor
    tickers = joined["ticker"].to_numpy(dtype=object)
    as_of, realised = joined["as_of"].to_numpy(), joined["realised_date"].to_numpy()
    for ticker, ex_date, kind, ratio in actions[["ticker", "ex_date", "kind", "ratio"]].itertuples(index=False):
        if kind not in PRICE_ACTIONS:
            continue
        between = (tickers == ticker) & (as_of < np.datetime64(ex_date)) & (realised >= np.datetime64(ex_date))
        factor[between] /= price_factor(kind, ratio)
    return factor


def daily_performance(joined: pd.DataFrame, *, window: int) -> pd.DataFrame:
    """Realised RMSE per realised day and over the last `window` realised days, beside the naive baseline's.

    One row per `date` (= realised_date) with `n` predictions; on price (dollars, for people): `rmse`, `naive_rmse`,
    `rmse_vs_naive`; on returns (scale-free, what monitoring decides on: a $500 stock weighs as a $5 one):
    `return_rmse`, `naive_return_rmse`, `return_rmse_vs_naive` (below 1: better than naive); `ic` and `rank_ic`,
    the day's information coefficients (``stockcast.train.backtest.daily_information_coefficients``). The `rolling_*`
    columns pool the squared errors of the last `window` days (at most; fewer at the start, counted in
    `rolling_days`) rather than averaging daily RMSEs, so a day with more predictions weighs more. An empty input
    gives an empty frame.
    """
    if window < 1:
        raise ValueError(f"window must be a positive number of days, got {window}")
    require_columns(
        joined,
        [
            "realised_date",
            "predicted_return",
            "realised_return",
            "error",
            "naive_error",
            "return_error",
            "naive_return_error",
        ],
        "joined predictions",
    )
    squared = pd.DataFrame(
        {
            "date": _dates(joined["realised_date"], "joined predictions", "realised_date"),
            "sse": joined["error"].astype(float) ** 2,
            "naive_sse": joined["naive_error"].astype(float) ** 2,
            "return_sse": joined["return_error"].astype(float) ** 2,
            "naive_return_sse": joined["naive_return_error"].astype(float) ** 2,
        }
    )
    sums = ["sse", "naive_sse", "return_sse", "naive_return_sse"]
    daily = squared.groupby("date", sort=True).agg(n=("sse", "size"), **{name: (name, "sum") for name in sums})
    rolling = daily[["n", *sums]].rolling(window, min_periods=1).sum()
    performance = pd.DataFrame(
        {
            "n": daily["n"].astype(int),
            "rmse": np.sqrt(daily["sse"] / daily["n"]),
            "naive_rmse": np.sqrt(daily["naive_sse"] / daily["n"]),
            "rolling_rmse": np.sqrt(rolling["sse"] / rolling["n"]),
            "rolling_naive_rmse": np.sqrt(rolling["naive_sse"] / rolling["n"]),
            "return_rmse": np.sqrt(daily["return_sse"] / daily["n"]),
            "naive_return_rmse": np.sqrt(daily["naive_return_sse"] / daily["n"]),
            "rolling_days": np.minimum(np.arange(1, len(daily) + 1), window),
        },
        index=daily.index,
    )
    performance["rmse_vs_naive"] = _ratio(performance["rmse"], performance["naive_rmse"])
    performance["rolling_rmse_vs_naive"] = _ratio(performance["rolling_rmse"], performance["rolling_naive_rmse"])
    performance["return_rmse_vs_naive"] = _ratio(performance["return_rmse"], performance["naive_return_rmse"])
    performance["rolling_return_rmse_vs_naive"] = _ratio(rolling["return_sse"], rolling["naive_return_sse"]) ** 0.5
    # How well the day's predictions ranked the tickers: what a top-k rule lives on.
    coefficients = daily_information_coefficients(
        squared["date"], joined["predicted_return"].astype(float), joined["realised_return"].astype(float)
    ).set_index("date")
    performance["ic"] = coefficients["ic"].reindex(performance.index)
    performance["rank_ic"] = coefficients["rank_ic"].reindex(performance.index)
    return performance.reset_index()[PERFORMANCE_COLUMNS]


def _ratio(numerator: pd.Series, denominator: pd.Series) -> pd.Series:
    """numerator / denominator, NaN where the denominator is 0 (a day on which naive was exact)."""
    return numerator / denominator.where(denominator > 0)


# --- Thresholds and the verdict --------------------------------------------------------------------------------


class MonitorThresholds(Settings):
    """When MonitorFlow alerts and retrains. Defaults are for daily equity closes with tens of tickers."""

    # About a trading month: with ~50 tickers that pools ~1000 errors, enough to tell a 2 % RMSE difference from
    # noise on most days, and short enough to notice a regime change within weeks.
    window_days: PositiveInt = 20
    # A trading week: fewer realised days than this say too little to alert on performance or decay.
    min_days: PositiveInt = 5
    # Next-day returns are mostly noise: good models beat naive by 1-3 % of RMSE. Rolling RMSE 2 % above naive's
    # means the model now does harm, not merely no good.
    max_rmse_vs_naive: Annotated[float, Field(gt=0.0)] = 1.02
    # Rolling rmse_vs_naive over the backtest's: the edge the model was promoted for is ~1-3 %, so a 2 % decay has
    # eaten most of it (a larger ratio would only fire after the performance alert already did).
    max_decay_vs_backtest: Annotated[float, Field(gt=0.0)] = 1.02
    # A month of next-day errors is noisy: a model as good as its backtest crosses a 2 % limit by chance on some days.
    # So both alerts also need the excess to be significant at this level: the one-sided Diebold-Mariano test (as in
    # the promotion gate) of the window's daily mean squared errors against limit^2 times naive's.
    alert_alpha: Annotated[float, Field(gt=0.0, lt=0.5)] = 0.05
    # The usual PSI rule of thumb: above 0.25 a distribution has shifted significantly.
    psi_threshold: Annotated[float, Field(gt=0.0)] = 0.25
    # A month of features is strongly correlated across days and tickers (63-day returns, trends, days since the
    # last report), so against a fixed PSI cutoff many drift in calm markets too (25-36 % of the `full` features on
    # the generator's calm data, 53-62 % after a 2.5x volatility shift); counted against each feature's usual PSI
    # instead, 2-6 % and 26-38 % (stockcast.operate.watch.calibrated_drift). 15 % sits between the two.
    max_drifted_share: Annotated[float, Field(ge=0.0, le=1.0)] = 0.15
    # The recent window whose features are compared with the reference: a trading month, as for performance.
    drift_window_days: PositiveInt = 20
    # The last half year of the training window: what the model learnt most recently, enough rows for stable
    # quantiles.
    reference_window_days: PositiveInt = 126
    # Windows of drift_window_days before the reference window; a feature's largest PSI among them is its usual
    # distance from the reference. 30 windows put a calm feature beyond it on about 1 day in 31.
    calibration_windows: PositiveInt = 30
    # Calendar days from the snapshot's last date to today: a Friday close is 3 days old on Monday, 4 after a
    # Monday holiday; more means a trading day was not ingested.
    max_data_age_days: PositiveInt = 4
    # About a quarter: by then every company has reported new figures since the model was trained.
    max_model_age_days: PositiveInt = 90
    # Calendar days of data after the latest training run before monitoring calls for another: a retrain that did
    # not produce a better model is not repeated every day on nearly the same data (0: call whenever alerts say so).
    retrain_cooldown_days: NonNegativeInt = 5
    # Shadows (stockcast.operate.shadows): a shadow replaces the champion when its realised errors beat the
    # champion's and naive's at this level of the one-sided Diebold-Mariano test (as the promotion gate does) ...
    shadow_alpha: Annotated[float, Field(gt=0.0, lt=0.5)] = 0.05
    # ... over at least this many realised trading days (the gate's own minimum).
    shadow_min_days: Annotated[int, Field(ge=2)] = 20
    # The decisions' net return over the last window_days may trail the equal-weight basket of the day's tickers by
    # at most this much
    # (a fraction of equity) before an alert; the alert is for people (the rule, its costs, the model's ranking), not
    # a retrain: decisions can trail a rising market with an accurate model.
    max_decision_shortfall: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.05

    @field_validator("min_days")
    @classmethod
    def _min_days_fit_the_window(cls, min_days: int, info: ValidationInfo) -> int:
        window = info.data.get("window_days")
        if window is not None and min_days > window:
            raise ValueError(f"min_days ({min_days}) must not exceed window_days ({window})")
        return min_days


@dataclass(frozen=True)
class Alert:
    """One threshold crossed: what, a sentence for people, the measured value and the threshold it crossed."""

    kind: AlertKind
    message: str
    value: float
    threshold: float


@dataclass(frozen=True)
class MonitorReport:
    """The verdict of one monitoring run: the alerts, whether to retrain, and the figures behind them."""

    alerts: list[Alert]
    retrain: bool
    summary: dict[str, Any]


def assess(
    performance: pd.DataFrame,
    drift: pd.DataFrame,
    *,
    data_age_days: int,
    model_age_days: int,
    backtest_return_rmse_vs_naive: float | None,
    thresholds: MonitorThresholds,
    decision_quality: pd.DataFrame | None = None,
) -> MonitorReport:
    """Which alerts fire, and whether to retrain.

    `performance` comes from `daily_performance` (its last row's rolling figures are judged, once it has at least
    `min_days` realised days), `drift` from `feature_drift` (the share of drifted features among those with a
    statistic). Performance is judged on the scale-free rolling return RMSE over naive's; decay compares it with the
    backtest's when that is known. Every alert
    but freshness and decisions sets `retrain` (see the module docstring). `decision_quality`
    (`stockcast.operate.decisions.realised_decisions`) is judged over its last `window_days` once it has `min_days`.
    `summary` holds the figures, plain values only (None where not measurable).
    """
    alerts: list[Alert] = []
    realised_days = len(performance)
    rolling = float(performance["rolling_return_rmse_vs_naive"].iloc[-1]) if realised_days else float("nan")
    judged = realised_days >= thresholds.min_days and np.isfinite(rolling)
    window = min(realised_days, thresholds.window_days)
    performance_p = excess_loss_p_value(performance, thresholds.max_rmse_vs_naive, window) if judged else float("nan")
    if judged and rolling > thresholds.max_rmse_vs_naive and performance_p < thresholds.alert_alpha:
        alerts.append(
            Alert(
                "performance",
                f"rolling RMSE of the predicted return over the last {window} days is {rolling:.3f} x the naive "
                f"baseline's (limit {thresholds.max_rmse_vs_naive}; one-sided p = {performance_p:.2g} < "
                f"{thresholds.alert_alpha})",
                rolling,
                thresholds.max_rmse_vs_naive,
            )
        )
    decay = rolling / backtest_return_rmse_vs_naive if backtest_return_rmse_vs_naive else float("nan")
    decay_p = float("nan")
    if judged and np.isfinite(decay):
        decay_limit = thresholds.max_decay_vs_backtest * float(backtest_return_rmse_vs_naive or 0.0)
        decay_p = excess_loss_p_value(performance, decay_limit, window)
    if judged and np.isfinite(decay) and decay > thresholds.max_decay_vs_backtest and decay_p < thresholds.alert_alpha:
        alerts.append(
            Alert(
                "decay",
                f"rolling return RMSE vs naive ({rolling:.3f}) is {decay:.3f} x the backtest's "
                f"({backtest_return_rmse_vs_naive:.3f}; limit {thresholds.max_decay_vs_backtest}; one-sided p = "
                f"{decay_p:.2g} < {thresholds.alert_alpha})",
                decay,
                thresholds.max_decay_vs_backtest,
            )
        )
    assessed = drift[drift["psi"].notna()] if len(drift) else drift
    drifted = int(assessed["drifted"].sum()) if len(assessed) else 0
    drifted_share = drifted / len(assessed) if len(assessed) else float("nan")
    if len(assessed) and drifted_share > thresholds.max_drifted_share:
        top = ", ".join(assessed.loc[assessed["drifted"], "feature"].head(5))
        alerts.append(
            Alert(
                "drift",
                f"{drifted} of {len(assessed)} features drifted (limit {thresholds.max_drifted_share:.0%}), e.g. {top}",
                drifted_share,
                thresholds.max_drifted_share,
            )
        )
    if data_age_days > thresholds.max_data_age_days:
        alerts.append(
            Alert(
                "freshness",
                f"the latest data is {data_age_days} days old (limit {thresholds.max_data_age_days}): ingest "
                "new data; retraining on stale data would not help",
                float(data_age_days),
                float(thresholds.max_data_age_days),
            )
        )
    if model_age_days > thresholds.max_model_age_days:
        alerts.append(
            Alert(
                "model_age",
                f"the model is {model_age_days} days old (limit {thresholds.max_model_age_days})",
                float(model_age_days),
                float(thresholds.max_model_age_days),
            )
        )
    shortfall = _decision_shortfall(decision_quality, thresholds)
    if decision_quality is not None and np.isfinite(shortfall) and shortfall > thresholds.max_decision_shortfall:
        alerts.append(
            Alert(
                "decisions",
                f"the decisions trail the equal-weight basket of their tickers by {shortfall:.1%} over the last "
                f"{min(len(decision_quality), thresholds.window_days)} realised days "
                f"(limit {thresholds.max_decision_shortfall:.0%}): review the rule and its costs",
                shortfall,
                thresholds.max_decision_shortfall,
            )
        )
    retrain = any(alert.kind in RETRAINING_KINDS for alert in alerts)
    summary = {
        "realised_days": realised_days,
        "rolling_return_rmse_vs_naive": json_ready(rolling),
        "backtest_return_rmse_vs_naive": json_ready(backtest_return_rmse_vs_naive),
        "performance_p_value": json_ready(performance_p),
        "decay_vs_backtest": json_ready(decay),
        "decay_p_value": json_ready(decay_p),
        "features_assessed": len(assessed),
        "features_drifted": drifted,
        "drifted_share": json_ready(drifted_share),
        "data_age_days": int(data_age_days),
        "model_age_days": int(model_age_days),
        "decision_shortfall": json_ready(shortfall),
        "alerts": [alert.kind for alert in alerts],
        "retrain": retrain,
    }
    return MonitorReport(alerts=alerts, retrain=retrain, summary=summary)


def excess_loss_p_value(performance: pd.DataFrame, limit: float, days: int) -> float:
    """How likely the last ``days`` rows of ``daily_performance`` are if the model's return RMSE were at most
    ``limit`` times naive's: the one-sided Diebold-Mariano p-value of limit^2 x naive's daily mean squared return
    error being lower than the model's. Small: the excess over the limit is beyond chance. Days weigh equally (the
    rolling ratio pools rows); days without a finite loss are left out, and fewer than two give NaN."""
    recent = performance.tail(days)
    model, naive = (
        recent["return_rmse"].to_numpy(dtype=float) ** 2,
        recent["naive_return_rmse"].to_numpy(dtype=float) ** 2,
    )
    finite = np.isfinite(model) & np.isfinite(naive)
    if finite.sum() < 2:
        return float("nan")
    return diebold_mariano(limit**2 * naive[finite], model[finite]).p_value


def _decision_shortfall(quality: pd.DataFrame | None, thresholds: MonitorThresholds) -> float:
    """How far the decisions' compounded net return trails the equal-weight basket's over the last ``window_days``
    realised days (positive: behind), or NaN before ``min_days``."""
    if quality is None or len(quality) < thresholds.min_days:
        return float("nan")
    recent = quality.tail(thresholds.window_days)
    decided = float((1.0 + recent["net_return"]).prod())
    benchmark = float((1.0 + recent["benchmark_return"]).prod())
    return benchmark - decided


def _dates(values: pd.Series, frame: str, column: str) -> pd.Series:
    """Dates as datetime64[ns], so frames from CSV text, artefacts and the API join on one type."""
    dates = pd.to_datetime(values, errors="coerce").astype("datetime64[ns]")
    if dates.isna().any():
        raise ValueError(f"{frame}: column '{column}' has {int(dates.isna().sum())} missing or unreadable dates")
    return dates
