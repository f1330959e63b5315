"""The service in process through ``to_asgi()`` (BentoML's documented way to test HTTP behaviour): its wiring of
requests to ``stockcast.serve.answers``, of refusals to 400s naming their field, of the size limit and of
``GET /model``."""

from __future__ import annotations

import jsonschema
import numpy as np
import pytest
from openapi_spec_validator import validate

from stockcast.serve.answers import predict_tickers
from stockcast.serve.client import ServiceRequestError, history_payload
from tests.service.conftest import STALE_AFTER_DAYS


@pytest.fixture(scope="module")
def history(served_model):
    prices = served_model.market.prices
    return prices[prices["ticker"] == served_model.bundle.tickers[0]].tail(served_model.bundle.min_history)


def test_predict_and_predict_from_history_answer_what_the_library_answers(asgi_client, served_model, history):
    tickers = served_model.bundle.tickers[:2]
    expected = predict_tickers(served_model.bundle, tickers)

    response = asgi_client.post("/predict", json={"tickers": tickers})
    from_history = asgi_client.post("/predict_from_history", json=history_payload(history))

    assert response.status_code == 200 and from_history.status_code == 200
    predictions = response.json()["predictions"]
    assert [p["ticker"] for p in predictions] == tickers
    np.testing.assert_allclose([p["predicted_close"] for p in predictions], expected["predicted_close"], rtol=1e-12)
    np.testing.assert_allclose(from_history.json()["predicted_close"], predictions[0]["predicted_close"], rtol=1e-10)


def test_get_model_shows_version_lineage_and_minimum_history(asgi_client, served_model) -> None:
    response = asgi_client.get("/model")

    assert response.status_code == 200
    info = response.json()
    assert (info["model_tag"], info["model_version"]) == (served_model.model_tag, "v7")
    assert info["lineage"]["run_pathspec"] == "TrainFlow/7" and info["gate"]["promote"] is True
    assert info["min_history"] == 127 and len(info["feature_columns"]) == len(served_model.bundle.feature_columns)


@pytest.mark.parametrize(
    ("path", "body", "field", "message"),
    [
        ("/predict", {"tickers": ["ZZZZ"]}, "tickers", "unknown ticker(s) ['ZZZZ']"),  # refused by serving
        ("/predict", {"tickers": [], "as_of": None}, "tickers", "at least 1 item"),  # refused by the schema
        ("/predict_from_history", {"prices": []}, "prices", "at least 1 item"),
        ("/predict_from_history", {"prices": [{"date": "2024-12-31"}]}, "prices.0.ticker", "Field required"),
    ],
)
def test_refusals_are_400s_naming_the_field(asgi_client, path, body, field, message) -> None:
    response = asgi_client.post(path, json=body)

    error = ServiceRequestError.from_response(response)
    assert response.status_code == 400
    assert f"{field}: " in str(error) and message in str(error)
    assert response.json()["detail"][0]["loc"][0] == field.split(".")[0]


def test_a_chunked_body_over_the_limit_is_refused_before_it_is_parsed(asgi_client) -> None:
    def chunks():
        for _ in range(20):
            yield b" " * 65536  # 1.25 MiB in all, without a Content-Length header

    response = asgi_client.post("/predict", content=chunks(), headers={"content-type": "application/json"})

    assert response.status_code == 413


@pytest.mark.parametrize("media_type", ["multipart/form-data; boundary=x", "application/x-www-form-urlencoded"])
def test_a_body_that_is_not_json_is_a_415_not_a_server_error(asgi_client, media_type) -> None:
    """BentoML would hand these to its form parser, which fails with a 500 on a JSON API."""
    response = asgi_client.post("/predict", content=b'{"tickers": ["ABC"]}', headers={"content-type": media_type})

    assert response.status_code == 415
    assert media_type.split(";")[0] in response.json()["error"]


def test_health_and_openapi(asgi_client) -> None:
    assert asgi_client.get("/healthz").status_code == 200
    assert asgi_client.get("/livez").status_code == 200
    docs = asgi_client.get("/docs.json").json()
    request = docs["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert request["example"] == {"tickers": ["ABC", "XYZ"], "as_of": None}
    assert request["properties"]["tickers"]["maxItems"] == 100
    assert docs["components"]["schemas"]["PriceRow"]["properties"]["close"]["type"] == "number"


def test_readyz_answers_503_once_the_data_is_older_than_the_configured_age(asgi_client, served_model) -> None:
    """The model's snapshot ends in 2024; this service accepts data at most ``STALE_AFTER_DAYS`` old. (The HTTP
    servers of the other tests set no maximum, and are ready: tests/service/test_service_http.py.)"""
    data = asgi_client.get("/model").json()["data"]

    assert (data["stale"], data["max_age_days"]) == (True, STALE_AFTER_DAYS) and data["age_days"] > STALE_AFTER_DAYS
    assert data["following"] is False and data["version"] == served_model.bundle.data_version
    assert asgi_client.get("/readyz").status_code == 503
    assert asgi_client.get("/livez").status_code == 200, "stale data is no reason to restart the service"
    answer = asgi_client.post("/predict", json={"tickers": served_model.bundle.tickers[:1]})
    assert answer.status_code == 200, "it still answers whoever asks"


def test_the_openapi_document_is_valid_openapi_3_1(asgi_client) -> None:
    """BentoML declares 3.0.2 over pydantic's JSON Schema 2020-12 (`anyOf` with null, `examples` lists), which only
    3.1 allows: the document served declares 3.1.0 and passes that version's validation."""
    docs = asgi_client.get("/docs.json").json()

    assert docs["openapi"] == "3.1.0"
    validate(docs)  # raises OpenAPIValidationError naming the first invalid part


def test_the_openapi_document_states_every_status_and_error_body(asgi_client) -> None:
    docs = asgi_client.get("/docs.json").json()
    schemas = docs["components"]["schemas"]

    for path in ("/predict", "/predict_from_history"):
        responses = docs["paths"][path]["post"]["responses"]
        assert set(responses) == {"200", "400", "413", "415", "500"}
        for status in ("400", "413", "415", "500"):
            assert responses[status]["content"]["application/json"]["schema"] == {
                "$ref": "#/components/schemas/ErrorResponse"
            }
    assert schemas["ErrorResponse"]["properties"]["detail"]["type"] == "array"
    assert schemas["ErrorResponse"]["required"] == ["error"]
    assert {"InvalidArgument", "NotFound", "InternalServerError"}.isdisjoint(schemas)
    model = docs["paths"]["/model"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert model == {"$ref": "#/components/schemas/ModelInfo"}
    assert "min_history" in schemas["ModelInfo"]["properties"]
    # No token is configured in this process: nothing asks for one.
    assert "securitySchemes" not in docs["components"]
    assert not any("401" in operation["responses"] for item in docs["paths"].values() for operation in item.values())


def test_a_400_body_matches_the_documented_error_schema(asgi_client) -> None:
    docs = asgi_client.get("/docs.json").json()
    resolver = {"components": docs["components"]}
    error_schema = {"$ref": "#/components/schemas/ErrorResponse", **resolver}

    for body in ({"tickers": ["ZZZZ"]}, {"tickers": "ABC"}, {"prices": [{"date": "2024-12-31"}]}):
        path = "/predict" if "tickers" in body else "/predict_from_history"
        response = asgi_client.post(path, json=body)
        assert response.status_code == 400
        jsonschema.validate(response.json(), error_schema)
