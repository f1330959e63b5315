"""The training configuration: the bundled file parses, and every invalid setting is refused by field path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stockcast.config import (
    ConfigError,
    OperateConfig,
    TrainConfig,
    load_operate_config,
    load_train_config,
    parse_operate_config,
    parse_train_config,
)
from stockcast.decisions import DecisionRule
from stockcast.models import FACTORIES, expand_candidates
from stockcast.monitoring import MonitorThresholds

BUNDLED_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "train.toml"

# Candidates by index: 0 naive, 1 drift, 2 ridge, 3 catboost.
VALID = """
feature_set = "default"

[backtest]
n_folds = 4
test_days = 63
gap_days = 1
window = "expanding"
min_train_days = 252

[gate]
alpha = 0.05

[[candidates]]
name = "naive"
factory = "naive"

[[candidates]]
name = "drift"
factory = "drift"

[[candidates]]
name = "ridge"
factory = "ridge"
grid = { alpha = [1.0, 10.0] }

[[candidates]]
name = "catboost"
factory = "catboost"
params = { iterations = 50 }
grid = { depth = [4, 6] }
"""


def test_bundled_config_parses_into_a_plain_json_serialisable_dict() -> None:
    parsed = parse_train_config(BUNDLED_CONFIG.read_text(encoding="utf-8"))

    assert json.loads(json.dumps(parsed)) == parsed
    assert TrainConfig.model_validate(parsed) == load_train_config(BUNDLED_CONFIG)


def test_bundled_config_declares_the_required_zoo_with_a_sane_catboost() -> None:
    config = load_train_config(BUNDLED_CONFIG)
    factories = {candidate.factory for candidate in config.candidates}
    catboost = next(candidate for candidate in config.candidates if candidate.factory == "catboost")

    assert {"naive", "drift", "ridge", "catboost"} <= factories
    assert factories & {"hist_gradient_boosting"}
    assert catboost.params["thread_count"] >= 1
    assert catboost.params["iterations"] <= 500
    assert max(catboost.grid.get("depth", [catboost.params.get("depth", 6)])) <= 6
    assert len(expand_candidates(config)) >= 5


def test_parsed_config_survives_metaflows_config_value_wrapper() -> None:
    from metaflow.user_configs.config_parameters import ConfigValue

    parsed = parse_train_config(VALID)

    assert TrainConfig.model_validate(ConfigValue(parsed)) == TrainConfig.model_validate(parsed)


def test_normalisation_fills_defaults_and_turns_integer_floats_into_floats() -> None:
    parsed = parse_train_config(VALID.replace("alpha = [1.0, 10.0]", "alpha = [1, 10]"))

    assert parsed["candidates"][2]["grid"]["alpha"] == [1.0, 10.0]
    assert isinstance(parsed["candidates"][2]["grid"]["alpha"][0], float)
    assert parsed["gate"]["min_days"] == 20
    assert parsed["seed"] == 0


@pytest.mark.parametrize(
    ("old", "new", "path", "fragment"),
    [
        ('feature_set = "default"', 'feature_set = "default"\nfeature_sets = "x"', "feature_sets", "Extra inputs"),
        ("n_folds = 4", "n_fold = 4", "backtest.n_fold", "Extra inputs"),
        ("n_folds = 4", "n_folds = 0", "backtest.n_folds", "greater than 0"),
        ("test_days = 63", 'test_days = "63"', "backtest.test_days", "valid integer"),
        ("gap_days = 1", "gap_days = 0", "backtest.gap_days", "greater than or equal to 1"),
        ('window = "expanding"', 'window = "sliding"', "backtest.window", "'expanding' or 'rolling'"),
        ('window = "expanding"', 'window = "rolling"', "backtest.train_days", "needs train_days"),
        ("min_train_days = 252", "min_train_days = 252\ntrain_days = 300", "backtest.train_days", "only to window"),
        ("alpha = 0.05", "alpha = 0.5", "gate.alpha", "less than 0.5"),
        ("alpha = 0.05", "alpha = 0.0", "gate.alpha", "greater than 0"),
        ('name = "drift"', 'name = "naive"', "candidates[1].name", "duplicate candidate name 'naive'"),
        ('name = "drift"', 'name = "Drift"', "candidates[1].name", "should match pattern"),
        ('factory = "naive"', 'factory = "drift"', "candidates", "exactly one candidate must use factory 'naive'"),
        ('factory = "ridge"', 'factory = "ridgee"', "candidates[2].factory", "known factories: catboost, drift,"),
        ("alpha = [1.0, 10.0]", "alpha = []", "candidates[2].grid.alpha", "at least 1 item"),
        ("alpha = [1.0, 10.0]", "alpha = [1.0, 1]", "candidates[2].grid.alpha", "repeats a value"),
        ("alpha = [1.0, 10.0]", "alpha = [1.0, -2.0]", "candidates[2].grid.alpha[1]", "greater than 0"),
        ("alpha = [1.0, 10.0]", "alpha = 1.0", "candidates[2].grid.alpha", "valid list"),
        ("depth = [4, 6]", "dept = [4, 6]", "candidates[3].grid.dept", "known: depth, iterations, l2_leaf_reg"),
        ("depth = [4, 6]", 'depth = [4, "six"]', "candidates[3].grid.depth[1]", "valid integer"),
        ("depth = [4, 6]", "depth = [4, 6.5]", "candidates[3].grid.depth[1]", "valid integer"),
        ("iterations = 50", "iterations = 0", "candidates[3].params.iterations", "greater than or equal to 1"),
        ("iterations = 50", "iteration = 50", "candidates[3].params.iteration", "unknown hyper-parameter"),
        ("iterations = 50", "depth = 5", "candidates[3].grid.depth", "both a fixed param and a grid key"),
        ('factory = "drift"', 'factory = "drift"\ngrid = { alpha = [1.0] }', "candidates[1].grid.alpha", "known: none"),
    ],
)
def test_every_invalid_setting_is_refused_naming_its_field(old: str, new: str, path: str, fragment: str) -> None:
    assert old in VALID, "the case must change the valid configuration"
    parse_train_config(VALID)  # the unchanged configuration is valid, so the error comes from the change

    with pytest.raises(ConfigError) as raised:
        parse_train_config(VALID.replace(old, new, 1))

    message = str(raised.value)
    assert f"\n  {path}: " in message
    assert fragment in message


def test_every_registered_factory_can_be_named_in_the_config() -> None:
    candidates = "".join(
        f'\n[[candidates]]\nname = "{name}"\nfactory = "{name}"\n' for name in FACTORIES if name != "naive"
    )
    head = VALID.split("[[candidates]]", maxsplit=1)[0]
    text = head + '[[candidates]]\nname = "naive"\nfactory = "naive"\n' + candidates

    assert [candidate["factory"] for candidate in parse_train_config(text)["candidates"]] == list(FACTORIES)


def test_invalid_toml_is_reported_as_a_config_error() -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        parse_train_config("feature_set = ")


# --- The operations configuration (configs/operate.toml) -------------------------------------------------------

BUNDLED_OPERATE_CONFIG = BUNDLED_CONFIG.with_name("operate.toml")

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
