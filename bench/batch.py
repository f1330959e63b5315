"""Benchmark: BatchPredictFlow's compute for 500 tickers, next to the raw model-predict time for the same rows.

    python bench/batch.py [--tickers 500] [--runs 5]

The work timed is what the flow's ``predict`` step does: ``build_bundle`` (the latest feature row of every ticker,
computed by the feature library from the snapshot) and ``predict_batch`` (the serving code path for every ticker).
The reference is the model's own ``predict`` on the same feature rows: the floor no batch prediction can beat.
The market is generated and the model (the quickstart's CatBoost, depth 4) fitted outside the timed region.
Prints a markdown section for BENCHMARKS.md and writes it to ``bench/results/batch.md``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent
RESULTS = HERE / "results" / "batch.md"
START, END = "2023-01-02", "2024-12-31"  # two years: more than the feature set's look-back
BUDGET_SECONDS = 60.0
# Keep the repository's packages ahead of bench/ on sys.path (bench/features.py would shadow `features`).
sys.path[:] = [str(REPO_ROOT), *(entry for entry in sys.path if Path(entry or ".").resolve() != HERE)]


def main() -> int:
    from stockcast.data.synthetic.generator import MarketSpec, generate_market
    from stockcast.serve.batch import predict_batch
    from stockcast.serve.bundle import build_bundle
    from stockcast.train.zoo import predict_next_return
    from tests.factories import fit_model, make_record

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickers", type=int, default=500)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    load_before = os.getloadavg()[0]

    market = generate_market(MarketSpec(n_tickers=args.tickers, start=START, end=END, seed=11))
    params = {"iterations": 200, "learning_rate": 0.05, "l2_leaf_reg": 3.0, "thread_count": 2, "depth": 4}
    record = make_record(
        "vbench", candidate_id="catboost[depth=4]", factory="catboost", params=params, data_version="bench"
    )
    estimator = fit_model(market, record)

    flow_seconds, raw_seconds, rows = [], [], 0
    for _ in range(args.runs):
        started = time.perf_counter()
        bundle = build_bundle(record, market.prices, market.financials, estimator=estimator)
        table = predict_batch(bundle)
        flow_seconds.append(time.perf_counter() - started)
        latest = bundle.latest_rows[bundle.latest_rows["ticker"].isin(table["ticker"])]
        started = time.perf_counter()
        predict_next_return(estimator, latest, list(bundle.feature_columns))
        raw_seconds.append(time.perf_counter() - started)
        rows = len(table)
    section = render(
        args,
        rows=rows,
        history_rows=len(market.prices),
        flow_all=flow_seconds,
        raw_all=raw_seconds,
        load=(load_before, os.getloadavg()[0]),
    )
    print(section)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(section)
    return 0


def render(
    args: argparse.Namespace,
    *,
    rows: int,
    history_rows: int,
    flow_all: list[float],
    raw_all: list[float],
    load: tuple[float, float],
) -> str:
    """The markdown section for BENCHMARKS.md."""
    import catboost
    import pandas

    from bench.machine import describe_load, describe_machine

    flow, raw = statistics.median(flow_all), statistics.median(raw_all)

    return "\n".join(
        [
            "## Batch prediction (`bench/batch.py`)",
            "",
            f"- Machine: {describe_machine(pandas=pandas.__version__, catboost=catboost.__version__)}. "
            f"{describe_load(*load)}",
            f"- Command: `python bench/batch.py --tickers {args.tickers} --runs {args.runs}`",
            f"- Work: BatchPredictFlow's `predict` step (`build_bundle` + `predict_batch`) for {rows} tickers from "
            f"a {history_rows:,}-row snapshot ({START} to {END}); reference: the CatBoost model's own predict on "
            "the same feature rows. Median of the runs; the flow's orchestration (a few seconds per step on the "
            "local datastore) comes on top.",
            "",
            "| Measure | Median (s) | All runs (s) |",
            "|---|---:|---:|",
            f"| Batch prediction compute | {flow:.3f} | {', '.join(f'{s:.3f}' for s in flow_all)} |",
            f"| Raw model predict, same rows | {raw:.4f} | {', '.join(f'{s:.4f}' for s in raw_all)} |",
            "",
            f"- Budget: well under {BUDGET_SECONDS:.0f} s of compute for 500 tickers: **{flow:.2f} s = "
            f"{flow / BUDGET_SECONDS:.3f} of it**. Batch / raw predict = **{flow / raw:,.0f}×**: the time goes to "
            "computing each ticker's latest features from its history, not to the model.",
            "",
        ]
    )


if __name__ == "__main__":
    raise SystemExit(main())
