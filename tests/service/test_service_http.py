"""The built Bento under a real ``bentoml serve``, called over HTTP with ``StockcastClient``: answers equal the
library's, every bad request is a 4xx naming its field (never a 500), price and report rows obey the CSV contract's
rules (the ingest validators' own), and BentoML's operational endpoints work."""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import Callable
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from stockcast.serve.answers import predict_from_history, predict_tickers, prediction_records
from stockcast.serve.client import ServiceRequestError, StockcastClient, history_payload

pytestmark = pytest.mark.slow

Body = dict[str, Any]


def _history(served_model, ticker: str, days: int) -> pd.DataFrame:
    prices = served_model.market.prices
    return prices[prices["ticker"] == ticker].tail(days)


@pytest.fixture(scope="module")
def known(served_model) -> list[str]:
    return served_model.bundle.tickers


@pytest.fixture(scope="module")
def valid_history(served_model, known) -> Body:
    """A valid /predict_from_history body: the first ticker's last min_history rows."""
    return history_payload(_history(served_model, known[0], served_model.bundle.min_history))


def test_predict_answers_what_the_library_answers(client: StockcastClient, served_model, known) -> None:
    expected = predict_tickers(served_model.bundle, known[:3])

    answer = pd.DataFrame(client.predict(known[:3]))

    assert answer["ticker"].tolist() == known[:3]
    assert (answer["as_of"] == served_model.bundle.as_of.date().isoformat()).all()
    assert (answer["model_version"] == "v7").all()
    for column in ("last_close", "predicted_return", "predicted_close"):
        np.testing.assert_allclose(answer[column], expected[column], rtol=1e-12)


def test_predict_from_history_answers_what_predict_answers(client: StockcastClient, served_model, known) -> None:
    history = _history(served_model, known[1], served_model.bundle.min_history + 10)
    reports = served_model.market.financials[served_model.market.financials["ticker"] == known[1]]
    expected = predict_from_history(served_model.bundle, history)

    with_context = client.predict_from_history(history)
    with_reports = client.predict_from_history(history, reports)
    batch = client.predict([known[1]], as_of=served_model.bundle.as_of.date())[0]

    for answer in (with_context, with_reports):
        assert answer["ticker"] == known[1] and answer["as_of"] == batch["as_of"]
        np.testing.assert_allclose(answer["predicted_close"], batch["predicted_close"], rtol=1e-10)
        np.testing.assert_allclose(answer["predicted_close"], expected["predicted_close"].iloc[0], rtol=1e-10)


def test_model_describes_the_served_model(client: StockcastClient, served_model, bento_tag) -> None:
    info = client.model()

    assert info["model_tag"] == served_model.model_tag == "stockcast-model:v7"
    assert info["model_version"] == "v7" and info["candidate_id"] == "ridge[alpha=1.0]"
    assert info["lineage"]["run_pathspec"] == "TrainFlow/7" and info["lineage"]["data_version"] == "d4t4"
    assert info["metrics"]["mean_fold_rmse"] == 1.23
    assert info["min_history"] == served_model.bundle.min_history
    assert info["feature_columns"] == list(served_model.bundle.feature_columns)
    assert info["tickers"] == served_model.bundle.tickers
    assert info["as_of"] == "2024-12-31"


def _row(body: Body, index: int = 5, **values: Any) -> Body:
    body["prices"][index].update(values)
    return body


def _repeat_row(body: Body, **values: Any) -> Body:
    body["prices"].insert(4, {**body["prices"][4], **values})
    return body


def _all_rows(body: Body, **values: Any) -> Body:
    for row in body["prices"]:
        row.update(values)
    return body


def _gap(body: Body) -> Body:
    del body["prices"][-30:-15]
    return body


def _with_reports(served_model, ticker: str, **values: Any) -> list[Body]:
    reports = served_model.market.financials
    records = history_payload(reports[reports["ticker"] == ticker].head(4))["prices"]
    return [{**records[0], **values}, *records[1:]]


