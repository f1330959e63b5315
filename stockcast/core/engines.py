"""Where each step of each flow runs, and with what resources: the engines configuration (``configs/engines.toml``)
and the ``@engines`` flow mutator that applies it.

Every flow carries ``@engines`` and reads the file through Metaflow's ``Config("engines")`` (declared once, on
``stockcast.flowbase.StockcastFlow``). When a run or a deployment starts, the mutator gives every step
``@resources`` (cpu, memory, disk, gpu: default, then the flow's, then the step's own), and, when ``engine`` is
``kubernetes`` or ``batch``, the compute decorator of that name. ``@resources`` does nothing on a local run, so the
shipped file (``engine = "local"``) leaves local runs as they were; ``argo-workflows create`` puts every step on
Kubernetes with these resources whatever the engine.

Another file is chosen with Metaflow's own option, ``python flows/train.py --config engines remote.toml ...``, like
every configuration of this project: the value is then stored with the run and frozen into a deployed workflow, so
that the tasks on a pod, which apply the mutator again, see the same file as the command that started them (an
environment variable would be read again on each pod, where it is not set). What is written on the command line
wins over the file: ``--with resources:...`` or ``--with kubernetes:...`` replace what the file would add.

GPUs: a flow may pass ``@engines(gpu=...)``, a flag computed from its own configuration (TrainFlow: whether a
candidate asks for ``task_type = "GPU"``); the steps its section lists as ``gpu_steps`` then get at least one GPU.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, Self

from metaflow import FlowMutator
from metaflow.user_decorators.mutable_flow import MutableFlow
from pydantic import Field, NonNegativeInt, PositiveInt, StringConstraints, field_validator

from stockcast.core.config import CONFIG_DIR, ConfigError, Settings, as_stored, invalid, load_settings, parse_settings
from stockcast.core.runs import FLOW_CLASSES

ENGINES_CONFIG_FILE = CONFIG_DIR / "engines.toml"
"""The default engines configuration: every step local, Metaflow's default resources, the heavy steps larger."""
ENGINES_CONFIG = "engines"
"""The name of the flows' ``Config`` holding it: ``--config engines FILE`` chooses another file."""
SOURCE = "engines configuration"
FLOW_NAMES = tuple(FLOW_CLASSES.values())
"""The flows of ``flows/`` (a unit test keeps the list equal to their classes)."""
Engine = Literal["local", "kubernetes", "batch"]
StepName = Annotated[str, StringConstraints(pattern=r"^[a-z_][a-z0-9_]*$", max_length=64)]


class Resources(Settings):
    """What every step gets unless its flow or itself says otherwise (Metaflow's ``@resources`` defaults)."""

    cpu: PositiveInt = 1
    memory: PositiveInt = 4096
    """MB."""
    disk: PositiveInt | None = None
    """MB; unset leaves the engine's default."""
    gpu: NonNegativeInt = 0


class ResourceOverrides(Settings):
    """Resources of one flow or one step: what is set replaces the value it would otherwise inherit."""

    cpu: PositiveInt | None = None
    memory: PositiveInt | None = None
    disk: PositiveInt | None = None
    gpu: NonNegativeInt | None = None

    def set_values(self) -> dict[str, int]:
        """The values this block sets."""
        return {key: value for key, value in self.model_dump().items() if value is not None}


class FlowEngines(Settings):
    """One flow's section: resources for all its steps, per step, and which steps may use a GPU."""

    resources: ResourceOverrides = Field(default_factory=ResourceOverrides)
    steps: dict[StepName, ResourceOverrides] = Field(default_factory=dict)
    gpu_steps: list[StepName] = Field(default_factory=list)
    """The steps that get one GPU (at least) when the flow asks for GPUs (``@engines(gpu=...)``)."""


