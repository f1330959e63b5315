"""Benchmark: roll-outs through the reverse proxy under load, and what the proxy costs in steady state.

    python bench/rollout.py                # 3 runs, about 6 minutes
    python bench/rollout.py --runs 1       # a quick look

What is measured, with the ``local`` target (``stockcast.deploy.fleet.LocalFleet``: nginx in front of 2 ``bentoml
serve`` replicas on 127.0.0.1):

- **each switch** (rolling, blue-green, canary, shadow, recreate) from one version of the model to another while
  ``--rate`` single-ticker ``POST /predict`` requests a second go through the proxy (``stockcast.deploy.load``): the
  requests that failed, the p99 latency of the requests sent during the switch, how long the switch took and, for
  recreate, how long nothing served;
- **a roll-back**: blue-green to a version whose predictions are NaN (its smoke test through the preview address
  fails), same load: the seconds until the old version alone serves again and the requests that failed;
- **steady state**: the most requests a second, 16 connections at once for ``--seconds``, through the proxy to 2
  replicas against one Bento without the proxy, both measured with the same client in this process.

The model is a ridge fitted on 20 generated tickers over 2024 (the service tests' kind of model: the switch, not the
model, is measured). Canary steps are 10 → 50 → 100 %, watched ``--step`` seconds each; the shadow gets a copy of
every request for ``--step`` seconds; blue-green keeps the old version warm ``--step`` seconds. Reported figures are
medians over the runs, with every run's figure beside them. The markdown section is printed and written to
``bench/results/rollout.md`` for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository's packages ahead of bench/features.py

import contextlib

from bench.machine import describe_load, describe_machine, isolated_home, publish

RESULTS = Path(__file__).with_name("results") / "rollout.md"
STRATEGIES = ("rolling", "blue-green", "canary", "shadow", "recreate")


@dataclass
class Figures:
    """One run's measurements."""

    switches: dict[str, dict[str, float]] = field(default_factory=dict)
    rollback: dict[str, float] = field(default_factory=dict)
    throughput: dict[str, float] = field(default_factory=dict)


def make_bentos() -> tuple[str, str, str, list[str]]:
    """Three Bentos of one model: v1, v2 (the same fit under another version) and v3, whose predictions are NaN;
    and the tickers it can answer."""
    from stockcast.deploy.package import build_bento, save_bento_model
    from tests.factories import make_bundle, make_record, with_record, year_market

    market = year_market(n_tickers=20, seed=5)
    bundle = make_bundle(market, make_record("v1", data_version="bench"))
    broken = copy.deepcopy(bundle.estimator)
    model = broken.regressor_.named_steps["model"]
    model.coef_ = model.coef_ * float("nan")
    nan_bundle = make_bundle(market, make_record("v3", data_version="bench"), estimator=broken)
    tags = [build_bento(save_bento_model(item)) for item in (bundle, with_record(bundle, version="v2"), nan_bundle)]
    rows = bundle.latest_rows
    return tags[0], tags[1], tags[2], rows.loc[rows["is_warm"].eq(True), "ticker"].tolist()


def fleet(workdir: Path, strategy: str, step: float) -> Any:
    from stockcast.core.network import free_port
    from stockcast.deploy.config import LocalSettings, RolloutSettings, SmokeSettings
    from stockcast.deploy.fleet import local_fleet

    settings = LocalSettings(port=free_port(), preview_port=free_port(), replicas=2)
    rollout = RolloutSettings(canary_steps=[10, 50, 100], step_s=step, keep_warm_s=step)
    return local_fleet(settings, strategy=strategy, rollout=rollout, smoke=SmokeSettings(tickers=2), workdir=workdir)


def switch_under_load(target: Any, bento_tag: str, rate: float, tickers: list[str]) -> dict[str, float]:
    """``target.deploy(bento_tag)`` while ``rate`` requests a second go through the proxy; its figures."""
    from stockcast.deploy.load import ConstantLoad
    from stockcast.deploy.targets import DeployError

    counter = iter(range(10**9))

    def request(client: Any) -> Any:
        return client.post("/predict", json={"tickers": [tickers[next(counter) % len(tickers)]]})

    with ConstantLoad(target.proxy.endpoint, request, rate=rate, threads=16) as load:
        time.sleep(1.0)
        started = time.monotonic()
        with contextlib.suppress(DeployError):
            target.deploy(bento_tag)
        ended = time.monotonic()
        time.sleep(1.0)
    during = load.report.between(started, ended)
    switch = target.switches[-1]
    return {
        "failed": float(len(load.report.failed)),
        "requests": float(load.report.requests),
        "p99_ms": during.p99_ms(),
        "seconds": ended - started,
        "downtime_s": switch.downtime_s,
        "rolled_back": float(switch.rolled_back is not None),
    }


