"""Benchmark: how the stack scales with the market, one sub-command per stage.

    python bench/scale.py ingest [--tickers 500] [--days 60] [--start 2024-07-01] [--end 2025-06-30]

``ingest`` (issue 16): the bytes a daily IngestFlow run writes to the datastore, over ``--days`` simulated days of
``--tickers`` tickers after ingesting the history before them (the generator's market from ``--start`` to
``--end``; its last ``--days`` trading days arrive one folder a day, as ``stockcast-generate --daily`` writes them).
Each day is compared with the day's CSV files (goal: at most 2x, flat over the days) and with what the previous
layout stored for the same snapshot: the whole tables as artefacts, sized as Metaflow stores them (its
``PickleSerializer``'s pickle protocol 4, gzipped at level 3 by its content-addressed store), measured on each day's
tables rather than by running the old code. Everything happens in a temporary Metaflow home on the local datastore.
Prints a markdown section for BENCHMARKS.md and writes it to ``bench/results/scale_ingest.md``.
"""

from __future__ import annotations

import argparse
import gzip
import os
import pickle
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.machine import describe_load, describe_machine, isolated_home  # noqa: E402 - after the path

RESULTS = REPO / "bench" / "results"
TABLES = ("prices", "financials", "oracle", "actions")


def _tree_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def _metaflow_artefact_bytes(value: object) -> int:
    """The bytes Metaflow's local datastore stores for an artefact: pickle protocol 4, gzip level 3."""
    return len(gzip.compress(pickle.dumps(value, protocol=4), compresslevel=3))


def _ingest(folder: Path, env: dict[str, str], cwd: Path) -> float:
    """One IngestFlow run on a folder of the day's (or the history's) files; its wall time."""
    command = [sys.executable, str(REPO / "flows" / "ingest.py"), "run", "--prices", str(folder / "stock_price.csv")]
    if (folder / "financial_info.csv").exists():
        command += ["--financials", str(folder / "financial_info.csv")]
    started = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stdout}{done.stderr}")
    return time.perf_counter() - started


