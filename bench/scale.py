"""Benchmark: how the stack scales with the market, one sub-command per stage.

    python bench/scale.py ingest [--tickers 500] [--days 60] [--start 2024-07-01] [--end 2025-06-30]
    python bench/scale.py train [--market DIR | --tickers 2000 --start 2015-01-01 --end 2024-12-31]
                                [--config TOML] [--max-workers 1 2]

``ingest`` (issue 16): the bytes a daily IngestFlow run writes to the datastore, over ``--days`` simulated days of
``--tickers`` tickers after ingesting the history before them (the generator's market from ``--start`` to
``--end``; its last ``--days`` trading days arrive one folder a day, as ``stockcast-generate --daily`` writes them).
Each day is compared with the day's CSV files (goal: at most 2x, flat over the days) and with what the previous
layout stored for the same snapshot: the whole tables as artefacts, sized as Metaflow stores them (its
``PickleSerializer``'s pickle protocol 4, gzipped at level 3 by its content-addressed store), measured on each day's
tables rather than by running the old code. Everything happens in a temporary Metaflow home on the local datastore.
Prints a markdown section for BENCHMARKS.md and writes it to ``bench/results/scale_ingest.md``.

``train`` (issue 16): IngestFlow, then TrainFlow at each ``--max-workers`` on a generated market with every quirk
(``--market``: one generated already), with the peak resident memory of every task process (Linux ``VmHWM``) and
each step's task durations; from those, a projection of the wall time on 64 workers. Writes
``bench/results/scale_train.md``.
"""

from __future__ import annotations

import argparse
import gzip
import os
import pickle
import re
import statistics
import subprocess
import sys
import threading
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


TASK_PATTERN = re.compile(r"\bstep (?P<step>\w+) .*--task-id (?P<task>\S+)")


