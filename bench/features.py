"""Benchmark: time and peak memory of ``build_features`` (the full feature set) on 10 years of trading days.

    python bench/features.py                      # 100, 500 and 1,000 tickers, 3 runs each
    python bench/features.py --sizes 100 --runs 1 # a quick look

Each size's market comes from the project's generator and is generated once, outside the timed region, then
handed to a fresh Python process per run through a pickle file. The child loads it, times ``build_features``
and reports its peak resident memory (``ru_maxrss``): a fresh process per run is the honest way to measure a
peak, since a process's RSS never shrinks back. Reported figures are the medians of the runs. The markdown
section is printed and written to ``bench/results/features.md`` for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent
RESULTS = HERE / "results" / "features.md"
START, END = "2015-01-01", "2024-12-31"  # 10 years of NYSE trading days (the generator's calendar)
TARGET_SIZE, TARGET_SECONDS, TARGET_PEAK_MB = 500, 15.0, 3 * 1024

# This script is bench/features.py and Python puts bench/ first on sys.path, where ``import features`` would
# find the script itself: keep the repository's package ahead of it.
sys.path[:] = [str(REPO_ROOT), *(entry for entry in sys.path if Path(entry or ".").resolve() != HERE)]


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def run_child(market_path: Path) -> dict[str, float]:
    """One measured run in this (fresh) process: load the market, build the full feature set once."""
    import features

    with market_path.open("rb") as handle:
        prices, financials = pickle.load(handle)
    loaded_mb = _peak_rss_mb()
    started, cpu_started = time.perf_counter(), time.process_time()
    matrix = features.build_features(prices, financials, feature_set=features.DEFAULT_FEATURE_SET)
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    return {
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "peak_rss_mb": _peak_rss_mb(),
        "loaded_rss_mb": loaded_mb,
        "rows": len(matrix),
        "columns": len(matrix.columns),
    }


def measure(n_tickers: int, runs: int, seed: int, workdir: Path) -> dict[str, float]:
    """Generate one market of ``n_tickers`` and measure ``runs`` fresh-process builds of it (medians)."""
    from stockcast.data.synthetic.generator import MarketSpec, generate_market

    market = generate_market(MarketSpec(n_tickers=n_tickers, start=START, end=END, seed=seed))
    market_path = workdir / f"market_{n_tickers}.pickle"
    with market_path.open("wb") as handle:
        pickle.dump((market.prices, market.financials), handle, protocol=pickle.HIGHEST_PROTOCOL)
    del market
    results = []
    for _ in range(runs):
        child = subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), "--child", str(market_path)],
            capture_output=True,
            text=True,
            check=True,
            cwd=REPO_ROOT,
        )
        results.append(json.loads(child.stdout.strip().splitlines()[-1]))
    market_path.unlink()
    return {
        "tickers": n_tickers,
        "rows": results[0]["rows"],
        "columns": results[0]["columns"],
        "seconds": statistics.median(r["seconds"] for r in results),
        "seconds_all": [r["seconds"] for r in results],
        "cpu_seconds": statistics.median(r["cpu_seconds"] for r in results),
        "peak_rss_mb": statistics.median(r["peak_rss_mb"] for r in results),
        "loaded_rss_mb": statistics.median(r["loaded_rss_mb"] for r in results),
    }


def render(rows: list[dict], runs: int, command: str, load: tuple[float, float]) -> str:
    """The markdown section for BENCHMARKS.md."""
    import numpy
    import pandas

    import features
    from bench.machine import describe_load, describe_machine

    lines = [
        "## Feature building (`bench/features.py`)",
        "",
        f"- Machine: {describe_machine(pandas=pandas.__version__, numpy=numpy.__version__)}. {describe_load(*load)}",
        f"- Command: `{command}`",
        f"- Work: `build_features` with feature set `{features.DEFAULT_FEATURE_SET.name}` "
        f"({len(features.DEFAULT_FEATURE_SET.feature_columns)} features), NYSE trading days {START} to {END}, "
        "generated market (prices and quarterly financials); data generated outside the timed region.",
        f"- Figures: median of {runs} runs, each in a fresh process; peak memory is that process's peak RSS "
        "(`ru_maxrss`), input data included (the RSS once the input was loaded is shown beside it).",
        "",
        "| Tickers | Rows | Median time (s) | All runs (s) | CPU time (s) | Rows per second | Peak RSS (MB) "
        "| Input loaded (MB) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r['tickers']:,} | {r['rows']:,} | {r['seconds']:.2f} | "
        f"{', '.join(f'{s:.2f}' for s in r['seconds_all'])} | {r['cpu_seconds']:.2f} | "
        f"{r['rows'] / r['seconds']:,.0f} | "
        f"{r['peak_rss_mb']:,.0f} | {r['loaded_rss_mb']:,.0f} |"
        for r in rows
    ]
    by_size = {r["tickers"]: r for r in rows}
    lines.append("")
    if 1000 in by_size and 500 in by_size:
        time_ratio = by_size[1000]["seconds"] / by_size[500]["seconds"]
        row_ratio = by_size[1000]["rows"] / by_size[500]["rows"]
        lines.append(
            f"- Scaling: time(1,000) / time(500) = **{time_ratio:.2f}** for {row_ratio:.2f}× the rows "
            f"({'no worse than' if time_ratio <= row_ratio * 1.1 else 'worse than'} linear, 10 % tolerance)."
        )
    if TARGET_SIZE in by_size:
        target = by_size[TARGET_SIZE]
        met = target["seconds"] < TARGET_SECONDS and target["peak_rss_mb"] < TARGET_PEAK_MB
        lines.append(
            f"- Target for {TARGET_SIZE} tickers × 10 years: under {TARGET_SECONDS:.0f} s and "
            f"{TARGET_PEAK_MB / 1024:.0f} GB peak: **{'met' if met else 'missed'}** "
            f"({target['seconds']:.2f} s, {target['peak_rss_mb'] / 1024:.2f} GB)."
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Command line: measure the sizes, print the markdown section and write it to bench/results/."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 500, 1000], help="numbers of tickers")
    parser.add_argument("--runs", type=int, default=3, help="fresh-process runs per size (the median is reported)")
    parser.add_argument("--seed", type=int, default=7, help="generator seed")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where to write the markdown section")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)  # internal: one measured run
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(run_child(args.child)))
        return 0
    command = "python bench/features.py" + ("" if argv is None and len(sys.argv) == 1 else " " + " ".join(sys.argv[1:]))
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="stockcast-bench-") as workdir:
        rows = []
        for size in args.sizes:
            rows.append(measure(size, args.runs, args.seed, Path(workdir)))
            print(f"{size} tickers: {rows[-1]['seconds']:.2f} s median", file=sys.stderr)
    section = render(rows, args.runs, command, (load_before, os.getloadavg()[0]))
    from bench.machine import publish

    publish(section, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
