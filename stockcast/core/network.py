"""Loopback networking shared by the local deployment target, the tests and the benchmarks."""

from __future__ import annotations

import socket

LOOPBACK = "127.0.0.1"


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port nothing listens on at ``host`` right now, for a server about to be started there."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]
