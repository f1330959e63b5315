"""The OpenAPI document correction, on a small document shaped as BentoML writes one (the service tests check the
real one, served)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from stockcast.serve.auth import AuthSettings
from stockcast.serve.openapi import service_document


class Problem(BaseModel):
    error: str
    detail: list[str] = []


class Info(BaseModel):
    version: str


def _bentoml_document() -> dict[str, Any]:
    bentoml_error = {"$ref": "#/components/schemas/InvalidArgument"}
    return {
        "openapi": "3.0.2",
        "info": {"title": "stockcast", "version": "v7"},
        "tags": [{"name": "Service APIs"}, {"name": "Infrastructure"}],
        "paths": {
            "/healthz": {"get": {"tags": ["Infrastructure"], "responses": {"200": {"description": "ok"}}}},
            "/metrics": {"get": {"tags": ["Infrastructure"], "responses": {"200": {"description": "ok"}}}},
            "/predict": {
                "post": {
                    "tags": ["Service APIs"],
                    "requestBody": {"content": {"application/json": {"schema": {"type": "object"}}}},
                    "responses": {
                        200: {"description": "Successful Response"},
                        400: {"description": "Bad Request", "content": {"application/json": {"schema": bentoml_error}}},
                        404: {"description": "Not Found", "content": {"application/json": {"schema": bentoml_error}}},
                        500: {"description": "Error", "content": {"application/json": {"schema": bentoml_error}}},
                    },
                }
            },
        },
        "components": {"schemas": {"InvalidArgument": {}, "NotFound": {}, "InternalServerError": {}, "Kept": {}}},
    }


def _document(auth: AuthSettings) -> dict[str, Any]:
    return service_document(
        _bentoml_document(), error_model=Problem, model_info=Info, auth=auth, max_request_bytes=1024
    )


def test_the_document_declares_3_1_and_states_every_refusal_with_the_error_model() -> None:
    original = _bentoml_document()
    document = service_document(
        original, error_model=Problem, model_info=Info, auth=AuthSettings(), max_request_bytes=1024
    )

    assert document["openapi"] == "3.1.0"
    responses = document["paths"]["/predict"]["post"]["responses"]
    assert set(responses) == {"200", "400", "413", "415", "500"}
    assert responses["413"]["description"] == "The body is larger than 1024 bytes."
    for status in ("400", "413", "415", "500"):
        assert responses[status]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Problem"}
    assert set(document["components"]["schemas"]) == {"Kept", "Problem", "Info"}
    assert original == _bentoml_document()  # the input is left as it was


def test_get_model_is_documented_among_the_apis() -> None:
    model = _document(AuthSettings())["paths"]["/model"]["get"]

    assert model["tags"] == ["Service APIs"]
    assert model["responses"]["200"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Info"}


def test_without_a_token_nothing_is_secured() -> None:
    document = _document(AuthSettings())

    assert "securitySchemes" not in document["components"]
    assert all("security" not in operation for item in document["paths"].values() for operation in item.values())


def test_with_a_token_every_protected_operation_is_secured_and_may_answer_401() -> None:
    document = _document(AuthSettings(token="t0ken"))
    secured = {path for path, item in document["paths"].items() if "security" in item.get("get", item.get("post"))}

    assert document["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    assert secured == {"/predict", "/model"}  # /metrics is open unless protected, /healthz always
    unauthorized = document["paths"]["/model"]["get"]["responses"]["401"]
    assert unauthorized["headers"]["WWW-Authenticate"]["required"] is True
    assert "/metrics" in {
        path
        for path, item in _document(AuthSettings(token="t0ken", protect_metrics=True))["paths"].items()
        if "security" in item.get("get", item.get("post"))
    }
