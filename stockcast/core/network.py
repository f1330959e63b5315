"""Loopback networking shared by the local deployment target, the tests and the benchmarks."""

from __future__ import annotations

import collections
import random
import socket
from pathlib import Path

LOOPBACK = "127.0.0.1"
EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
"""Where Linux keeps the range it takes the ports of outgoing connections and of binds to port 0 from."""
LOWEST_LISTENING_PORT = 10_000
"""Below this, ports are left to the services that conventionally use them."""

_recently_handed_out: collections.deque[int] = collections.deque(maxlen=256)
_chooser = random.SystemRandom()


def listening_ports() -> range:
    """The ports ``free_port`` chooses from: below the kernel's ephemeral range (32768 on Linux by default, 49152 on
    macOS), so no outgoing connection nor another process's bind to port 0 can take the port between the choice and
    the server's own bind."""
    try:
        ephemeral_low = int(EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral_low = 32_768
    return range(LOWEST_LISTENING_PORT, max(ephemeral_low, LOWEST_LISTENING_PORT))


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port nothing uses at ``host`` right now, for a server about to be started there.

    Not one the kernel hands out itself: a port it gave to ``bind(0)`` is an ephemeral one, which another test worker's
    HTTP client could take as its source port before the server binds it (seen: nginx then failed with "Address already
    in use"). Nor one this process handed out lately, which a server may be about to bind."""
    ports = listening_ports()
    for port in _chooser.sample(ports, k=min(len(ports), 100)):
        if port in _recently_handed_out:
            continue
        with socket.socket() as probe:
            try:
                probe.bind((host, port))
            except OSError:
                continue
        _recently_handed_out.append(port)
        return port
    with socket.socket() as probe:  # a kernel set up with almost no ports outside its ephemeral range
        probe.bind((host, 0))
        return probe.getsockname()[1]
