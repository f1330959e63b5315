"""The pull-request report: what a small training run of the changed code decides, as Markdown for reviewers.

    python -m stockcast.train.pr_report      # make pr-report

It generates a small market, runs IngestFlow and TrainFlow with the shipped training configuration in a throw-away
Metaflow home (local datastore, its own BentoML home: nothing of the developer's is read or changed), and renders
the run's leaderboard and gate verdict. In GitHub Actions the Markdown is appended to ``$GITHUB_STEP_SUMMARY``,
where it shows on the pull request's checks; elsewhere it is printed.
"""

from __future__ import annotations

import math
import os
import shutil
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

SUMMARY_ENV = "GITHUB_STEP_SUMMARY"
LEADERBOARD_COLUMNS = {
    "rank": "rank",
    "candidate_id": "candidate",
    "mean_fold_rmse_return": "mean fold RMSE (return)",
    "rmse_return_vs_naive": "return RMSE / naive",
    "mean_fold_rmse": "mean fold RMSE (price)",
    "rmse_vs_naive": "RMSE / naive (price)",
    "hit_rate": "direction hit-rate",
    "rmse_vs_oracle": "RMSE / oracle",
}
"""Leaderboard columns the report shows (those the run has), with their headings."""


def render_report(
    leaderboard: pd.DataFrame,
    decision: Mapping[str, Any],
    *,
    model_version: str,
    promoted: bool,
    run_pathspec: str,
    title: str = "TrainFlow on a small generated market",
) -> str:
    """Markdown for a TrainFlow run: the gate's verdict and reason first, then the leaderboard and the comparisons
    the gate made, so a reviewer sees what the change does to model selection without running anything."""
    verdict = "promoted to champion" if promoted else "not promoted"
    challenger = str(leaderboard.iloc[0]["candidate_id"]) if len(leaderboard) else "none"
    lines = [
        f"## {title}",
        "",
        f"**Gate verdict: {verdict}** — model `{model_version}` (`{challenger}`) from run `{run_pathspec}`.",
        "",
        f"> {decision.get('reason', 'no reason recorded')}",
        "",
        "### Leaderboard",
        "",
        _table(leaderboard, LEADERBOARD_COLUMNS),
    ]
    comparisons = pd.DataFrame(decision.get("comparisons") or [])
    if not comparisons.empty:
        headings = {
            "against": "against",
            "reference_id": "reference",
            "n_days": "paired days",
            "mean_loss_difference": "mean loss difference",
            "p_value": "p-value",
            "passed": "passed",
        }
        lines += ["", f"### Gate comparisons (one-sided Diebold–Mariano, alpha {decision.get('alpha')})", ""]
        lines.append(_table(comparisons, headings))
    return "\n".join(lines) + "\n"


def report_for_run(run: Any) -> str:
    """``render_report`` for a finished TrainFlow run (a Metaflow Client ``Run``), from its artefacts."""
    data = run.data
    return render_report(
        data.leaderboard,
        data.decision,
        model_version=data.model_version,
        promoted=bool(data.promoted),
        run_pathspec=run.pathspec,
    )


def _table(frame: pd.DataFrame, headings: Mapping[str, str]) -> str:
    """A Markdown table of the ``headings`` columns ``frame`` has, numbers to four significant digits."""
    columns = [column for column in headings if column in frame.columns]
    rows = [
        "| " + " | ".join(headings[column] for column in columns) + " |",
        "|" + "|".join("---" for _ in columns) + "|",
    ]
    for record in frame[columns].to_dict("records"):
        rows.append("| " + " | ".join(_cell(record[column]) for column in columns) + " |")
    return "\n".join(rows)


def _cell(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return "–" if math.isnan(value) else f"{value:.4g}"
    return str(value).replace("|", "\\|")


def main(argv: list[str] | None = None) -> int:
    """``python -m stockcast.train.pr_report``: train on a small generated market, report leaderboard and verdict."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m stockcast.train.pr_report", description=main.__doc__)
    parser.add_argument("--tickers", type=int, default=12, help="tickers in the generated market (default 12)")
    parser.add_argument("--keep", action="store_true", help="keep the throw-away Metaflow home and print its path")
    args = parser.parse_args(argv)
    if "metaflow" in sys.modules:
        raise RuntimeError("stockcast.train.pr_report must configure Metaflow before it is imported; run it on its own")

    workdir = Path(tempfile.mkdtemp(prefix="stockcast-pr-report-"))
    # Metaflow reads its configuration when first imported (FIELD_NOTES): everything points into workdir first.
    os.environ.update(
        {
            "METAFLOW_DEFAULT_DATASTORE": "local",
            "METAFLOW_DEFAULT_METADATA": "local",
            "METAFLOW_DATASTORE_SYSROOT_LOCAL": str(workdir),
            "METAFLOW_CLIENT_CACHE_PATH": str(workdir / "client-cache"),
            "METAFLOW_TEMPDIR": str(workdir),
            "BENTOML_HOME": str(workdir / "bentoml"),
        }
    )
    (workdir / ".metaflow").mkdir()
    try:
        from stockcast.core.runs import run_flow
        from stockcast.data.synthetic.generator import MarketSpec, generate_market, write_market

        # A market with a clearly predictable component: a sound change promotes a model, a regression shows as a
        # lost promotion or a worse leaderboard.
        spec = MarketSpec(
            n_tickers=args.tickers,
            start="2022-07-01",
            end="2025-06-30",
            seed=7,
            reversal_speed=0.5,
            overreaction_share=1.0,
        )
        files = write_market(generate_market(spec), workdir / "data")
        ingest = run_flow("ingest", cwd=workdir, prices=str(files["prices"]), financials=str(files["financials"]))
        # One backtest per core: with more at once, the model libraries' thread pools only contend for the cores.
        train = run_flow("train", cwd=workdir, snapshot=ingest.pathspec, max_workers=os.cpu_count() or 1)
        markdown = report_for_run(train)
    finally:
        if args.keep:
            print(f"Metaflow home kept at {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    summary = os.environ.get(SUMMARY_ENV)
    if summary:
        with Path(summary).open("a", encoding="utf-8") as handle:
            handle.write(markdown)
        print(f"Report appended to ${SUMMARY_ENV} ({summary})")
    print(markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
