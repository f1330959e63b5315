"""The stockcast prediction service: tomorrow's close over HTTP, answered by a deployed model's ``ServingBundle``.

Endpoints (all JSON):

- ``POST /predict`` ``{"tickers": [...], "as_of": null}``: the predicted next close of tickers the model knows;
- ``POST /predict_from_history`` ``{"prices": [...], "financials": null}``: the same answer for one ticker from
  its recent daily rows (``stock_price.csv`` rows; ``financial_info.csv`` rows optional);
- ``GET /model``: version, lineage, metrics, feature list and the minimum history of the model served;
- BentoML's own ``/healthz`` ``/livez`` ``/readyz`` ``/metrics`` (Prometheus) and ``/docs.json`` (OpenAPI).

Which model: the BentoML model named by ``STOCKCAST_MODEL_TAG`` (default ``stockcast-model:latest``), read when
this module is imported, so the same code serves any champion. ``stockcast.deploy.package.build_bento`` sets it while
building, and ``LocalServe`` sets it when serving, so a Bento always serves the model it was built with.

Client errors never become server errors: every invalid request gets a 400 whose body has BentoML's validation
shape, ``{"error": ..., "detail": [{"loc": [field, ...], "msg": ..., "type": ...}]}``, with the field at fault in
``loc``; a body that is not JSON gets a 415, one over ``MAX_REQUEST_BYTES`` a 413.
"""

from __future__ import annotations

import datetime as dt
import functools
import os
from itertools import pairwise
from typing import Annotated, Any, Self

import bentoml
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from stockcast.serve.answers import (
    ServingInputError,
    TickerQuery,
    answer_queries,
    predict_from_history,
    prediction_records,
)
from stockcast.serve.bundle import (
    BUNDLE_FILE,
    DEFAULT_MODEL_TAG,
    MODEL_TAG_ENV,
    ServingBundle,
    bundle_feature_set,
    read_bundle,
)
from stockcast.serve.coalescing import PerTurnBatcher

MAX_TICKERS = 100
"""Most tickers one ``/predict`` request may ask for."""
MAX_HISTORY_DAYS = 1260
"""Most price rows one ``/predict_from_history`` request may send: five years of trading days."""
MAX_REPORTS = 80
"""Most financial reports one request may send: twenty years of quarters."""
MAX_REQUEST_BYTES = 1024 * 1024
"""Largest request body accepted; a full-size history request is about 0.2 MB."""

Ticker = Annotated[
    str,
    Field(min_length=1, max_length=16, pattern=r"^[A-Za-z0-9][A-Za-z0-9.\-]*$", examples=["ABC"]),
]
Price = Annotated[float, Field(gt=0, description="A price in the ticker's currency; finite and > 0.")]
Amount = Annotated[float | None, Field(description="Reported figure; null when the report lacks it.")]


