"""Stand-ins for Bento replicas in the roll-out tests: in this process (``FakeBento``), or as a process of its own
that outlives the fleet driving it (``BentoProcess``, started with ``python -m tests.unit.deploy.stand_ins TAG``)."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import psutil

from stockcast.core.network import free_port
from tests.unit.deploy.loopback import LoopbackServer

REPO_ROOT = Path(__file__).resolve().parents[3]


class FakeBento(LoopbackServer):
    """A replica of version ``bento_tag``: ``/predict`` answers its version (a server error on every twentieth
    request when the tag says ``errors``), ``/metrics`` counts them as BentoML does."""

    def __init__(self, bento_tag: str, port: int | None = None) -> None:
        self.bento_tag, self.counts, self.lock = bento_tag, {"200": 0, "500": 0}, threading.Lock()
        self.sequence = itertools.count(1)
        replica = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/metrics":
                    self._send(200, replica.metrics().encode(), "text/plain")
                else:
                    self._send(200, json.dumps({"model_version": replica.bento_tag}).encode())

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                failing = "errors" in replica.bento_tag and next(replica.sequence) % 20 == 0
                status = 500 if failing else 200
                with replica.lock:
                    replica.counts[str(status)] += 1
                self._send(status, json.dumps({"model_version": replica.bento_tag}).encode())

            def _send(self, status: int, body: bytes, kind: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                return

        super().__init__(Handler, port)

    def metrics(self) -> str:
        name = "bentoml_service_request"
        lines = [f"# TYPE {name}_total counter", f"# TYPE {name}_duration_seconds histogram"]
        with self.lock:
            for status, count in self.counts.items():
                labels = f'endpoint="/predict",http_response_code="{status}"'
                lines.insert(1, f"{name}_total{{{labels}}} {count}")
                for bound in ("0.05", "0.5", "+Inf"):
                    lines.append(f'{name}_duration_seconds_bucket{{{labels},le="{bound}"}} {count}')
        return "\n".join(lines) + "\n"


class BentoProcess:
    """A ``FakeBento`` in a process (and session) of its own, as ``bentoml serve`` runs: it keeps running when the
    fleet that started it is abandoned, and a later fleet can adopt it by pid."""

    def __init__(self, bento_tag: str) -> None:
        self.bento_tag, self.port = bento_tag, free_port()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.unit.deploy.stand_ins", bento_tag, str(self.port)],
            stdout=subprocess.PIPE,
            start_new_session=True,
            cwd=REPO_ROOT,  # the tests run from a folder of their own (tests/conftest.py)
        )
        assert self.process.stdout is not None
        self.endpoint = self.process.stdout.readline().decode().strip()  # printed once it listens
        if not self.endpoint:
            raise RuntimeError(f"the stand-in for {bento_tag} did not start (exit code {self.process.wait()})")
        self.pid = self.process.pid

    @property
    def running(self) -> bool:
        try:
            return psutil.Process(self.pid).status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.pid, signal.SIGTERM)
        self.process.wait(timeout=10)


def main() -> None:
    """Serve a ``FakeBento`` of the tag given on the port given until terminated; print its address once it listens."""
    bento_tag, port = sys.argv[1], int(sys.argv[2])
    replica = FakeBento(bento_tag, port=port)
    print(replica.endpoint, flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    replica.stop()


if __name__ == "__main__":
    main()
