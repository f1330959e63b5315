"""Benchmark: a new user's first day on a real-looking year of prices, with the shipped defaults.

    python bench/real_year.py [--tickers 500] [--held-out 5]

What issue 13 asks to work: about 500 stocks × one year of daily prices, prices only (no ``adj_close``, no
financials, a sector list beside them), with every quirk of real data (splits both ways, a spin-off, a rename with a
gap, delistings, late listings, missing days, exchange holidays). With ``configs/*.toml`` as shipped:

1. ``python flows/ingest.py run --prices DIR/stock_price.csv`` (``sectors.csv`` is picked up beside it);
2. ``python flows/train.py run`` (the folds adapt to the short history; when the gate refuses every model, naive
   becomes the baseline champion);
3. ``python -m stockcast.deploy serve`` answers ``/model`` and ``/predict`` for the champion;
4. ``stockcast-day`` runs ingest, predict (with decisions) and monitor on each held-out day.

Each step is timed (wall clock of the command). Everything happens in a temporary Metaflow and BentoML home. Prints
a markdown section for BENCHMARKS.md and writes it to ``bench/results/real_year.md``.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.machine import describe_load, describe_machine, isolated_home  # noqa: E402 - after the path


def _timed(command: list[str], env: dict[str, str], cwd: Path) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, check=False)
    output = done.stdout + done.stderr
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{output}")
    return time.perf_counter() - started, output


def _serve(env: dict[str, str], cwd: Path, port: int) -> tuple[float, dict, list[dict]]:
    """Start ``python -m stockcast.deploy serve``, time until /readyz, ask /model and /predict, stop it."""
    from stockcast.deploy.targets import wait_ready
    from stockcast.serve.client import StockcastClient

    started = time.perf_counter()
    server = subprocess.Popen(
        [sys.executable, "-m", "stockcast.deploy", "serve", "--port", str(port)],
        env=env,
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_ready(base, 300.0, gave_up=lambda: None if server.poll() is None else "the server exited")
        ready = time.perf_counter() - started
        with StockcastClient(base) as client:
            model = client.model()
            return ready, model, client.predict(model["tickers"][:3])
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickers", type=int, default=500)
    parser.add_argument("--held-out", type=int, default=5)
    parser.add_argument("--year", type=int, default=2025)
    args = parser.parse_args()
    load_before = os.getloadavg()[0]

    home = isolated_home()  # before Metaflow is first imported (below)
    env = dict(os.environ)

    import catboost
    from metaflow import Flow, namespace
    from metaflow.metaflow_version import get_version

    from stockcast.core.network import free_port
    from stockcast.data.synthetic.generator import MarketSpec, generate_market, split_days, write_days, write_market

    spec = MarketSpec(
        n_tickers=args.tickers, start=f"{args.year}-01-01", end=f"{args.year}-12-31", seed=13, quirks=True,
        with_adj_close=False,
    )  # fmt: skip
    history, days = split_days(generate_market(spec), args.held_out)
    data = home / "data"
    paths = write_market(history, data)
    paths["financials"].unlink()  # prices only...
    history.financials.drop_duplicates("ticker")[["ticker", "sector"]].to_csv(data / "sectors.csv", index=False)
    folders = write_days(days, data / "days")
    for folder in folders:  # ...every day too
        (folder / "financial_info.csv").unlink(missing_ok=True)

    flows = REPO / "flows"
    ingest_s, _ = _timed([sys.executable, str(flows / "ingest.py"), "run", "--prices", str(paths["prices"])], env, home)
    train_s, _ = _timed([sys.executable, str(flows / "train.py"), "run"], env, home)
    namespace(None)
    training = Flow("TrainFlow").latest_successful_run
    serve_s, model, answer = _serve(env, home, free_port())
    day_s, operated = _timed(
        [str(Path(sys.executable).with_name("stockcast-day")), *(str(folder) for folder in folders)], env, home
    )

    snapshot = Flow("IngestFlow").latest_successful_run.data.snapshot
    found = {(a["ticker"], a["ex_date"]) for a in snapshot["actions"]}
    made = history.actions[history.actions["kind"].isin(["split", "reverse_split", "spinoff"])]
    truth = {(row.ticker, f"{row.ex_date:%Y-%m-%d}") for row in made.itertuples()}
    kinds = dict(
        zip(zip(made["ticker"], made["ex_date"].dt.strftime("%Y-%m-%d"), strict=True), made["kind"], strict=True)
    )
    missed = ", ".join(f"{kinds[key]} of {key[0]} on {key[1]}" for key in sorted(truth - found))
    ingest_runs = list(Flow("IngestFlow").runs())
    board = training.data.leaderboard[["rank", "candidate_id", "rmse_return_vs_naive", "mean_fold_rmse", "n_clipped"]]
    report = f"""## A real-looking year with the defaults (`bench/real_year.py`)

Target (issue 13): {args.tickers} tickers × one year of daily prices, prices only (no `adj_close`, no financials; a
`sectors.csv` beside them), with every quirk of real data; `configs/*.toml` as shipped. Ingest and TrainFlow succeed;
when the gate refuses, naive is champion; `python -m stockcast.deploy serve` answers; `stockcast-day` runs ingest,
predict (with decisions) and monitor on each of {args.held_out} held-out days.

- Machine: {describe_machine(metaflow=get_version(), catboost=catboost.__version__)}.
  {describe_load(load_before, os.getloadavg()[0])}
- Command: `python bench/real_year.py --tickers {args.tickers} --held-out {args.held_out}` (one run of each step).
- Data: {snapshot["rows"]["prices"]} price rows over {snapshot["n_days"]} trading days, {snapshot["n_tickers"]}
  tickers; {len(snapshot["missing_days"]["market"])} market-wide missing day(s),
  {len(snapshot["missing_days"]["tickers"])} ticker(s) with missing days of their own.
- Corporate actions (no declarations, no `adj_close`: suspected from prices alone): {len(found)} found, of which
  {len(found & truth)} are among the {len(truth)} splits, reverse splits and spin-offs the generator made
  ({len(found - truth)} false); {len(truth - found)} missed ({missed or "none"}).

| step | wall time (s) |
|---|---|
| `python flows/ingest.py run --prices …` | {ingest_s:.1f} |
| `python flows/train.py run` | {train_s:.1f} |
| `python -m stockcast.deploy serve` until `/readyz` | {serve_s:.1f} |
| `stockcast-day` over {args.held_out} days ({len(ingest_runs) - 1} ingests, predict + decide, monitor) | {day_s:.1f} |
| per held-out day | {day_s / args.held_out:.1f} |

TrainFlow: {training.data.data_notes}

Gate: {training.data.decision["reason"]}

Champion served: `{model["model_version"]}` (`{model["candidate_id"]}`), as of {model["as_of"]};
`/predict` for {len(answer)} tickers answered.

| {" | ".join(board.columns)} |
|{"---|" * len(board.columns)}
""" + "\n".join(
        "| " + " | ".join(f"{v:.4f}" if isinstance(v, float) else str(v) for v in row) + " |"
        for row in board.itertuples(index=False)
    )
    print(report)
    print(operated[-2000:], file=sys.stderr)
    results = REPO / "bench" / "results"
    results.mkdir(exist_ok=True)
    (results / "real_year.md").write_text(report + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
