"""What the flow tests share: the planted market (``tests/conftest.py``), ingested and trained once per session.

The session's champion is trained on the market's history, with every factory of the zoo, on a branch of its own:
TrainFlow's and BatchPredictFlow's tests read it, and no test changes which model is champion there.
"""

from __future__ import annotations

import uuid

import pytest

from tests.factories import Market
from tests.harness import Champion, FlowRunner, train_champion


@pytest.fixture(scope="session")
def champion(market: Market, configs: dict[str, str]) -> Champion:
    """The history ingested on a fresh branch; TrainFlow with every factory of the zoo promotes its winner, packaged
    as a Bento."""
    return train_champion(FlowRunner(f"champ{uuid.uuid4().hex[:8]}"), market, configs["small"])
