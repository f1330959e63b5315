"""The training configuration: the bundled file parses, and every invalid setting is refused by field path."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from stockcast.core.config import ConfigError
from stockcast.train.candidates import naive_spec
from stockcast.train.config import (
    TRAIN_CONFIG_FILE,
    TrainConfig,
    asks_for_gpu,
    load_train_config,
    parse_train_config,
)
from stockcast.train.factories import FACTORIES
from tests.harness import REPO_ROOT

BUNDLED_CONFIG = TRAIN_CONFIG_FILE

# Candidates by index: 0 naive, 1 drift, 2 ridge, 3 catboost.
VALID = """
feature_set = "full"

[backtest]
n_folds = 4
test_days = 63
gap_days = 1
window = "expanding"
min_train_days = 252

[gate]
alpha = 0.05

[plan]
tickers_per_shard = 250
folds_per_task = 2

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
    assert len(config.candidate_specs()) >= 5


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
    without_plan = parse_train_config(VALID.replace("[plan]\ntickers_per_shard = 250\nfolds_per_task = 2\n", ""))
    assert without_plan["plan"] == {"tickers_per_shard": 250, "folds_per_task": 1}


@pytest.mark.parametrize(
    ("old", "new", "path", "fragment"),
    [
        ('feature_set = "full"', 'feature_set = "full"\nfeature_sets = "x"', "feature_sets", "Extra inputs"),
        ('feature_set = "full"', 'feature_set = "fundamentals"', "feature_set", "unknown feature set 'fundamentals'"),
        ("n_folds = 4", "n_fold = 4", "backtest.n_fold", "Extra inputs"),
        ("n_folds = 4", "n_folds = 0", "backtest.n_folds", "greater than 0"),
        ("test_days = 63", 'test_days = "63"', "backtest.test_days", "valid integer"),
        ("gap_days = 1", "gap_days = 0", "backtest.gap_days", "greater than or equal to 1"),
        (
            "gap_days = 1",
            "gap_days = 1\nmax_train_rows = 500",
            "backtest.max_train_rows",
            "greater than or equal to 1000",
        ),
        ('window = "expanding"', 'window = "sliding"', "backtest.window", "'expanding' or 'rolling'"),
        ('window = "expanding"', 'window = "rolling"', "backtest.train_days", "needs train_days"),
        ("min_train_days = 252", "min_train_days = 252\ntrain_days = 300", "backtest.train_days", "only to window"),
        ("alpha = 0.05", "alpha = 0.5", "gate.alpha", "less than 0.5"),
        ("alpha = 0.05", "alpha = 0.0", "gate.alpha", "greater than 0"),
        ("tickers_per_shard = 250", "tickers_per_shard = 0", "plan.tickers_per_shard", "greater than 0"),
        ("tickers_per_shard = 250", "ticker_per_shard = 250", "plan.ticker_per_shard", "Extra inputs"),
        ("folds_per_task = 2", "folds_per_task = 1.5", "plan.folds_per_task", "valid integer"),
        ("folds_per_task = 2", "folds_per_task = -1", "plan.folds_per_task", "greater than 0"),
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
        ("iterations = 50", 'task_type = "gpu"', "candidates[3].params.task_type", "'CPU' or 'GPU'"),
        ("iterations = 50", 'task_type = "TPU"', "candidates[3].params.task_type", "'CPU' or 'GPU'"),
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


@pytest.mark.parametrize(
    ("catboost_params", "gpu"),
    [
        ("iterations = 50", False),
        ('iterations = 50, task_type = "CPU"', False),
        ('iterations = 50, task_type = "GPU"', True),
    ],
)
def test_a_catboost_candidate_may_ask_for_a_gpu(catboost_params: str, gpu: bool) -> None:
    parsed = parse_train_config(VALID.replace("iterations = 50", catboost_params))

    assert asks_for_gpu(parsed) is gpu


def test_a_gpu_in_the_grid_asks_for_a_gpu_too() -> None:
    parsed = parse_train_config(VALID.replace("depth = [4, 6]", 'depth = [4, 6], task_type = ["CPU", "GPU"]'))

    assert asks_for_gpu(parsed)
    assert [spec.candidate_id for spec in TrainConfig.model_validate(parsed).candidate_specs()][-1] == (
        "catboost[depth=6,task_type=GPU]"
    )


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


def test_grid_expansion_gives_every_setting_a_stable_readable_id() -> None:
    config = TrainConfig.model_validate(
        {
            "seed": 3,
            "candidates": [
                {"name": "naive", "factory": "naive"},
                {
                    "name": "cb",
                    "factory": "catboost",
                    "params": {"iterations": 50},
                    "grid": {"learning_rate": [0.1, 0.05], "depth": [4, 6]},
                },
            ],
        }
    )

    specs = config.candidate_specs()

    assert [spec.candidate_id for spec in specs] == [
        "naive",
        "cb[depth=4,learning_rate=0.1]",
        "cb[depth=4,learning_rate=0.05]",
        "cb[depth=6,learning_rate=0.1]",
        "cb[depth=6,learning_rate=0.05]",
    ]
    assert specs[2].params == {"iterations": 50, "depth": 4, "learning_rate": 0.05}
    assert {spec.random_seed for spec in specs} == {3}
    assert config.candidate_specs() == specs
    assert naive_spec(specs) is specs[0]


def test_validating_a_configuration_imports_no_model_library():
    """Every process of a TrainFlow run validates its configuration, and most fit nothing: scikit-learn and CatBoost
    (about a second to import) wait for the steps that fit."""
    script = (
        "import sys\n"
        "from stockcast.train.config import load_train_config\n"
        "load_train_config(sys.argv[1])\n"
        "print(sorted(name for name in ('sklearn', 'catboost', 'stockcast.train.zoo') if name in sys.modules))\n"
    )
    shipped = str(REPO_ROOT / "configs" / "train.toml")
    done = subprocess.run([sys.executable, "-c", script, shipped], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]", done.stdout + done.stderr
