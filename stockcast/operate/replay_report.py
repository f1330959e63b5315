"""What a replay leaves in its ``--out`` folder, built from what it published on its branch.

- ``audit.csv``: one row per day and ticker served (``AUDIT_COLUMNS``): the decision table of the model serving at
  the day's end (the champion, or the one promoted that day, which decided the day again), with the data and model
  versions, beside the close that followed and what the position earned.
- ``days.csv``: one row per day (``DAY_COLUMNS``): what monitoring saw and did (rolling error against naive, drift,
  alerts, retrains, promotions with their reason) and what the day's decisions earned against the equal-weight
  basket of the day's tickers (buy-and-hold, rebalanced daily), with the day's information coefficients.
- ``report.html``: the same as charts on one time axis, promotions and retrains marked, self-contained (inline SVG).
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd

from stockcast.core.storage import ObjectStore
from stockcast.data.snapshot import FrameSnapshot
from stockcast.operate.decisions import realised_decisions
from stockcast.operate.monitoring import daily_performance, join_realised
from stockcast.operate.replay import DayRecord, ReplaySettings
from stockcast.operate.tables import load_decisions
from stockcast.train.backtest import daily_information_coefficients

AUDIT_COLUMNS = [
    "date",
    "ticker",
    "data_version",
    "model_version",
    "last_close",
    "predicted_close",
    "predicted_return",
    "action",
    "target_weight",
    "realised_date",
    "realised_close",
    "realised_return",
    "position_pnl",
]
SERVED = "served"
"""The model name the decisions that served are realised under, whichever model took them."""


def build_audit(decisions: pd.DataFrame, history: FrameSnapshot, days: Sequence[DayRecord]) -> pd.DataFrame:
    """The audit (``AUDIT_COLUMNS``): each day's decisions by the model serving at its end, realised on ``history``
    (rows whose next close is not in it yet keep empty outcomes). ``position_pnl`` is the target weight times the
    realised return, before costs."""
    serving = pd.DataFrame(
        {
            "as_of": [day.date for day in days],
            "model_version": [day.model_version for day in days],
            "day_data_version": [day.data_version for day in days],
        }
    )
    served = decisions.merge(serving, on=["as_of", "model_version"], how="inner", validate="many_to_one")
    # A position closed for want of a prediction has no published data version: it is the day's.
    served = served.assign(data_version=served["data_version"].fillna(served["day_data_version"]))
    served = served.drop(columns="day_data_version")
    predicted = served[served["predicted_return"].notna()]
    realised = join_realised(predicted, history.prices, history.actions)
    audit = served.merge(
        realised[["as_of", "ticker", "realised_date", "realised_close", "realised_return"]],
        on=["as_of", "ticker"],
        how="left",
        validate="one_to_one",
    )
    audit = audit.assign(
        date=audit["as_of"], position_pnl=audit["target_weight"].astype(float) * audit["realised_return"] + 0.0
    )
    return audit.sort_values(["date", "ticker"], ignore_index=True)[AUDIT_COLUMNS]


def build_days(audit: pd.DataFrame, history: FrameSnapshot, days: Sequence[DayRecord], *, cost: float, window: int):
    """``days.csv``: each replayed day's record, with what its decisions earned (net of ``cost`` per unit of turnover)
    beside the equal-weight basket, the rolling return RMSE of what served against naive's over ``window`` realised
    days, and the day's IC and rank IC."""
    frame = pd.DataFrame([asdict(day) for day in days])
    outcomes = ["realised_date", "realised_close", "realised_return", "position_pnl"]
    decisions = audit.drop(columns=outcomes).rename(columns={"date": "as_of"}).assign(model_version=SERVED)
    quality = realised_decisions(decisions, history.prices, history.actions, model_version=SERVED, cost=cost)
    predicted = decisions[decisions["predicted_return"].notna()]
    realised = join_realised(predicted, history.prices, history.actions)
    served_error = pd.DataFrame(columns=["date", "served_rolling_return_rmse_vs_naive"])
    if not realised.empty:
        performance = daily_performance(realised, window=window)
        served_error = pd.DataFrame(
            {
                # Realised on the next day: shown on the day the predictions were made, beside the decisions.
                "date": realised.groupby("realised_date")["as_of"].max().reindex(performance["date"]).to_numpy(),
                "served_rolling_return_rmse_vs_naive": performance["rolling_return_rmse_vs_naive"].to_numpy(),
            }
        )
    ic = daily_information_coefficients(realised["as_of"], realised["predicted_return"], realised["realised_return"])
    frame = frame.merge(quality.drop(columns="n_positions"), on="date", how="left")
    frame = frame.merge(served_error, on="date", how="left")
    return frame.merge(ic[["date", "ic", "rank_ic"]], on="date", how="left")