# (path, make the body from the known tickers, a valid history body and the served model, status, field, message)
BAD_REQUESTS: dict[str, tuple[str, Callable[..., Any], int, str, str]] = {
    "unknown-ticker": ("/predict", lambda t, h, m: {"tickers": [t[0], "ZZZZ"]}, 400, "tickers", "['ZZZZ']"),
    "no-tickers": ("/predict", lambda t, h, m: {"tickers": []}, 400, "tickers", "at least 1 item"),
    "too-many-tickers": ("/predict", lambda t, h, m: {"tickers": t * 17}, 400, "tickers", "at most 100 items"),
    "repeated-ticker": ("/predict", lambda t, h, m: {"tickers": [t[0], t[0]]}, 400, "tickers", "more than once"),
    "ticker-not-a-string": ("/predict", lambda t, h, m: {"tickers": [5]}, 400, "tickers.0", "valid string"),
    "tickers-not-a-list": ("/predict", lambda t, h, m: {"tickers": t[0]}, 400, "tickers", "valid array"),
    "missing-tickers": ("/predict", lambda t, h, m: {"as_of": None}, 400, "tickers", "Field required"),
    "unknown-field": ("/predict", lambda t, h, m: {"tickers": t[:1], "limit": 3}, 400, "limit", "Extra inputs"),
    "other-as-of": ("/predict", lambda t, h, m: {"tickers": t[:1], "as_of": "2024-06-03"}, 400, "as_of", "2024-06-03"),
    "as-of-not-a-date": ("/predict", lambda t, h, m: {"tickers": t[:1], "as_of": "yesterday"}, 400, "as_of", "date"),
    "too-few-days": (
        "/predict_from_history",
        lambda t, h, m: {"prices": h["prices"][1:]},
        400,
        "prices",
        "needs at least 127 trading days of price history, but 126 were supplied",
    ),
    "missing-price": ("/predict_from_history", lambda t, h, m: _row(h, close=None), 400, "prices.5.close", "number"),
    "negative-price": (
        "/predict_from_history",
        lambda t, h, m: _row(h, low=-1.0),
        400,
        "prices.5.low",
        "price must be > 0",
    ),
    "price-of-1e308": (
        "/predict_from_history",
        lambda t, h, m: _row(h, -1, close=1e308),
        400,
        "prices.126.close",
        "price above 1e+09",
    ),
    "price-as-string": (
        "/predict_from_history",
        lambda t, h, m: _row(h, close="12.5"),
        400,
        "prices.5.close",
        "number",
    ),
    "negative-volume": (
        "/predict_from_history",
        lambda t, h, m: _row(h, volume=-5),
        400,
        "prices.5.volume",
        "volume must be >= 0",
    ),
    "high-below-close": (
        "/predict_from_history",
        lambda t, h, m: _row(h, high=h["prices"][5]["close"] * 0.9),
        400,
        "prices.5",
        "low, open, close, high: must satisfy low <= min(open, close) <= max(open, close) <= high",
    ),
    "repeated-row": (
        "/predict_from_history",
        lambda t, h, m: _repeat_row(h),
        400,
        "prices.5",
        "ticker, date: exact duplicate of an earlier row",
    ),
    "repeated-date": (
        "/predict_from_history",
        lambda t, h, m: _repeat_row(h, close=h["prices"][4]["close"] * 1.01, high=h["prices"][4]["high"] * 1.01),
        400,
        "prices.4",
        "the same (ticker, date) appears more than once with different values",
    ),
    "two-tickers": (
        "/predict_from_history",
        lambda t, h, m: _row(h, ticker=t[1]),
        400,
        "prices",
        "a history holds the rows of exactly one ticker, got 2",
    ),
    "junk-ticker": (
        "/predict_from_history",
        lambda t, h, m: _all_rows(h, ticker="=cmd|' /C calc'!A0"),
        400,
        "prices.0.ticker",
        "not a ticker: must match",
    ),
    "bad-date": ("/predict_from_history", lambda t, h, m: _row(h, date="2024-13-45"), 400, "prices.5.date", "date"),
    "date-in-year-9999": (
        "/predict_from_history",
        lambda t, h, m: _row(h, -1, date="9999-12-31"),
        400,
        "prices.126.date",
        "date before 1900-01-01 or after 2199-12-31",
    ),
    "date-in-year-1": (
        "/predict_from_history",
        lambda t, h, m: _row(h, 0, date="0001-01-01"),
        400,
        "prices.0.date",
        "date before 1900-01-01 or after 2199-12-31",
    ),
    "date-in-2090": (
        "/predict_from_history",
        lambda t, h, m: _row(h, -1, date="2090-01-02"),
        400,
        "prices.126.date",
        "date is after today",
    ),
    "unknown-column": ("/predict_from_history", lambda t, h, m: _row(h, vwap=1.0), 400, "prices.5.vwap", "Extra"),
    "history-with-gap": (
        "/predict_from_history",
        lambda t, h, m: _gap({"prices": history_payload(_history(m, t[0], 200))["prices"]}),
        400,
        "prices",
        "not enough recent history",
    ),
    "reports-of-another-ticker": (
        "/predict_from_history",
        lambda t, h, m: {**h, "financials": _with_reports(m, t[1])},
        400,
        "financials.0.ticker",
        "ticker has no prices",
    ),
    "report-before-quarter-end": (
        "/predict_from_history",
        lambda t, h, m: {**h, "financials": _with_reports(m, t[0], report_date="2020-01-01")},
        400,
        "financials.0.report_date",
        "report_date must be on or after period_end",
    ),
    "negative-total-assets": (
        "/predict_from_history",
        lambda t, h, m: {**h, "financials": _with_reports(m, t[0], total_assets=-5.0)},
        400,
        "financials.0.total_assets",
        "total_assets must be > 0",
    ),
    "zero-shares-outstanding": (
        "/predict_from_history",
        lambda t, h, m: {**h, "financials": _with_reports(m, t[0], shares_outstanding=0.0)},
        400,
        "financials.0.shares_outstanding",
        "shares_outstanding must be > 0",
    ),
    "report-in-2090": (
        "/predict_from_history",
        lambda t, h, m: {**h, "financials": _with_reports(m, t[0], period_end="2090-03-31", report_date="2090-04-30")},
        400,
        "financials.0.report_date",
        "report_date is after today",
    ),
}


