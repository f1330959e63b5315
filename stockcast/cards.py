"""Card components built from data: tables and Vega-Lite charts that flows append to their Metaflow cards.

Flows call these with frames and dicts; nothing here knows about a particular flow's steps.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import pandas as pd

from stockcast.decisions import ACTIONS, DecisionRule, StrategyComparison

if TYPE_CHECKING:
    from stockcast.monitoring import MonitorReport


def table(frame: pd.DataFrame, *, float_digits: int = 4):  # -> metaflow.cards.Table
    """A card table from a frame, numbers rounded for reading."""
    from metaflow.cards import Table

    shown = frame.copy()
    for column in shown.select_dtypes("number").columns:
        shown[column] = shown[column].round(float_digits)
    for column in shown.select_dtypes("datetime").columns:
        shown[column] = shown[column].dt.strftime("%Y-%m-%d")
    shown = shown.astype(object).where(shown.notna(), "")
    return Table(data=shown.to_numpy().tolist(), headers=[str(c) for c in shown.columns])


def line_chart(
    frame: pd.DataFrame, *, x: str, y: str, color: str | None = None, title: str = "", width: int = 640
):  # -> metaflow.cards.VegaChart
    """A Vega-Lite line chart of ``y`` over ``x`` (one line per ``color`` value)."""
    from metaflow.cards import VegaChart

    data = frame.copy()
    for column in data.select_dtypes("datetime").columns:
        data[column] = data[column].dt.strftime("%Y-%m-%d")
    encoding: dict = {
        "x": {"field": x, "type": "temporal" if x in frame.select_dtypes("datetime") else "quantitative"},
        "y": {"field": y, "type": "quantitative", "scale": {"zero": False}},
    }
    if color:
        encoding["color"] = {"field": color, "type": "nominal"}
    spec = {
        "$schema": "https://vega.github.io/schema/vega-lite/v5.json",
        "title": title,
        "width": width,
        "height": 260,
        "data": {"values": data.to_dict(orient="records")},
        "mark": {"type": "line", "strokeWidth": 1},
        "encoding": encoding,
    }
    return VegaChart(spec)


def snapshot_card(summary: dict, prices: pd.DataFrame, *, chart_tickers: int = 5) -> Sequence:
    """What IngestFlow's card shows: the snapshot's vital numbers, what validation left out, a price chart."""
    from metaflow.cards import Markdown

    merge = summary["merge"]
    overview = pd.DataFrame(
        [
            ("version", summary["version"]),
            ("previous version", summary["previous_version"] or "none"),
            ("date range", " to ".join(summary["date_range"])),
            ("tickers", summary["n_tickers"]),
            ("price rows", summary["rows"]["prices"]),
            ("financial rows", summary["rows"]["financials"]),
            (
                "prices appended / corrected / unchanged",
                "{appended} / {corrected} / {unchanged}".format(**merge["prices"]),
            ),
            ("tickers with prices only", len(summary["prices_only_tickers"])),
        ],
        columns=["", "value"],
    )
    violations = pd.DataFrame(
        [
            {"file": v["file"], "rule": v["rule"], "column": v["column"], "rows": v["count"], "action": v["action"]}
            for report in summary["validation"]
            for v in report["violations"]
        ],
        columns=["file", "rule", "column", "rows", "action"],
    )
    shown = sorted(prices["ticker"].unique())[:chart_tickers]
    recent = prices[prices["ticker"].isin(shown)][["date", "ticker", "close"]]
    return [
        Markdown(f"# Data snapshot `{summary['version']}`"),
        table(overview),
        Markdown("## Rows left out by validation" if len(violations) else "## Validation: every row accepted"),
        *([table(violations)] if len(violations) else []),
        line_chart(recent, x="date", y="close", color="ticker", title=f"Close of {', '.join(shown)}"),
    ]


def calibration(predictions: pd.DataFrame, *, bins: int = 10) -> pd.DataFrame:
    """Mean predicted and mean realised next-day return per decile of the prediction: a model with a real signal
    shows realised returns rising with predicted ones; a flat line means its ranking carries nothing."""
    decile = pd.qcut(predictions["predicted_return"].rank(method="first"), bins, labels=False)
    grouped = predictions.groupby(decile)
    return pd.DataFrame(
        {"predicted_return": grouped["predicted_return"].mean(), "realised_return": grouped["next_return"].mean()}
    ).reset_index(drop=True)


def cumulative_advantage(challenger: pd.DataFrame, naive: pd.DataFrame) -> pd.DataFrame:
    """Running sum over test days of (naive's daily squared error - the challenger's): rising while the
    challenger beats naive. It is the series the gate's Diebold-Mariano test is computed on."""
    from stockcast.gate import daily_losses

    difference = daily_losses(naive) - daily_losses(challenger)
    return pd.DataFrame({"date": difference.index, "cumulative_advantage": difference.cumsum().to_numpy()})


