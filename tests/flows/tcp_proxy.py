"""A TCP proxy in a process of its own: the S3 endpoint that the storage-fault tests take down and bring back.

Killing the proxy (SIGKILL, as a server crashes) makes its port refuse connections and cuts the ones in flight;
starting it again on the same port brings "the server" back with every object it held, because the S3 server behind
it never stopped. That is an outage as the clients of a durable S3 service meet it (a crashed or restarted MinIO, a
network partition). Killing moto_server itself would not be: it keeps its objects in memory, so it would come back
empty, and its recorder rebuilds a state only by replaying every request it logged, reads included, into the new
server (multipart uploads only if moto's random ids were seeded to repeat).

    python tests/flows/tcp_proxy.py LISTEN_PORT TARGET_HOST TARGET_PORT

The module imports nothing of the project, so that it starts in a fraction of a second as a plain script.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from urllib.parse import urlparse

LOOPBACK = "127.0.0.1"


class TcpProxy:
    """The proxy process on ``port`` of 127.0.0.1, forwarding to ``target`` (``http://host:port``)."""

    def __init__(self, target: str, port: int) -> None:
        parsed = urlparse(target)
        self.target_host, self.target_port = parsed.hostname or LOOPBACK, parsed.port or 80
        self.port = port
        self._process: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        """The proxy's URL: the S3 endpoint the flows under test use."""
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def pid(self) -> int | None:
        """The proxy process's id while it runs."""
        return self._process.pid if self._process else None

    def start(self, timeout: float = 10) -> TcpProxy:
        """Start the proxy (again) on its port and wait until it accepts connections."""
        command = [sys.executable, str(Path(__file__).resolve()), str(self.port), self.target_host]
        self._process = subprocess.Popen([*command, str(self.target_port)])
        deadline = time.monotonic() + timeout
        while True:
            try:
                socket.create_connection((LOOPBACK, self.port), timeout=1).close()
                return self
            except OSError:
                if self._process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"TCP proxy on port {self.port} did not start") from None
                time.sleep(0.05)

    def kill(self) -> None:
        """Kill the proxy at once: its port refuses connections from now on, and those open are cut."""
        if self._process is not None:
            self._process.kill()
            self._process.wait(timeout=10)
            self._process = None

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.kill()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy one direction of a connection until it ends, then close the other side."""
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.close()


async def _serve(port: int, target_host: str, target_port: int) -> None:
    async def forward(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(target_host, target_port)
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(_pipe(client_reader, upstream_writer), _pipe(upstream_reader, client_writer))

    server = await asyncio.start_server(forward, LOOPBACK, port, reuse_address=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(_serve(int(sys.argv[1]), sys.argv[2], int(sys.argv[3])))
