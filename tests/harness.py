"""Helpers of the tests that run flows and servers: the flow runner, the S3 settings, card contents.

``tests/conftest.py`` points Metaflow at the session's temporary home before anything imports it; these helpers only
read that configuration.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the factories import the library, which imports Metaflow: conftest imports this module first
    from tests.factories import Market

REPO_ROOT = Path(__file__).resolve().parent.parent
S3_BUCKET = "stockcast-test"
MAX_WORKERS = os.cpu_count() or 1
"""Parallel tasks of the flow runs the tests start: one per core. With Metaflow's default of 16, every backtest of a
TrainFlow run starts at once and the model libraries' thread pools fight over the cores: on 2 cores the PR report's
TrainFlow run took 57 s instead of 50."""

S3_DATASTORE_ENV = {"METAFLOW_DEFAULT_DATASTORE": "s3"}
"""Extra environment for a flow run whose artefacts go to the S3 server (metadata stays local)."""


def metaflow_home() -> Path:
    """The session's Metaflow home (``tests/conftest.py`` makes it)."""
    return Path(os.environ["METAFLOW_DATASTORE_SYSROOT_LOCAL"])


class FlowRunner:
    """Runs ``flows/<flow>.py`` on one test branch (``stockcast.core.runs.launch_flow``): fresh runs and resumes,
    one task per core."""

    def __init__(self, branch: str) -> None:
        self.branch = branch

    def __call__(self, flow: str, *, env: dict[str, str] | None = None, config: str | None = None, **params):
        """A fresh run with the given parameters (and ``--config config PATH`` when ``config`` is given); its
        ``FlowOutcome``, successful or not."""
        from stockcast.core.runs import launch_flow

        return launch_flow(flow, branch=self.branch, env=env, config=config, max_workers=MAX_WORKERS, **params)

    def resume(self, flow: str, *, env: dict[str, str] | None = None):
        """``resume`` of the branch's latest run of ``flow``: failed steps re-run, finished ones are cloned."""
        from stockcast.core.runs import launch_flow

        return launch_flow(flow, branch=self.branch, env=env, resume=True, max_workers=MAX_WORKERS)

    def ingest(self, files: dict[str, Path], env: dict[str, str] | None = None) -> str:
        """IngestFlow on a market's files (``write_market``'s paths), which must succeed; the snapshot's pathspec."""
        return self.succeed(
            "ingest", env=env, prices=str(files["prices"]), financials=str(files["financials"])
        ).pathspec

    def succeed(self, flow: str, **options):  # -> metaflow.Run
        """A fresh run that must succeed (the test fails with the flow's output otherwise); its Client ``Run``."""
        outcome = self(flow, **options)
        assert outcome.successful, outcome.output
        return outcome.run


def card_text(task, card_id: str) -> str:
    """The decoded content of a task's card (Metaflow embeds it as base64 JSON), for asserting on what it shows."""
    import base64
    import re

    from metaflow.cards import get_cards

    (card,) = get_cards(task, id=card_id)
    payloads = re.findall(r'__MF_DATA__\["[^"]+"\] = "([A-Za-z0-9+/=]+)"', card.get())
    return "\n".join(base64.b64decode(payload).decode() for payload in payloads)


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


def train_champion(runner: FlowRunner, market: Market, config: str, env: dict[str, str] | None = None) -> Champion:
    """The market's history ingested on the runner's branch and TrainFlow run on it with ``config``; it must promote
    its winner (packaged as a Bento)."""
    history = runner.ingest(market.history, env)
    trained = runner("train", env=env, config=config, snapshot=history)
    assert trained.successful, trained.output
    assert trained.run.data.promoted, trained.run.data.decision["reason"]
    return Champion(runner.branch, history, trained.run, trained.output)
