"""Serve a branch's champion (or another registered version) on this machine: ``python -m stockcast.deploy serve``.

The Bento is imported from the registry's archive when this machine's BentoML store lacks it, so any machine that
sees the datastore can serve any promoted version; its archive and bundle are checked against the sha256 digests the
registry recorded before anything is imported or served (``stockcast.deploy.package.registered_bento``).
"""

from __future__ import annotations

import os
import sys

from stockcast.core.errors import UserError
from stockcast.core.registry import Registry, RegistryError
from stockcast.core.runs import user_branch
from stockcast.deploy.config import DEPLOY_CONFIG_FILE, Strategy, load_deploy_config
from stockcast.deploy.manifests import STRATEGIES, Release, image_of, render_phases, rollout_phases
from stockcast.deploy.package import registered_bento
from stockcast.deploy.targets import DeployError, bentoml_serve_command, served_model_tag
from stockcast.serve.bundle import MODEL_TAG_ENV, ArtefactIntegrityError


def serve_command(registry: Registry, version: str | None, *, host: str, port: int) -> tuple[list[str], str]:
    """The ``bentoml serve`` command for the Bento of ``version`` (default: the champion) and the model tag it
    serves; the Bento is imported from the registry's archive when this machine's BentoML store lacks it.
    ``DeployError`` says what is missing, ``ArtefactIntegrityError`` what differs from the recorded digests."""
    version = registry.get(version).version if version else registry.require_champion().version
    bento_tag = registered_bento(registry, version)
    return bentoml_serve_command(bento_tag, host=host, port=port), served_model_tag(bento_tag)


def print_manifests(config_path: str, version: str, live: str | None, strategy: Strategy | None) -> int:
    """Print the phases of a Kubernetes roll-out of ``version`` replacing ``live``; 1 with the reason when the
    configuration cannot say how (no ``[kubernetes]`` section, an invalid file)."""
    try:
        config = load_deploy_config(config_path)
    except UserError as exc:
        print(f"stockcast.deploy: {exc}", file=sys.stderr)
        return 1
    if config.kubernetes is None:
        print(f"stockcast.deploy: {config_path} has no [kubernetes] section (image, namespace, name)", file=sys.stderr)
        return 1
    settings, environment = config.kubernetes, config.data.feed_settings().environment()
    phases = rollout_phases(
        strategy or config.rollout_strategy,
        settings,
        config.rollout,
        Release(version, image_of(settings, version), environment),
        Release(live, image_of(settings, live), environment) if live else None,
    )
    print(render_phases(phases), end="")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m stockcast.deploy serve``: serve a branch's champion (or another version) on this machine;
    ``python -m stockcast.deploy manifests``: print the Kubernetes manifests of a roll-out."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m stockcast.deploy", description=main.__doc__)
    parser.add_argument("--branch", default=None, help="@project branch (default: your user branch, user.<name>)")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run `bentoml serve` on a model's Bento until interrupted")
    serve.add_argument("--version", default=None, help="registry version to serve (default: the champion)")
    serve.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: loopback only)")
    serve.add_argument("--port", type=int, default=3000)
    manifests = commands.add_parser(
        "manifests", help="print the Kubernetes manifests of a roll-out, phase by phase (stockcast.deploy.manifests)"
    )
    manifests.add_argument("--version", required=True, help="model version to roll out, e.g. v1796...")
    manifests.add_argument("--live", default=None, help="model version serving now (default: none, a first roll-out)")
    manifests.add_argument("--strategy", default=None, choices=STRATEGIES, help="default: the configuration's")
    manifests.add_argument("--config", default=str(DEPLOY_CONFIG_FILE), help="deploy configuration TOML")
    args = parser.parse_args(argv)
    if args.command == "manifests":
        return print_manifests(args.config, args.version, args.live, args.strategy)

    registry = Registry(args.branch or user_branch())
    try:
        command, model_tag = serve_command(registry, args.version, host=args.host, port=args.port)
    except (DeployError, RegistryError, UserError, ArtefactIntegrityError) as exc:
        print(f"stockcast.deploy: {exc}", file=sys.stderr)
        return 1
    bento_tag = command[command.index("serve") + 1]
    print(f"Serving {bento_tag} ({model_tag}) at http://{args.host}:{args.port}", flush=True)
    os.execve(sys.executable, command, {**os.environ, MODEL_TAG_ENV: model_tag})
