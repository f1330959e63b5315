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
