"""The request and answer schemas of the stockcast service: strict pydantic models with examples, which BentoML
turns into validation (a 400 naming the field) and into the OpenAPI document (``/docs.json``).

Price and report rows are those of the CSV contract (``stock_price.csv``, ``financial_info.csv``).
"""

from __future__ import annotations

import datetime as dt
from itertools import pairwise
from typing import Annotated, Any, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

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
