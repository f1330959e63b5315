"""The reverse proxy for real: nginx from the OS packages in front of small HTTP servers on loopback, switched while
a constant load runs through it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler

import httpx
import pytest

from stockcast.core.network import free_port
from stockcast.deploy.load import ConstantLoad
from stockcast.deploy.proxy import Backend, NginxProxy, Routes, render_config, weighted
from stockcast.deploy.targets import DeployError
from tests.unit.deploy.loopback import LoopbackServer


class Replica(LoopbackServer):
    """A server that answers every request with its name (and remembers the bodies it was sent)."""

    def __init__(self, name: str) -> None:
        self.name, self.bodies = name, []
        replica = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                replica.bodies.append(self.rfile.read(length))
                body = replica.name.encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                self._answer()

            def do_POST(self) -> None:
                self._answer()

            def log_message(self, *args: object) -> None:
                return

        super().__init__(Handler)


@pytest.fixture
def replicas() -> Iterator[dict[str, Replica]]:
    started = {name: Replica(name) for name in ("blue", "green", "shadow")}
    yield started
    for replica in started.values():
        replica.stop()


@pytest.fixture
def proxy(tmp_path, nginx_installed) -> Iterator[NginxProxy]:
    nginx = NginxProxy(tmp_path, port=free_port(), preview_port=free_port())
    yield nginx
    nginx.stop()


def answers(endpoint: str, n: int) -> list[str]:
    with httpx.Client(base_url=endpoint, timeout=5) as client:
        return [client.post("/predict", content=b"{}").text for _ in range(n)]


def test_weights_give_exact_shares_in_whole_numbers() -> None:
    assert weighted(["n1"], ["o1", "o2"], 10) == (Backend("n1", 2), Backend("o1", 9), Backend("o2", 9))
    assert weighted(["n1", "n2"], ["o1"], 50) == (Backend("n1", 1), Backend("n2", 1), Backend("o1", 2))
    assert weighted(["n1"], ["o1"], 100) == (Backend("n1", 1),)
    assert weighted(["n1"], ["o1"], 0) == (Backend("o1", 1),)
    with pytest.raises(ValueError, match=r"0\.\.100"):
        weighted(["n1"], ["o1"], 101)


def test_an_upstream_without_replicas_is_still_a_valid_configuration(tmp_path) -> None:
    text = render_config(Routes(), listen="127.0.0.1:1", preview_listen="127.0.0.1:2", workdir=tmp_path, generation=3)
    assert "server 127.0.0.1:9 down;" in text and 'return 200 "3\\n"' in text and "mirror" not in text


def test_routes_switch_atomically_under_load_without_a_failed_request(proxy, replicas) -> None:
    blue, green = replicas["blue"], replicas["green"]
    proxy.route(Routes(live=(Backend(blue.address),), preview=(Backend(green.address),)))
    assert set(answers(proxy.endpoint, 5)) == {"blue"} and set(answers(proxy.preview_endpoint, 5)) == {"green"}

    with ConstantLoad(proxy.endpoint, lambda client: client.post("/predict", content=b"{}"), rate=200) as load:
        time.sleep(0.5)
        proxy.route(Routes(live=(Backend(green.address),)))
        switched = time.monotonic()
        time.sleep(0.5)
    assert not load.report.failed, load.report.summary()
    assert load.report.requests > 150
    # Once route() returned, every request is green's.
    assert set(answers(proxy.endpoint, 20)) == {"green"}
    assert switched > 0 and proxy.generation == 2


def test_a_replica_that_goes_away_is_retried_on_another(proxy, replicas) -> None:
    blue, green = replicas["blue"], replicas["green"]
    proxy.route(Routes(live=(Backend(blue.address), Backend(green.address))))
    blue.stop()
    with ConstantLoad(proxy.endpoint, lambda client: client.post("/predict", content=b"{}"), rate=100) as load:
        time.sleep(0.5)
    assert not load.report.failed, load.report.summary()
    assert set(answers(proxy.endpoint, 10)) == {"green"}


def test_weights_split_requests_and_the_shadow_sees_every_one(proxy, replicas) -> None:
    blue, green, shadow = replicas["blue"], replicas["green"], replicas["shadow"]
    live = weighted([green.address], [blue.address], 25)
    proxy.route(Routes(live=live, shadow=(Backend(shadow.address),)))
    seen = answers(proxy.endpoint, 200)
    assert seen.count("green") == 50 and seen.count("blue") == 150  # nginx's smooth weighted round-robin is exact
    deadline = time.monotonic() + 5
    while len(shadow.bodies) < 200 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(shadow.bodies) == 200 and set(shadow.bodies) == {b"{}"}  # mirrored with the request body


def test_a_refused_configuration_leaves_the_routes_in_force(proxy, replicas) -> None:
    blue = replicas["blue"]
    proxy.route(Routes(live=(Backend(blue.address),)))
    with pytest.raises(DeployError, match="nginx refused the routes"):
        proxy.route(Routes(live=(Backend("127.0.0.1:not-a-port"),)))
    assert proxy.generation == 1 and set(answers(proxy.endpoint, 5)) == {"blue"}