class EnginesConfig(Settings):
    """The whole engines configuration: one engine for every step, default resources and per-flow sections."""

    engine: Engine = "local"
    resources: Resources = Field(default_factory=Resources)
    flows: dict[str, FlowEngines] = Field(default_factory=dict)

    @field_validator("flows")
    @classmethod
    def _flows_exist(cls, flows: dict[str, FlowEngines]) -> dict[str, FlowEngines]:
        for name in flows:
            if name not in FLOW_NAMES:
                raise invalid(f"unknown flow {name!r}; known flows: {', '.join(FLOW_NAMES)}", name)
        return flows

    def check_steps(self, flow: str, steps: set[str]) -> Self:
        """This configuration, after checking that every step named in ``flow``'s section is one of its ``steps``;
        ``ConfigError`` naming each that is not (a renamed step must not silently lose its resources)."""
        section = self.flows.get(flow, FlowEngines())
        named = [(f"flows.{flow}.steps.{step}", step) for step in section.steps]
        named += [(f"flows.{flow}.gpu_steps[{index}]", step) for index, step in enumerate(section.gpu_steps)]
        problems = [f"{at}: {flow} has no step {step!r}" for at, step in named if step not in steps]
        if problems:
            known = ", ".join(sorted(steps))
            raise ConfigError(f"invalid {SOURCE}:\n  " + "\n  ".join(problems) + f"\n  ({flow}'s steps: {known})")
        return self

    def step_resources(self, flow: str, step: str, *, gpu: bool = False) -> dict[str, int]:
        """The ``@resources`` arguments of one step: the defaults, then the flow's, then the step's own; a GPU step
        of a flow that asks for GPUs gets at least one. Unset disk and zero GPUs are left out (engine defaults)."""
        section = self.flows.get(flow, FlowEngines())
        values: dict[str, Any] = self.resources.model_dump()
        values |= section.resources.set_values()
        values |= section.steps.get(step, ResourceOverrides()).set_values()
        if gpu and step in section.gpu_steps:
            values["gpu"] = max(values["gpu"], 1)
        return {key: value for key, value in values.items() if value}


def parse_engines_config(text: str) -> dict[str, Any]:
    """TOML text validated into the normalised plain dict Metaflow stores: the parser of the flows' ``engines``
    ``Config``. Raises ``ConfigError`` listing every problem with its field path."""
    return as_stored(parse_settings(text, EnginesConfig, source=SOURCE))


def load_engines_config(path: str | Path = ENGINES_CONFIG_FILE) -> EnginesConfig:
    """The typed engines configuration of a TOML file (for tools and tests)."""
    return load_settings(path, EnginesConfig, source=SOURCE)


class engines(FlowMutator):  # noqa: N801 -- a decorator, named like Metaflow's (`@project`, `@trigger`)
    """Give every step of the flow the ``@resources`` and the compute engine of the engines configuration.

    ``@engines`` or ``@engines(gpu=...)``: with ``gpu`` true, the steps the flow's section lists as ``gpu_steps`` get
    a GPU. Decorators already on a step (from the command line's ``--with``) are kept: the file only fills in.
    """

    def init(self, *, gpu: bool = False) -> None:
        """Record whether the flow asks for GPUs (a value, or a ``config_expr`` Metaflow has resolved); Metaflow
        calls it, without arguments for a bare ``@engines``."""
        self.gpu = gpu

    def mutate(self, mutable_flow: MutableFlow) -> None:
        """Add the decorators, once the command line (and its ``--with`` decorators) is known."""
        configs = dict(mutable_flow.configs)
        if configs.get(ENGINES_CONFIG) is None:
            raise ConfigError(f"@engines needs the flow's Config({ENGINES_CONFIG!r}): derive it from StockcastFlow")
        flow = self._flow_cls.__name__  # the class being run, set by FlowMutator when it decorated it
        steps = dict(mutable_flow.steps)
        settings = EnginesConfig.model_validate(configs[ENGINES_CONFIG].to_dict()).check_steps(flow, set(steps))
        for name, step in steps.items():
            step.add_decorator(
                "resources", deco_kwargs=settings.step_resources(flow, name, gpu=self.gpu), duplicates=step.IGNORE
            )
            if settings.engine != "local":
                step.add_decorator(settings.engine, duplicates=step.IGNORE)
