"""The cards of operation: BatchPredictFlow's decisions and MonitorFlow's verdict."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from stockcast.core.cards import line_chart, table
from stockcast.operate.decisions import ACTIONS, DecisionRule, StrategyComparison
from stockcast.operate.monitoring import MonitorReport

NOTHING_REALISED = "No realised predictions yet: their closes have not arrived."
DECISION_COLUMNS = ["ticker", "action", "target_weight", "predicted_return", "net_return", "last_close",
                    "predicted_close"]  # fmt: skip
RMSE_SERIES = {"rmse": "model", "naive_rmse": "naive", "rolling_rmse": "model, rolling",
               "rolling_naive_rmse": "naive, rolling"}  # fmt: skip


def decisions_card(comparison: StrategyComparison, decisions: pd.DataFrame, rule: DecisionRule) -> Sequence:
    """What the decision step's card shows: today's buy / sell / hold, then how the same rule did on the
    walk-forward predictions against a momentum rule and buy-and-hold, with the equity curves."""
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
            "The momentum rule is the same rule on each ticker's last move, expected to go on. Buy-and-hold is long "
            "every ticker at equal weights, charged the same cost."
        ),
        line_chart(equity, x="date", y="equity", color="strategy", title="Equity (start = 1), net of costs"),
    ]


def monitoring_card(
    performance: pd.DataFrame,
    drift: pd.DataFrame,
    report: MonitorReport,
    *,
    backtest_return_rmse_vs_naive: float | None,
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
            ("rolling return RMSE vs naive", summary.get("rolling_return_rmse_vs_naive")),
            ("backtest return RMSE vs naive", backtest_return_rmse_vs_naive),
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
        ratio = performance[["date"]].assign(value=performance["rolling_return_rmse_vs_naive"], series="model, rolling")
        recent = performance.tail(10)
        if backtest_return_rmse_vs_naive is not None:
            expectation = ratio.assign(value=backtest_return_rmse_vs_naive, series="backtest expectation")
            ratio = pd.concat([ratio, expectation])
        components += [
            line_chart(rmse.dropna(), x="date", y="value", color="series", title="RMSE (price)"),
            line_chart(
                ratio.dropna(),
                x="date",
                y="value",
                color="series",
                title="Rolling return RMSE / naive (scale-free: what alerts judge)",
            ),
            table(recent.assign(date=recent["date"].dt.strftime("%Y-%m-%d"))),
        ]
    components.append(Markdown("## Feature drift against the training window (largest PSI first)"))
    components.append(table(drift.head(15)) if len(drift) else Markdown("No features compared."))
    return components
