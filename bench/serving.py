"""Benchmark: the built Bento under ``bentoml serve`` against a plain Starlette app and the in-process floor.

    python bench/serving.py                           # 5 runs of each measurement, 1 to 3 minutes
    python bench/serving.py --runs 1 --requests 1000  # a quick look

What is measured, side by side in one run, for single-ticker ``POST /predict`` requests:

- **in process**: ``stockcast.serve.answers.answer_queries`` called for one request at a time: the floor any server adds
  to;
- **plain app**: a minimal Starlette app under uvicorn (``plain_app`` below) serving the same ``ServingBundle``
  file with the same ``answer_queries``, one request per call, its answer encoded as the same JSON (checked value
  for value);
- **Bento**: the Bento built by ``stockcast.deploy.package.build_bento`` from ``bentos/``, started by ``LocalServe``
  (``bentoml serve`` on 127.0.0.1), with the workers and settings its service declares.

The model is the training benchmark's winner, ``catboost[depth=4]``, fitted on the demo's market (``stockcast-generate``
defaults: 50 tickers × 5 years); every BentoML store is a temporary folder. The load generator is a small asyncio
HTTP/1.1 client in this process (keep-alive connections to 127.0.0.1 only, requests pre-encoded), bounded by a
request count and a wall-time limit per phase: sequential requests on one connection give the latency
percentiles, ``--concurrency`` connections the throughput. Runs alternate between the two servers, so background
load on the machine affects both alike; reported figures are medians over the runs. The markdown section is
printed and written to ``bench/results/serving.md`` for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import random
import select
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent
RESULTS = HERE / "results" / "serving.md"
HOST = "127.0.0.1"
PLAIN_BUNDLE_ENV = "STOCKCAST_BENCH_BUNDLE"
"""Where the plain app's workers find the bundle file: the one inside the Bento's model."""
TARGET_P50_MS, TARGET_THROUGHPUT_RATIO = 5.0, 0.8
GRACE_SECONDS = 10.0
"""How long past a phase's time limit an unanswered request may take before it counts as an error."""
MODEL_PARAMS = {"depth": 4}

# This file is bench/serving.py (also the plain app's worker processes run it) and Python puts bench/ first on
# sys.path, where ``import features`` would find bench/features.py: keep the repository's packages ahead of it.
sys.path[:] = [str(REPO_ROOT), *(entry for entry in sys.path if Path(entry or ".").resolve() != HERE)]


# --- the reference server ---------------------------------------------------------------------------------------


def plain_app() -> Any:
    """The reference: ``POST /predict`` as a bare Starlette route, nothing between uvicorn and the prediction.

    No schema validation, middleware, metrics, batching or access log: the JSON body is parsed, ``answer_queries``
    answers it alone from the same bundle file the Bento loads (``$STOCKCAST_BENCH_BUNDLE``), and the answer is
    encoded as the service encodes it. A refused request gets a 400 naming the field.
    """
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    from stockcast.serve.answers import ServingInputError, TickerQuery, answer_queries
    from stockcast.serve.bundle import read_bundle

    bundle = read_bundle(os.environ[PLAIN_BUNDLE_ENV])

    async def predict(request: Request) -> Response:
        body = json.loads(await request.body())
        (answer,) = answer_queries(bundle, [TickerQuery(body["tickers"], body.get("as_of"))])
        if isinstance(answer, ServingInputError):
            return JSONResponse({"error": str(answer), "field": answer.field}, status_code=400)
        if isinstance(answer, Exception):
            raise answer
        return Response(encode({"predictions": answer}), media_type="application/json")

    return Starlette(routes=[Route("/predict", predict, methods=["POST"])])