@pytest.mark.parametrize("case", list(BAD_REQUESTS))
def test_a_bad_request_is_a_4xx_naming_its_field(client: StockcastClient, served_model, known, valid_history, case):
    path, make_body, status, field, message = BAD_REQUESTS[case]
    body = make_body(known, copy.deepcopy(valid_history), served_model)

    with pytest.raises(ServiceRequestError) as caught:
        client.request("POST", path, body)

    assert caught.value.status_code == status
    assert f"{field}: " in str(caught.value)
    assert message in str(caught.value)


def test_a_valid_history_is_answered(client: StockcastClient, valid_history) -> None:
    """The bad requests above are that body with one thing wrong: the body itself is fine."""
    assert client.request("POST", "/predict_from_history", valid_history)["as_of"] == "2024-12-31"


def test_history_rows_in_any_order_get_the_same_answer(client: StockcastClient, valid_history) -> None:
    """Rows are sorted by date, as ingest sorts a file, so their order in the request does not matter."""
    shuffled = copy.deepcopy(valid_history)
    shuffled["prices"] = shuffled["prices"][::-1]

    in_order = client.request("POST", "/predict_from_history", valid_history)
    reversed_order = client.request("POST", "/predict_from_history", shuffled)

    assert reversed_order == in_order


def test_every_broken_row_is_named_with_its_rule(server: str, valid_history) -> None:
    """A request is refused whole, listing each broken row (with its column and the contract rule's name in
    `type`), not just the first."""
    body = _row(_row(copy.deepcopy(valid_history), 2, volume=-1.0), 7, close=-3.0)

    response = httpx.post(f"{server}/predict_from_history", json=body)

    assert response.status_code == 400
    assert [(error["loc"], error["type"]) for error in response.json()["detail"]] == [
        (["prices", 7, "close"], "positive_price"),
        (["prices", 2, "volume"], "non_negative_volume"),
    ]


