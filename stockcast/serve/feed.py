"""Fresh data in a running service: follow the branch's snapshot head and swap in its rows without a restart.

A Bento carries the feature rows of the snapshot its model was trained on, so on its own it answers yesterday's
question the day after. A ``DataFeed`` polls the head of the model's branch (``stockcast.data.heads``: one small
object that IngestFlow writes when it publishes a snapshot) every ``refresh_s`` seconds. When the head names
another snapshot, it reads that snapshot's tables and builds the serving bundle again with the same model and the
same code batch prediction uses (``refreshed``: ``build_bundle`` with the model already loaded), checks that the
model answers every ticker with a finite number, and only then swaps the bundle in, in one assignment: a request is
answered wholly from the old rows or wholly from the new. Anything that goes wrong (the store unreachable, a
snapshot older than the one served, a model that cannot answer the new rows) leaves the served rows as they were
and is reported in ``GET /model`` and on ``/metrics``; a feed never stops a replica from answering.

Polls fall on multiples of ``refresh_s`` of the wall clock, so the worker processes of a replica, and the replicas
of a deployment, pick up a snapshot within the same second or two rather than ``refresh_s`` apart. A replica
starting up reads the head before it reports ready, so a new replica never serves older rows than its neighbours.

Settings come from the environment, like the model tag and the token (``stockcast-rollout`` sets them from
``configs/deploy.toml``, ``[data]``):

- ``STOCKCAST_DATA_STORE``: the root of the object store holding the heads (``datastore_store().root``: a local
  folder, or ``s3://bucket/prefix/stockcast``); unset or empty, the service serves the rows it was built with;
- ``STOCKCAST_DATA_REFRESH_S``: seconds between polls (default 10);
- ``STOCKCAST_DATA_MAX_AGE_DAYS``: ``/readyz`` answers 503 once the served rows are as of more than this many
  calendar days ago (default 0: never), so a replica whose data stopped refreshing leaves a load balancer that
  honours readiness.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from stockcast.core.storage import ObjectStore
from stockcast.data.heads import SnapshotHead, read_head
from stockcast.data.partitions import store_at
from stockcast.serve.bundle import ServingBundle, build_bundle
from stockcast.serve.refusals import LOGGER_NAME

DATA_STORE_ENV = "STOCKCAST_DATA_STORE"
REFRESH_ENV = "STOCKCAST_DATA_REFRESH_S"
MAX_AGE_ENV = "STOCKCAST_DATA_MAX_AGE_DAYS"
DEFAULT_REFRESH_S = 10.0

logger = logging.getLogger(f"{LOGGER_NAME}.feed")
"""Under BentoML's logger, so a server's log settings apply to the feed's lines as to its own."""


class FeedConfigError(ValueError):
    """A feed setting in the environment cannot be used; the message names the variable and the value."""


@dataclass(frozen=True)
class FeedSettings:
    """Where the service finds newer data, how often it looks, and when its data counts as stale."""

    store: str = ""
    """Root of the object store with the snapshot heads; empty: no feed."""
    refresh_s: float = DEFAULT_REFRESH_S
    max_age_days: float = 0.0
    """Served rows as of more than this many calendar days ago are stale; 0: never."""

    def __post_init__(self) -> None:
        if not (math.isfinite(self.refresh_s) and self.refresh_s > 0):
            raise FeedConfigError(f"{REFRESH_ENV}={self.refresh_s!r}: use a number of seconds > 0")
        if not (math.isfinite(self.max_age_days) and self.max_age_days >= 0):
            raise FeedConfigError(f"{MAX_AGE_ENV}={self.max_age_days!r}: use a number of days >= 0 (0: never stale)")

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> FeedSettings:
        """The settings the variables above describe."""
        return cls(
            store=environ.get(DATA_STORE_ENV, "").strip(),
            refresh_s=_number(environ, REFRESH_ENV, DEFAULT_REFRESH_S),
            max_age_days=_number(environ, MAX_AGE_ENV, 0.0),
        )

    def environment(self) -> dict[str, str]:
        """These settings as the environment variables a service reads them from."""
        return {DATA_STORE_ENV: self.store, REFRESH_ENV: str(self.refresh_s), MAX_AGE_ENV: str(self.max_age_days)}


def _number(environ: Mapping[str, str], name: str, default: float) -> float:
    text = environ.get(name, "").strip()
    if not text:
        return default
    try:
        return float(text)
    except ValueError:
        raise FeedConfigError(f"{name}={text!r}: not a number") from None


def refreshed(bundle: ServingBundle, head: SnapshotHead) -> ServingBundle:
    """``bundle``'s model serving the snapshot ``head`` names: what batch prediction builds for that snapshot, with
    the model already loaded."""
    return build_bundle(
        bundle.record,
        head.read("prices"),
        head.read("financials"),
        actions=head.read("actions"),
        estimator=bundle.estimator,
        calendar=head.calendar,
        ticker_pattern=head.ticker_pattern,
        data_version=head.version,
        data_published_at=head.published_at,
    )


class RefusedSnapshotError(RuntimeError):
    """A published snapshot the service will not serve; the message says why."""


