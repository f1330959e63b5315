"""Card components built from data: tables and Vega-Lite charts that flows append to their Metaflow cards.

Flows call these with frames and dicts; nothing here knows about a particular flow's steps.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd


def table(frame: pd.DataFrame, *, float_digits: int = 4):  # -> metaflow.cards.Table
    """A card table from a frame, numbers rounded for reading."""
    from metaflow.cards import Table

    shown = frame.copy()
    for column in shown.select_dtypes("number").columns:
        shown[column] = shown[column].round(float_digits)
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


def scatter_chart(frame: pd.DataFrame, *, x: str, y: str, title: str = "", width: int = 420):  # -> VegaChart
    """A Vega-Lite scatter of ``y`` against ``x`` with the identity line, for predicted-vs-actual plots."""
    from metaflow.cards import VegaChart

    low = float(min(frame[x].min(), frame[y].min()))
    high = float(max(frame[x].max(), frame[y].max()))
    spec = {
        "$schema": "https://vega.github.io/schema/vega-lite/v5.json",
        "title": title,
        "width": width,
        "height": width,
        "layer": [
            {
                "data": {"values": frame[[x, y]].to_dict(orient="records")},
                "mark": {"type": "point", "opacity": 0.3, "size": 8},
                "encoding": {"x": {"field": x, "type": "quantitative"}, "y": {"field": y, "type": "quantitative"}},
            },
            {
                "data": {"values": [{x: low, y: low}, {x: high, y: high}]},
                "mark": {"type": "line", "color": "grey"},
                "encoding": {"x": {"field": x, "type": "quantitative"}, "y": {"field": y, "type": "quantitative"}},
            },
        ],
    }
    return VegaChart(spec)


def _daily_rmse(predictions: pd.DataFrame, model: str) -> pd.DataFrame:
    from stockcast.gate import daily_losses

    losses = daily_losses(predictions)
    return pd.DataFrame({"date": losses.index, "rmse": losses.to_numpy() ** 0.5, "model": model})


def training_card(selection, folds, record, promoted: bool) -> Sequence:
    """What TrainFlow's card shows: the gate's verdict, the leaderboard, and the challenger's errors in time."""
    from metaflow.cards import Markdown

    board = selection.leaderboard
    shown = [c for c in ["rank", "candidate_id", "mean_fold_rmse", "rmse", "rmse_vs_naive", "rmse_vs_oracle",
                         "mae", "mape", "hit_rate", "train_seconds"] if c in board.columns]  # fmt: skip
    comparisons = pd.DataFrame(selection.decision.comparisons)
    challenger = selection.challenger_predictions
    sample = challenger.sample(n=min(len(challenger), 2000), random_state=0)
    daily = pd.concat(
        [
            _daily_rmse(challenger, selection.challenger.candidate_id),
            _daily_rmse(selection.naive_predictions, "naive"),
        ]
    )
    fold_table = pd.DataFrame(
        [{k: str(v) if "start" in k or "end" in k else v for k, v in vars(f).items()} for f in folds]
    )
    verdict = "PROMOTED to champion" if promoted else "NOT promoted"
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
        Markdown(f"## {selection.challenger.candidate_id}: predicted vs realised next-day return"),
        scatter_chart(
            sample.assign(realised_return=sample["next_return"])[["predicted_return", "realised_return"]],
            x="realised_return",
            y="predicted_return",
        ),
        Markdown("## Daily RMSE on price over the test folds, challenger vs naive"),
        line_chart(daily, x="date", y="rmse", color="model"),
    ]
