"""Card components built from data: tables and Vega-Lite charts that every stage's cards are made of.

Each stage composes its own card from these (``stockcast.data.card``, ``stockcast.train.card``,
``stockcast.operate.cards``); nothing here knows about a particular flow.
"""

from __future__ import annotations

import pandas as pd


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
