"""The stockcast prediction service: tomorrow's close over HTTP, answered by a deployed model's ``ServingBundle``.

Endpoints (all JSON):

- ``POST /predict`` ``{"tickers": [...], "as_of": null}``: the predicted next close of tickers the model knows;
- ``POST /predict_from_history`` ``{"prices": [...], "financials": null}``: the same answer for one ticker from
  its recent daily rows (``stock_price.csv`` rows; ``financial_info.csv`` rows optional);
- ``GET /model``: version, lineage, metrics, feature list and the minimum history of the model served;
- BentoML's own ``/healthz`` ``/livez`` ``/readyz`` ``/metrics`` (Prometheus) and ``/docs.json`` (OpenAPI).

Which data: the rows of the snapshot the model was deployed with, until a newer snapshot of the model's branch is
published; with ``STOCKCAST_DATA_STORE`` set, each worker follows the branch's snapshot head and swaps the new rows
in without a restart (``stockcast.serve.feed``), and ``/readyz`` answers 503 once they are older than
``STOCKCAST_DATA_MAX_AGE_DAYS``. ``GET /model`` and every prediction say what the answers are as of. With
``STOCKCAST_PREDICTION_LOG`` set to a folder, every ``/predict`` answer is also appended there
(``stockcast.serve.prediction_log``): how a shadow's discarded answers are kept for scoring.

Which model: the BentoML model named by ``STOCKCAST_MODEL_TAG`` (default ``stockcast-model:latest``), read when
this module is imported, so the same code serves any champion. ``stockcast.deploy.package.build_bento`` sets it while
building, and ``LocalServe`` sets it when serving, so a Bento always serves the model it was built with.

Client errors never become server errors: every invalid request gets a 400 whose body has BentoML's validation
shape, ``{"error": ..., "detail": [{"loc": [field, ...], "msg": ..., "type": ...}]}``, with the field at fault in
``loc``; a body that is not JSON gets a 415, one over ``MAX_REQUEST_BYTES`` a 413. The rows of a history obey the
CSV contract, checked by ingest's own validators (``stockcast.serve.contract``). Each refusal is one line in the log
(``stockcast.serve.refusals``), never a traceback.

With a token configured (``STOCKCAST_API_TOKEN`` or ``STOCKCAST_API_TOKEN_FILE``, read when this module is imported;
``stockcast.serve.auth``), every endpoint but the health probes, the OpenAPI document and (unless
``STOCKCAST_PROTECT_METRICS`` is true) ``/metrics`` needs ``Authorization: Bearer <token>``; without it, a 401.

``/docs.json`` serves ``stockcast.serve.openapi.service_document``: OpenAPI 3.1, stating every status and error body.
"""

from __future__ import annotations

import functools
import os
from typing import Any

import bentoml
import pandas as pd
from pydantic import BaseModel, ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from bentos.guard import BearerAuth, OpenAPIDocument, RequestGuard
from bentos.schemas import (
    MAX_REQUEST_BYTES,
    DataStatus,
    ErrorResponse,
    HistoryRequest,
    ModelInfo,
    Prediction,
    PredictRequest,
    PredictResponse,
)
from stockcast.serve.answers import (
    ServingInputError,
    TickerQuery,
    answer_queries,
    predict_from_history,
    prediction_records,
)
from stockcast.serve.auth import AuthSettings
from stockcast.serve.bundle import (
    BUNDLE_FILE,
    DEFAULT_MODEL_TAG,
    MODEL_TAG_ENV,
    ServingBundle,
    bundle_feature_set,
    read_bundle,
)
from stockcast.serve.coalescing import PerTurnBatcher
from stockcast.serve.contract import checked_history
from stockcast.serve.feed import DataFeed, FeedSettings, as_of_timestamp
from stockcast.serve.openapi import service_document
from stockcast.serve.prediction_log import PredictionLog
from stockcast.serve.refusals import quiet_client_errors

AUTH = AuthSettings.from_environment()
"""Whether requests need a bearer token: read when the module is imported, like the model tag."""
FEED = FeedSettings.from_environment(os.environ)
"""Where newer data is published and how often to look: read when the module is imported, like the model tag."""


async def model_endpoint(_: Request) -> JSONResponse:
    """``GET /model``: BentoML APIs are POST-only, so this read-only view is a plain Starlette route."""
    service: StockcastService = bentoml.get_current_service()
    return JSONResponse(service.model_info().model_dump(mode="json"))


