"""The ports servers are started on: free, and never ones the kernel may hand to a client meanwhile."""

from __future__ import annotations

import socket

import pytest

from stockcast.core import network
from stockcast.core.network import LOOPBACK, free_port, listening_ports


def test_a_free_port_is_below_the_kernels_ephemeral_range_and_can_be_listened_on():
    ephemeral_low = int(network.EPHEMERAL_RANGE.read_text().split()[0])
    port = free_port()
    assert network.LOWEST_LISTENING_PORT <= port < ephemeral_low
    with socket.socket() as server:
        server.bind((LOOPBACK, port))
        server.listen()


def test_a_port_in_use_is_never_handed_out(monkeypatch):
    with socket.socket() as taken:
        taken.bind((LOOPBACK, 0))
        taken.listen()
        port = taken.getsockname()[1]
        monkeypatch.setattr(network, "listening_ports", lambda: range(port, port + 2))
        assert free_port() == port + 1
        assert free_port() != port, "with every candidate in use or handed out, the kernel chooses"


def test_ports_handed_out_lately_are_not_handed_out_again(monkeypatch):
    first = free_port()
    monkeypatch.setattr(network, "listening_ports", lambda: range(first, first + 2))
    assert free_port() == first + 1
    monkeypatch.setattr(network, "listening_ports", lambda: range(first, first + 1))
    assert free_port() not in {first, first + 1}, "with every candidate taken, the kernel chooses"


@pytest.mark.parametrize("content", ["", "garbage", None])
def test_an_unreadable_ephemeral_range_falls_back_to_linux_default(monkeypatch, tmp_path, content):
    path = tmp_path / "ip_local_port_range"
    if content is not None:
        path.write_text(content)
    monkeypatch.setattr(network, "EPHEMERAL_RANGE", path)
    assert listening_ports() == range(network.LOWEST_LISTENING_PORT, 32_768)