class StrictModel(BaseModel):
    """Requests are parsed strictly: no unknown fields, no numbers sent as strings, no NaN or infinity."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class PriceRow(StrictModel):
    """One trading day of one ticker: a row of ``stock_price.csv``."""

    date: dt.date = Field(description="The trading day (YYYY-MM-DD).", examples=["2025-12-31"])
    ticker: Ticker
    open: Price
    high: Price
    low: Price
    close: Price
    volume: float = Field(ge=0, description="Shares traded that day; finite and >= 0.", examples=[1250000])
    adj_close: Price | None = Field(default=None, description="Accepted for CSV parity; the features use raw prices.")

    @model_validator(mode="after")
    def _high_and_low_bound_the_day(self) -> Self:
        if not self.low <= min(self.open, self.close) <= max(self.open, self.close) <= self.high:
            raise ValueError(
                f"prices out of order on {self.date}: need low <= open, close <= high, got open={self.open}, "
                f"high={self.high}, low={self.low}, close={self.close}"
            )
        return self


class FinancialRow(StrictModel):
    """One quarterly report of one ticker: a row of ``financial_info.csv``."""

    ticker: Ticker
    period_end: dt.date = Field(description="Last day of the fiscal quarter.", examples=["2025-09-30"])
    report_date: dt.date = Field(
        description="Day the figures were published; they are used from this day on.", examples=["2025-10-28"]
    )
    revenue: Amount = None
    net_income: Amount = None
    eps: Amount = None
    total_assets: Amount = None
    total_liabilities: Amount = None
    shares_outstanding: Amount = None
    sector: str = Field(min_length=1, max_length=64, examples=["Technology"])

    @model_validator(mode="after")
    def _published_after_the_quarter(self) -> Self:
        if self.report_date < self.period_end:
            raise ValueError(f"report_date {self.report_date} is before period_end {self.period_end}")
        return self


class PredictRequest(StrictModel):
    """Tickers to predict, answered from the latest data the model was deployed with."""

    tickers: list[Ticker] = Field(
        min_length=1,
        max_length=MAX_TICKERS,
        description=f"Tickers the model knows (GET /model lists them), each once; at most {MAX_TICKERS}.",
        examples=[["ABC", "XYZ"]],
    )
    as_of: dt.date | None = Field(
        default=None,
        description="Must be the model's data date (GET /model, `as_of`) when given; null means that date.",
        examples=[None],
    )

    model_config = ConfigDict(
        title="PredictRequest", json_schema_extra={"example": {"tickers": ["ABC", "XYZ"], "as_of": None}}
    )


class HistoryRequest(StrictModel):
    """One ticker's recent daily prices (and optionally its reports), to predict the close after the last row."""

    prices: list[PriceRow] = Field(
        min_length=1,
        max_length=MAX_HISTORY_DAYS,
        description=(
            "The ticker's daily rows, oldest first, one per trading day; at least `min_history` rows (GET /model)."
        ),
    )
    financials: list[FinancialRow] | None = Field(
        default=None,
        max_length=MAX_REPORTS,
        description=(
            "The ticker's quarterly reports; null uses the reports the model was deployed with, [] means none."
        ),
    )

    model_config = ConfigDict(
        title="HistoryRequest",
        json_schema_extra={
            "example": {
                "prices": [
                    {
                        "date": "2025-12-30",
                        "ticker": "ABC",
                        "open": 101.2,
                        "high": 103.0,
                        "low": 100.5,
                        "close": 102.4,
                        "volume": 1250000,
                    },
                    {
                        "date": "2025-12-31",
                        "ticker": "ABC",
                        "open": 102.4,
                        "high": 104.1,
                        "low": 101.9,
                        "close": 103.8,
                        "volume": 980000,
                    },
                ],
                "financials": None,
            }
        },
    )

    @field_validator("prices")
    @classmethod
    def _one_ticker_by_increasing_date(cls, rows: list[PriceRow]) -> list[PriceRow]:
        tickers = sorted({row.ticker for row in rows})
        if len(tickers) > 1:
            raise ValueError(f"rows of one ticker only, got {len(tickers)}: {tickers[:5]}")
        out_of_order = next(((a, b) for a, b in pairwise(rows) if b.date <= a.date), None)
        if out_of_order is not None:
            earlier, later = out_of_order
            raise ValueError(
                f"dates must increase from row to row (oldest first, each day once): {later.date} follows "
                f"{earlier.date}"
            )
        return rows


class Prediction(BaseModel):
    """The predicted close of the trading day after ``as_of``, and what it was computed from."""

    ticker: str = Field(examples=["ABC"])
    as_of: dt.date = Field(description="The last trading day the prediction uses data of.", examples=["2025-12-31"])
    last_close: float = Field(description="The close on `as_of`.", examples=[103.8])
    predicted_return: float = Field(description="Predicted next-day simple return.", examples=[0.0012])
    predicted_close: float = Field(description="last_close × (1 + predicted_return).", examples=[103.92])
    model_version: str = Field(description="Registry version of the model.", examples=["v1712"])


class PredictResponse(BaseModel):
    """One prediction per requested ticker, in request order."""

    predictions: list[Prediction]


class ModelInfo(BaseModel):
    """The model being served: enough to trust, reproduce or call it."""

    model_tag: str = Field(description="The BentoML model served.", examples=["stockcast-model:v1712"])
    model_version: str = Field(examples=["v1712"])
    candidate_id: str = Field(examples=["catboost[depth=4]"])
    as_of: dt.date = Field(description="Last trading day of the data the model was deployed with.")
    tickers: list[str] = Field(description="Tickers POST /predict can answer for.")
    feature_set: str
    feature_fingerprint: str
    feature_columns: list[str]
    min_history: int = Field(description="Fewest daily rows POST /predict_from_history needs.")
    lineage: dict[str, str] = Field(
        description="Where the model comes from: training run and task, data snapshot, feature set, code version."
    )
    metrics: dict[str, Any] = Field(description="Walk-forward backtest metrics of the model.")
    gate: dict[str, Any] = Field(description="The promotion gate's decision and its reason.")


