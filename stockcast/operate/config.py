"""The operations configuration (``configs/operate.toml``): the decision rule and the monitoring thresholds.

BatchPredictFlow and MonitorFlow load it with Metaflow's ``Config("config", parser=parse_operate_config)``; it is
validated like every configuration (``stockcast.core.config``): strict, every problem named with its field path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field

from stockcast.core.config import CONFIG_DIR, Settings, as_stored, load_settings, parse_settings
from stockcast.operate.decisions import DecisionRule
from stockcast.operate.monitoring import MonitorThresholds

OPERATE_CONFIG_FILE = CONFIG_DIR / "operate.toml"
"""BatchPredictFlow's and MonitorFlow's default configuration."""
SOURCE = "operations configuration"


class OperateConfig(Settings):
    """The decision rule (``[decisions]``) and the monitoring thresholds (``[monitor]``)."""

    decisions: DecisionRule = Field(default_factory=DecisionRule)
    monitor: MonitorThresholds = Field(default_factory=MonitorThresholds)


def parse_operate_config(text: str) -> dict[str, Any]:
    """TOML text validated into the normalised plain dict Metaflow stores: the parser of the operation flows'
    ``Config``. Raises ``ConfigError`` listing every problem with its field path."""
    return as_stored(parse_settings(text, OperateConfig, source=SOURCE))


def load_operate_config(path: str | Path = OPERATE_CONFIG_FILE) -> OperateConfig:
    """The typed operations configuration of a TOML file."""
    return load_settings(path, OperateConfig, source=SOURCE)
