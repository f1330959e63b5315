"""The service's OpenAPI document (``/docs.json``): BentoML's, made valid and truthful.

BentoML 1.4 builds a document that declares OpenAPI 3.0.2 but fills it with the JSON Schema pydantic writes (2020-12:
``anyOf`` with ``{"type": "null"}``, ``examples`` lists, numeric ``exclusiveMinimum``), which is OpenAPI 3.1's schema
dialect and not 3.0's. It declares the ``detail`` of an error body a string where its 400s carry pydantic's list of
errors, a 404 no API answers, and nothing of what this service adds: ``GET /model``, the refusals of its request
guard (413, 415) and of its authentication (401). ``service_document`` declares 3.1.0, whose schema dialect is the one
used, and states every status the service answers with the body it sends.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from stockcast.serve.auth import AuthSettings

OPENAPI_VERSION = "3.1.0"
REF_TEMPLATE = "#/components/schemas/{model}"
BEARER_SCHEME = "bearerAuth"
BENTOML_ERROR_SCHEMAS = ("InvalidArgument", "NotFound", "InternalServerError")
"""BentoML's error components, replaced by the service's error model."""
MODEL_ROUTE = "/model"


def service_document(
    bentoml_document: Mapping[str, Any],
    *,
    error_model: type[BaseModel],
    model_info: type[BaseModel],
    auth: AuthSettings,
    max_request_bytes: int,
) -> dict[str, Any]:
    """The corrected document: OpenAPI 3.1.0; every error response's body ``error_model``; each POST API's 400, 413,
    415 and 500; ``GET /model`` answering ``model_info``; with a token configured, the bearer scheme, and on every
    endpoint that needs it its ``security`` and 401."""
    # A JSON round trip gives a copy of plain dicts with string keys (BentoML keys responses by int status).
    document: dict[str, Any] = json.loads(json.dumps(bentoml_document))
    document["openapi"] = OPENAPI_VERSION
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for name in BENTOML_ERROR_SCHEMAS:
        schemas.pop(name, None)
    schemas.update(component_schemas(error_model, model_info))
    error = error_model.__name__

    def error_response(description: str) -> dict[str, Any]:
        return {"description": description, "content": {"application/json": {"schema": {"$ref": _ref(error)}}}}

    api_tags = next(item["post"]["tags"] for item in document["paths"].values() if "post" in item)
    document["paths"][MODEL_ROUTE] = {
        "get": {
            "tags": api_tags,
            "description": "The model served: version, lineage, metrics, feature columns, minimum history, tickers.",
            "operationId": "stockcast__model",
            "responses": {
                "200": {
                    "description": "The model served.",
                    "content": {"application/json": {"schema": {"$ref": _ref(model_info.__name__)}}},
                }
            },
        }
    }
    for path, item in document["paths"].items():
        for method, operation in item.items():
            responses = operation["responses"]
            if method == "post":
                responses.pop(str(HTTPStatus.NOT_FOUND.value), None)
                responses.update(
                    {
                        "400": error_response(
                            "The request is invalid: `detail` lists each error, its place (`loc`: field, row, "
                            "column) and the rule broken (`type`)."
                        ),
                        "413": error_response(f"The body is larger than {max_request_bytes} bytes."),
                        "415": error_response("The body is not JSON: send Content-Type: application/json."),
                        "500": error_response("An unexpected server error; the server log holds its traceback."),
                    }
                )
            if auth.requires_token(path):
                operation["security"] = [{BEARER_SCHEME: []}]
                responses["401"] = {
                    **error_response("The bearer token is missing or wrong."),
                    "headers": {
                        "WWW-Authenticate": {
                            "description": 'The scheme to authenticate with: `Bearer realm="stockcast"`.',
                            "required": True,
                            "schema": {"type": "string"},
                        }
                    },
                }
    if auth.enabled:
        document["components"]["securitySchemes"] = {
            BEARER_SCHEME: {
                "type": "http",
                "scheme": "bearer",
                "description": "The deployment's API token (STOCKCAST_API_TOKEN): `Authorization: Bearer <token>`.",
            }
        }
    return document


def component_schemas(*models: type[BaseModel]) -> dict[str, Any]:
    """The JSON schemas of pydantic models and of the models they use, keyed by name, referring to each other as
    OpenAPI components."""
    _, top = models_json_schema([(model, "serialization") for model in models], ref_template=REF_TEMPLATE)
    return top.get("$defs", {})


def _ref(name: str) -> str:
    return REF_TEMPLATE.format(model=name)
