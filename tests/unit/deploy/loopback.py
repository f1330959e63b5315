"""A small HTTP server on a free loopback port, standing for a replica behind the proxy in the roll-out tests."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from stockcast.core.network import free_port


class LoopbackServer:
    """``handler`` served from a thread on 127.0.0.1 until ``stop()``; one request a connection (HTTP/1.0), so a
    stopped server answers none."""

    def __init__(self, handler: type[BaseHTTPRequestHandler], port: int | None = None) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", port or free_port()), handler)
        self.server.daemon_threads = True
        self.server.request_queue_size = 128  # the default 5 refuses connections under the tests' load
        self.address = f"127.0.0.1:{self.server.server_port}"
        self.endpoint = f"http://{self.address}"
        self.stopped = False
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def stop(self) -> None:
        """Stop serving; doing so twice does nothing."""
        if not self.stopped:
            self.stopped = True
            self.server.shutdown()
            self.server.server_close()
