"""A deployment with a token (here from a file, as a mounted secret) answers its APIs only to requests that carry it:
401 with ``WWW-Authenticate: Bearer`` and the documented error body otherwise; the health probes and the OpenAPI
document stay open, and ``StockcastClient`` sends the token it is given or finds in the environment."""

from __future__ import annotations

import httpx
import jsonschema
import pytest
from openapi_spec_validator import validate

from stockcast.serve.auth import TOKEN_ENV, TOKEN_FILE_ENV
from stockcast.serve.client import ServiceRequestError, StockcastClient
from tests.service.conftest import API_TOKEN

pytestmark = pytest.mark.slow

PROTECTED = [("POST", "/predict"), ("POST", "/predict_from_history"), ("GET", "/model"), ("GET", "/metrics")]


@pytest.mark.parametrize(("method", "path"), PROTECTED)
def test_without_the_token_a_protected_endpoint_is_a_401(protected_server: str, method: str, path: str) -> None:
    docs = httpx.get(f"{protected_server}/docs.json").json()
    url, body = f"{protected_server}{path}", {"tickers": ["ABC"]} if method == "POST" else None

    missing = httpx.request(method, url, json=body)
    wrong = httpx.request(method, url, json=body, headers={"Authorization": "Bearer nope"})
    other_scheme = httpx.request(method, url, json=body, headers={"Authorization": f"Basic {API_TOKEN}"})

    for response in (missing, wrong, other_scheme):
        assert response.status_code == 401
        jsonschema.validate(
            response.json(), {"$ref": "#/components/schemas/ErrorResponse", "components": docs["components"]}
        )
    assert missing.headers["www-authenticate"] == 'Bearer realm="stockcast"'
    assert "Authorization: Bearer <token>" in missing.json()["error"]
    assert wrong.headers["www-authenticate"] == 'Bearer realm="stockcast", error="invalid_token"'


def test_with_the_token_every_endpoint_answers(protected_server: str, served_model) -> None:
    with StockcastClient(protected_server, token=API_TOKEN) as client:
        info = client.model()
        predictions = client.predict(info["tickers"][:2])
        batching = client.batching()  # GET /metrics, protected on this server

    assert info["model_tag"] == served_model.model_tag
    assert [p["ticker"] for p in predictions] == info["tickers"][:2]
    assert batching.requests >= 1


def test_the_client_takes_the_token_from_the_environment(
    protected_server: str, monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(API_TOKEN)
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    monkeypatch.setenv(TOKEN_FILE_ENV, str(token_file))
    with StockcastClient(protected_server) as client:
        assert client.model()["min_history"] > 0
    monkeypatch.delenv(TOKEN_FILE_ENV)
    monkeypatch.setenv(TOKEN_ENV, API_TOKEN)
    with StockcastClient(protected_server) as client:
        assert client.model()["min_history"] > 0
    with StockcastClient(protected_server, token="") as client, pytest.raises(ServiceRequestError) as refused:
        client.model()
    assert refused.value.status_code == 401 and "no bearer token" in str(refused.value)


def test_health_probes_and_the_openapi_document_stay_open(protected_server: str) -> None:
    for path in ("/healthz", "/livez", "/readyz", "/docs.json"):
        assert httpx.get(f"{protected_server}{path}").status_code == 200


def test_the_openapi_document_states_the_bearer_scheme_where_it_is_needed(protected_server: str) -> None:
    docs = httpx.get(f"{protected_server}/docs.json").json()

    validate(docs)  # still valid OpenAPI 3.1 with the security scheme and the 401s

    assert docs["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "description": docs["components"]["securitySchemes"]["bearerAuth"]["description"],
    }
    secured = {
        (method.upper(), path)
        for path, item in docs["paths"].items()
        for method, operation in item.items()
        if operation.get("security") == [{"bearerAuth": []}] and "401" in operation["responses"]
    }
    assert secured == set(PROTECTED)