def write_outputs(
    out: Path, store: ObjectStore, settings: ReplaySettings, history: FrameSnapshot, days: Sequence[DayRecord]
) -> list[Path]:
    """Write ``audit.csv``, ``days.csv`` and ``report.html`` into ``out`` (created), each once: an existing file is
    an error, never overwritten."""
    out.mkdir(parents=True, exist_ok=True)
    audit = build_audit(load_decisions(store, settings.branch), history, days)
    daily = build_days(
        audit,
        history,
        days,
        cost=settings.operate.decisions.cost,
        window=settings.operate.monitor.window_days,
    )
    paths = [out / "audit.csv", out / "days.csv", out / "report.html"]
    contents = [
        audit.to_csv(index=False, date_format="%Y-%m-%d", float_format="%.10g"),
        daily.to_csv(index=False, date_format="%Y-%m-%d", float_format="%.10g"),
        report_html(daily, audit, settings.branch),
    ]
    for path, text in zip(paths, contents, strict=True):
        with path.open("x", encoding="utf-8") as file:  # "x": never overwrite a replay's record
            file.write(text)
    return paths


# --- report.html ----------------------------------------------------------------------------------------------------

WIDTH, HEIGHT, MARGIN = 900, 220, 48
COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728")


def report_html(daily: pd.DataFrame, audit: pd.DataFrame, branch: str) -> str:
    """The replay's report: a summary, three charts on one time axis (equity of the decisions against buy-and-hold;
    rolling realised error against naive; drifted share of features), promotions (green) and retrains (grey) marked
    on each, and the days with alerts, retrains or promotions."""
    dates = pd.to_datetime(daily["date"])
    markers = [(day, "#2ca02c") for day in dates[daily["promoted"].astype(bool)]]
    markers += [(day, "#999999") for day in dates[daily["retrained"].astype(bool) & ~daily["promoted"].astype(bool)]]
    charts = [
        _chart(
            "Equity: the decisions (net of costs) against buy-and-hold (equal-weight basket, no costs)",
            dates,
            {"decisions": daily["equity"], "buy-and-hold": daily["benchmark_equity"]},
            markers,
        ),
        _chart(
            "Rolling realised return RMSE of the served predictions over naive's (below 1: better than naive)",
            dates,
            {"served / naive": daily["served_rolling_return_rmse_vs_naive"]},
            markers,
            reference=1.0,
        ),
        _chart(
            "Share of features drifted beyond their usual distance", dates, {"drifted": daily["drifted_share"]}, markers
        ),
    ]
    eventful = daily[(daily["alerts"] != "") | daily["retrained"].astype(bool) | daily["promoted"].astype(bool)]
    rows = "".join(
        f"<tr><td>{row.date:%Y-%m-%d}</td><td>{html.escape(row.model_version)}</td><td>{html.escape(row.alerts)}</td>"
        f"<td>{html.escape(row.retrained)}</td><td>{html.escape(row.promoted)}</td>"
        f"<td>{html.escape(row.promotion)}</td></tr>"
        for row in eventful.assign(date=pd.to_datetime(eventful["date"])).itertuples()
    )
    summary = _summary(daily, audit)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>stockcast replay {html.escape(branch)}</title>
