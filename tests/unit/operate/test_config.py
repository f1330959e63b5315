"""The operations configuration (``configs/operate.toml``): the bundled file states the defaults, and every invalid
setting is refused by field path."""

from __future__ import annotations

import json

import pytest

from stockcast.core.config import ConfigError
from stockcast.operate.config import OPERATE_CONFIG_FILE, OperateConfig, load_operate_config, parse_operate_config
from stockcast.operate.decisions import DecisionRule
from stockcast.operate.monitoring import MonitorThresholds

BUNDLED_OPERATE_CONFIG = OPERATE_CONFIG_FILE
OPERATE = """
[decisions]
cost_bps = 10.0
threshold_bps = 0.0
max_positions = 10
max_weight = 0.1
allow_short = false

[monitor]
window_days = 20
min_days = 5
max_rmse_vs_naive = 1.02
psi_threshold = 0.25
max_drifted_share = 0.25
max_data_age_days = 4
"""


def test_bundled_operate_config_states_the_defaults() -> None:
    parsed = parse_operate_config(BUNDLED_OPERATE_CONFIG.read_text(encoding="utf-8"))

    assert json.loads(json.dumps(parsed)) == parsed
    assert load_operate_config(BUNDLED_OPERATE_CONFIG) == OperateConfig()
    assert OperateConfig.model_validate(parsed).decisions == DecisionRule()


def test_an_empty_operate_config_is_all_defaults_and_survives_metaflows_wrapper() -> None:
    from metaflow.user_configs.config_parameters import ConfigValue

    parsed = parse_operate_config("")

    assert OperateConfig.model_validate(ConfigValue(parsed)) == OperateConfig()
    assert parsed["monitor"]["window_days"] == MonitorThresholds().window_days


def test_integers_are_accepted_for_float_settings() -> None:
    parsed = parse_operate_config(OPERATE.replace("cost_bps = 10.0", "cost_bps = 5"))

    assert parsed["decisions"]["cost_bps"] == 5.0
    assert isinstance(parsed["decisions"]["cost_bps"], float)


@pytest.mark.parametrize(
    ("old", "new", "path", "fragment"),
    [
        ("[decisions]", "[decision]", "decision", "Extra inputs"),
        ("cost_bps = 10.0", "cost_bp = 10.0", "decisions.cost_bp", "Extra inputs"),
        ("cost_bps = 10.0", "cost_bps = -1.0", "decisions.cost_bps", "greater than or equal to 0"),
        ("cost_bps = 10.0", 'cost_bps = "10"', "decisions.cost_bps", "valid number"),
        ("threshold_bps = 0.0", "threshold_bps = -5.0", "decisions.threshold_bps", "greater than or equal to 0"),
        ("max_positions = 10", "max_positions = 0", "decisions.max_positions", "greater than 0"),
        ("max_positions = 10", "max_positions = 2.5", "decisions.max_positions", "valid integer"),
        ("max_weight = 0.1", "max_weight = 1.5", "decisions.max_weight", "less than or equal to 1"),
        ("allow_short = false", 'allow_short = "no"', "decisions.allow_short", "valid boolean"),
        ("window_days = 20", "window_days = 0", "monitor.window_days", "greater than 0"),
        ("min_days = 5", "min_days = 21", "monitor.min_days", "must not exceed window_days (20)"),
        ("max_rmse_vs_naive = 1.02", "max_rmse_vs_naive = 0.0", "monitor.max_rmse_vs_naive", "greater than 0"),
        ("psi_threshold = 0.25", "psi_threshold = -0.1", "monitor.psi_threshold", "greater than 0"),
        ("max_drifted_share = 0.25", "max_drifted_share = 2.0", "monitor.max_drifted_share", "less than or equal"),
        ("max_data_age_days = 4", "max_data_age_day = 4", "monitor.max_data_age_day", "Extra inputs"),
    ],
)
def test_every_invalid_operate_setting_is_refused_naming_its_field(
    old: str, new: str, path: str, fragment: str
) -> None:
    assert old in OPERATE, "the case must change the valid configuration"
    parse_operate_config(OPERATE)

    with pytest.raises(ConfigError) as raised:
        parse_operate_config(OPERATE.replace(old, new, 1))

    message = str(raised.value)
    assert message.startswith("invalid operations configuration:")
    assert f"\n  {path}: " in message
    assert fragment in message


def test_invalid_operate_toml_is_reported_as_a_config_error() -> None:
    with pytest.raises(ConfigError, match="operations configuration is not valid TOML"):
        parse_operate_config("[monitor")
