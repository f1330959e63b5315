"""Roll-out strategies carried out on this machine: replicas of a Bento behind the reverse proxy.

``LocalFleet`` is the ``local`` deploy target. Callers use the proxy's address (``NginxProxy``); behind it run
``replicas`` servers of the live version, each ``bentoml serve`` on a loopback port of its own. ``deploy`` replaces
the live version with another by the configured strategy:

- ``recreate``: route nothing, stop the old replicas, start the new ones, check them, route them. The time without
  a version, the downtime, is measured and reported (``Switch.downtime_s``).
- ``rolling``: one replica at a time: start a new one, check it, route it in place of an old one, stop the old one.
  Never fewer than ``replicas`` serve.
- ``blue-green``: start every new replica beside the old ones, check them through the preview address, switch the
  route in one reload, and watch the new version for ``rollout.keep_warm_s`` with the old one still running (and
  answering, as the proxy's backup, any request the new one fails): a bad turn switches straight back.
- ``canary``: start the new replicas, check them through the preview address, then send them ``rollout.canary_steps``
  percent of requests in turn, each for ``rollout.step_s``, judging each step by the new replicas' own ``/metrics``
  (error rate and p99 latency over the step) and checking their predictions again; the last step routes everything
  to them and stops the old replicas.
- ``shadow``: start the new replicas, check them through the preview address, then mirror every live request to
  them for ``rollout.step_s`` (the proxy discards their answers; callers get the old version's), judging them by
  their ``/metrics`` as a canary step is judged, and checking their predictions again; then switch as blue-green
  does. Each replica logs its answers to ``replica-<n>/predictions`` (``stockcast.serve.prediction_log``): the record
  of what was answered live, the shadow's discarded answers included.

Any failure (a replica that does not start, a check that fails, errors or latency over ``rollout.max_error_rate`` or
``rollout.max_p99_ms``) rolls back: the old version is routed again (restarted where rolling had already stopped
some), the new replicas are stopped, and ``DeployError`` says what failed. A request that meets a failing replica is
retried by the proxy on another one, so callers see the old version's answers throughout.

A fleet survives the process driving it. With a work folder of its own (``local_fleet``'s default is one per proxy
port), it writes what runs to ``fleet.json`` at every step: the live version's replicas and the replicas of a switch
under way, each by address, pid and start time; nginx and the replicas run in sessions of their own, so they outlive
a driver killed half way. The next fleet on that folder ``recover``s: it adopts nginx (no new process, callers keep
the address), stops the replicas of the interrupted switch, keeps the live version's replicas that still answer,
starts the missing ones and routes them: the interrupted switch is undone, and the next ``deploy`` carries it out
again from the start. ``fleet.lock`` keeps a second driver off a fleet that one drives already.
"""

from __future__ import annotations

import fcntl
import itertools
import json
import os
import signal
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Protocol

import httpx
import psutil
from prometheus_client.parser import text_string_to_metric_families

from stockcast.deploy.config import EXECUTED, DataSettings, LocalSettings, RolloutSettings, SmokeSettings, Strategy
from stockcast.deploy.proxy import Backend, NginxProxy, Routes, weighted
from stockcast.deploy.targets import DeployError, DeployTarget, LocalServe, is_ready
from stockcast.serve.prediction_log import PREDICTION_LOG_ENV

PREDICT_ENDPOINT = "/predict"
"""The API whose traffic judges a new version."""


class Replica(Protocol):
    """A running server of one version, reachable at ``endpoint``."""

    endpoint: str

    def stop(self) -> None:
        """Stop it; doing so twice does nothing."""


STATE_FILE = "fleet.json"
LOCK_FILE = "fleet.lock"

StartReplica = Callable[[str], Replica]
"""Start a replica of a Bento and return it once ready; ``DeployError`` when it cannot start."""
CheckVersion = Callable[[str, str], None]
"""``(endpoint, bento_tag)``: ``DeployError`` unless the service at ``endpoint`` answers as ``bento_tag`` should."""