def check_servable(current: ServingBundle, new: ServingBundle) -> None:
    """``RefusedSnapshotError`` unless ``new`` may replace ``current``: its data is not older, and the model predicts
    a finite return for every ticker of it."""
    if new.as_of < current.as_of:
        raise RefusedSnapshotError(
            f"snapshot {new.data_version} ends on {new.as_of.date()}, before the {current.as_of.date()} of the "
            f"snapshot {current.data_version} served"
        )
    predicted = new.prepared.predict_return(list(range(len(new.prepared.tickers))))
    broken = new.prepared.tickers[~np.isfinite(predicted)]
    if len(broken):
        raise RefusedSnapshotError(
            f"model {new.model_version} predicts no finite return on snapshot {new.data_version} for "
            f"{len(broken)} ticker(s), first {', '.join(map(str, broken[:5]))}"
        )


class DataFeed:
    """The bundle a service answers with, kept on its branch's newest snapshot (see the module's description)."""

    def __init__(
        self,
        bundle: ServingBundle,
        settings: FeedSettings,
        *,
        store: ObjectStore | None = None,
        clock: Callable[[], float] = time.time,
        on_served: Callable[[ServingBundle], None] = lambda _bundle: None,
        on_failure: Callable[[], None] = lambda: None,
    ) -> None:
        self.settings = settings
        self._bundle = bundle
        self._store = store if store is not None or not settings.store else store_at(settings.store)
        self._clock = clock
        self._on_served = on_served
        self._on_failure = on_failure
        self.checked_at: float | None = None
        self.last_error = ""
        self._refused = ""
        """The version of a snapshot refused for what it is (older, or unanswerable): not read again every poll."""

    @property
    def bundle(self) -> ServingBundle:
        """The bundle to answer the next request with."""
        return self._bundle

    @property
    def following(self) -> bool:
        """True when the feed has a store to follow."""
        return self._store is not None

    def refresh(self) -> bool:
        """Serve the branch's newest snapshot if it is not served yet; True when the rows changed."""
        if self._store is None:
            return False
        current = self._bundle
        try:
            head = read_head(self._store, current.record.branch)
            if head is None or head.version == current.data_version:
                self._checked("")
                return False
            if head.version == self._refused:  # said once already: nothing new to read or report
                self.checked_at = self._clock()
                return False
            new = refreshed(current, head)
            check_servable(current, new)
        except RefusedSnapshotError as exc:
            self._refused = head.version
            self._checked(f"{type(exc).__name__}: {exc}")
            return False
        except Exception as exc:  # nothing a feed meets may stop a replica answering: it is reported instead
            self._checked(f"{type(exc).__name__}: {exc}")
            return False
        self._bundle = new
        self._checked("")
        self._on_served(new)
        logger.info(
            "now serving snapshot %s (as of %s) with model %s", new.data_version, new.as_of.date(), new.model_version
        )
        return True

    def _checked(self, error: str) -> None:
        self.checked_at = self._clock()
        if error and error != self.last_error:
            logger.warning("kept serving snapshot %s: %s", self._bundle.data_version, error)
        if error:
            self._on_failure()
        self.last_error = error

    def age_days(self) -> int:
        """Calendar days between the served rows' as-of date and today (UTC)."""
        today = datetime.fromtimestamp(self._clock(), UTC).date()
        return (today - self._bundle.as_of.date()).days

    @property
    def stale(self) -> bool:
        """True when a maximum age is set and the served rows are older than it."""
        return 0 < self.settings.max_age_days < self.age_days()

    def status(self) -> dict[str, Any]:
        """What ``GET /model`` shows of the data served."""
        bundle = self._bundle
        return {
            "version": bundle.data_version,
            "as_of": bundle.as_of.date(),
            "published_at": bundle.data_published_at or None,
            "following": self.following,
            "refresh_s": self.settings.refresh_s if self.following else None,
            "checked_at": _iso(self.checked_at),
            "last_error": self.last_error or None,
            "age_days": self.age_days(),
            "max_age_days": self.settings.max_age_days or None,
            "stale": self.stale,
        }

    def follow(self, stop: threading.Event) -> None:
        """Refresh at every multiple of ``refresh_s`` of the wall clock until ``stop`` is set."""
        interval = self.settings.refresh_s
        while not stop.wait(interval - self._clock() % interval):
            self.refresh()

    def start(self) -> threading.Event:
        """Read the head now, then follow it on a daemon thread; setting the returned event stops it."""
        stop = threading.Event()
        if self.following:
            self.refresh()
        self._on_served(self._bundle)
        if self.stale:
            logger.warning(
                "the data served (snapshot %s) is as of %s, %d days ago, past the %g days of %s: /readyz answers 503 "
                "until a newer snapshot is served",
                self._bundle.data_version,
                self._bundle.as_of.date(),
                self.age_days(),
                self.settings.max_age_days,
                MAX_AGE_ENV,
            )
        if self.following:
            threading.Thread(target=self.follow, args=(stop,), name="stockcast-data-feed", daemon=True).start()
        return stop


def _iso(timestamp: float | None) -> str | None:
    return None if timestamp is None else datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")


def as_of_timestamp(bundle: ServingBundle) -> float:
    """The served rows' as-of date as a Unix time (midnight UTC), for the ``stockcast_data_as_of`` gauge."""
    return float(pd.Timestamp(bundle.as_of).tz_localize(None).timestamp())