class RequestGuard:
    """ASGI middleware refusing, before the service parses anything, what its JSON APIs must not read: a request
    body of another media type (415; BentoML would try a form parser on it and fail with a 500) or larger than
    ``max_bytes`` (413). A declared Content-Length is checked up front; a chunked body is read up to the limit and
    replayed to the service, so a client cannot stream an unbounded body into the JSON parser either.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on, or answer 415 or 413."""
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        media_type = headers.get(b"content-type", b"application/json").split(b";")[0].strip().lower()
        if media_type != b"application/json":
            await _refuse(
                scope, receive, send, 415, f"send JSON (Content-Type: application/json), not {media_type.decode()}"
            )
            return
        declared = headers.get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await _refuse(scope, receive, send, 413, f"request body larger than {self.max_bytes} bytes")
            return
        messages: list[Message] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                await _refuse(scope, receive, send, 413, f"request body larger than {self.max_bytes} bytes")
                return
            if not message.get("more_body", False):
                break
        buffered = iter(messages)

        async def replay() -> Message:
            return next(buffered, None) or await receive()

        await self.app(scope, replay, send)


async def _refuse(scope: Scope, receive: Receive, send: Send, status: int, error: str) -> None:
    await JSONResponse({"error": error}, status_code=status)(scope, receive, send)


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
        self.bundle: ServingBundle = read_bundle(stored.path_of(BUNDLE_FILE))
        # Refuse to start, rather than fail every history request, if this code computes other features than
        # those the model was trained on.
        bundle_feature_set(self.bundle)
        self.predictions = PerTurnBatcher(self._answer_queries)
        self.batch_sizes = batch_size_histogram()

    def _answer_queries(self, queries: list[TickerQuery]) -> list[list[dict[str, Any]] | Exception]:
        self.batch_sizes.observe(len(queries))
        return answer_queries(self.bundle, queries)

    @bentoml.api(route="/predict")
    async def predict(self, request: PredictRequest, /) -> PredictResponse:
        """Predicted next-day close of each requested ticker, from the latest data the model was deployed with."""
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
        history = pd.DataFrame(request.model_dump(include={"prices"})["prices"])
        financials = None
        if request.financials is not None:
            columns = list(FinancialRow.model_fields)
            financials = pd.DataFrame(request.model_dump(include={"financials"})["financials"], columns=columns)
        try:
            answer = predict_from_history(self.bundle, history, financials)
        except ServingInputError as error:
            raise client_error(error, HistoryRequest) from error
        (prediction,) = to_predictions(answer)
        return prediction

    def model_info(self) -> ModelInfo:
        """What ``GET /model`` shows."""
        record = self.bundle.record
        return ModelInfo(
            model_tag=self.model_tag,
            model_version=self.bundle.model_version,
            candidate_id=record.candidate_id,
            as_of=self.bundle.as_of.date(),
            tickers=self.bundle.tickers,
            feature_set=self.bundle.feature_set,
            feature_fingerprint=self.bundle.feature_fingerprint,
            feature_columns=list(self.bundle.feature_columns),
            min_history=self.bundle.min_history,
            lineage=record.lineage(),
            metrics=record.metrics,
            gate=record.gate,
        )


StockcastService.add_asgi_middleware(RequestGuard, max_bytes=MAX_REQUEST_BYTES)


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


def client_error(error: ServingInputError, request_model: type[BaseModel]) -> ValidationError:
    """A request the model cannot answer, as a validation error of its field: BentoML answers those with a 400 in
    the same shape as a schema violation, so clients see one error format whatever the cause."""
    detail = InitErrorDetails(
        type=PydanticCustomError("invalid_request", "{reason}", {"reason": str(error)}),
        loc=(error.field,),
        input=None,
    )
    return ValidationError.from_exception_data(request_model.__name__, [detail])


def to_predictions(answer: pd.DataFrame) -> list[Prediction]:
    """The rows of a ``stockcast.serve.answers`` answer as response models."""
    return [Prediction.model_validate(record) for record in prediction_records(answer)]