@dataclass(frozen=True)
class Traffic:
    """What a replica's ``/metrics`` counted of ``/predict``: requests, server errors, and the latency histogram as
    (upper bound in seconds, cumulative count) pairs."""

    requests: float = 0.0
    errors: float = 0.0
    buckets: tuple[tuple[float, float], ...] = ()

    def __add__(self, other: Traffic) -> Traffic:
        bounds = sorted({bound for bound, _ in self.buckets} | {bound for bound, _ in other.buckets})
        mine, theirs = dict(self.buckets), dict(other.buckets)
        return Traffic(
            self.requests + other.requests,
            self.errors + other.errors,
            tuple((bound, mine.get(bound, 0.0) + theirs.get(bound, 0.0)) for bound in bounds),
        )

    def __sub__(self, earlier: Traffic) -> Traffic:
        before = dict(earlier.buckets)
        return Traffic(
            self.requests - earlier.requests,
            self.errors - earlier.errors,
            tuple((bound, count - before.get(bound, 0.0)) for bound, count in self.buckets),
        )

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    def p99_ms(self) -> float:
        """The upper bound of the histogram bucket holding the 99th percentile, in milliseconds (0 without
        requests)."""
        total = self.buckets[-1][1] if self.buckets else 0.0
        if not total:
            return 0.0
        bound = next(bound for bound, count in self.buckets if count >= 0.99 * total)
        return 1000 * bound


def read_traffic(endpoint: str, timeout: float = 5.0) -> Traffic:
    """The ``/predict`` traffic a BentoML server counted (its Prometheus ``/metrics``); ``DeployError`` when it does
    not answer."""
    try:
        answer = httpx.get(f"{endpoint}/metrics", timeout=timeout)
        answer.raise_for_status()
    except httpx.HTTPError as exc:
        raise DeployError(f"{endpoint}/metrics did not answer: {exc}") from exc
    requests = errors = 0.0
    buckets: dict[float, float] = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            if sample.labels.get("endpoint") != PREDICT_ENDPOINT:
                continue
            if sample.name.endswith("request_total"):
                requests += sample.value
                errors += sample.value if sample.labels.get("http_response_code", "").startswith("5") else 0.0
            elif sample.name.endswith("request_duration_seconds_bucket"):
                bound = float(sample.labels["le"])
                buckets[bound] = buckets.get(bound, 0.0) + sample.value
    return Traffic(requests, errors, tuple(sorted(buckets.items())))


def fleet_traffic(replicas: Sequence[Replica]) -> Traffic:
    """The traffic of several replicas together."""
    total = Traffic()
    for replica in replicas:
        total = total + read_traffic(replica.endpoint)
    return total


@dataclass(frozen=True)
class Switch:
    """What a roll-out did: the strategy, from which Bento to which, how long it took, how long nothing served
    (recreate), its steps with their times since the start, and why it was rolled back (None when it was not)."""

    strategy: str
    bento_tag: str
    previous: str | None
    seconds: float
    downtime_s: float = 0.0
    steps: tuple[tuple[str, float], ...] = ()
    rolled_back: str | None = None

    def describe(self) -> str:
        """The switch for people: what replaced what, how long it took and its steps, one per line."""
        outcome = f"rolled back: {self.rolled_back}" if self.rolled_back else f"downtime {self.downtime_s:.2f} s"
        head = f"{self.strategy}: {self.previous or 'nothing'} -> {self.bento_tag} in {self.seconds:.1f} s, {outcome}"
        return "\n".join([head, *(f"  {at:7.2f} s  {step}" for step, at in self.steps)])


@dataclass
class Serving:
    """The replicas of one version."""

    bento_tag: str
    replicas: list[Replica] = field(default_factory=list)


@dataclass(frozen=True)
class ReplicaState:
    """A replica as ``fleet.json`` records it: where it answers, and its process (pid and start time, so that a pid
    reused by another process is never mistaken for it)."""

    endpoint: str
    pid: int
    created: float

    @classmethod
    def of(cls, replica: Replica) -> ReplicaState | None:
        """The record of a replica that runs as a process of its own (None for one that does not)."""
        pid = getattr(replica, "pid", None)
        if pid is None:
            return None
        try:
            return cls(replica.endpoint, pid, psutil.Process(pid).create_time())
        except psutil.Error:
            return None

    def process(self) -> psutil.Process | None:
        """Its process, while it runs."""
        try:
            process = psutil.Process(self.pid)
            running = process.create_time() == self.created and process.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return None
        return process if running else None


class AdoptedReplica:
    """A replica an earlier driver of the fleet started and left running."""

    def __init__(self, state: ReplicaState) -> None:
        self.endpoint, self.pid, self._state = state.endpoint, state.pid, state

    def stop(self) -> None:
        """Stop its process group (gracefully, then for good after 10 s); nothing when it is gone already."""
        stop_group(self._state)


