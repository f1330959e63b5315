"""The smoke test: does a deployment serve the model it should, answering exactly as the library does?

One test for every place a Bento is deployed: on loopback before its archive is exported (TrainFlow's deploy step)
and where it serves after a rollout (``stockcast-rollout``). It asks ``GET /model`` which model is served, then
``POST /predict`` for a few tickers, and compares the answers with what ``stockcast.serve.answers`` computes from the
model's own ``ServingBundle``: the same code and the same bundle give the same floats, so any difference (another
model, a broken image, a model that answers NaN) fails it.
"""

from __future__ import annotations

import httpx
import numpy as np
import pandas as pd

from stockcast.deploy.config import SmokeSettings
from stockcast.deploy.targets import DeployError
from stockcast.serve.answers import predict_tickers
from stockcast.serve.bundle import ServingBundle
from stockcast.serve.client import ServiceRequestError, StockcastClient


class SmokeTestError(DeployError):
    """The deployment answered, but not as the model it should serve; the message says what differed."""


def smoke_test(endpoint: str, bundle: ServingBundle, settings: SmokeSettings | None = None) -> None:
    """``SmokeTestError`` unless the service at ``endpoint`` serves ``bundle``'s model and predicts exactly what the
    library predicts from ``bundle`` for ``settings.tickers`` of its tickers with a full look-back."""
    settings = settings or SmokeSettings()
    rows = bundle.latest_rows
    tickers = rows.loc[rows["is_warm"].eq(True), "ticker"].head(settings.tickers).tolist()
    if not tickers:
        raise SmokeTestError(f"model {bundle.model_version} has no ticker with enough history to ask for")
    try:
        with StockcastClient(endpoint, timeout=settings.timeout_s) as client:
            served_version = client.model().get("model_version")
            if served_version != bundle.model_version:
                raise SmokeTestError(f"{endpoint} serves model {served_version}, not {bundle.model_version}")
            answer = pd.DataFrame(client.predict(tickers))
    except (httpx.HTTPError, ServiceRequestError) as exc:
        raise SmokeTestError(f"{endpoint} did not answer as a healthy service: {exc}") from exc
    try:
        expected = predict_tickers(bundle, tickers)
    except RuntimeError as exc:  # the model itself predicts NaN: nothing it serves can be right
        raise SmokeTestError(f"model {bundle.model_version} cannot predict: {exc}") from exc
    if answer["ticker"].tolist() != tickers or not np.array_equal(
        answer["predicted_close"].to_numpy(dtype=float), expected["predicted_close"].to_numpy()
    ):
        raise SmokeTestError(
            f"{endpoint} answered {answer[['ticker', 'predicted_close']].to_dict('records')}, the library "
            f"{expected[['ticker', 'predicted_close']].to_dict('records')}"
        )
