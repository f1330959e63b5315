"""Roll a branch's champion out to where it serves, smoke-test it there, and roll back when the smoke test fails.

    stockcast-rollout [--branch prod] [--config configs/deploy.toml]

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

import sys
import time
from dataclasses import dataclass, replace

from stockcast.core.errors import UserError
from stockcast.core.registry import Registry, RegistryError
from stockcast.core.runs import user_branch
from stockcast.deploy.config import DEPLOY_CONFIG_FILE, SmokeSettings, load_deploy_config, with_strategy
from stockcast.deploy.fleet import LocalFleet
from stockcast.deploy.package import bento_bundle, registered_bento
from stockcast.deploy.smoke import smoke_test
from stockcast.deploy.targets import DeployError, DeployTarget, build_target
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
    smoke_test(endpoint, bundle, smoke)
    return RolloutResult(registry.branch, version, bento_tag, endpoint)


def main(argv: list[str] | None = None) -> int:
    """``stockcast-rollout``: deploy a branch's champion to the configured target, smoke-test it, roll back on failure.

    Exit status 0 when the champion serves, 1 when it failed and the previous champion serves instead, 2 when no
    smoke-tested model could be left serving.
    """
    import argparse

    parser = argparse.ArgumentParser(prog="stockcast-rollout", description=main.__doc__)
    parser.add_argument("--branch", default=None, help="@project branch (default: your user branch; CD uses prod)")
    parser.add_argument(
        "--config", default=str(DEPLOY_CONFIG_FILE), help="deploy configuration TOML (target, smoke test)"
    )
    parser.add_argument("--strategy", default=None, help="recreate, rolling, blue-green or canary (default: config's)")
    args = parser.parse_args(argv)

    try:
        config = load_deploy_config(args.config)
        if args.strategy:
            config = with_strategy(config, args.strategy)
        target = build_target(config)
        result = rollout(Registry(args.branch or user_branch()), target, config.smoke)
    except (UserError, DeployError, RolloutError, RegistryError) as exc:
        print(f"stockcast-rollout: {exc}", file=sys.stderr)
        return 2
    if isinstance(target, LocalFleet):
        for switch in target.switches:
            print(switch.describe())
    serving = f"{result.model_version} ({result.bento_tag}) serves at {result.endpoint}"
    if result.rolled_back:
        print(f"stockcast-rollout: {result.failure}", file=sys.stderr)
        print(f"Rolled back branch {result.branch}: {serving}")
    else:
        print(f"Branch {result.branch}: champion {serving}")
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


if __name__ == "__main__":
    raise SystemExit(main())