@contextmanager
def serve_plain(bundle_path: Path, workers: int, log_path: Path) -> Iterator[int]:
    """``plain_app`` in ``workers`` uvicorn processes sharing one listening socket on a free loopback port, as
    ``bentoml serve`` runs its workers; yields the port once every worker is serving.

    Not ``uvicorn --workers``: its workers inherit the socket without its protocol number, so asyncio never sets
    ``TCP_NODELAY`` on their connections and every answer on a kept-alive connection waits about 40 ms for the
    client's delayed ACK (measured here: p50 64 ms with two workers, 25 ms with one).
    """
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((HOST, 0))
    listener.listen(2048)
    command = [sys.executable, str(Path(__file__).resolve()), "--plain-worker", str(listener.fileno())]
    processes: list[subprocess.Popen[bytes]] = []
    try:
        with log_path.open("ab") as log:
            for _ in range(workers):
                processes.append(
                    subprocess.Popen(
                        command,
                        stdout=subprocess.PIPE,
                        stderr=log,
                        pass_fds=(listener.fileno(),),
                        env={**os.environ, PLAIN_BUNDLE_ENV: str(bundle_path)},
                        cwd=REPO_ROOT,
                    )
                )
        deadline = time.monotonic() + 60
        for process in processes:
            assert process.stdout is not None
            ready, _, _ = select.select([process.stdout], [], [], max(0.0, deadline - time.monotonic()))
            if not ready or process.stdout.readline().strip() != b"ready":
                raise RuntimeError(f"a plain app worker did not start; log {log_path}:\n{log_path.read_text()[-2000:]}")
        yield listener.getsockname()[1]
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
            if process.stdout is not None:
                process.stdout.close()
        listener.close()


def plain_worker(fd: int) -> None:
    """One worker of the plain app: uvicorn on the inherited listening socket ``fd``; says "ready" on stdout."""
    import uvicorn

    config = uvicorn.Config(plain_app(), access_log=False, log_level="warning", server_header=False)
    server = uvicorn.Server(config)

    async def serve() -> None:
        serving = asyncio.create_task(server.serve(sockets=[socket.socket(fileno=fd)]))
        while not server.started and not serving.done():
            await asyncio.sleep(0.05)
        print("ready", flush=True)
        await serving

    asyncio.run(serve())


# --- the load generator -----------------------------------------------------------------------------------------


@dataclass
class Phase:
    """What one bounded phase of load measured."""

    latencies: list[float] = field(default_factory=list)  # seconds, successful requests only
    errors: int = 0
    first_error: str | None = None
    seconds: float = 0.0  # wall time from the first request sent to the last answer
    cpu_seconds: float = 0.0  # this process's CPU time in the phase: the load generator's cost
    server_cpu_seconds: float = 0.0  # CPU time of the processes holding the server's listening socket
    machine_busy: float = 0.0  # share of all cores busy in the phase, everything on the machine included

    @property
    def server_cpu_ms_per_request(self) -> float:
        """The server's CPU time per successful request, in ms: its cost, whatever else runs on the machine."""
        return 1000 * self.server_cpu_seconds / len(self.latencies) if self.latencies else float("nan")

    @property
    def throughput(self) -> float:
        """Successful requests per second."""
        return len(self.latencies) / self.seconds if self.seconds else 0.0

    def percentile_ms(self, share: float) -> float:
        """The latency below which ``share`` of the successful requests finished, in ms (nearest rank)."""
        ordered = sorted(self.latencies)
        return 1000 * ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else float("nan")


