"""The prediction log: every ``/predict`` answer a service gave, kept for scoring once the real closes are known.

A shadow version's answers are discarded by the proxy (``stockcast.deploy.fleet``, strategy ``shadow``); what it
would have answered is only worth something if it is kept. With ``STOCKCAST_PREDICTION_LOG`` set to a folder, each
worker process of the service appends its answers to ``<folder>/predictions-<pid>.jsonl``, one JSON object per
prediction (the prediction's fields, its data version among them, and when it was logged), one write per model
call. A file per process keeps lines whole without locks; ``read_prediction_log`` reads them all back as one table,
the input of realised scoring (the prediction's ``as_of`` and ``ticker`` join the next day's close).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import pandas as pd

from stockcast.serve.schema import PREDICTION_COLUMNS

PREDICTION_LOG_ENV = "STOCKCAST_PREDICTION_LOG"
LOG_COLUMNS = [*PREDICTION_COLUMNS, "logged_at"]


class PredictionLog:
    """Appends a worker's ``/predict`` answers to its own file in ``folder``."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self._file: IO[str] | None = None

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> PredictionLog | None:
        """The log ``STOCKCAST_PREDICTION_LOG`` names, or ``None`` when it is unset or empty."""
        folder = environ.get(PREDICTION_LOG_ENV, "").strip()
        return cls(folder) if folder else None

    @property
    def path(self) -> Path:
        """This process' file."""
        return self.folder / f"predictions-{os.getpid()}.jsonl"

    def write(self, predictions: Iterable[Mapping[str, Any]]) -> None:
        """Append ``predictions`` (records of ``PREDICTION_COLUMNS``)."""
        logged_at = datetime.now(UTC).isoformat(timespec="milliseconds")
        lines = "".join(
            json.dumps({**prediction, "logged_at": logged_at}, default=str) + "\n" for prediction in predictions
        )
        if not lines:
            return
        if self._file is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("a", encoding="utf-8")
        self._file.write(lines)
        self._file.flush()


def read_prediction_log(folder: str | Path) -> pd.DataFrame:
    """Every prediction logged in ``folder`` (``LOG_COLUMNS``), oldest first; no rows when nothing was logged. A line
    without its newline (its process was killed while writing it) is left out."""
    records = [
        json.loads(line)
        for path in sorted(Path(folder).glob("predictions-*.jsonl"))
        for line in path.read_text(encoding="utf-8").split("\n")[:-1]
    ]
    table = pd.DataFrame.from_records(records, columns=LOG_COLUMNS)
    table["as_of"] = pd.to_datetime(table["as_of"])
    table["logged_at"] = pd.to_datetime(table["logged_at"])
    return table.sort_values("logged_at", kind="stable", ignore_index=True)