@bentoml.asgi_app(Starlette(routes=[Route("/model", model_endpoint, methods=["GET"])]), path="/")
# Serving settings, measured with `bench/serving.py` (figures in BENCHMARKS.md, "Serving"):
# - two worker processes: the reference machine's two cores (a larger deployment raises `workers` in its BentoML
#   configuration under `services.stockcast`);
# - no access log: a log line per request, written through the supervisor, costs more than the prediction; /metrics
#   still counts every request and its latency;
# - /predict is left out of tracing: BentoML builds OpenTelemetry spans for every request even when none is
#   sampled or exported (its default): about 0.5 ms of CPU per request. A deployment that exports traces sets
#   `tracing` (exporter, sample_rate, excluded_urls) under `services.stockcast`.
@bentoml.service(
    name="stockcast",
    workers=2,
    traffic={"timeout": 10},
    logging={"access": {"enabled": False}},
    tracing={"excluded_urls": ["/predict"]},
)
class StockcastService:
    """Predict tomorrow's close with the model of one ``ServingBundle``."""

    bento_model = bentoml.models.BentoModel(os.environ.get(MODEL_TAG_ENV) or DEFAULT_MODEL_TAG)

    def __init__(self) -> None:
        stored = self.bento_model
        self.model_tag = str(stored.tag)
        bundle = read_bundle(stored.path_of(BUNDLE_FILE))
        # Refuse to start, rather than fail every history request, if this code computes other features than
        # those the model was trained on.
        bundle_feature_set(bundle)
        self.predictions = PerTurnBatcher(self._answer_queries)
        self.batch_sizes = batch_size_histogram()
        self.clipped = clipped_counter()
        quiet_client_errors()
        self.feed = DataFeed(
            bundle,
            FEED,
            on_served=lambda served: data_as_of_gauge().set(as_of_timestamp(served)),
            on_failure=data_refresh_failures_counter().inc,
        )
        # Reads the newest snapshot before the service reports ready, then follows it on a thread of its own.
        self.feed.start()
        self.prediction_log = PredictionLog.from_environment(os.environ)

    @property
    def bundle(self) -> ServingBundle:
        """The bundle answering now: each request takes it once, so it is answered wholly from one snapshot."""
        return self.feed.bundle

    async def __is_ready__(self) -> bool:
        """``/readyz``: not ready once the data served is older than ``STOCKCAST_DATA_MAX_AGE_DAYS``."""
        return not self.feed.stale

    def _answer_queries(self, queries: list[TickerQuery]) -> list[list[dict[str, Any]] | Exception]:
        self.batch_sizes.observe(len(queries))
        bundle = self.bundle
        answers = answer_queries(bundle, queries)
        answered = [record for answer in answers if isinstance(answer, list) for record in answer]
        self._count_clipped(bundle, [record["predicted_return"] for record in answered])
        if self.prediction_log is not None:
            self.prediction_log.write(answered)
        return answers

    def _count_clipped(self, bundle: ServingBundle, predicted_returns: list[float]) -> None:
        """Count the answers whose predicted return was clipped to the model's plausible band."""
        clipped = int(bundle.prepared.was_clipped(predicted_returns).sum()) if predicted_returns else 0
        if clipped:
            self.clipped.inc(clipped)

    @bentoml.api(route="/predict")
    async def predict(self, request: PredictRequest, /) -> PredictResponse:
        """Predicted next-day close of each requested ticker, from the latest rows of the data served."""
        # A coroutine on the event loop, and micro-batched: the /predict requests that arrive together are answered
        # by one model call (`stockcast.serve.coalescing`), each with its own answer or error. A model call costs about
        # as much for one row as for a dozen, so under load this halves the CPU a request costs (BENCHMARKS.md,
        # "Serving"). /predict_from_history computes features (about 80 ms) and stays a plain function, run in
        # BentoML's thread pool, so it never holds up /predict.
        try:
            records = await self.predictions.ask(TickerQuery(request.tickers, request.as_of))
        except ServingInputError as error:
            raise client_error(error, PredictRequest) from error
        return PredictResponse(predictions=[Prediction.model_validate(record) for record in records])

    @bentoml.api(route="/predict_from_history")
    def predict_from_history(self, request: HistoryRequest, /) -> Prediction:
        """Predicted close of the trading day after the last row sent, from the ticker's recent rows."""
        rows = request.model_dump()
        bundle = self.bundle
        try:
            # The rows obey the CSV contract, checked by ingest's validators with the calendar and ticker pattern the
            # served snapshot was checked against.
            history, financials = checked_history(
                rows["prices"], rows["financials"], calendar=bundle.calendar, ticker_pattern=bundle.ticker_pattern
            )
            answer = predict_from_history(bundle, history, financials)
        except ServingInputError as error:
            raise client_error(error, HistoryRequest) from error
        self._count_clipped(bundle, answer["predicted_return"].tolist())
        (prediction,) = to_predictions(answer)
        return prediction

    def model_info(self) -> ModelInfo:
        """What ``GET /model`` shows."""
        bundle = self.bundle
        record = bundle.record
        return ModelInfo(
            model_tag=self.model_tag,
            model_version=bundle.model_version,
            candidate_id=record.candidate_id,
            as_of=bundle.as_of.date(),
            tickers=bundle.tickers,
            feature_set=bundle.feature_set,
            feature_fingerprint=bundle.feature_fingerprint,
            feature_columns=list(bundle.feature_columns),
            min_history=bundle.min_history,
            lineage=record.lineage(),
            metrics=record.metrics,
            gate=record.gate,
            data=DataStatus.model_validate(self.feed.status()),
        )


