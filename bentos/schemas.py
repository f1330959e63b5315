"""The request and answer schemas of the stockcast service: strict pydantic models with examples, which BentoML
turns into validation (a 400 naming the field) and into the OpenAPI document (``/docs.json``).

Price and report rows are those of the CSV contract (``stock_price.csv``, ``financial_info.csv``). The schemas say
only what JSON must carry: the fields, their types, sizes the service accepts. What makes a row valid (prices > 0,
low <= open, close <= high, no date after today, one row per day, ...) is the contract's, checked by the ingest
validators themselves (``stockcast.serve.contract``), so a rule is stated once, for files and requests alike.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

MAX_TICKERS = 100
"""Most tickers one ``/predict`` request may ask for."""
MAX_HISTORY_DAYS = 1260
"""Most price rows one ``/predict_from_history`` request may send: five years of trading days."""
MAX_REPORTS = 80
"""Most financial reports one request may send: twenty years of quarters."""
MAX_REQUEST_BYTES = 1024 * 1024
"""Largest request body accepted; a full-size history request is about 0.2 MB."""
MAX_TEXT_LENGTH = 64
"""Longest ticker or sector accepted: a bound on what a request may make the service hold, not a contract rule."""

Ticker = Annotated[
    str,
    Field(
        max_length=MAX_TEXT_LENGTH,
        description="A ticker symbol, as the data contract allows it (ingest's ticker rule applies).",
        examples=["ABC"],
    ),
]
Day = Annotated[dt.date, Field(description="A date, YYYY-MM-DD (the data contract bounds it: 1900 to 2199, ...).")]
Price = Annotated[float, Field(description="A price in the ticker's currency; finite (the contract: > 0).")]
Amount = Annotated[float | None, Field(description="Reported figure; null when the report lacks it.")]


class StrictModel(BaseModel):
    """Requests are parsed strictly: no unknown fields, no numbers sent as strings, no NaN or infinity."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class PriceRow(StrictModel):
    """One trading day of one ticker: a row of ``stock_price.csv``."""

    date: Day = Field(examples=["2025-12-31"])
    ticker: Ticker
    open: Price
    high: Price
    low: Price
    close: Price
    volume: float = Field(description="Shares traded that day; finite (the contract: >= 0).", examples=[1250000])
    adj_close: Price | None = Field(default=None, description="Accepted for CSV parity; the features use raw prices.")


class FinancialRow(StrictModel):
    """One quarterly report of one ticker: a row of ``financial_info.csv``."""

    ticker: Ticker
    period_end: Day = Field(description="Last day of the fiscal quarter.", examples=["2025-09-30"])
    report_date: Day = Field(
        description="Day the figures were published; they are used from this day on.", examples=["2025-10-28"]
    )
    revenue: Amount = None
    net_income: Amount = None
    eps: Amount = None
    total_assets: Amount = None
    total_liabilities: Amount = None
    shares_outstanding: Amount = None
    sector: str = Field(max_length=MAX_TEXT_LENGTH, examples=["Technology"])


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
            "The ticker's daily rows, one per trading day, in any order (they are sorted by date, as ingest sorts a "
            "file); at least `min_history` consecutive trading days (GET /model)."
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


class Prediction(BaseModel):
    """The predicted close of the trading day after ``as_of``, and what it was computed from."""

    ticker: str = Field(examples=["ABC"])
    as_of: dt.date = Field(description="The last trading day the prediction uses data of.", examples=["2025-12-31"])
    last_close: float = Field(description="The close on `as_of`.", examples=[103.8])
    predicted_return: float = Field(description="Predicted next-day simple return.", examples=[0.0012])
    predicted_close: float = Field(description="last_close × (1 + predicted_return).", examples=[103.92])
    model_version: str = Field(description="Registry version of the model.", examples=["v1712"])
    data_version: str = Field(
        description="Version of the data snapshot the prediction was made from.", examples=["3f9c2a41d0b7e815"]
    )


class PredictResponse(BaseModel):
    """One prediction per requested ticker, in request order."""

    predictions: list[Prediction]


class DataStatus(BaseModel):
    """The data the answers come from, and whether the service keeps it fresh (``stockcast.serve.feed``)."""

    version: str = Field(description="Version of the data snapshot served.", examples=["3f9c2a41d0b7e815"])
    as_of: dt.date = Field(description="Its last trading day: what every prediction is as of.")
    published_at: str | None = Field(
        description="When that snapshot was published (ISO 8601, UTC); null for the model's training snapshot."
    )
    following: bool = Field(description="True when the service swaps in newly published snapshots by itself.")
    refresh_s: float | None = Field(description="Seconds between looks for a newer snapshot; null when not following.")
    checked_at: str | None = Field(description="When it last looked (ISO 8601, UTC).")
    last_error: str | None = Field(description="Why the last look did not serve a newer snapshot, if it failed.")
    age_days: int = Field(description="Calendar days from `as_of` to today.")
    max_age_days: float | None = Field(description="Past this age the data is stale and /readyz answers 503.")
    stale: bool


class ModelInfo(BaseModel):
    """The model being served: enough to trust, reproduce or call it."""

    model_tag: str = Field(description="The BentoML model served.", examples=["stockcast-model:v1712"])
    model_version: str = Field(examples=["v1712"])
    candidate_id: str = Field(examples=["catboost[depth=4]"])
    as_of: dt.date = Field(description="Last trading day of the data served (`data.as_of`).")
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
    data: DataStatus


class ErrorDetail(BaseModel):
    """One thing wrong with a request, in pydantic's validation error shape (BentoML may add fields, such as a
    ``url`` documenting a schema error)."""

    loc: list[str | int] = Field(
        description="Where: the field, then a row's position and a column; empty for the body as a whole.",
        examples=[["prices", 3, "close"]],
    )
    msg: str = Field(description="Why, in a sentence.", examples=["price must be > 0"])
    type: str = Field(
        description="The rule broken: a schema check (`missing`, `float_type`, ...) or a data contract rule "
        "(`positive_price`, `not_in_future`, ...).",
        examples=["positive_price"],
    )

    model_config = ConfigDict(extra="allow")


class ErrorResponse(BaseModel):
    """The body of every refusal (4xx) and server error (5xx)."""

    error: str = Field(description="What went wrong.", examples=["1 validation error for HistoryRequest"])
    detail: list[ErrorDetail] = Field(
        default=[], description="For a 400, each thing wrong with the request; absent for other statuses."
    )
