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