class TaskMemory:
    """Peak resident memory of every Metaflow task process under ``root_pid``, by (step, task id): Linux's VmHWM
    (the process's own high-water mark, so a sample taken after the peak still sees it), read every
    ``interval`` seconds."""

    def __init__(self, root_pid: int, interval: float = 0.2) -> None:
        self.root_pid, self.interval = root_pid, interval
        self.peaks: dict[tuple[str, str], int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> TaskMemory:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _watch(self) -> None:
        import psutil

        while not self._stop.is_set():
            try:
                children = psutil.Process(self.root_pid).children(recursive=True)
            except psutil.NoSuchProcess:
                return
            for child in children:
                try:
                    match = TASK_PATTERN.search(" ".join(child.cmdline()))
                    if match is None:
                        continue
                    status = Path(f"/proc/{child.pid}/status").read_text()
                except (psutil.NoSuchProcess, psutil.AccessDenied, FileNotFoundError, ProcessLookupError):
                    continue
                hwm = next((int(line.split()[1]) * 1024 for line in status.splitlines() if line.startswith("VmHWM")), 0)
                key = (match["step"], match["task"])
                self.peaks[key] = max(self.peaks.get(key, 0), hwm)
            self._stop.wait(self.interval)

    def by_step(self) -> dict[str, tuple[int, int]]:
        """Per step: (number of tasks seen, largest peak in bytes)."""
        steps: dict[str, tuple[int, int]] = {}
        for (step, _task), peak in self.peaks.items():
            count, largest = steps.get(step, (0, 0))
            steps[step] = (count + 1, max(largest, peak))
        return steps


POD_START_SECONDS = 45.0
"""Assumed for the projection: scheduling a pod, pulling its (cached) image and downloading the code package."""


def _watched(command: list[str], env: dict[str, str], cwd: Path) -> tuple[float, TaskMemory]:
    """Run a flow command to the end, watching its tasks' peak memory; its wall time and the watch."""
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    with TaskMemory(process.pid) as memory:
        output, _ = process.communicate()
    seconds = time.perf_counter() - started
    if process.returncode != 0:
        peaks = ", ".join(f"{step} {peak / 2**30:.2f} GB" for step, (_n, peak) in sorted(memory.by_step().items()))
        raise SystemExit(f"{' '.join(command)} failed after {seconds:.0f} s (peak memory: {peaks}):\n{output}")
    return seconds, memory


def _task_seconds(run) -> dict[str, list[float]]:  # run: metaflow.Run
    """Each step's task durations (created to finished), from the run's metadata."""
    return {
        step.id: [(task.finished_at - task.created_at).total_seconds() for task in step.tasks()] for step in run.steps()
    }


def makespan(durations: dict[str, list[float]], workers: int, overhead: float = 0.0) -> float:
    """Wall time of the steps one after the other, each step's tasks packed longest first onto ``workers`` (each
    task paying ``overhead`` to start): the projection of a run onto more machines, steps being barriers."""
    total = 0.0
    for tasks in durations.values():
        loads = [0.0] * min(workers, len(tasks))
        for seconds in sorted(tasks, reverse=True):
            loads[loads.index(min(loads))] += seconds + overhead
        total += max(loads)
    return total


def train(args: argparse.Namespace) -> str:
    """The ``train`` sub-command: the sharded TrainFlow plan on a large market, peak memory per task and wall time."""
    load_before = os.getloadavg()[0]
    home = isolated_home()  # before Metaflow is first imported (below)
    env = dict(os.environ)
    from metaflow import Flow, namespace
    from metaflow.metaflow_version import get_version

    market = Path(args.market) if args.market else home / "data"
    if not args.market:
        generate = ["-m", "stockcast.data.synthetic.generator", "--out", str(market), "--quirks"]
        generate += ["--tickers", str(args.tickers), "--start", args.start, "--end", args.end]
        subprocess.run([sys.executable, *generate], check=True, env=env, cwd=home, capture_output=True)
    ingest = [sys.executable, str(REPO / "flows" / "ingest.py"), "run"]
    ingest += ["--prices", str(market / "stock_price.csv"), "--financials", str(market / "financial_info.csv")]
    ingest_s, ingest_memory = _watched(ingest, env, home)
    namespace(None)
    snapshot = Flow("IngestFlow").latest_successful_run
    summary = snapshot.data.snapshot
    config = ["--config", "config", str(Path(args.config).resolve())] if args.config else []
    runs = []
    for workers in args.max_workers:
        command = [sys.executable, str(REPO / "flows" / "train.py"), *config, "--branch", f"scale{workers}", "run"]
        command += ["--snapshot", snapshot.pathspec, "--max-workers", str(workers)]
        seconds, memory = _watched(command, env, home)
        run = Flow("TrainFlow").latest_successful_run
        runs.append((workers, seconds, memory, _task_seconds(run)))
        print(f"TrainFlow --max-workers {workers}: {seconds:.0f} s", file=sys.stderr)

    def memory_rows(memory: TaskMemory, durations: dict[str, list[float]] | None) -> str:
        lines = []
        for step, (count, peak) in sorted(memory.by_step().items()):
            longest = f"{max(durations[step]):.1f}" if durations and step in durations else ""
            lines.append(f"| {step} | {count} | {peak / 2**30:.2f} | {longest} |")
        return "\n".join(lines)

    workers_1 = runs[0]
    durations = workers_1[3]
    tasks = {step: len(seconds) for step, seconds in durations.items()}
    check = ", ".join(f"{w} worker(s): model {makespan(durations, w):.0f} s vs measured {s:.0f} s" for w, s, *_ in runs)
    largest = max(peak for *_, memory, _ in runs for _count, peak in memory.by_step().values())
    walls = ", ".join(f"--max-workers {w}: {s:.0f} s" for w, s, *_ in runs)
    projection = "\n".join(
        f"| {w} | {makespan(durations, w, POD_START_SECONDS):.0f} | "
        f"{makespan(durations, w, POD_START_SECONDS) - makespan(durations, w):.0f} |"
        for w in (1, 2, 8, 16, 32, 64)
    )
    speedup = runs[-1][1] / runs[0][1]
    return f"""## TrainFlow's sharded plan on a large market (`bench/scale.py train`)

Issue 16: features per ticker shard, backtests per candidate x fold, each task's memory bounded as the market grows
(goal: < 4 GB a task), and what more machines would buy.

- Machine: {describe_machine(metaflow=get_version())}.
  {describe_load(load_before, os.getloadavg()[0])}
- Command: `python bench/scale.py train --market DIR --max-workers {" ".join(map(str, args.max_workers))}`
  {"--config " + args.config if args.config else ""} (one run each; the market: `stockcast-generate --quirks
  --tickers {args.tickers} --start {args.start} --end {args.end}`).
- Snapshot: {summary["n_tickers"]} tickers, {summary["rows"]["prices"]:,} price rows, {summary["date_range"][0]} to
  {summary["date_range"][1]}; IngestFlow in {ingest_s:.0f} s.
- Tasks of TrainFlow: {", ".join(f"{step} {n}" for step, n in tasks.items())}.
- **Wall time: {walls}** (wall time at --max-workers {runs[-1][0]} / at {runs[0][0]}: {speedup:.2f}).
- **Largest peak resident memory of any task: {largest / 2**30:.2f} GB** (goal < 4 GB; Linux VmHWM of each task
  process, sampled every 0.2 s).

Peak memory by step (TrainFlow, --max-workers {workers_1[0]}), with the longest task:

| step | tasks | peak RSS (GB) | longest task (s) |
|---|---|---|---|
{memory_rows(workers_1[2], durations)}

IngestFlow on the whole market:

| step | tasks | peak RSS (GB) | longest task (s) |
|---|---|---|---|
{memory_rows(ingest_memory, None)}

### Projection to 64 workers on Kubernetes (on paper)

From the measured task durations of the --max-workers {runs[0][0]} run: each step's tasks packed longest first
onto W workers, steps one after the other (a step waits for the previous one), each task paying
{POD_START_SECONDS:.0f} s to start a pod on Kubernetes (an assumption: scheduling, a cached image, the code
package). The model, without pod starts, against the measured runs here: {check}.

| workers | projected wall time (s) | of which pod starts |
|---|---|---|
{projection}

The critical path at 64 workers is the longest task of each step; the steps with one task (start, join_features,
select, refit, register, deploy) do not shrink with more workers.
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
    train_parser = stages.add_parser("train", help="TrainFlow's sharded plan on a large market: memory and time")
    train_parser.add_argument("--market", default="", help="a generated market's folder (default: generate one)")
    train_parser.add_argument("--tickers", type=int, default=2000)
    train_parser.add_argument("--start", default="2015-01-01")
    train_parser.add_argument("--end", default="2024-12-31")
    train_parser.add_argument("--config", default="", help="TrainFlow's configuration (default: configs/train.toml)")
    train_parser.add_argument("--max-workers", type=int, nargs="+", default=[1, 2])
    train_parser.set_defaults(run=train, results="scale_train.md")
    args = parser.parse_args()
    report = args.run(args)
    print(report)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / args.results).write_text(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
