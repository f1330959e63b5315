"""What the flow tests share: the planted market (``tests/conftest.py``), ingested and trained once per session.

The session's champion is trained on the market's history, with every factory of the zoo, on a branch of its own:
TrainFlow's and BatchPredictFlow's tests read it, and no test changes which model is champion there. On S3, the
champion is the one a TrainFlow run promotes after two storage outages and two resumes (``tests/flows/outage.py``):
the storage-fault tests check how the run failed and resumed, the operate tests predict and monitor with its model.
"""

from __future__ import annotations

import uuid

import pytest

from tests.factories import Market
from tests.flows.outage import Scenario, stage_outage
from tests.harness import Champion, FlowRunner, train_champion


@pytest.fixture(scope="session")
def champion(market: Market, configs: dict[str, str]) -> Champion:
    """The history ingested on a fresh branch; TrainFlow with every factory of the zoo promotes its winner, packaged
    as a Bento."""
    return train_champion(FlowRunner(f"champ{uuid.uuid4().hex[:8]}"), market, configs["small"])


@pytest.fixture(scope="session")
def outage_scenario(market: Market, configs: dict[str, str], s3_server: str) -> Scenario:
    """TrainFlow on S3 through two storage outages and two resumes (``stage_outage``), once per session, its work
    split into shards and fold tasks."""
    return stage_outage(market, configs["split"], s3_server)


@pytest.fixture(scope="session")
def s3_champion(outage_scenario: Scenario) -> Champion:
    """The S3 datastore's champion: promoted by the run that completed after the outages."""
    resumed = outage_scenario.resumed
    assert resumed.successful, resumed.output
    return Champion(outage_scenario.branch, outage_scenario.history, resumed.run, resumed.output)
