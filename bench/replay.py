"""Benchmark: a year of the daily loop replayed on the demo market, against the 10-minute budget, and determinism.

    python bench/replay.py [--runs 3] [--days 250]

Generates the demo's market (``stockcast-generate --quirks``: 50 tickers, 2021 to 2025, every quirk of real prices),
then runs ``stockcast-replay`` over its last ``--days`` trading days ``--runs`` times, each on a fresh branch and
output folder, with the shipped configurations (retrains included). Checks that every run wrote the same audit and
daily record, byte for byte. Everything happens in a temporary Metaflow home. Prints a markdown section for
BENCHMARKS.md and writes it to ``bench/results/replay.md``.
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
sys.path.insert(0, str(REPO))  # for bench.machine

from bench.machine import describe_load, describe_machine, isolated_home, publish  # noqa: E402 - after the path

BUDGET_SECONDS = 600.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--days", type=int, default=250)
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    home = isolated_home()
    data = home / "data"
    subprocess.run(
        [sys.executable, "-m", "stockcast.data.synthetic.generator", "--out", str(data), "--quirks"],
        check=True,
        capture_output=True,
    )
    import pandas as pd

    dates = pd.read_csv(data / "stock_price.csv", usecols=["date"])["date"].drop_duplicates().sort_values()
    first, last = dates.iloc[-args.days], dates.iloc[-1]
    seconds, outputs = [], []
    for index in range(args.runs):
        out = home / f"replay_{index}"
        command = [
            str(Path(sys.executable).with_name("stockcast-replay")),
            "--prices",
            str(data / "stock_price.csv"),
            "--financials",
            str(data / "financial_info.csv"),
            "--from",
            first,
            "--to",
            last,
            "--out",
            str(out),
            "--branch",
            f"bench_{index}",
        ]
        started = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True, cwd=REPO)
        seconds.append(time.perf_counter() - started)
        outputs.append(out)
    same = all(
        (out / name).read_bytes() == (outputs[0] / name).read_bytes()
        for out in outputs[1:]
        for name in ("audit.csv", "days.csv")
    )
    determinism = (
        "not checked: one run"
        if len(outputs) == 1
        else f"the runs' `audit.csv` and `days.csv` are {'identical, byte for byte' if same else 'NOT identical'}"
    )
    days = pd.read_csv(outputs[0] / "days.csv", keep_default_na=False)
    audit = pd.read_csv(outputs[0] / "audit.csv")
    median = statistics.median(seconds)
    ratios = ", ".join(f"{s / BUDGET_SECONDS:.2f}" for s in seconds)
    promotions = days[days["promoted"] != ""]
    import catboost
    from metaflow.metaflow_version import get_version

    section = f"""## A year replayed (`bench/replay.py`)

Target (issue 14): `stockcast-replay` over 250 trading days x 50 tickers of the demo market in at most 10 minutes on
this machine, retrains included; the same inputs give the same audit.

- Machine: {describe_machine(metaflow=get_version(), catboost=catboost.__version__)}.
  {describe_load(load_before, os.getloadavg()[0])}
- Command: `python bench/replay.py --runs {args.runs} --days {args.days}`: the demo's market (`stockcast-generate
  --quirks`), `stockcast-replay --from {first} --to {last}` with the shipped `configs/*.toml`, each run on a fresh
  branch (a first champion trained on the history before `--from`, then the daily loop).
- Wall time of each run: {", ".join(f"{s:.1f}" for s in seconds)} s; **median {median:.1f} s =
  {median / BUDGET_SECONDS:.2f} of the 10-minute budget** (run by run {ratios}).
- Deterministic: {determinism}.
- What the replay did: {len(days)} days, {audit["ticker"].nunique()} tickers served, {len(audit):,} audit rows;
  {int((days["retrained"] != "").sum())} retrain(s), {len(promotions)} promotion(s)
  ({", ".join(f"{row.promoted} on {row.date}" for row in promotions.itertuples()) or "none"});
  {int((days["alerts"] != "").sum())} day(s) with alerts.
"""
    publish(section, REPO / "bench" / "results" / "replay.md")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
