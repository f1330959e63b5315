"""The deploy configuration: the shipped file serves on loopback, and every invalid setting is refused by field path,
also by ``stockcast-rollout`` before it deploys anything."""

from __future__ import annotations

from pathlib import Path

import pytest

from stockcast.core.config import ConfigError
from stockcast.deploy.config import load_deploy_config, parse_deploy_config
from stockcast.deploy.rollout import main

KUBERNETES = 'target = "kubernetes"\n[kubernetes]\nimage = "ghcr.io/acme/stockcast"\nnamespace = "prod"\nreplicas = 3\n'


def test_the_shipped_configuration_is_valid_and_serves_on_loopback() -> None:
    config = load_deploy_config()
    assert config.target == "local" and config.local.host == "127.0.0.1"
    assert config.smoke.tickers >= 1


def test_configuration_errors_name_every_field() -> None:
    text = 'target = "docker"\n[local]\nport = "3000"\n[smoke]\ntickrs = 2\n'
    with pytest.raises(ConfigError) as error:
        parse_deploy_config(text)
    message = str(error.value)
    assert message.startswith("invalid deploy configuration:")
    assert "target: Input should be 'local', 'kubernetes' or 'bentocloud'" in message
    assert "local.port: Input should be a valid integer" in message
    assert "smoke.tickrs: Extra inputs are not permitted" in message


def test_kubernetes_needs_its_section_and_a_valid_name() -> None:
    with pytest.raises(ConfigError, match=r"target 'kubernetes' needs a \[kubernetes\] section with image"):
        parse_deploy_config('target = "kubernetes"')
    with pytest.raises(ConfigError, match=r"kubernetes\.name: String should match pattern"):
        parse_deploy_config(KUBERNETES + 'name = "Stock_Cast"\n')
    with pytest.raises(ConfigError, match="is not valid TOML"):
        parse_deploy_config("target = ")


def test_the_command_refuses_a_bad_configuration_naming_the_field(tmp_path: Path, capsys) -> None:
    config = tmp_path / "deploy.toml"
    config.write_text('target = "kubernetes"\n[kubernetes]\nimage = "ghcr.io/acme/stockcast"\nreplicas = 0\n')

    assert main(["--branch", "prod", "--config", str(config)]) == 2
    assert (
        f"invalid deploy configuration {config}:\n  kubernetes.replicas: Input should be greater than 0"
        in capsys.readouterr().err
    )