def request_bytes(port: int, path: str, body: bytes) -> bytes:
    """One pre-encoded HTTP/1.1 POST with a JSON body, keep-alive."""
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nAccept: application/json\r\n\r\n"
    )
    return head.encode() + body


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """Status, body and whether the server keeps the connection open (Content-Length or chunked bodies)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:])}
    if headers.get("transfer-encoding", "").lower() == "chunked":
        chunks = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            chunks.append(await reader.readexactly(size + 2))
            if size == 0:
                break
        body = b"".join(chunk[:-2] for chunk in chunks)
    else:
        body = await reader.readexactly(int(headers.get("content-length", "0")))
    return status, body, headers.get("connection", "").lower() != "close"


async def _drive(
    port: int, requests: Sequence[bytes], *, concurrency: int, max_requests: int, time_limit: float
) -> Phase:
    """Send ``requests`` (cycling) over ``concurrency`` keep-alive connections until ``max_requests`` were sent or
    ``time_limit`` seconds passed, whichever comes first."""
    phase = Phase()
    numbers = itertools.count()
    deadline = time.monotonic() + time_limit
    answered = [asyncio.Event() for _ in range(concurrency)]

    async def connection(index: int) -> None:
        # Connections open one after another, each once the previous one had its first answer, so the workers
        # sharing the server's socket take turns accepting them. Opened all at once, the first worker to wake up
        # accepts every one of them and the phase measures a single worker.
        if index:
            await answered[index - 1].wait()
        reader, writer = await asyncio.open_connection(HOST, port)
        try:
            # The last request may start just before the deadline; none may take longer than GRACE_SECONDS.
            async with asyncio.timeout(time_limit + GRACE_SECONDS):
                while (number := next(numbers)) < max_requests and time.monotonic() < deadline:
                    started = time.perf_counter()
                    writer.write(requests[number % len(requests)])
                    status, body, keep_alive = await _read_response(reader)
                    answered[index].set()
                    if status == 200:
                        phase.latencies.append(time.perf_counter() - started)
                    else:
                        phase.errors += 1
                        phase.first_error = phase.first_error or f"HTTP {status}: {body[:200]!r}"
                    if not keep_alive:
                        writer.close()
                        reader, writer = await asyncio.open_connection(HOST, port)
        except TimeoutError:
            phase.errors += 1
            phase.first_error = phase.first_error or f"no answer within {GRACE_SECONDS:.0f} s after the time limit"
        finally:
            answered[index].set()
            writer.close()

    import psutil

    servers = server_processes(port)
    server_before = _cpu_seconds(servers)
    machine_before = psutil.cpu_times()
    cpu_started, started = time.process_time(), time.perf_counter()
    await asyncio.gather(*(connection(index) for index in range(concurrency)))
    phase.seconds = time.perf_counter() - started
    phase.cpu_seconds = time.process_time() - cpu_started
    machine_after = psutil.cpu_times()
    phase.server_cpu_seconds = _cpu_seconds(servers) - server_before
    busy = sum(after - before for after, before in zip(machine_after, machine_before, strict=True))
    idle = (machine_after.idle - machine_before.idle) + (machine_after.iowait - machine_before.iowait)
    phase.machine_busy = 1 - idle / busy if busy else 0.0
    return phase


def server_processes(port: int) -> list[Any]:
    """The processes holding the listening socket on ``127.0.0.1:port``: every worker of the server (and its
    supervisor, if any), since the workers share one socket."""
    import psutil

    def listens(process: psutil.Process) -> bool:
        try:
            connections = process.net_connections("tcp")
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return False
        return any(c.status == psutil.CONN_LISTEN and c.laddr.port == port for c in connections)

    return [process for process in psutil.process_iter() if process.pid != os.getpid() and listens(process)]


def _cpu_seconds(processes: Sequence[Any]) -> float:
    return sum(sum(process.cpu_times()[:2]) for process in processes)


def load(port: int, requests: Sequence[bytes], *, concurrency: int, max_requests: int, time_limit: float) -> Phase:
    """One bounded phase of load against the server on ``127.0.0.1:port``."""
    return asyncio.run(
        _drive(port, requests, concurrency=concurrency, max_requests=max_requests, time_limit=time_limit)
    )


def fetch(port: int, request: bytes) -> tuple[int, bytes]:
    """One request's status and body."""

    async def once() -> tuple[int, bytes]:
        reader, writer = await asyncio.open_connection(HOST, port)
        try:
            writer.write(request)
            status, body, _ = await _read_response(reader)
            return status, body
        finally:
            writer.close()

    return asyncio.run(once())


# --- the benchmark ----------------------------------------------------------------------------------------------


@dataclass
class Measured:
    """Every run's figures for one side of the comparison."""

    sequential: list[Phase] = field(default_factory=list)
    concurrent: list[Phase] = field(default_factory=list)

    def median(self, figure: Callable[[Phase], float], phases: str) -> float:
        return statistics.median(figure(phase) for phase in getattr(self, phases))


def make_bundle() -> Any:
    """The catboost[depth=4] serving bundle of the demo's market, fitted on all of it."""
    from stockcast.data.synthetic.generator import MarketSpec, generate_market
    from tests.factories import make_bundle as bundle_of
    from tests.factories import make_record

    record = make_record(
        "bench1", candidate_id="catboost[depth=4]", factory="catboost", params=MODEL_PARAMS, data_version="bench"
    )
    return bundle_of(generate_market(MarketSpec()), record)


