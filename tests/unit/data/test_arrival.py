"""The data-arrival event: checked before it is sent, named as IngestFlow's trigger names it, and delivered to a
webhook (a real HTTP server on loopback standing for Argo Events' event source)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler

import pytest

from stockcast.core.params import ParameterError
from stockcast.data.arrival import checked_arrival, data_event_name, main
from tests.unit.deploy.loopback import LoopbackServer


class Webhook(LoopbackServer):
    """Records every event posted to it; answers ``status``."""

    def __init__(self, status: int = 200) -> None:
        self.events: list[dict] = []
        webhook, lock = self, threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with lock:
                    webhook.events.append(json.loads(body))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                return

        super().__init__(Handler)


@pytest.fixture
def webhook():
    server = Webhook()
    yield server
    server.stop()


def test_the_event_is_the_one_ingestflow_waits_for_with_its_parameters(webhook, tmp_path, capsys) -> None:
    prices = tmp_path / "stock_price.csv"
    prices.write_text("date,ticker\n")

    status = main(["--prices", str(prices), "--today", "2026-12-04", "--production", "--webhook", webhook.endpoint])

    assert status == 0
    (event,) = webhook.events
    assert event["name"] == "mfns.stockcast.prod.data_arrived" == data_event_name("prod")
    assert {key: event["payload"][key] for key in ("prices", "financials", "today")} == {
        "prices": str(prices),
        "financials": "",
        "today": "2026-12-04",
    }
    assert "Published mfns.stockcast.prod.data_arrived" in capsys.readouterr().out


def test_the_name_is_metaflows_namespaced_event_name() -> None:
    from metaflow.plugins.namespaced_events import _make_namespaced_event_name  # what IngestFlow's trigger resolves

    assert data_event_name("user.ana") == _make_namespaced_event_name("data_arrived", "stockcast", "user.ana")


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"prices": " "}, "--prices is required"),
        ({"prices": "missing/stock_price.csv"}, r"--prices .missing/stock_price.csv. is neither an s3:// or http\(s\)"),
        ({"prices": "s3://b/p.csv", "financials": "ftp://x"}, "--financials 'ftp://x' is neither"),
        ({"prices": "s3://b/p.csv", "today": "04/12/2026"}, "--today must be a date as YYYY-MM-DD, got '04/12/2026'"),
    ],
)
def test_a_bad_argument_is_named_and_nothing_is_sent(webhook, arguments, message) -> None:
    with pytest.raises(ParameterError, match=message):
        checked_arrival(**arguments)
    argv = [item for key, value in arguments.items() for item in (f"--{key}", value)]
    assert main([*argv, "--webhook", webhook.endpoint]) == 1
    assert webhook.events == []


def test_a_webhook_that_refuses_the_event_is_reported(capsys) -> None:
    refusing = Webhook(status=500)
    try:
        assert main(["--prices", "s3://bucket/in/stock_price.csv", "--webhook", refusing.endpoint]) == 1
    finally:
        refusing.stop()
    assert f"stockcast-data-arrived: {refusing.endpoint} did not take event mfns.stockcast." in capsys.readouterr().err


def test_without_a_webhook_it_says_how_to_configure_one(monkeypatch, capsys) -> None:
    monkeypatch.setattr("metaflow.metaflow_config.ARGO_EVENTS_WEBHOOK_URL", None)
    assert main(["--prices", "s3://bucket/in/stock_price.csv"]) == 1
    assert "no Argo Events webhook: set ARGO_EVENTS_WEBHOOK_URL" in capsys.readouterr().err