def stop_group(state: ReplicaState, timeout: float = 10.0) -> None:
    """Stop the process group ``state``'s process leads: SIGTERM, then SIGKILL after ``timeout`` seconds."""
    process = state.process()
    if process is None:
        return
    for sent in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(state.pid, sent)
            process.wait(timeout=timeout)
            return
        except (ProcessLookupError, psutil.NoSuchProcess):
            return
        except psutil.TimeoutExpired:
            continue


class LocalFleet(DeployTarget):
    """``replicas`` servers of the live version behind ``proxy``, replaced by ``strategy`` on every ``deploy``."""

    def __init__(
        self,
        proxy: NginxProxy,
        start_replica: StartReplica,
        check: CheckVersion,
        *,
        replicas: int,
        strategy: Strategy,
        rollout: RolloutSettings,
        state_dir: Path | None = None,
    ) -> None:
        if strategy not in EXECUTED["local"]:
            raise DeployError(f"strategy {strategy!r} is not carried out on this machine")
        self.proxy, self.start_replica, self.check = proxy, start_replica, check
        self.replicas, self.strategy, self.rollout = replicas, strategy, rollout
        self.live: Serving | None = None
        self.switches: list[Switch] = []
        self._steps: list[tuple[str, float]] = []
        self._started = 0.0
        self._switching: Serving | None = None
        """The replicas started for the switch under way (recorded, so that a later driver can stop them)."""
        self._switch_strategy = ""
        self.state_dir = state_dir
        self._lock: IO[str] | None = None
        if state_dir is not None:
            self._lock = _locked(state_dir)

    def deploy(self, bento_tag: str) -> str:
        """Serve ``bento_tag`` through the proxy by the strategy (just start it when nothing serves yet); the proxy's
        address. Deploying the live version again does nothing. ``DeployError`` after a roll-back, with the old
        version serving."""
        if self.live is not None and self.live.bento_tag == bento_tag:
            return self.proxy.endpoint
        previous = self.live.bento_tag if self.live else None
        self._steps, self._started = [], time.monotonic()
        strategy = self.strategy if self.live is not None else "first start"
        carry_out = {
            "first start": self._first_start,
            "recreate": self._recreate,
            "rolling": self._rolling,
            "blue-green": self._blue_green,
            "canary": self._canary,
            "shadow": self._shadow,
        }[strategy]
        self._switching, self._switch_strategy = Serving(bento_tag), strategy
        self._save()
        try:
            downtime = carry_out(bento_tag)
        except DeployError as exc:
            self._switching = None
            self._save()
            self._record(strategy, bento_tag, previous, rolled_back=str(exc))
            serving = f"{self.live.bento_tag} serves" if self.live else "nothing serves"
            raise DeployError(f"{strategy} roll-out of {bento_tag} rolled back ({serving}): {exc}") from exc
        self._switching = None
        self._save()
        self._record(strategy, bento_tag, previous, downtime_s=downtime)
        return self.proxy.endpoint

    def recover(self) -> Switch | None:
        """Take over what an earlier driver of this fleet left running (see the module's description): adopt nginx,
        undo a switch it left half done, and serve its live version with ``replicas`` replicas again. The recovery,
        as a ``Switch`` (also in ``switches``), or None when nothing was left (no state, or nothing runs)."""
        state = self._read_state()
        if state is None:
            return None
        self._steps, self._started = [], time.monotonic()
        if self.proxy.adopt():
            self._step(f"adopted nginx (pid {self.proxy.pid})")
        switch = state.get("switch")
        if switch:
            for replica in switch["replicas"]:
                stop_group(ReplicaState(**replica))
            self._step(f"stopped {len(switch['replicas'])} replica(s) of the interrupted {switch['strategy']} switch")
        live = state.get("live")
        if not live:
            self._save()
            return None
        kept: list[Replica] = []
        for replica in (ReplicaState(**item) for item in live["replicas"]):
            if replica.process() is not None and is_ready(replica.endpoint):
                kept.append(AdoptedReplica(replica))
            else:
                stop_group(replica)  # hung, or gone already
        self._step(f"adopted {len(kept)} running replica(s) of {live['bento_tag']}")
        self.live = Serving(live["bento_tag"], kept)
        # Replicas started now are recorded as they start, so that a driver killed during the recovery leaves none
        # that the next recovery does not know of.
        self._switching, self._switch_strategy = Serving(live["bento_tag"]), "recovery"
        self._save()
        try:
            self.live.replicas += self._start(live["bento_tag"], max(self.replicas - len(kept), 0))
            self._switching = None
            self._save()
            self._route(self.live.replicas)
        except DeployError as exc:
            self._switching = None
            self._save()
            self._record("recovery", live["bento_tag"], switch["bento_tag"] if switch else None, rolled_back=str(exc))
            raise DeployError(f"recovering the fleet in {self.state_dir} failed: {exc}") from exc
        self._save()
        self._record("recovery", live["bento_tag"], switch["bento_tag"] if switch else None)
        return self.switches[-1]

    def health(self, endpoint: str) -> bool:
        """Whether the proxy and the live replicas answer."""
        return self.live is not None and self.proxy.running() and super().health(endpoint)

    def stop(self) -> None:
        """Stop every replica and the proxy, and let another driver have the fleet."""
        if self.live is not None:
            _stop_all(self.live.replicas)
            self.live = None
        self.proxy.stop()
        self._save()
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    # --- the strategies: each leaves self.live serving, the new version or (after a failure) the old one ----------

    def _first_start(self, bento_tag: str) -> float:
        fresh = self._start(bento_tag, self.replicas)
        self._checked(fresh, bento_tag)
        self._route(fresh)
        self.live = Serving(bento_tag, fresh)
        return 0.0

    def _recreate(self, bento_tag: str) -> float:
        old = self._live()
        self.proxy.route(Routes())
        gone = time.monotonic()
        self._step("stopped the old version")
        _stop_all(old.replicas)
        try:
            fresh = self._start(bento_tag, self.replicas)
            self._checked(fresh, bento_tag)
        except DeployError:
            self.live = Serving(old.bento_tag, self._start(old.bento_tag, self.replicas))
            self._route(self.live.replicas)
            raise
        self._route(fresh)
        self.live = Serving(bento_tag, fresh)
        return time.monotonic() - gone

    def _rolling(self, bento_tag: str) -> float:
        old = self._live()
        remaining, fresh = list(old.replicas), []
        try:
            for number in range(1, self.replicas + 1):
                replica = self._start(bento_tag, 1)
                self._checked(replica, bento_tag)
                fresh += replica
                retired = remaining.pop(0) if remaining else None
                self._route(remaining + fresh)
                self._step(f"replica {number} of {self.replicas} replaced")
                if retired is not None:
                    retired.stop()
                    self.live = Serving(old.bento_tag, list(remaining))
                    self._save()
        except DeployError:
            restored = self._start(old.bento_tag, self.replicas - len(remaining)) if fresh else []
            self._route(remaining + restored)
            _stop_all(fresh)
            self.live = Serving(old.bento_tag, remaining + restored)
            raise
        _stop_all(remaining)
        self.live = Serving(bento_tag, fresh)
        return 0.0

    def _blue_green(self, bento_tag: str) -> float:
        blue = self._live()
        green = self._start(bento_tag, self.replicas)
        self._previewed(green, bento_tag, blue)
        baseline = fleet_traffic(green)
        # Blue stays routed as a backup while green is watched: a request green fails is answered by blue.
        backups = tuple(Backend(_address(replica), backup=True) for replica in blue.replicas)
        self.proxy.route(Routes(live=_backends(green) + backups))
        self._step("switched to green")
        try:
            self._watch(green, baseline, self.rollout.keep_warm_s)
        except DeployError:
            self._fall_back(blue, green, "switched back to blue")
            raise
        self._take_over(bento_tag, green, blue)
        return 0.0

    def _canary(self, bento_tag: str) -> float:
        stable = self._live()
        canary = self._start(bento_tag, self.replicas)
        self._previewed(canary, bento_tag, stable)
        addresses = [_address(replica) for replica in canary]
        stable_addresses = [_address(replica) for replica in stable.replicas]
        try:
            for percent in self.rollout.canary_steps[:-1]:
                baseline = fleet_traffic(canary)
                shares = weighted(addresses, stable_addresses, percent)
                self.proxy.route(Routes(live=shares, preview=_backends(canary)))
                self._step(f"{percent}% to the canary")
                self._watch(canary, baseline, self.rollout.step_s)
                self.check(self.proxy.preview_endpoint, bento_tag)  # its predictions, again, under load
        except DeployError:
            self._fall_back(stable, canary, "all back to the stable version")
            raise
        self._take_over(bento_tag, canary, stable, "100% to the canary")
        return 0.0

    def _shadow(self, bento_tag: str) -> float:
        live = self._live()
        shadow = self._start(bento_tag, self.replicas)
        self._previewed(shadow, bento_tag, live)
        baseline = fleet_traffic(shadow)
        self.proxy.route(Routes(live=_backends(live.replicas), preview=_backends(shadow), shadow=_backends(shadow)))
        self._step("mirroring every request to the shadow")
        try:
            self._watch(shadow, baseline, self.rollout.step_s)
            self.check(self.proxy.preview_endpoint, bento_tag)  # its predictions, again, after the mirrored load
        except DeployError:
            self._fall_back(live, shadow, "stopped mirroring")
            raise
        self._take_over(bento_tag, shadow, live, "switched to the shadow")
        return 0.0

    # --- helpers --------------------------------------------------------------------------------------------------

    def _live(self) -> Serving:
        assert self.live is not None
        return self.live

    def _fall_back(self, old: Serving, fresh: list[Replica], what: str) -> None:
        """Route ``old`` alone again and stop ``fresh``: how the strategies that run both versions side by side (blue-
        green, canary, shadow) roll back."""
        self._route(old.replicas)
        self._step(what)
        _stop_all(fresh)

    def _take_over(self, bento_tag: str, fresh: list[Replica], old: Serving, what: str = "") -> None:
        """Route ``fresh`` alone, stop ``old``, and make ``fresh`` the live version: how they end."""
        self._route(fresh)
        if what:
            self._step(what)
        _stop_all(old.replicas)
        self.live = Serving(bento_tag, fresh)

    def _start(self, bento_tag: str, count: int) -> list[Replica]:
        started: list[Replica] = []
        try:
            for _ in range(count):
                started.append(self.start_replica(bento_tag))
                if self._switching is not None:
                    self._switching.replicas.append(started[-1])
                    self._save()
        except DeployError:
            _stop_all(started)
            raise
        if count:
            self._step(f"started {count} replica(s) of {bento_tag}")
        return started

    def _checked(self, replicas: list[Replica], bento_tag: str) -> None:
        """Check each new replica where it listens; on failure stop them."""
        try:
            for replica in replicas:
                self.check(replica.endpoint, bento_tag)
        except DeployError:
            _stop_all(replicas)
            raise

    def _previewed(self, fresh: list[Replica], bento_tag: str, live: Serving) -> None:
        """Route ``fresh`` to the preview address and check it there; on failure stop it."""
        try:
            self.proxy.route(Routes(live=_backends(live.replicas), preview=_backends(fresh)))
            self.check(self.proxy.preview_endpoint, bento_tag)
        except DeployError:
            self.proxy.route(Routes(live=_backends(live.replicas)))
            _stop_all(fresh)
            raise
        self._step("checked through the preview address")

    def _watch(self, replicas: list[Replica], baseline: Traffic, seconds: float) -> None:
        """Judge ``replicas`` every second for ``seconds`` on their traffic since ``baseline``; ``DeployError`` as
        soon as their error rate or p99 latency is over the limits."""
        deadline = time.monotonic() + seconds
        while True:
            time.sleep(min(1.0, max(deadline - time.monotonic(), 0.0)))
            seen = fleet_traffic(replicas) - baseline
            if seen.error_rate > self.rollout.max_error_rate:
                raise DeployError(
                    f"{seen.errors:g} of {seen.requests:g} requests failed ({seen.error_rate:.1%} > "
                    f"rollout.max_error_rate {self.rollout.max_error_rate:.1%})"
                )
            if seen.p99_ms() > self.rollout.max_p99_ms:
                limit = self.rollout.max_p99_ms
                raise DeployError(f"p99 latency {seen.p99_ms():.0f} ms > rollout.max_p99_ms {limit:g}")
            if time.monotonic() >= deadline:
                return

    def _route(self, replicas: Sequence[Replica]) -> None:
        self.proxy.route(Routes(live=_backends(replicas)))

    def _save(self) -> None:
        """Write what runs to ``fleet.json`` (atomically): the live replicas and those of the switch under way."""
        if self.state_dir is None:
            return

        def described(serving: Serving | None) -> dict | None:
            if serving is None:
                return None
            replicas = [asdict(state) for state in map(ReplicaState.of, serving.replicas) if state is not None]
            return {"bento_tag": serving.bento_tag, "replicas": replicas}

        switch = described(self._switching)
        if switch is not None:
            switch["strategy"] = self._switch_strategy
        state = {"live": described(self.live), "switch": switch}
        partial = self.state_dir / f".{STATE_FILE}.partial"
        partial.write_text(json.dumps(state, indent=1))
        partial.replace(self.state_dir / STATE_FILE)

    def _read_state(self) -> dict | None:
        if self.state_dir is None:
            return None
        try:
            return json.loads((self.state_dir / STATE_FILE).read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            path = self.state_dir / STATE_FILE
            raise DeployError(f"{path} cannot be read ({exc}); stop the processes it names by hand") from exc

    def _step(self, what: str) -> None:
        self._steps.append((what, round(time.monotonic() - self._started, 3)))

    def _record(
        self,
        strategy: str,
        bento_tag: str,
        previous: str | None,
        *,
        downtime_s: float = 0.0,
        rolled_back: str | None = None,
    ) -> None:
        seconds = time.monotonic() - self._started
        self.switches.append(
            Switch(strategy, bento_tag, previous, seconds, downtime_s, tuple(self._steps), rolled_back)
        )


def _locked(folder: Path) -> IO[str]:
    """The fleet's lock file, held: ``DeployError`` naming the holder when another process drives the fleet."""
    folder.mkdir(parents=True, exist_ok=True)
    lock = (folder / LOCK_FILE).open("a+")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        holder = lock.read().strip() or "another process"
        lock.close()
        raise DeployError(f"the fleet in {folder} is driven by {holder} already; stop it first") from None
    lock.seek(0)
    lock.truncate()
    lock.write(f"pid {os.getpid()}")
    lock.flush()
    return lock


def _address(replica: Replica) -> str:
    return replica.endpoint.removeprefix("http://")


def _backends(replicas: Sequence[Replica]) -> tuple[Backend, ...]:
    return tuple(Backend(_address(replica)) for replica in replicas)


def _stop_all(replicas: Sequence[Replica]) -> None:
    for replica in replicas:
        replica.stop()


def local_fleet(
    settings: LocalSettings,
    *,
    strategy: Strategy,
    rollout: RolloutSettings,
    smoke: SmokeSettings,
    data: DataSettings | None = None,
    workdir: Path | None = None,
) -> LocalFleet:
    """The ``local`` target of a deploy configuration: nginx on ``settings.host:port`` (preview on ``preview_port``)
    in front of ``settings.replicas`` servers on loopback, each ``bentoml serve`` with a BentoML home of its own and
    its log and its prediction log in ``workdir``, following newly published data as ``data`` says, each checked by
    the smoke test. ``workdir`` defaults to one folder per proxy port in the system's temporary folder, so the next
    driver of the same fleet finds it: what an earlier driver left running is recovered first (``recover``)."""
    from stockcast.deploy.package import bento_bundle
    from stockcast.deploy.smoke import smoke_test

    feed = (data or DataSettings()).feed_settings()
    workdir = workdir or Path(tempfile.gettempdir()) / f"stockcast-fleet-{settings.port}"
    workdir.mkdir(parents=True, exist_ok=True)
    # Numbered after the replicas of earlier drivers, whose folders may still be in use by adopted replicas.
    earlier = [int(path.stem.removeprefix("replica-")) for path in workdir.glob("replica-*.log")]
    started = itertools.count(max(earlier, default=0) + 1)

    def start_replica(bento_tag: str) -> Replica:
        number = next(started)
        home = workdir / f"replica-{number}"
        replica = LocalServe(
            startup_timeout=settings.startup_timeout_s,
            log_path=workdir / f"replica-{number}.log",
            home=home,
            environment={**feed.environment(), PREDICTION_LOG_ENV: str(home / "predictions")},
        )
        replica.deploy(bento_tag)
        return replica

    proxy = NginxProxy(workdir / "proxy", port=settings.port, preview_port=settings.preview_port, host=settings.host)
    fleet = LocalFleet(
        proxy,
        start_replica,
        lambda endpoint, bento_tag: smoke_test(endpoint, bento_bundle(bento_tag), smoke, feed=feed),
        replicas=settings.replicas,
        strategy=strategy,
        rollout=rollout,
        state_dir=workdir,
    )
    fleet.feed = feed
    fleet.recover()
    return fleet