def openapi_document() -> dict[str, Any]:
    """What ``/docs.json`` serves: BentoML's document of this service, corrected (``service_document``)."""
    return service_document(
        StockcastService.openapi_spec.asdict(),
        error_model=ErrorResponse,
        model_info=ModelInfo,
        auth=AUTH,
        max_request_bytes=MAX_REQUEST_BYTES,
    )


# The first middleware added is the outermost: a request without its token is refused before its body is read.
StockcastService.add_asgi_middleware(BearerAuth, settings=AUTH)
StockcastService.add_asgi_middleware(RequestGuard, max_bytes=MAX_REQUEST_BYTES)
StockcastService.add_asgi_middleware(OpenAPIDocument, path="/docs.json", build=openapi_document)


@functools.cache
def batch_size_histogram() -> Any:
    """``stockcast_predict_batch_size`` on ``/metrics``: how many /predict requests each model call answered.

    Made when the service starts, in the worker: BentoML sets up Prometheus' multiprocess mode after importing this
    module, and only metrics made after that reach ``/metrics``. Made once per process, however many times the
    service starts in it (as in tests through ``to_asgi()``).
    """
    import prometheus_client

    return prometheus_client.Histogram(
        "stockcast_predict_batch_size",
        "Number of /predict requests answered by one model call.",
        buckets=(1, 2, 4, 8, 16, 32, 64),
    )


@functools.cache
def clipped_counter() -> Any:
    """``stockcast_predictions_clipped_total`` on ``/metrics``: answers whose predicted return fell outside the band of
    returns the model's training data saw, and were clipped to it (made when the service starts, like the histogram).
    A rising count says the model meets inputs it was not trained for: a split nobody declared, broken rows."""
    import prometheus_client

    return prometheus_client.Counter(
        "stockcast_predictions_clipped", "Predictions clipped to the model's plausible band of next-day returns."
    )


@functools.cache
def data_as_of_gauge() -> Any:
    """``stockcast_data_as_of_seconds`` on ``/metrics``: the as-of date of the rows served (Unix time of its midnight,
    UTC), the oldest over the worker processes: what an alert on data that stopped refreshing watches."""
    import prometheus_client

    return prometheus_client.Gauge(
        "stockcast_data_as_of_seconds",
        "As-of date of the data served (Unix time), the oldest over the workers.",
        multiprocess_mode="livemin",
    )


@functools.cache
def data_refresh_failures_counter() -> Any:
    """``stockcast_data_refresh_failures_total`` on ``/metrics``: looks for newer data that failed (the store
    unreachable, a snapshot refused); the rows served stayed as they were each time."""
    import prometheus_client

    return prometheus_client.Counter(
        "stockcast_data_refresh_failures", "Looks for a newer data snapshot that failed; the served rows stayed."
    )


def client_error(error: ServingInputError, request_model: type[BaseModel]) -> ValidationError:
    """A request the model cannot answer, as validation errors of its fields (one per ``FieldError``, its type the
    rule broken): BentoML answers those with a 400 in the same shape as a schema violation, so clients see one error
    format whatever the cause."""
    details = [
        InitErrorDetails(
            type=PydanticCustomError(field_error.type, "{reason}", {"reason": field_error.msg}),
            loc=field_error.loc,
            input=None,
        )
        for field_error in error.errors
    ]
    return ValidationError.from_exception_data(request_model.__name__, details)


def to_predictions(answer: pd.DataFrame) -> list[Prediction]:
    """The rows of a ``stockcast.serve.answers`` answer as response models."""
    return [Prediction.model_validate(record) for record in prediction_records(answer)]