def scatter_chart(frame: pd.DataFrame, *, x: str, y: str, title: str = "", width: int = 420):  # -> VegaChart
    """A Vega-Lite scatter of ``y`` against ``x`` with the identity line, for predicted-vs-realised plots."""
    from metaflow.cards import VegaChart

    low = float(min(frame[x].min(), frame[y].min()))
    high = float(max(frame[x].max(), frame[y].max()))
    encoding = {"x": {"field": x, "type": "quantitative"}, "y": {"field": y, "type": "quantitative"}}
    spec = {
        "$schema": "https://vega.github.io/schema/vega-lite/v5.json",
        "title": title,
        "width": width,
        "height": width,
        "layer": [
            {"data": {"values": frame[[x, y]].to_dict(orient="records")}, "mark": "point", "encoding": encoding},
            {"data": {"values": [{x: low, y: low}, {x: high, y: high}]}, "mark": "line", "encoding": encoding},
        ],
    }
    return VegaChart(spec)


def training_card(selection, folds, record, promoted: bool) -> Sequence:
    """What TrainFlow's card shows: the gate's verdict, the leaderboard, lineage, folds, and whether the
    challenger's edge over naive is real (calibration by decile, cumulative advantage over the test days)."""
    from metaflow.cards import Markdown

    board = selection.leaderboard
    shown = [c for c in ["rank", "candidate_id", "mean_fold_rmse", "rmse_vs_naive", "rmse_vs_oracle",
                         "mae", "mape", "hit_rate", "train_seconds"] if c in board.columns]  # fmt: skip
    comparisons = pd.DataFrame(selection.decision.comparisons)
    if len(comparisons):  # p-values span orders of magnitude: rounding to 4 places would show 1.7e-06 as 0
        comparisons["p_value"] = comparisons["p_value"].map(lambda p: f"{p:.3g}")
    challenger = selection.challenger_predictions
    fold_table = pd.DataFrame(
        [{k: v.strftime("%Y-%m-%d") if isinstance(v, pd.Timestamp) else v for k, v in vars(f).items()} for f in folds]
    )
    verdict = "PROMOTED to champion" if promoted else "NOT promoted"
    name = selection.challenger.candidate_id
    return [
        Markdown(f"# Model `{record.version}`: {verdict}"),
        Markdown(f"**Gate.** {selection.decision.reason}"),
        *([table(comparisons)] if len(comparisons) else []),
        Markdown("## Leaderboard (walk-forward, mean fold RMSE on price)"),
        table(board[shown]),
        Markdown(
            f"## Lineage\n\ndata snapshot `{record.data_version}` ({record.snapshot_run}) · feature set "
            f"`{record.feature_set}` `{record.feature_fingerprint[:12]}` · code `{record.code_version}` · "
            f"model artefact `{record.model_task}`"
        ),
        Markdown("## Folds"),
        table(fold_table),
        Markdown(f"## {name}: realised vs predicted next-day return, by decile of the prediction"),
        scatter_chart(calibration(challenger), x="predicted_return", y="realised_return"),
        Markdown(f"## {name} vs naive: cumulative daily squared-error advantage (rising = {name} is better)"),
        line_chart(cumulative_advantage(challenger, selection.naive_predictions), x="date", y="cumulative_advantage"),
    ]


NOTHING_REALISED = "No realised predictions yet: their closes have not arrived."
DECISION_COLUMNS = ["ticker", "action", "target_weight", "predicted_return", "net_return", "last_close",
                    "predicted_close"]  # fmt: skip
RMSE_SERIES = {"rmse": "model", "naive_rmse": "naive", "rolling_rmse": "model, rolling",
               "rolling_naive_rmse": "naive, rolling"}  # fmt: skip


