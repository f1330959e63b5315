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
from stockcast.serve.feed import FeedSettings, refreshed


class SmokeTestError(DeployError):
    """The deployment answered, but not as the model it should serve; the message says what differed."""


DATA_WAIT_EXTRA_S = 5.0
"""Beyond two refresh periods, how long a following service may take to serve the branch's newest snapshot (the time
to read it and build its rows) before the smoke test gives up on it."""


def smoke_test(
    endpoint: str, bundle: ServingBundle, settings: SmokeSettings | None = None, *, feed: FeedSettings | None = None
) -> None:
    """``SmokeTestError`` unless the service at ``endpoint`` serves ``bundle``'s model and predicts exactly what the
    library predicts from ``bundle`` for ``settings.tickers`` of its tickers with a full look-back.

    A service that follows the snapshot heads in ``feed.store`` may serve the branch's newest snapshot instead of the
    bundle's: the library's answer is then computed from that snapshot, and each answer must name it. A service
    between two snapshots (one was published while it was asked, or it has not looked yet) is asked again until it
    serves one of them, for at most two refresh periods and ``DATA_WAIT_EXTRA_S``.
    """
    settings, feed = settings or SmokeSettings(), feed or FeedSettings()
    deadline = time.monotonic() + (2 * feed.refresh_s + DATA_WAIT_EXTRA_S if feed.store else 0.0)
    known = {bundle.data_version: bundle}  # the rows of each snapshot met, built once however often it is asked
    try:
        with StockcastClient(endpoint, timeout=settings.timeout_s) as client:
            while True:
                served = client.model()
                if served.get("model_version") != bundle.model_version:
                    raise SmokeTestError(
                        f"{endpoint} serves model {served.get('model_version')}, not {bundle.model_version}"
                    )
                # A service from before data versions were reported serves the rows it was built with.
                data_version = served.get("data", {}).get("version", bundle.data_version)
                if data_version not in known:
                    known.update(_newest(bundle, data_version, feed.store))
                expected_from = known.get(data_version)
                if expected_from is not None:
                    tickers = _warm_tickers(expected_from, settings.tickers)
                    answer = pd.DataFrame(client.predict(tickers))
                    if set(answer.get("data_version", pd.Series([bundle.data_version]))) == {data_version}:
                        break
                if time.monotonic() >= deadline:
                    raise SmokeTestError(
                        f"{endpoint} serves data {data_version}, neither the deployed snapshot {bundle.data_version} "
                        f"nor the newest one of branch {bundle.record.branch}, or kept changing it while asked"
                    )
                time.sleep(1.0)
    except (httpx.HTTPError, ServiceRequestError) as exc:
        raise SmokeTestError(f"{endpoint} did not answer as a healthy service: {exc}") from exc
    except (OSError, ValueError, KeyError) as exc:  # reading the newest snapshot: the store, its Parquet files
        raise SmokeTestError(f"the data {endpoint} serves could not be read to check it: {exc}") from exc
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


def _newest(bundle: ServingBundle, data_version: str, data_store: str) -> dict[str, ServingBundle]:
    """``bundle``'s model on the branch's newest snapshot in ``data_store``, keyed by its version, when that is the
    ``data_version`` a service says it serves (nothing otherwise: it is between snapshots, or serves another)."""
    head = read_head(store_at(data_store), bundle.record.branch) if data_store else None
    return {head.version: refreshed(bundle, head)} if head is not None and head.version == data_version else {}
