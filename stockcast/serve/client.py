"""A small Python client of the stockcast prediction service (``bentos/service.py``), for people and tests.

It speaks plain JSON over httpx rather than ``bentoml.SyncHTTPClient``: that client only knows the service's POST
APIs (not ``GET /model``) and reports a refused request without the fields the server named. Here a 4xx becomes a
``ServiceRequestError`` whose message is the server's, field by field; a 5xx is httpx's ``HTTPStatusError``.

A deployment that requires a token (``stockcast.serve.auth``) gets it with every request: the ``token`` argument, by
default the one the environment gives the server too (``STOCKCAST_API_TOKEN`` or ``STOCKCAST_API_TOKEN_FILE``).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

import httpx
import pandas as pd

from stockcast.serve.auth import read_token

Rows = pd.DataFrame | Sequence[Mapping[str, Any]]
"""Table rows: a DataFrame in contract columns, or JSON-ready records sent exactly as given."""


class ServiceRequestError(RuntimeError):
    """The service refused a request (a 4xx). ``detail`` holds the server's per-field errors when it sent them."""

    def __init__(self, status_code: int, message: str, detail: list[dict[str, Any]]) -> None:
        super().__init__(f"HTTP {status_code}: {message}")
        self.status_code = status_code
        self.detail = detail

    @classmethod
    def from_response(cls, response: httpx.Response) -> ServiceRequestError:
        """The error a refused response describes: every field error as ``field.path: message``, else the error."""
        try:
            body = response.json()
        except ValueError:
            return cls(response.status_code, response.text or response.reason_phrase, [])
        # BentoML wraps some errors in a one-element list.
        body = body[0] if isinstance(body, list) and body else body
        if not isinstance(body, dict):
            return cls(response.status_code, response.text, [])
        detail = body.get("detail") or []
        fields = [
            f"{'.'.join(str(part) for part in error.get('loc', [])) or 'body'}: {error.get('msg')}" for error in detail
        ]
        return cls(response.status_code, "; ".join(fields) or str(body.get("error", response.text)), detail)


@dataclass(frozen=True)
class Batching:
    """``/predict`` requests answered so far, and the model calls that answered them."""

    model_calls: int
    requests: int


class StockcastClient:
    """Calls one deployment of the service at ``base_url`` (such as ``http://127.0.0.1:3000``).

    ``token`` is sent as ``Authorization: Bearer <token>``; None (the default) takes it from the environment
    (``stockcast.serve.auth.read_token``), and an empty string sends none.
    """

    def __init__(self, base_url: str, *, timeout: float = 10.0, token: str | None = None) -> None:
        token = read_token() if token is None else token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=base_url, timeout=timeout, headers=headers)

    def predict(self, tickers: Sequence[str], as_of: dt.date | str | None = None) -> list[dict[str, Any]]:
        """Tomorrow's close for each ticker the model knows, in request order (``POST /predict``)."""
        as_of_text = as_of.isoformat() if isinstance(as_of, dt.date) else as_of
        return self.request("POST", "/predict", {"tickers": list(tickers), "as_of": as_of_text})["predictions"]

    def predict_table(
        self, tickers: Sequence[str], as_of: dt.date | str | None = None, *, per_request: int = 100
    ) -> pd.DataFrame:
        """``predict`` for any number of tickers, ``per_request`` at a time (the service's limit), as a table with
        the columns of the answer (``as_of`` parsed as a date)."""
        rows = [
            row
            for start in range(0, len(tickers), per_request)
            for row in self.predict(tickers[start : start + per_request], as_of)
        ]
        table = pd.DataFrame(rows)
        return table.assign(as_of=pd.to_datetime(table["as_of"])) if rows else table

    def predict_from_history(self, rows: Rows, financials: Rows | None = None) -> dict[str, Any]:
        """Tomorrow's close for one ticker from its recent daily rows (``POST /predict_from_history``)."""
        return self.request("POST", "/predict_from_history", history_payload(rows, financials))

    def model(self) -> dict[str, Any]:
        """The served model's version, lineage, metrics, features and minimum history (``GET /model``)."""
        return self.request("GET", "/model")

    def batching(self) -> Batching:
        """How many model calls have answered how many ``/predict`` requests since the service started, from its
        ``stockcast_predict_batch_size`` metric (``GET /metrics``): the service answers requests arriving together
        with one call."""
        response = self._http.get("/metrics")
        response.raise_for_status()
        figures = dict(
            re.findall(r"^stockcast_predict_batch_size_(count|sum) (\S+)$", response.text, flags=re.MULTILINE)
        )
        return Batching(model_calls=int(float(figures["count"])), requests=int(float(figures["sum"])))

    def close(self) -> None:
        """Release the connection pool."""
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    def request(self, method: str, path: str, body: Any = None) -> Any:
        """Send ``body`` as JSON to ``path``; the decoded answer, or ``ServiceRequestError`` if it was refused."""
        response = self._http.request(method, path, json=body)
        if response.is_client_error:
            raise ServiceRequestError.from_response(response)
        response.raise_for_status()
        return response.json()


def history_payload(rows: Rows, financials: Rows | None = None) -> dict[str, Any]:
    """The JSON body of ``POST /predict_from_history``: price rows (and reports) as records, dates as YYYY-MM-DD,
    missing values as null. Records that are not a DataFrame are sent as given, so the server judges them."""
    return {"prices": _records(rows), "financials": None if financials is None else _records(financials)}


def _records(rows: Rows) -> list[dict[str, Any]]:
    if not isinstance(rows, pd.DataFrame):
        return [dict(row) for row in rows]
    dates = {name: rows[name].dt.strftime("%Y-%m-%d") for name in rows.select_dtypes("datetime").columns}
    table = rows.assign(**dates).astype(object)
    return table.where(table.notna(), None).to_dict(orient="records")