def _raw_post(server: str, body: bytes) -> httpx.Response:
    return httpx.post(f"{server}/predict_from_history", content=body, headers={"content-type": "application/json"})


def test_nan_infinity_and_malformed_json_are_400s(server: str, valid_history) -> None:
    # Standard JSON has no NaN or Infinity (httpx refuses to send them), but Python's json module writes them.
    sentinel = 987654.321
    nan_close = json.dumps(_row(copy.deepcopy(valid_history), close=sentinel)).replace(str(sentinel), "NaN")
    infinite_volume = json.dumps(_row(copy.deepcopy(valid_history), 6, volume=sentinel)).replace(
        str(sentinel), "Infinity"
    )

    for body, field in [(nan_close, "prices.5.close: "), (infinite_volume, "prices.6.volume: "), ("{oops", "body: ")]:
        response = _raw_post(server, body.encode())
        error = ServiceRequestError.from_response(response)
        assert response.status_code == 400, response.text
        assert field in str(error)


def test_an_oversized_or_non_json_body_is_refused_before_it_is_parsed(server: str) -> None:
    too_large = _raw_post(server, b" " * (2 * 1024 * 1024))
    as_form = httpx.post(f"{server}/predict_from_history", data={"prices": "[]"})

    assert too_large.status_code == 413
    assert "larger than 1048576 bytes" in str(ServiceRequestError.from_response(too_large))
    assert as_form.status_code == 415
    assert "not application/x-www-form-urlencoded" in str(ServiceRequestError.from_response(as_form))


def test_health_readiness_metrics_and_openapi(server: str, client: StockcastClient, known) -> None:
    client.predict(known[:1])  # at least one request for the metrics to count

    for path in ("/healthz", "/livez", "/readyz"):
        assert httpx.get(f"{server}{path}").status_code == 200
    metrics = httpx.get(f"{server}/metrics")
    assert metrics.status_code == 200
    assert 'endpoint="/predict"' in metrics.text and "bentoml_service_request" in metrics.text
    docs = httpx.get(f"{server}/docs.json").json()
    assert {"/predict", "/predict_from_history"} <= set(docs["paths"])
    schemas = docs["components"]["schemas"]
    assert schemas["PredictRequestIODescriptor"]["example"]["tickers"]
    assert schemas["HistoryRequestIODescriptor"]["example"]["prices"][0]["close"] > 0
    assert schemas["PriceRow"]["properties"]["date"]["examples"] == ["2025-12-31"]


def test_concurrent_requests_each_get_their_own_answer_or_error(
    server: str, client: StockcastClient, served_model, known
) -> None:
    """/predict answers the requests that arrive together with one model call: under concurrent load every request
    still gets exactly its own answer, and a bad request its own 400, whatever it was batched with."""
    good = [[ticker] for ticker in known] + [known[3:], list(reversed(known[:4]))]
    bad = [["NOPE"], [known[0], known[0]], []]
    bodies = [{"tickers": tickers} for tickers in good + bad] * 8
    before = client.batching()

    async def send_all() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=server, timeout=30) as http:
            return await asyncio.gather(*(http.post("/predict", json=body) for body in bodies))

    responses = asyncio.run(send_all())

    for body, response in zip(bodies, responses, strict=True):
        if body["tickers"] in good:
            expected = pd.DataFrame(prediction_records(predict_tickers(served_model.bundle, body["tickers"])))
            assert response.status_code == 200, response.text
            answer = pd.DataFrame(response.json()["predictions"])
            # The ridge model's BLAS product may differ in the last bits with the rows it is computed with.
            pd.testing.assert_frame_equal(answer, expected, check_exact=False, rtol=1e-12)
        else:
            assert response.status_code == 400, response.text
            assert response.json()["detail"][0]["loc"] == ["tickers"]
    after = client.batching()
    # Every request that passed the schema (an empty list does not) was answered once, in some batch.
    reached_the_model = sum(1 for body in bodies if body["tickers"])
    assert after.requests - before.requests == reached_the_model
    assert 1 <= after.model_calls - before.model_calls <= reached_the_model
