"""The smoke test: does a deployment serve the model it should, answering exactly as the library does?

One test for every place a Bento is deployed: on loopback before its archive is exported (TrainFlow's deploy step)
and where it serves after a rollout (``stockcast-rollout``). It asks ``GET /model`` which model and data are served,
then ``POST /predict`` for a few tickers, and compares the answers with what ``stockcast.serve.answers`` computes from
the model's own ``ServingBundle``: the same code and the same bundle give the same floats, so any difference (another
model, a broken image, a model that answers NaN) fails it. A service that follows newer data
(``stockcast.serve.feed``) may serve a newer snapshot than the bundle's: it is then compared with the bundle the
library builds for that snapshot, read from the same head.
"""

from __future__ import annotations

import time

import httpx
import numpy as np
import pandas as pd

from stockcast.data.heads import read_head
from stockcast.data.partitions import store_at
from stockcast.deploy.config import SmokeSettings
from stockcast.deploy.targets import DeployError
from stockcast.serve.answers import predict_tickers
from stockcast.serve.bundle import ServingBundle
from stockcast.serve.client import ServiceRequestError, StockcastClient
from stockcast.serve.feed import refreshed


class SmokeTestError(DeployError):
    """The deployment answered, but not as the model it should serve; the message says what differed."""


SNAPSHOT_RACE_ATTEMPTS = 3
"""Times the test is asked again when the service's data changed while it was being asked (a snapshot published
during a roll-out): a data version in the answers other than the one ``GET /model`` named just before."""


def smoke_test(
    endpoint: str, bundle: ServingBundle, settings: SmokeSettings | None = None, *, data_store: str = ""
) -> None:
    """``SmokeTestError`` unless the service at ``endpoint`` serves ``bundle``'s model and predicts exactly what the
    library predicts from ``bundle`` for ``settings.tickers`` of its tickers with a full look-back. A service that
    follows the snapshot heads in ``data_store`` may serve the branch's newest snapshot instead of the bundle's: then
    the library's answer is computed from that snapshot (each answer names its data version)."""
    settings = settings or SmokeSettings()
    try:
        with StockcastClient(endpoint, timeout=settings.timeout_s) as client:
            for _ in range(SNAPSHOT_RACE_ATTEMPTS):
                served = client.model()
                if served.get("model_version") != bundle.model_version:
                    raise SmokeTestError(
                        f"{endpoint} serves model {served.get('model_version')}, not {bundle.model_version}"
                    )
                data_version = served.get("data", {}).get("version")
                expected_from = _serving(bundle, data_version, data_store)
                if expected_from is not None:
                    tickers = _warm_tickers(expected_from, settings.tickers)
                    answer = pd.DataFrame(client.predict(tickers))
                    if set(answer["data_version"]) == {data_version}:
                        break
                time.sleep(1.0)
            else:
                raise SmokeTestError(
                    f"{endpoint} serves data {data_version}, neither the deployed snapshot {bundle.data_version} nor "
                    f"the newest one of branch {bundle.record.branch}, or kept changing it while asked"
                )
    except (httpx.HTTPError, ServiceRequestError) as exc:
        raise SmokeTestError(f"{endpoint} did not answer as a healthy service: {exc}") from exc
    try:
        expected = predict_tickers(expected_from, tickers)
    except RuntimeError as exc:  # the model itself predicts NaN: nothing it serves can be right
        raise SmokeTestError(f"model {bundle.model_version} cannot predict: {exc}") from exc
    if answer["ticker"].tolist() != tickers or not np.array_equal(
        answer["predicted_close"].to_numpy(dtype=float), expected["predicted_close"].to_numpy()
    ):
        raise SmokeTestError(
            f"{endpoint} answered {answer[['ticker', 'predicted_close']].to_dict('records')}, the library "
            f"{expected[['ticker', 'predicted_close']].to_dict('records')}"
        )


def _warm_tickers(bundle: ServingBundle, count: int) -> list[str]:
    rows = bundle.latest_rows
    tickers = rows.loc[rows["is_warm"].eq(True), "ticker"].head(count).tolist()
    if not tickers:
        raise SmokeTestError(f"model {bundle.model_version} has no ticker with enough history to ask for")
    return tickers


def _serving(bundle: ServingBundle, data_version: str | None, data_store: str) -> ServingBundle | None:
    """The bundle a service saying it serves ``data_version`` answers from: the deployed one, or the branch's newest
    snapshot in ``data_store``; None when it is neither (or no longer the newest)."""
    if data_version == bundle.data_version:
        return bundle
    head = read_head(store_at(data_store), bundle.record.branch) if data_store else None
    return refreshed(bundle, head) if head is not None and head.version == data_version else None