def ingest(args: argparse.Namespace) -> str:
    """The ``ingest`` sub-command: bytes written per daily ingest, new layout against the previous one."""
    load_before = os.getloadavg()[0]
    home = isolated_home()  # before Metaflow is first imported (below)
    env = dict(os.environ)
    import pyarrow
    from metaflow import namespace
    from metaflow.metaflow_version import get_version

    from stockcast.data.snapshot import latest_snapshot
    from stockcast.data.synthetic.generator import MarketSpec, generate_market, split_days, write_days, write_market

    spec = MarketSpec(n_tickers=args.tickers, start=args.start, end=args.end, seed=16)
    history, days = split_days(generate_market(spec), args.days)
    data = home / "data"
    write_market(history, data / "history")
    folders = write_days(days, data / "days")
    datastore = home / ".metaflow"
    snapshots = datastore / "stockcast" / "snapshots"
    namespace(None)

    history_s = _ingest(data / "history", env, home)
    first = latest_snapshot()
    rows = []
    for folder in folders:
        before, snapshot_before = _tree_bytes(datastore), _tree_bytes(snapshots)
        seconds = _ingest(folder, env, home)
        snapshot = latest_snapshot()
        manifest_bytes = _metaflow_artefact_bytes(snapshot.manifest)
        rows.append(
            {
                "day": folder.name,
                "csv": _tree_bytes(folder),
                "snapshot": _tree_bytes(snapshots) - snapshot_before + manifest_bytes,
                "run": _tree_bytes(datastore) - before,
                "reference": sum(_metaflow_artefact_bytes(getattr(snapshot, name)) for name in TABLES),
                "seconds": seconds,
                "price_rows": snapshot.summary["rows"]["prices"],
            }
        )
        print(f"{rows[-1]}", file=sys.stderr)

    def median(column: str, part: list[dict] = rows) -> float:
        return statistics.median(row[column] for row in part)

    tenth = max(1, len(rows) // 6)
    early, late = rows[:tenth], rows[-tenth:]
    ratio_csv = median("snapshot") / median("csv")
    ratio_reference = median("snapshot") / median("reference")
    run_by_run = "\n".join(
        f"| {r['day']} | {r['price_rows']} | {r['csv'] / 1e3:.1f} | {r['snapshot'] / 1e3:.1f} | "
        f"{r['snapshot'] / r['csv']:.2f} | {r['run'] / 1e3:.1f} | {r['reference'] / 1e3:.1f} | {r['seconds']:.1f} |"
        for r in rows
    )
    return f"""## Bytes written per daily ingest (`bench/scale.py ingest`)

Issue 16: a snapshot is a manifest of content-addressed Parquet partitions (one per day and table), so a daily
IngestFlow run should write about the day's data, flat as the history grows, instead of the whole history again.

- Machine: {describe_machine(metaflow=get_version(), pyarrow=pyarrow.__version__)}.
  {describe_load(load_before, os.getloadavg()[0])}
- Command: `python bench/scale.py ingest --tickers {args.tickers} --days {args.days} --start {args.start} --end
  {args.end}` (one run of each day).
- Data: the generator's market of {args.tickers} tickers from {args.start} to {args.end} (no quirks); the history
  ({first.summary["rows"]["prices"]} price rows, {first.n_days} trading days) ingested first in {history_s:.0f} s,
  then its last {args.days} trading days one IngestFlow run each (`stock_price.csv` and `oracle.csv`, and
  `financial_info.csv` on days with reports), on the local datastore.
- *snapshot*: what the run wrote for the snapshot: its new partitions and chunks under the datastore root, and its
  manifest artefact (pickled and gzipped as Metaflow stores it). *whole run*: everything the run added under the
  datastore root (every artefact of every step, including the input files kept for lineage, logs, metadata and the
  card). *reference*: the whole-table artefacts (`prices`, `financials`, `oracle`, `actions`) the previous layout
  (commit 08f0109) stored for the same snapshot, sized as Metaflow stores them (pickle protocol 4, gzip level 3);
  measured on each day's tables, not by running the old code.

| median over {len(rows)} days | value |
|---|---|
| day's CSV files | {median("csv") / 1e3:.1f} kB |
| snapshot (new layout) | {median("snapshot") / 1e3:.1f} kB |
| snapshot / CSV (goal: at most 2) | {ratio_csv:.2f} |
| snapshot, first {tenth} days / last {tenth} days | {median("snapshot", early) / 1e3:.1f} kB / \
{median("snapshot", late) / 1e3:.1f} kB |
| whole run (new layout) | {median("run") / 1e3:.1f} kB |
| reference: whole tables (previous layout) | {median("reference") / 1e3:.1f} kB |
| reference, first {tenth} days / last {tenth} days | {median("reference", early) / 1e3:.1f} kB / \
{median("reference", late) / 1e3:.1f} kB |
| snapshot / reference | {ratio_reference:.3f} ({1 / ratio_reference:.0f}x less) |
| ingest wall time | {median("seconds"):.1f} s |

| day | price rows | CSV (kB) | snapshot (kB) | snapshot / CSV | whole run (kB) | reference (kB) | wall (s) |
|---|---|---|---|---|---|---|---|
{run_by_run}
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    stages = parser.add_subparsers(dest="stage", required=True)
    ingest_parser = stages.add_parser("ingest", help="bytes written to the datastore per daily ingest")
    ingest_parser.add_argument("--tickers", type=int, default=500)
    ingest_parser.add_argument("--days", type=int, default=60, help="simulated daily ingests")
    ingest_parser.add_argument("--start", default="2024-07-01", help="first day of the market (history and days)")
    ingest_parser.add_argument("--end", default="2025-06-30", help="last simulated day")
    ingest_parser.set_defaults(run=ingest, results="scale_ingest.md")
    args = parser.parse_args()
    report = args.run(args)
    print(report)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / args.results).write_text(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
