"""The engines configuration: the shipped file names real flows and steps, every invalid setting is refused by field
path, and a step's resources are the default, then its flow's, then its own (what ``@engines`` applies; the Argo
compile check in tests/workflows reads them back from the compiled workflows)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from stockcast.core.config import ConfigError
from stockcast.core.engines import (
    ENGINES_CONFIG_FILE,
    FLOW_NAMES,
    EnginesConfig,
    load_engines_config,
    parse_engines_config,
)

FLOWS_DIR = Path(__file__).resolve().parents[3] / "flows"

VALID = """
engine = "kubernetes"

[resources]
cpu = 2
memory = 5000

[flows.TrainFlow]
gpu_steps = ["backtest", "refit"]

[flows.TrainFlow.resources]
memory = 6000

[flows.TrainFlow.steps.backtest]
cpu = 4
disk = 20000
"""


def flow_steps() -> dict[str, set[str]]:
    """The steps of every flow class in flows/*.py, read from the source (methods decorated with ``@step``)."""
    steps: dict[str, set[str]] = {}
    for path in sorted(FLOWS_DIR.glob("*.py")):
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.ClassDef):
                steps[node.name] = {
                    method.name
                    for method in node.body
                    if isinstance(method, ast.FunctionDef)
                    and any(isinstance(d, ast.Name) and d.id == "step" for d in method.decorator_list)
                }
    return steps


def test_the_known_flows_are_the_flows_of_the_flows_folder() -> None:
    assert set(FLOW_NAMES) == set(flow_steps())


def test_the_shipped_file_is_local_and_names_only_steps_its_flows_have() -> None:
    config = load_engines_config(ENGINES_CONFIG_FILE)

    assert config.engine == "local"
    for flow, steps in flow_steps().items():
        config.check_steps(flow, steps)  # raises naming any step a flow does not have
    assert config.flows["TrainFlow"].gpu_steps == ["backtest", "refit"]


def test_a_step_gets_the_default_then_its_flows_then_its_own_resources() -> None:
    config = EnginesConfig.model_validate(parse_engines_config(VALID))

    assert config.step_resources("IngestFlow", "start") == {"cpu": 2, "memory": 5000}
    assert config.step_resources("TrainFlow", "start") == {"cpu": 2, "memory": 6000}
    assert config.step_resources("TrainFlow", "backtest") == {"cpu": 4, "memory": 6000, "disk": 20000}


def test_gpu_steps_get_a_gpu_only_when_the_flow_asks_for_one() -> None:
    config = EnginesConfig.model_validate(parse_engines_config(VALID))

    assert "gpu" not in config.step_resources("TrainFlow", "backtest")
    assert config.step_resources("TrainFlow", "backtest", gpu=True)["gpu"] == 1
    assert config.step_resources("TrainFlow", "refit", gpu=True)["gpu"] == 1
    assert "gpu" not in config.step_resources("TrainFlow", "select", gpu=True)
    more = parse_engines_config(VALID + "gpu = 2\n")  # appended to the backtest step's table
    assert EnginesConfig.model_validate(more).step_resources("TrainFlow", "backtest", gpu=True)["gpu"] == 2


def test_a_step_the_flow_does_not_have_is_named_with_the_flows_steps() -> None:
    config = EnginesConfig.model_validate(parse_engines_config(VALID))
    steps = {"start", "features", "backtest", "select", "end"}  # no "refit"

    with pytest.raises(ConfigError) as raised:
        config.check_steps("TrainFlow", steps)

    message = str(raised.value)
    assert "flows.TrainFlow.gpu_steps[1]: TrainFlow has no step 'refit'" in message
    assert "(TrainFlow's steps: backtest, end, features, select, start)" in message
    assert "backtest'" not in message


@pytest.mark.parametrize(
    ("old", "new", "path", "fragment"),
    [
        ('engine = "kubernetes"', 'engine = "docker"', "engine", "'local', 'kubernetes' or 'batch'"),
        ('engine = "kubernetes"', 'engines = "kubernetes"', "engines", "Extra inputs"),
        ("cpu = 2", "cpu = -2", "resources.cpu", "greater than 0"),
        ("cpu = 2", "cpu = 2.5", "resources.cpu", "valid integer"),
        ("memory = 5000", "memory = 0", "resources.memory", "greater than 0"),
        ("memory = 5000", "memory = 5000\ngpu = -1", "resources.gpu", "greater than or equal to 0"),
        ("memory = 5000", "memory = 5000\nram = 1", "resources.ram", "Extra inputs"),
        ("[flows.TrainFlow]\n", "[flows.TrainFlo]\n", "flows.TrainFlo", "unknown flow 'TrainFlo'; known flows:"),
        ("cpu = 4", "cpu = -4", "flows.TrainFlow.steps.backtest.cpu", "greater than 0"),
        ("disk = 20000", "disks = 20000", "flows.TrainFlow.steps.backtest.disks", "Extra inputs"),
        ('"backtest", "refit"', '"backtest", "Refit"', "flows.TrainFlow.gpu_steps[1]", "should match pattern"),
        ("memory = 6000", "memory = -6000", "flows.TrainFlow.resources.memory", "greater than 0"),
    ],
)
def test_every_invalid_setting_is_refused_naming_its_field(old: str, new: str, path: str, fragment: str) -> None:
    assert old in VALID, "the case must change the valid configuration"

    with pytest.raises(ConfigError) as raised:
        parse_engines_config(VALID.replace(old, new, 1))

    message = str(raised.value)
    assert message.startswith("invalid engines configuration:")
    assert f"\n  {path}: " in message
    assert fragment in message