def decisions_card(comparison: StrategyComparison, decisions: pd.DataFrame, rule: DecisionRule) -> Sequence:
    """What the decision step's card shows: today's buy / sell / hold, then how the same rule did on the
    walk-forward predictions against the naive baseline and buy-and-hold, with the equity curves."""
    from metaflow.cards import Markdown

    dated = len(decisions) and "as_of" in decisions.columns
    as_of = f" as of {pd.Timestamp(decisions['as_of'].max()):%Y-%m-%d}" if dated else ""
    shorts = "shorts allowed" if rule.allow_short else "no shorts"
    components = [
        Markdown(f"# Decisions{as_of}"),
        Markdown(
            f"**Rule.** Buy when the predicted return minus the cost ({rule.cost_bps:g} bp) exceeds "
            f"{rule.threshold_bps:g} bp; sell when the predicted return plus the cost is below -{rule.threshold_bps:g}"
            f" bp; otherwise hold. At most {rule.max_positions} positions, equal weights of at most "
            f"{rule.max_weight:.0%} each; {shorts}."
        ),
    ]
    if len(decisions):
        counts = decisions["action"].value_counts()
        order = decisions["action"].map({action: rank for rank, action in enumerate(ACTIONS)})
        shown = decisions.assign(_order=order).sort_values(["_order", "net_return"], ascending=[True, False])
        components += [
            Markdown(" · ".join(f"**{action}** {int(counts.get(action, 0))}" for action in ACTIONS)),
            table(shown[[column for column in DECISION_COLUMNS if column in shown.columns]]),
        ]
    else:
        components.append(Markdown("No predictions to decide on."))
    components.append(Markdown("## The rule on the walk-forward backtest"))
    if comparison.equity.empty:
        return [*components, Markdown(NOTHING_REALISED)]
    equity = comparison.equity.melt(id_vars="date", var_name="strategy", value_name="equity")
    return [
        *components,
        table(comparison.metrics),
        Markdown(
            "The naive baseline predicts no change, so with a positive cost the rule never trades on it: its equity "
            "stays at 1. Buy-and-hold is long every ticker at equal weights, charged the same cost."
        ),
        line_chart(equity, x="date", y="equity", color="strategy", title="Equity (start = 1), net of costs"),
    ]


def monitoring_card(
    performance: pd.DataFrame, drift: pd.DataFrame, report: MonitorReport, *, backtest_rmse_vs_naive: float | None
) -> Sequence:
    """What MonitorFlow's card shows: the verdict and alerts first, then realised RMSE per day and rolling against
    the naive baseline and the backtest's expectation, the most drifted features, and data and model age."""
    from metaflow.cards import Markdown

    verdict = (
        "all clear" if not report.alerts else "RETRAINING triggered" if report.retrain else "alerts, no retraining"
    )
    alerts = pd.DataFrame([vars(alert) for alert in report.alerts], columns=["kind", "message", "value", "threshold"])
    summary = report.summary
    ages = pd.DataFrame(
        [
            ("data age (calendar days)", summary.get("data_age_days")),
            ("model age (calendar days)", summary.get("model_age_days")),
            ("realised days", summary.get("realised_days")),
            ("rolling RMSE vs naive", summary.get("rolling_rmse_vs_naive")),
            ("backtest RMSE vs naive", backtest_rmse_vs_naive),
            ("features drifted", f"{summary.get('features_drifted')} of {summary.get('features_assessed')}"),
        ],
        columns=["", "value"],
    )
    components = [
        Markdown(f"# Monitoring: {verdict}"),
        table(alerts) if len(alerts) else Markdown("No alerts."),
        table(ages),
        Markdown("## Realised RMSE on price, per day and rolling"),
    ]
    if performance.empty:
        components.append(Markdown(NOTHING_REALISED))
    else:
        rmse = performance.rename(columns=RMSE_SERIES).melt(
            id_vars="date", value_vars=list(RMSE_SERIES.values()), var_name="series"
        )
        ratio = performance[["date"]].assign(value=performance["rolling_rmse_vs_naive"], series="model, rolling")
        recent = performance.tail(10)
        if backtest_rmse_vs_naive is not None:
            ratio = pd.concat([ratio, ratio.assign(value=backtest_rmse_vs_naive, series="backtest expectation")])
        components += [
            line_chart(rmse.dropna(), x="date", y="value", color="series", title="RMSE (price)"),
            line_chart(ratio.dropna(), x="date", y="value", color="series", title="Rolling RMSE / naive RMSE"),
            table(recent.assign(date=recent["date"].dt.strftime("%Y-%m-%d"))),
        ]
    components.append(Markdown("## Feature drift against the training window (largest PSI first)"))
    components.append(table(drift.head(15)) if len(drift) else Markdown("No features compared."))
    return components
