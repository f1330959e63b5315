"""Refused requests leave the real server's log quiet and bounded: one INFO line each, never a traceback (BentoML
logs each at ERROR with a 2 KB traceback of its own), so a misbehaving client cannot fill a disk or bury the server
errors that matter."""

from __future__ import annotations

import copy
import itertools
import re
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from stockcast.serve.client import history_payload

pytestmark = pytest.mark.slow

BAD_REQUESTS = 1000
MAX_LOG_GROWTH = 200_000
"""Bytes the log may grow by for ``BAD_REQUESTS`` refusals: 200 a refusal."""


def _bad_requests(tickers: list[str], history: dict[str, Any]) -> list[tuple[str, bytes | Any, str]]:
    """(path, body: JSON-ready or raw bytes, content type) of refusals of every kind: schema, model and contract
    errors (400), a body over the size limit (413), one not JSON (415)."""
    broken_row = copy.deepcopy(history)
    broken_row["prices"][3]["close"] = -1.0
    future_report = {**history, "financials": [{**_report(tickers[0]), "report_date": "2090-01-02"}]}
    return [
        ("/predict", {"tickers": ["NOPE"]}, "application/json"),
        ("/predict", {"tickers": []}, "application/json"),
        ("/predict", {"tickers": tickers[:1], "as_of": "not a date"}, "application/json"),
        ("/predict", b"{oops", "application/json"),
        ("/predict", b'{"tickers": ["A"]}', "text/plain"),
        ("/predict", b" " * 1_100_000, "application/json"),
        ("/predict_from_history", {"prices": [{"date": "2024-12-31"}]}, "application/json"),
        ("/predict_from_history", broken_row, "application/json"),
        ("/predict_from_history", future_report, "application/json"),
        ("/predict_from_history", {"prices": history["prices"][:5]}, "application/json"),
    ]


def _report(ticker: str) -> dict[str, Any]:
    return {
        "ticker": ticker,
        "period_end": "2024-09-30",
        "report_date": "2024-10-30",
        "revenue": 1e9,
        "net_income": 1e8,
        "eps": 1.0,
        "total_assets": 5e9,
        "total_liabilities": 2e9,
        "shares_outstanding": 1e8,
        "sector": "Technology",
    }


def _lines_after(log: Path, offset: int) -> list[str]:
    return log.read_bytes()[offset:].decode().splitlines()


def _refusals(lines: list[str]) -> list[str]:
    """The lines logging a refused request ("... 400 POST /predict: ..."), not those the server logs on its own."""
    return [line for line in lines if re.search(r"\] 4\d\d POST /", line)]


def test_a_thousand_refusals_log_a_line_each_without_traceback(server: str, server_log: Path, served_model) -> None:
    bundle = served_model.bundle
    prices = served_model.market.prices
    history = history_payload(prices[prices["ticker"] == bundle.tickers[0]].tail(bundle.min_history))
    kinds = _bad_requests(bundle.tickers, history)
    before = server_log.stat().st_size
    statuses: set[int] = set()

    with httpx.Client(base_url=server, timeout=30) as http:
        for path, body, media_type in itertools.islice(itertools.cycle(kinds), BAD_REQUESTS):
            headers = {"content-type": media_type}
            if isinstance(body, bytes):
                response = http.post(path, content=body, headers=headers)
            else:
                response = http.post(path, json=body, headers=headers)
            statuses.add(response.status_code)
    # The workers write through the server's supervisor: wait for the last lines to reach the file.
    deadline = time.monotonic() + 20
    while len(_refusals(_lines_after(server_log, before))) < BAD_REQUESTS and time.monotonic() < deadline:
        time.sleep(0.2)
    lines = _lines_after(server_log, before)
    growth = server_log.stat().st_size - before

    print(f"log growth for {BAD_REQUESTS} refused requests: {growth} bytes, {len(lines)} lines")
    assert statuses == {400, 413, 415}
    assert growth < MAX_LOG_GROWTH
    refusals = _refusals(lines)
    assert len(refusals) == BAD_REQUESTS, lines[:20]
    assert all(" [INFO] " in line for line in refusals), [line for line in refusals if " [INFO] " not in line][:5]
    assert not any("Traceback" in line or "[ERROR]" in line for line in lines)
    assert any("400 POST /predict_from_history: prices.3.close: price must be > 0" in line for line in lines)
    assert any("413 POST /predict: request body larger than 1048576 bytes" in line for line in lines)
    assert any("415 POST /predict: send JSON" in line for line in lines)