<style>body{{font-family:sans-serif;max-width:960px;margin:2em auto}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:2px 6px;font-size:13px;vertical-align:top}}</style></head><body>
<h1>Replay on branch {html.escape(branch)}</h1>
<table>{"".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in summary.items())}</table>
{"".join(charts)}
<h2>Alerts, retrains and promotions</h2>
<table><tr><th>day</th><th>serving</th><th>alerts</th><th>retrained</th><th>promoted</th><th>why</th></tr>{rows}</table>
</body></html>
"""


def _summary(daily: pd.DataFrame, audit: pd.DataFrame) -> dict[str, str]:
    equity, basket = daily["equity"].dropna(), daily["benchmark_equity"].dropna()
    first, last = pd.Timestamp(daily["date"].min()), pd.Timestamp(daily["date"].max())
    return {
        "days": f"{len(daily)} ({first:%Y-%m-%d} to {last:%Y-%m-%d})",
        "tickers served per day": f"{audit.groupby('date')['ticker'].size().median():.0f} (median)",
        "models that served": ", ".join(dict.fromkeys(daily["model_version"])),
        "retrains": str(int(daily["retrained"].astype(bool).sum())),
        "promotions": str(int(daily["promoted"].astype(bool).sum())),
        "days with alerts": str(int((daily["alerts"] != "").sum())),
        "equity of the decisions": f"{equity.iloc[-1]:.4f}" if len(equity) else "-",
        "equity of buy-and-hold": f"{basket.iloc[-1]:.4f}" if len(basket) else "-",
        "hit rate of positions": f"{daily['hit_rate'].mean():.3f}",
        "mean daily IC / rank IC": f"{daily['ic'].mean():.4f} / {daily['rank_ic'].mean():.4f}",
    }


def _chart(
    title: str,
    dates: pd.Series,
    series: dict[str, pd.Series],
    markers: list[tuple[pd.Timestamp, str]],
    *,
    reference: float | None = None,
) -> str:
    """One line chart as inline SVG: the series over the dates, vertical markers, an optional reference line."""
    values = np.concatenate([pd.to_numeric(s, errors="coerce").to_numpy(dtype=float) for s in series.values()])
    finite = values[np.isfinite(values)]
    if reference is not None:
        finite = np.append(finite, reference)
    if finite.size == 0 or len(dates) < 2:
        return f"<h3>{html.escape(title)}</h3><p>Nothing realised yet.</p>"
    low, high = float(finite.min()), float(finite.max())
    high = high if high > low else low + 1.0
    start, span = dates.iloc[0], max((dates.iloc[-1] - dates.iloc[0]).days, 1)

    def x(day: pd.Timestamp) -> float:
        return MARGIN + (WIDTH - 2 * MARGIN) * (day - start).days / span

    def y(value: float) -> float:
        return HEIGHT - MARGIN / 2 - (HEIGHT - MARGIN) * (value - low) / (high - low)

    parts = [f'<line x1="{x(d):.1f}" y1="8" x2="{x(d):.1f}" y2="{HEIGHT - 24}" stroke="{c}"/>' for d, c in markers]
    if reference is not None:
        parts.append(
            f'<line x1="{MARGIN}" x2="{WIDTH - MARGIN}" y1="{y(reference):.1f}" y2="{y(reference):.1f}" '
            'stroke="#000" stroke-dasharray="4 3"/>'
        )
    for (name, values_of), colour in zip(series.items(), COLOURS, strict=False):
        numbers = pd.to_numeric(values_of, errors="coerce").to_numpy(dtype=float)
        points = " ".join(f"{x(d):.1f},{y(v):.1f}" for d, v in zip(dates, numbers, strict=True) if np.isfinite(v))
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{points}"/>')
        parts.append(
            f'<text x="{WIDTH - MARGIN + 4}" y="{16 + 14 * list(series).index(name)}" fill="{colour}" '
            f'font-size="11">{html.escape(name)}</text>'
        )
    parts.append(f'<text x="2" y="14" font-size="11">{high:.4g}</text>')
    parts.append(f'<text x="2" y="{HEIGHT - 24}" font-size="11">{low:.4g}</text>')
    parts.append(f'<text x="{MARGIN}" y="{HEIGHT - 4}" font-size="11">{start:%Y-%m-%d}</text>')
    parts.append(f'<text x="{WIDTH - MARGIN - 60}" y="{HEIGHT - 4}" font-size="11">{dates.iloc[-1]:%Y-%m-%d}</text>')
    return (
        f"<h3>{html.escape(title)}</h3><svg xmlns='http://www.w3.org/2000/svg' width='{WIDTH + 60}' height='{HEIGHT}'>"
        + "".join(parts)
        + "</svg>"
    )
