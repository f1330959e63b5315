"""Roll a branch's champion out to where it serves, smoke-test it there, and roll back when the smoke test fails.

    stockcast-rollout [--branch prod] [--config configs/deploy.toml] [--strategy rolling] [--follow]

With ``--follow`` it keeps the champion serving: every version that becomes champion later (a retrain promoted it,
wherever it ran; someone rolled back) is rolled out by the configured strategy, so deployment follows promotions
rather than pushes.

``rollout`` deploys the champion's Bento (imported from its archive in the object store, so any machine can do it)
to the ``DeployTarget`` the deploy configuration names (``stockcast.deploy.targets``) and smoke-tests the endpoint it
serves at (``stockcast.deploy.smoke``). When that fails, the registry is rolled back (``Registry.rollback``: the
champion the failed one replaced is champion again, with the reason in the history) and the previous champion's Bento
is deployed and smoke-tested in its place: production keeps serving a model that passed, and the run fails loudly.

Before anything is deployed, the Bento's archive and bundle are checked against the sha256 digests the registry
recorded when the deploy step exported them (``registered_bento``). A version that fails that check is refused
without a rollback: nothing was deployed, so what served before still serves, and the model itself did not fail; its
artefact was changed in the store, which calls for a person, not for a registry change that whoever can write the
store could then provoke at will.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

from stockcast.core.errors import UserError
from stockcast.core.registry import Registry, RegistryError
from stockcast.core.runs import user_branch
from stockcast.deploy.config import DEPLOY_CONFIG_FILE, DeployConfig, SmokeSettings, load_deploy_config, with_strategy
from stockcast.deploy.fleet import LocalFleet, local_fleet
from stockcast.deploy.package import bento_bundle, registered_bento
from stockcast.deploy.smoke import smoke_test
from stockcast.deploy.targets import (
    ENDPOINT_ENV,
    BentoCloud,
    DeployError,
    DeployTarget,
    KubernetesManifest,
)
from stockcast.serve.bundle import ArtefactIntegrityError


class RolloutError(RuntimeError):
    """A rollout could not leave a smoke-tested model serving; the message says what happened to each version."""


@dataclass(frozen=True)
class RolloutResult:
    """What serves after a rollout, and, when it was rolled back, the version that failed and why."""

    branch: str
    model_version: str
    bento_tag: str
    endpoint: str
    failed_version: str | None = None
    failure: str | None = None

    @property
    def rolled_back(self) -> bool:
        """Whether the champion failed its smoke test and the previous one serves instead."""
        return self.failed_version is not None


def build_target(config: DeployConfig, environ: Mapping[str, str] = os.environ) -> DeployTarget:
    """The target the configuration names, with its endpoint or secrets from ``environ``."""
    if config.target == "local":
        return local_fleet(
            config.local, strategy=config.rollout_strategy, rollout=config.rollout, smoke=config.smoke, data=config.data
        )
    if config.target == "bentocloud":
        return BentoCloud(config.bentocloud, config.rollout_strategy)
    endpoint = environ.get(ENDPOINT_ENV, "")
    if not endpoint:
        raise DeployError(f"target 'kubernetes' needs {ENDPOINT_ENV}: the URL the deployment answers at")
    return KubernetesManifest(
        config.kubernetes,
        endpoint=endpoint,
        strategy=config.rollout_strategy,
        environment=config.data.feed_settings().environment(),
    )


def rollout(registry: Registry, target: DeployTarget, smoke: SmokeSettings | None = None) -> RolloutResult:
    """Deploy the champion of ``registry`` to ``target`` and smoke-test it; on failure roll the registry back and
    deploy the previous champion instead.

    Returns what serves afterwards. ``RolloutError`` when no smoke-tested model could be left serving (no champion,
    no Bento recorded for it, or the previous champion failing too), and when the champion's Bento fails its digest
    check: then nothing is deployed and the registry is not rolled back (see the module's docstring).
    """
    smoke = smoke or SmokeSettings()
    champion = registry.champion_version()
    if champion is None:
        raise RolloutError(f"branch {registry.branch} has no champion to roll out")
    try:
        return _deploy(registry, champion, target, smoke)
    except ArtefactIntegrityError as exc:
        raise RolloutError(
            f"rollout of {champion} refused: {exc}\nNothing was deployed and the registry was not rolled back."
        ) from exc
    except DeployError as exc:
        failure = f"rollout of {champion} failed: {exc}"
    try:
        event = registry.rollback(reason=failure)
    except RegistryError as exc:
        raise RolloutError(f"{failure}\nand it cannot be rolled back: {exc}") from exc
    try:
        previous = _deploy(registry, event.version, target, smoke)
    except (DeployError, ArtefactIntegrityError) as exc:
        raise RolloutError(
            f"{failure}\nThe registry was rolled back to {event.version}, whose redeployment failed too: {exc}"
        ) from exc
    return replace(previous, failed_version=champion, failure=failure)


def _deploy(registry: Registry, version: str, target: DeployTarget, smoke: SmokeSettings) -> RolloutResult:
    """Deploy the Bento of ``version`` to ``target`` and smoke-test it there.

    Its archive and bundle are checked against the registry's digests first, and the bundle the smoke test compares
    with is read from the checked bytes, so an ``ArtefactIntegrityError`` always means that nothing was deployed.
    """
    bento_tag = registered_bento(registry, version)
    bundle = bento_bundle(bento_tag, sha256=registry.bento(version)["bundle_sha256"])
    endpoint = target.deploy(bento_tag)
    smoke_test(endpoint, bundle, smoke, feed=target.feed)
    return RolloutResult(registry.branch, version, bento_tag, endpoint)


def follow(
    registry: Registry,
    target: DeployTarget,
    smoke: SmokeSettings,
    *,
    poll_s: float,
    keep_going: Callable[[], bool],
    report: Callable[[RolloutResult | RolloutError], None],
    roll_out: Callable[[Registry, DeployTarget, SmokeSettings], RolloutResult] = rollout,
) -> None:
    """Keep the branch's champion serving: roll it out, then every version that becomes champion after it (promoted
    by a retrain wherever it ran, or by hand; rolled back), checking the registry every ``poll_s`` seconds while
    ``keep_going()``. Each outcome goes to ``report``. A version whose roll-out failed is not tried again: the
    registry has been rolled back, or nothing could serve, which ``report`` says."""
    served: str | None = None
    while keep_going():
        champion = registry.champion_version()
        if champion is not None and champion != served:
            try:
                result = roll_out(registry, target, smoke)
            except RolloutError as exc:
                report(exc)
                served = champion
            else:
                report(result)
                served = result.model_version
        time.sleep(poll_s)


def main(argv: list[str] | None = None) -> int:
    """``stockcast-rollout``: deploy a branch's champion to the configured target, smoke-test it, roll back on failure;
    with ``--follow``, keep doing so for every new champion until interrupted.

    Exit status 0 when the champion serves, 1 when it failed and the previous champion serves instead, 2 when no
    smoke-tested model could be left serving (or the configuration is wrong).
    """
    import argparse

    parser = argparse.ArgumentParser(prog="stockcast-rollout", description=main.__doc__)
    parser.add_argument("--branch", default=None, help="@project branch (default: your user branch; CD uses prod)")
    parser.add_argument(
        "--config", default=str(DEPLOY_CONFIG_FILE), help="deploy configuration TOML (target, smoke test)"
    )
    parser.add_argument(
        "--strategy", default=None, help="recreate, rolling, blue-green, canary or shadow (default: config's)"
    )
    parser.add_argument(
        "--follow", action="store_true", help="keep serving, and roll out every new champion until interrupted"
    )
    parser.add_argument("--poll-s", type=float, default=30.0, help="with --follow: seconds between registry checks")
    args = parser.parse_args(argv)

    try:
        config = load_deploy_config(args.config)
        if args.strategy:
            config = with_strategy(config, args.strategy)
        target = build_target(config)
        registry = Registry(args.branch or user_branch())
    except (UserError, DeployError, RegistryError) as exc:
        print(f"stockcast-rollout: {exc}", file=sys.stderr)
        return 2
    printed = _Printer(target)
    # Ctrl-C, and a service manager's stop, stop what it started: SIGINT too, which a shell's background job (`&`
    # without job control) inherits as ignored, and the follower would then outlive its caller with its servers.
    for stop_signal in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stop_signal, _interrupted)
    if args.follow:
        try:
            print(
                f"Following the champion of branch {registry.branch} (every {args.poll_s:g} s) until interrupted.",
                flush=True,
            )
            follow(registry, target, config.smoke, poll_s=args.poll_s, keep_going=lambda: True, report=printed)
        except KeyboardInterrupt:
            pass
        finally:
            target.stop()
        return 0
    try:
        result = rollout(registry, target, config.smoke)
    except (DeployError, RolloutError, RegistryError) as exc:
        print(f"stockcast-rollout: {exc}", file=sys.stderr)
        return 2
    printed(result)
    if config.target == "local":
        print("Serving on this machine until interrupted (Ctrl-C).", flush=True)
        try:
            while target.health(result.endpoint):
                time.sleep(1.0)
        except KeyboardInterrupt:
            pass
        finally:
            target.stop()
    return 1 if result.rolled_back else 0


def _interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


class _Printer:
    """Prints what a roll-out did: the local target's new switches step by step, then what serves."""

    def __init__(self, target: DeployTarget) -> None:
        self.target, self.shown = target, 0

    def __call__(self, outcome: RolloutResult | RolloutError) -> None:
        switches = self.target.switches if isinstance(self.target, LocalFleet) else []
        for switch in switches[self.shown :]:
            print(switch.describe())
        self.shown = len(switches)
        if isinstance(outcome, RolloutError):
            print(f"stockcast-rollout: {outcome}", file=sys.stderr, flush=True)
            return
        serving = f"{outcome.model_version} ({outcome.bento_tag}) serves at {outcome.endpoint}"
        if outcome.rolled_back:
            print(f"stockcast-rollout: {outcome.failure}", file=sys.stderr)
            print(f"Rolled back branch {outcome.branch}: {serving}", flush=True)
        else:
            print(f"Branch {outcome.branch}: champion {serving}", flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