def in_process(bundle: Any, tickers: Sequence[str], count: int) -> Phase:
    """``answer_queries`` for one single-ticker request at a time, ``count`` calls in a row."""
    from stockcast.serve.answers import TickerQuery, answer_queries

    phase = Phase()
    cpu_started, started = time.process_time(), time.perf_counter()
    for number in range(count):
        call_started = time.perf_counter()
        answer_queries(bundle, [TickerQuery([tickers[number % len(tickers)]])])
        phase.latencies.append(time.perf_counter() - call_started)
    phase.seconds = time.perf_counter() - started
    phase.cpu_seconds = time.process_time() - cpu_started
    return phase


def check_same_answers(ports: dict[str, int], bundle: Any, tickers: Sequence[str]) -> None:
    """Both servers answer every ticker with the library's answer, every number equal to the last bit."""
    from stockcast.serve.answers import predict_tickers, prediction_records

    for ticker in tickers:
        expected = {"predictions": prediction_records(predict_tickers(bundle, [ticker]))}
        for name, port in ports.items():
            status, body = fetch(port, request_bytes(port, "/predict", _predict_body(ticker)))
            if status != 200 or json.loads(body) != expected:
                raise RuntimeError(f"{name} answered {ticker} with HTTP {status} {body[:300]!r}, not {expected}")


def _predict_body(ticker: str) -> bytes:
    return encode({"tickers": [ticker]})


def encode(value: Any) -> bytes:
    """Compact JSON, as pydantic writes it."""
    return json.dumps(value, separators=(",", ":")).encode()


def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """Build the model and Bento, start both servers, alternate measured runs; every figure of every run."""
    os.environ["BENTOML_HOME"] = str(workdir / "bentoml")  # before bentoml is first imported
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")
    import bentoml

    from stockcast.deploy.package import build_bento, save_bento_model
    from stockcast.deploy.targets import LocalServe
    from stockcast.serve.bundle import BUNDLE_FILE
    from stockcast.serve.client import StockcastClient

    started = time.perf_counter()
    bundle = make_bundle()
    model_tag = save_bento_model(bundle)
    bento_tag = build_bento(model_tag)
    bento_workers = bentoml.bentos.get(bento_tag).info.services[0].config.get("workers") or 1
    plain_workers = args.plain_workers or bento_workers
    bundle_path = Path(bentoml.models.get(model_tag).path_of(BUNDLE_FILE))
    print(f"model {model_tag} and Bento {bento_tag} ready in {time.perf_counter() - started:.0f} s", file=sys.stderr)

    warm = bundle.latest_rows.loc[bundle.latest_rows["is_warm"].eq(True), "ticker"].tolist()
    tickers = random.Random(args.seed).sample(warm, len(warm))
    floor = Measured()
    in_process(bundle, tickers, args.warmup)
    for _ in range(args.runs):
        floor.sequential.append(in_process(bundle, tickers, args.requests))

    sides = {"plain app": Measured(), "Bento": Measured()}
    batch_sizes: list[float] = []
    with (
        serve_plain(bundle_path, plain_workers, workdir / "plain.log") as plain_port,
        LocalServe(startup_timeout=120, log_path=workdir / "bento.log") as bento,
    ):
        bento_url = bento.deploy(bento_tag)
        bento_port = int(bento_url.rsplit(":", 1)[1])
        bento_client = StockcastClient(bento_url)
        ports = {"plain app": plain_port, "Bento": bento_port}
        check_same_answers(ports, bundle, tickers)
        requests = {
            name: [request_bytes(port, "/predict", _predict_body(ticker)) for ticker in tickers]
            for name, port in ports.items()
        }
        for name, port in ports.items():  # warm up: imports, caches, connection set-up
            load(port, requests[name], concurrency=args.concurrency, max_requests=args.warmup, time_limit=30)
        for index in range(args.runs):
            for name, port in ports.items() if index % 2 == 0 else reversed(ports.items()):
                sequential = load(
                    port, requests[name], concurrency=1, max_requests=args.requests, time_limit=args.time_limit
                )
                batching_before = bento_client.batching() if name == "Bento" else None
                concurrent = load(
                    port,
                    requests[name],
                    concurrency=args.concurrency,
                    max_requests=args.concurrent_requests,
                    time_limit=args.time_limit,
                )
                if batching_before is not None:
                    batching = bento_client.batching()
                    batch_sizes.append(
                        (batching.requests - batching_before.requests)
                        / (batching.model_calls - batching_before.model_calls)
                    )
                sides[name].sequential.append(sequential)
                sides[name].concurrent.append(concurrent)
                print(
                    f"run {index + 1} {name}: p50 {sequential.percentile_ms(0.5):.2f} ms, "
                    f"{concurrent.throughput:.0f} req/s at {args.concurrency}, server CPU "
                    f"{concurrent.server_cpu_ms_per_request:.2f} ms/request, "
                    f"{sequential.errors + concurrent.errors} errors",
                    file=sys.stderr,
                )
        bento_client.close()
    return {
        "floor": floor,
        "sides": sides,
        "workers": {"plain app": plain_workers, "Bento": bento_workers},
        "batch_sizes": batch_sizes,
        "model_tag": model_tag,
        "tickers": len(tickers),
    }


