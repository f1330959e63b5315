"""A bounded, constant-rate load on an endpoint, recording every answer: how roll-outs are judged.

``ConstantLoad`` sends requests at a fixed rate from a few threads (one request in flight per thread, so a slow server
bounds the load rather than piling it up) while its ``with`` block runs, and keeps each request's start time,
latency and outcome. A roll-out test or benchmark runs a switch inside the block and reads off how many requests
failed and the p99 latency, during the switch or around any moment.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

import httpx

Request = Callable[[httpx.Client], httpx.Response]
"""One request on a client; e.g. ``lambda client: client.post("/predict", json=...)``."""


@dataclass(frozen=True)
class Outcome:
    """One request: when it started (``time.monotonic()``), how long it took, and its status (0: no answer)."""

    started: float
    seconds: float
    status: int
    error: str = ""

    @property
    def failed(self) -> bool:
        """No answer, or a server error (a 4xx is the client's doing and the service's correct answer)."""
        return self.status == 0 or self.status >= 500


@dataclass
class LoadReport:
    """What a load saw, overall or within a window."""

    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def requests(self) -> int:
        return len(self.outcomes)

    @property
    def failed(self) -> list[Outcome]:
        return [outcome for outcome in self.outcomes if outcome.failed]

    def p99_ms(self) -> float:
        """The 99th percentile latency in milliseconds (nearest rank); 0 without requests."""
        if not self.outcomes:
            return 0.0
        latencies = sorted(outcome.seconds for outcome in self.outcomes)
        return 1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]

    def between(self, start: float, end: float) -> LoadReport:
        """The requests that started within ``[start, end]`` (``time.monotonic()`` values)."""
        return LoadReport([outcome for outcome in self.outcomes if start <= outcome.started <= end])

    def summary(self) -> str:
        """``n requests, k failed, p99 x ms`` and the first failures' reasons."""
        failed = self.failed
        reasons = "; ".join(sorted({outcome.error or f"HTTP {outcome.status}" for outcome in failed})[:3])
        return f"{self.requests} requests, {len(failed)} failed, p99 {self.p99_ms():.0f} ms" + (
            f" ({reasons})" if reasons else ""
        )


class ConstantLoad:
    """``rate`` requests a second to ``base_url`` from ``threads`` threads while inside the ``with`` block."""

    def __init__(self, base_url: str, request: Request, *, rate: float, threads: int = 8, timeout: float = 10.0):
        self.base_url, self.request, self.rate, self.threads, self.timeout = base_url, request, rate, threads, timeout
        self.report = LoadReport()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._next = 0.0
        self._workers: list[threading.Thread] = []

    def __enter__(self) -> Self:
        self._next = time.monotonic()
        self._workers = [threading.Thread(target=self._work, daemon=True) for _ in range(self.threads)]
        for worker in self._workers:
            worker.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self._stop.set()
        for worker in self._workers:
            worker.join(timeout=self.timeout + 5)

    def _slot(self) -> float:
        """The start time of the next request: requests are spaced ``1 / rate`` apart, whichever thread sends them."""
        with self._lock:
            slot = self._next
            self._next += 1.0 / self.rate
            return slot

    def _work(self) -> None:
        with httpx.Client(base_url=self.base_url, timeout=self.timeout) as client:
            while not self._stop.is_set():
                slot = self._slot()
                wait = slot - time.monotonic()
                if wait > 0 and self._stop.wait(wait):
                    return
                started = time.monotonic()
                try:
                    status, error = self.request(client).status_code, ""
                except httpx.HTTPError as exc:
                    status, error = 0, f"{type(exc).__name__}: {exc}"
                outcome = Outcome(started, time.monotonic() - started, status, error)
                with self._lock:
                    self.report.outcomes.append(outcome)
