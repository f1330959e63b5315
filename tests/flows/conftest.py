"""What the flow tests share: the planted market (``tests/conftest.py``), ingested and trained once per session.

The session's champion is trained on the market's history, with every factory of the zoo, on a branch of its own:
TrainFlow's and BatchPredictFlow's tests read it, and no test changes which model is champion there.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import pytest

from tests.factories import Market
from tests.harness import FlowRunner


@dataclass(frozen=True)
class Champion:
    """The session's champion: its branch, the snapshot ingested there, and the TrainFlow run that promoted it."""

    branch: str
    history: str
    training: Any  # metaflow.Run
    output: str

    @property
    def registry_branch(self) -> str:
        """The ``@project`` branch a test run's artefacts and registry live on."""
        return f"test.{self.branch}"


@pytest.fixture(scope="session")
def champion(market: Market, configs: dict[str, str]) -> Champion:
    """The history ingested on a fresh branch; TrainFlow with every factory of the zoo promotes its winner, packaged
    as a Bento."""
    branch = f"champ{uuid.uuid4().hex[:8]}"
    runner = FlowRunner(branch)
    history = runner.ingest(market.history)
    trained = runner("train", config=configs["small"], snapshot=history)
    assert trained.successful, trained.output
    assert trained.run.data.promoted, trained.run.data.decision["reason"]
    return Champion(branch, history, trained.run, trained.output)
