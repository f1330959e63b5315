"""Benchmark: TrainFlow on the quickstart data, against the 5-minute budget, and the model quality it reaches.

    python bench/training.py [--runs 3] [--max-workers 4]

Generates the quickstart market (the demo's defaults), ingests it once, then runs TrainFlow ``--runs`` times, each
on a fresh ``@project`` branch so every run does the same work (no champion to re-score). Everything happens in a
temporary Metaflow home; your ``.metaflow`` is not touched. Prints a markdown section for BENCHMARKS.md and writes
it to ``bench/results/training.md``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # for bench.machine; this script imports nothing else of the repository

from bench.machine import describe_load, describe_machine, isolated_home  # noqa: E402 - after the path

BUDGET_SECONDS = 300.0


def _run(args: list[str], env: dict[str, str], cwd: Path) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, *args], env=env, cwd=cwd, check=True, capture_output=True, text=True)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--max-workers", type=int, default=4)
    args = parser.parse_args()
    load_before = os.getloadavg()[0]

    home = isolated_home()  # before Metaflow is first imported (below)
    env = dict(os.environ)
    data = home / "data"
    _run(["-m", "stockcast.data.synthetic.generator", "--out", str(data)], env, home)
    sources = ["--prices", str(data / "stock_price.csv"), "--financials", str(data / "financial_info.csv")]
    _run([str(REPO / "flows" / "ingest.py"), "--branch", "bench", "run", *sources], env, home)
    import catboost
    from metaflow import Flow, namespace
    from metaflow.metaflow_version import get_version

    metaflow_version = get_version()

    namespace(None)
    snapshot = Flow("IngestFlow").latest_successful_run.pathspec

    seconds = []
    for index in range(args.runs):
        train = [str(REPO / "flows" / "train.py"), "--branch", f"bench_{index}", "run", "--snapshot", snapshot]
        seconds.append(_run([*train, "--max-workers", str(args.max_workers)], env, home))
    run = Flow("TrainFlow").latest_successful_run
    board = run.data.leaderboard
    columns = [
        "rank",
        "candidate_id",
        "mean_fold_rmse_return",
        "rmse_return_vs_naive",
        "mean_fold_rmse",
        "rmse_vs_oracle",
        "hit_rate",
    ]
    rows = "\n".join(
        "| " + " | ".join(f"{value:.4f}" if isinstance(value, float) else str(value) for value in row) + " |"
        for row in board[columns].itertuples(index=False)
    )
    median = statistics.median(seconds)
    report = f"""## Training on the quickstart data (`bench/training.py`)

Target (issue 4): `python flows/train.py run` on the quickstart data in under 5 minutes on this 2-core machine.

- Machine: {describe_machine(metaflow=metaflow_version, catboost=catboost.__version__)}.
  {describe_load(load_before, os.getloadavg()[0])}
- Command: `python bench/training.py --runs {args.runs} --max-workers {args.max_workers}` (the demo's data:
  `stockcast-generate` defaults, ingested once; TrainFlow with `configs/train.toml`, each run on a fresh branch).
- Wall time of each `python flows/train.py run` process: {", ".join(f"{s:.1f}" for s in seconds)} s;
  **median {median:.1f} s = {median / BUDGET_SECONDS:.2f} of the 5-minute budget**.

Model quality of the last run (walk-forward; `rmse_vs_oracle` is the ratio to the generator's best possible
prediction, 1.0 = unbeatable):

| {" | ".join(columns)} |
|{"---|" * len(columns)}
{rows}

Gate: {run.data.decision["reason"]}
"""
    print(report)
    out = REPO / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "training.md").write_text(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
