"""IngestFlow's card: the snapshot's vital numbers, what validation left out, and a price chart."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from stockcast.core.cards import line_chart, table


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
            ("corrections held back for review", summary.get("held_corrections", {}).get("count", 0)),
        ],
        columns=["", "value"],
    )
    violations = pd.DataFrame(
        [
            {
                "file": v["file"],
                "rule": v["rule"],
                "column": v["column"],
                "rows": v["count"],
                "CSV lines (first)": ", ".join(str(line) for line in v["lines"]),
                "action": v["action"],
            }
            for report in summary["validation"]
            for v in report["violations"]
        ],
        columns=["file", "rule", "column", "rows", "CSV lines (first)", "action"],
    )
    actions = pd.DataFrame(
        [
            {"ticker": a["ticker"], "ex-date": a["ex_date"], "action": a["description"], "source": a["source"]}
            for a in summary.get("actions", [])
        ],
        columns=["ticker", "ex-date", "action", "source"],
    )
    missing = summary.get("missing_days", {"market": [], "tickers": {}})
    gaps = pd.DataFrame(
        [
            {
                "ticker": "(every ticker)",
                "missing days": len(missing["market"]),
                "first": ", ".join(missing["market"][:5]),
            }
        ]
        * bool(missing["market"])
        + [
            {"ticker": ticker, "missing days": gap["count"], "first": ", ".join(gap["first"])}
            for ticker, gap in missing["tickers"].items()
        ],
        columns=["ticker", "missing days", "first"],
    )
    held = pd.DataFrame(summary.get("held_corrections", {}).get("first", []))
    shown = sorted(prices["ticker"].unique())[:chart_tickers]
    recent = prices[prices["ticker"].isin(shown)][["date", "ticker", "close"]]
    return [
        Markdown(f"# Data snapshot `{summary['version']}`"),
        table(overview),
        Markdown("## Rows left out by validation" if len(violations) else "## Validation: every row accepted"),
        *([table(violations)] if len(violations) else []),
        *(
            [
                Markdown(
                    "## Corrections held back (first rows)\n\nRe-sent rows that would move a published price by more "
                    "than the band of configs/data.toml; the published rows stay until the files are ingested again "
                    "with --apply-corrections."
                ),
                table(held),
            ]
            if len(held)
            else []
        ),
        Markdown(
            f"## Corporate actions ({len(actions)})\n\nDeclared in corporate_actions.csv, read off adj_close, or "
            "suspected from a one-day move at a usual split ratio with the matching volume jump (confirm those in "
            "corporate_actions.csv). Features and targets are computed on prices adjusted for them."
        ),
        *([table(actions)] if len(actions) else []),
        Markdown(f"## Missing trading days ({summary.get('calendar', 'data')} calendar)"),
        table(gaps) if len(gaps) else Markdown("None: every ticker has every trading day of its history."),
        line_chart(recent, x="date", y="close", color="ticker", title=f"Close of {', '.join(shown)}"),
    ]