def max_throughput(endpoint: str, tickers: list[str], seconds: float, connections: int = 16) -> float:
    """Requests a second that ``connections`` clients, each sending the next request as soon as the last is
    answered, get answered with 200 in ``seconds``."""
    import httpx

    done: list[int] = []
    deadline = time.monotonic() + seconds

    def client_loop(offset: int) -> None:
        answered = 0
        with httpx.Client(base_url=endpoint, timeout=10) as client:
            while time.monotonic() < deadline:
                ticker = tickers[(offset + answered) % len(tickers)]
                if client.post("/predict", json={"tickers": [ticker]}).status_code == 200:
                    answered += 1
        done.append(answered)

    threads = [threading.Thread(target=client_loop, args=(n,)) for n in range(connections)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(done) / (time.monotonic() - started)


def one_run(workdir: Path, bentos: tuple[str, str, str, list[str]], args: argparse.Namespace) -> Figures:
    from stockcast.deploy.targets import LocalServe

    v1, v2, nan_version, tickers = bentos
    figures = Figures()
    for strategy in STRATEGIES:
        target = fleet(workdir / f"{strategy}-{time.monotonic_ns()}", strategy, args.step)
        try:
            target.deploy(v1)
            figures.switches[strategy] = switch_under_load(target, v2, args.rate, tickers)
            if strategy == "blue-green":
                figures.rollback = switch_under_load(target, nan_version, args.rate, tickers)
            if strategy == "rolling":
                figures.throughput["proxy, 2 replicas"] = max_throughput(target.proxy.endpoint, tickers, args.seconds)
        finally:
            target.stop()
        print("\n".join(switch.describe() for switch in target.switches), file=sys.stderr)
    with LocalServe(log_path=workdir / f"direct-{time.monotonic_ns()}.log") as direct:
        endpoint = direct.deploy(v1)
        figures.throughput["one Bento, no proxy"] = max_throughput(endpoint, tickers, args.seconds)
    return figures


def render(runs: list[Figures], args: argparse.Namespace, command: str, load: tuple[float, float]) -> str:
    """The BENCHMARKS.md section."""
    import bentoml

    def cell(values: list[float], digits: int = 0) -> str:
        every = ", ".join(f"{value:.{digits}f}" for value in values)
        return f"{statistics.median(values):.{digits}f} ({every})"

    lines = [
        "## Roll-outs through the proxy (`bench/rollout.py`)",
        "",
        "Target (issue 15): 0 failed requests during rolling, blue-green, canary and shadow switches and during a "
        "roll-back, "
        f"at {args.rate:g} req/s through the proxy; recreate's downtime measured. Run with `make bench-rollout`.",
        "",
        f"- Machine: {describe_machine(BentoML=bentoml.__version__, nginx=_nginx_version())}. {describe_load(*load)}",
        f"- Command: `{command}`",
        "- Target: the `local` target, nginx in front of 2 `bentoml serve` replicas on 127.0.0.1; a ridge model of 20 "
        "generated tickers (the switch is measured, not the model). Load: single-ticker `POST /predict` at "
        f"{args.rate:g} req/s from 16 threads in this process. Canary 10 → 50 → 100 %, {args.step:g} s a step; "
        f"the shadow mirrors every request for {args.step:g} s; blue-green keeps the old version warm {args.step:g} s. "
        f"Median of {len(runs)} run(s), each run's figure in brackets.",
        "",
        "| Switch | Failed requests | Requests sent | p99 during the switch (ms) | Time to switch (s) | Downtime (s) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for strategy in STRATEGIES:
        values = [run.switches[strategy] for run in runs]
        lines.append(
            f"| {strategy} | {cell([v['failed'] for v in values])} | {cell([v['requests'] for v in values])} | "
            f"{cell([v['p99_ms'] for v in values], 1)} | {cell([v['seconds'] for v in values], 1)} | "
            f"{cell([v['downtime_s'] for v in values], 2)} |"
        )
    rollbacks = [run.rollback for run in runs]
    lines.append(
        f"| blue-green to a failing version, rolled back | {cell([v['failed'] for v in rollbacks])} | "
        f"{cell([v['requests'] for v in rollbacks])} | {cell([v['p99_ms'] for v in rollbacks], 1)} | "
        f"{cell([v['seconds'] for v in rollbacks], 1)} (time to roll back) | 0 |"
    )
    proxied = [run.throughput["proxy, 2 replicas"] for run in runs]
    direct = [run.throughput["one Bento, no proxy"] for run in runs]
    ratios = [a / b for a, b in zip(proxied, direct, strict=True)]
    lines += [
        "",
        "Steady state, 16 connections as fast as they are answered for "
        f"{args.seconds:g} s: through the proxy to 2 replicas **{statistics.median(proxied):,.0f} req/s** "
        f"({', '.join(f'{v:,.0f}' for v in proxied)}), one Bento without the proxy "
        f"**{statistics.median(direct):,.0f} req/s** ({', '.join(f'{v:,.0f}' for v in direct)}): ratio "
        f"**{statistics.median(ratios):.2f}** (run by run {', '.join(f'{r:.2f}' for r in ratios)}). Both sides and "
        "the client share the machine's cores, so two replicas cannot double one Bento's throughput here.",
        "",
    ]
    return "\n".join(lines)


def _nginx_version() -> str:
    import shutil
    import subprocess

    nginx = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")
    if nginx is None:
        return "missing"
    return subprocess.run([nginx, "-v"], capture_output=True, text=True, check=False).stderr.strip().split("/")[-1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rate", type=float, default=200.0, help="requests a second during the switches")
    parser.add_argument("--step", type=float, default=3.0, help="seconds a canary step, and blue-green's warm period")
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds of each steady-state measurement")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    command = "python bench/rollout.py" + ("" if argv is None and len(sys.argv) == 1 else " " + " ".join(sys.argv[1:]))
    isolated_home()
    load_before = os.getloadavg()[0]
    bentos = make_bentos()
    with tempfile.TemporaryDirectory(prefix="stockcast-bench-rollout-") as workdir:
        runs = []
        for number in range(args.runs):
            runs.append(one_run(Path(workdir), bentos, args))
            print(f"run {number + 1} of {args.runs} done", file=sys.stderr)
    section = render(runs, args, command, (load_before, os.getloadavg()[0]))
    publish(section, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