def render(results: dict[str, Any], args: argparse.Namespace, command: str, load_average: tuple[float, float]) -> str:
    """The markdown section for BENCHMARKS.md."""
    import bentoml
    import uvicorn

    from bench.machine import describe_load, describe_machine

    floor: Measured = results["floor"]
    sides: dict[str, Measured] = results["sides"]
    plain, bento = sides["plain app"], sides["Bento"]
    workers = results["workers"]

    def p(measured: Measured, share: float, phases: str = "sequential") -> float:
        return measured.median(lambda phase: phase.percentile_ms(share), phases)

    def rate(measured: Measured) -> float:
        return measured.median(lambda phase: phase.throughput, "concurrent")

    def cpu(measured: Measured) -> float:
        return measured.median(lambda phase: phase.server_cpu_ms_per_request, "concurrent")

    def runs(measured: Measured) -> str:
        return ", ".join(f"{phase.throughput:.0f}" for phase in measured.concurrent)

    floor_rate = floor.median(lambda phase: len(phase.latencies) / phase.seconds, "sequential")
    ratio = rate(bento) / rate(plain)
    paired = statistics.median(
        b.throughput / a.throughput for a, b in zip(plain.concurrent, bento.concurrent, strict=True)
    )
    bento_p50, floor_p50 = p(bento, 0.5), p(floor, 0.5)
    errors = {name: sum(phase.errors for phase in m.sequential + m.concurrent) for name, m in sides.items()}
    generator = {
        name: m.median(lambda phase: phase.cpu_seconds / phase.seconds, "concurrent") for name, m in sides.items()
    }
    busy = {name: m.median(lambda phase: phase.machine_busy, "concurrent") for name, m in sides.items()}
    met = {True: "met", False: "missed"}

    lines = [
        "## Serving (`bench/serving.py`)",
        "",
        f"Target (issue 5): the Bento's `POST /predict` throughput at least {TARGET_THROUGHPUT_RATIO:.0%} of a plain "
        f"Starlette + uvicorn app's serving the same model, and its sequential p50 under {TARGET_P50_MS:.0f} ms. Run "
        "with `make bench-serving`; the section below is its output as printed.",
        "",
        f"- Machine: {describe_machine(BentoML=bentoml.__version__, uvicorn=uvicorn.__version__)} (h11, asyncio "
        f"loop). {describe_load(*load_average)}",
        f"- Command: `{command}`",
        f"- Model: `catboost[depth=4]` (the training benchmark's winner) fitted on the demo's market; requests ask for "
        f'one ticker each (`{{"tickers": ["…"]}}`), cycling through the {results["tickers"]} tickers in one '
        "shuffled order, the same for every side. Both servers' answers were first checked equal to the library's "
        "for every ticker.",
        f"- Sides: **in process**, `answer_queries` called for one request at a time (the floor); the **plain app**, a "
        f"bare Starlette route calling the same `answer_queries` for each request on the same bundle file, in "
        f"**{workers['plain app']} uvicorn worker(s)** sharing one socket, no validation, middleware, batching or "
        "access log; the **Bento**, built by `stockcast.deploy.package.build_bento` and started by `LocalServe` "
        f"(`bentoml serve`) with **{workers['Bento']} worker(s)** and the settings in `bentos/service.py`. Both "
        "servers on 127.0.0.1.",
        f"- Load: an asyncio HTTP/1.1 client in the benchmark's process (keep-alive, pre-encoded requests) on the same "
        f"cores. Each run: {args.requests} sequential requests on one connection, then up to "
        f"{args.concurrent_requests} over {args.concurrency} connections, each phase also stopped after "
        f"{args.time_limit:.0f} s; {args.warmup} warm-up requests first. Runs alternate between the servers; figures "
        f"are medians of {args.runs} runs.",
        "",
        f"| Side | Workers | Sequential p50 (ms) | Sequential p99 (ms) | Throughput at {args.concurrency} (req/s) | "
        f"p50 / p99 at {args.concurrency} (ms) | Server CPU per request (ms) | Errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
        f"| in process | 1 thread | {floor_p50:.2f} | {p(floor, 0.99):.2f} | {floor_rate:,.0f} calls/s, one after "
        "another | | | 0 |",
    ]
    lines += [
        f"| {name} | {workers[name]} | {p(m, 0.5):.2f} | {p(m, 0.99):.2f} | {rate(m):,.0f} | "
        f"{p(m, 0.5, 'concurrent'):.2f} / {p(m, 0.99, 'concurrent'):.2f} | {cpu(m):.2f} | {errors[name]} |"
        for name, m in sides.items()
    ]
    lines += [
        "",
        f"- Throughput, Bento / plain app: {rate(bento):,.0f} / {rate(plain):,.0f} = **{ratio:.2f}** (target ≥ "
        f"{TARGET_THROUGHPUT_RATIO:.2f}: **{met[ratio >= TARGET_THROUGHPUT_RATIO]}**); median of the run-by-run ratios "
        f"{paired:.2f}. Every run: Bento {runs(bento)}, plain app {runs(plain)} req/s. Server CPU per request, plain "
        f"/ Bento: {cpu(plain):.2f} / {cpu(bento):.2f} = {cpu(plain) / cpu(bento):.2f}.",
        f"- Sequential p50 of the Bento: {bento_p50:.2f} ms = **{bento_p50 / TARGET_P50_MS:.2f}** of the "
        f"{TARGET_P50_MS:.0f} ms target (**{met[bento_p50 < TARGET_P50_MS]}**); {bento_p50 / floor_p50:.1f}× the "
        f"in-process floor ({floor_p50:.2f} ms). HTTP and framework add {bento_p50 - floor_p50:.2f} ms to a request "
        f"in the Bento, {p(plain, 0.5) - floor_p50:.2f} ms in the plain app.",
        f"- Micro-batching in the Bento: in the concurrent phases one model call answered "
        f"{statistics.median(results['batch_sizes']):.1f} requests (median of the runs; `stockcast_predict_batch_size` "
        "on `/metrics`); sequential requests are answered one by one.",
        f"- CPU in the concurrent phases: the load generator used {generator['Bento']:.0%} of one core against the "
        f"Bento and {generator['plain app']:.0%} against the plain app; the machine's two cores were "
        f"{busy['Bento']:.0%} and {busy['plain app']:.0%} busy (everything on the machine included).",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Command line: measure, print the markdown section and write it to bench/results/."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="measured runs per side (medians are reported)")
    parser.add_argument("--requests", type=int, default=500, help="sequential requests per run")
    parser.add_argument("--concurrent-requests", type=int, default=3000, help="most requests per concurrent phase")
    parser.add_argument("--concurrency", type=int, default=16, help="connections in the concurrent phase")
    parser.add_argument("--time-limit", type=float, default=20.0, help="most seconds per phase")
    parser.add_argument("--warmup", type=int, default=200, help="unmeasured requests per side before the runs")
    parser.add_argument(
        "--plain-workers", type=int, help="uvicorn worker processes of the plain app (default: as many as the Bento)"
    )
    parser.add_argument("--seed", type=int, default=7, help="shuffles the ticker sequence")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where to write the markdown section")
    parser.add_argument("--plain-worker", type=int, help=argparse.SUPPRESS)  # internal: serve plain_app on this fd
    args = parser.parse_args(argv)
    if args.plain_worker is not None:
        plain_worker(args.plain_worker)
        return 0
    command = "python bench/serving.py" + ("" if argv is None and len(sys.argv) == 1 else " " + " ".join(sys.argv[1:]))
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="stockcast-bench-") as workdir:
        results = run(args, Path(workdir))
    section = render(results, args, command, (load_before, os.getloadavg()[0]))
    from bench.machine import publish

    publish(section, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
