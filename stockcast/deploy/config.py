"""The deployment configuration (``configs/deploy.toml``): where ``stockcast-rollout`` puts the champion's Bento and
how it smoke-tests it there.

Validated like every configuration (``stockcast.core.config``): strict, every problem named with its field path
(``kubernetes.port: ...``). Environment variables carry only endpoints and secrets: ``STOCKCAST_ENDPOINT`` (the URL a
Kubernetes deployment answers at), ``KUBECONFIG``, ``BENTO_CLOUD_API_KEY`` and ``BENTO_CLOUD_API_ENDPOINT``.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal, Self

from pydantic import (
    Field,
    PositiveFloat,
    PositiveInt,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from stockcast.core.config import (
    CONFIG_DIR,
    ConfigError,
    Settings,
    describe_errors,
    invalid,
    load_settings,
    parse_settings,
)

if TYPE_CHECKING:
    from stockcast.serve.feed import FeedSettings

DEPLOY_CONFIG_FILE = CONFIG_DIR / "deploy.toml"
SOURCE = "deploy configuration"

DnsLabel = Annotated[str, StringConstraints(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63)]
"""A Kubernetes object name (RFC 1123 label), also fine as a BentoCloud deployment name."""


Strategy = Literal["recreate", "rolling", "blue-green", "canary", "shadow"]
"""How a new version replaces the serving one (``stockcast.deploy.manifests`` says what each does)."""
EXECUTED: dict[str, tuple[Strategy, ...]] = {
    "local": ("rolling", "recreate", "blue-green", "canary", "shadow"),
    "kubernetes": ("rolling", "recreate"),
    "bentocloud": ("rolling", "recreate"),
}
"""The strategies each target carries out itself, its default first. Kubernetes manifests of every strategy are
printed by ``python -m stockcast.deploy manifests``."""


class RolloutSettings(Settings):
    """The pace of the gradual strategies."""

    canary_steps: list[Annotated[int, Field(ge=1, le=100)]] = Field(default_factory=lambda: [10, 50, 100])
    """Percent of requests sent to the new version at each canary step, increasing, ending at 100."""
    step_s: PositiveFloat = 60.0
    """How long each canary step is watched before the next."""
    keep_warm_s: Annotated[float, Field(ge=0)] = 300.0
    """Blue-green: how long the old version keeps running after the switch, for an instant rollback."""
    max_error_rate: Annotated[float, Field(ge=0, le=1)] = 0.01
    """A new version whose share of server errors on ``/predict`` exceeds this, while watched, is rolled back."""
    max_p99_ms: PositiveFloat = 1000.0
    """A new version whose p99 latency on ``/predict`` exceeds this, while watched, is rolled back."""

    @field_validator("canary_steps")
    @classmethod
    def _increasing_to_100(cls, steps: list[int]) -> list[int]:
        if not steps or steps[-1] != 100 or any(b <= a for a, b in itertools.pairwise(steps)):
            raise ValueError(f"must increase and end at 100, got {steps}")
        return steps


class SmokeSettings(Settings):
    """What the smoke test asks a fresh deployment (``stockcast.deploy.smoke``)."""

    tickers: PositiveInt = 3
    """Tickers whose predictions must equal, to the last bit, what the library computes from the same model."""
    timeout_s: PositiveFloat = 10.0
    """Per-request timeout."""


class DataSettings(Settings):
    """How running replicas follow newly published data (``stockcast.serve.feed``)."""

    follow: bool = True
    """Swap in each snapshot the model's branch publishes, without a restart; false: serve the deployed rows."""
    refresh_s: PositiveFloat = 10.0
    """Seconds between looks at the branch's snapshot head."""
    max_age_days: Annotated[float, Field(ge=0)] = 0.0
    """``/readyz`` answers 503 once the served data is as of more than this many calendar days ago; 0: never."""
    store: str = ""
    """The object store holding the snapshot heads (a folder, or ``s3://bucket/prefix/stockcast``); empty: the one
    beside the Metaflow datastore configured where the roll-out runs."""

    def feed_settings(self) -> FeedSettings:
        """What a replica is told (as environment variables: ``FeedSettings.environment``), and what the smoke test
        needs to know of the data a replica serves."""
        from stockcast.core.storage import datastore_store
        from stockcast.serve.feed import FeedSettings

        store = (self.store or datastore_store().root) if self.follow else ""
        return FeedSettings(store=store, refresh_s=self.refresh_s, max_age_days=self.max_age_days)


class LocalSettings(Settings):
    """Replicas of ``bentoml serve`` on this machine behind nginx (``stockcast.deploy.fleet``)."""

    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 3000
    """Where callers reach the service (the proxy)."""
    preview_port: Annotated[int, Field(ge=1, le=65535)] = 3001
    """Where a new version is checked before it takes traffic (blue-green, canary)."""
    replicas: PositiveInt = 2
    startup_timeout_s: PositiveFloat = 60.0


class KubernetesSettings(Settings):
    """A Deployment and a Service in one namespace; the image is ``<image>:<model version>``."""

    image: Annotated[str, StringConstraints(min_length=1)]
    """Image repository the Bento's image is pushed to, such as ``ghcr.io/<owner>/stockcast``."""
    build_image: bool = True
    """Build (``bentoml containerize``) and push the image; false when another step already pushed it."""
    namespace: DnsLabel = "stockcast"
    name: DnsLabel = "stockcast"
    replicas: PositiveInt = 2
    port: Annotated[int, Field(ge=1, le=65535)] = 3000
    cpu: str = "1"
    memory: str = "2Gi"
    rollout_timeout_s: PositiveInt = 600
    host: str | None = None
    """The host name the Ingress of the canary and shadow strategies answers to (any host when unset)."""
    ingress_class: DnsLabel = "nginx"
    """The Ingress class of the NGINX Ingress controller, whose annotations weight and mirror requests."""
    ready_timeout_s: PositiveFloat = 120.0
    """How long the endpoint may take to answer ``/readyz`` after the rollout finished (Ingress propagation)."""


class BentoCloudSettings(Settings):
    """A BentoCloud deployment of the Bento."""

    deployment: DnsLabel = "stockcast"
    cluster: str | None = None
    instance_type: str | None = None
    scaling_min: Annotated[int, Field(ge=0)] = 1
    scaling_max: PositiveInt = 2
    ready_timeout_s: PositiveInt = 1800


class DeployConfig(Settings):
    """The target a rollout uses, its settings, and the smoke test."""

    target: Literal["local", "kubernetes", "bentocloud"]
    strategy: Strategy | None = None
    """How a new version replaces the serving one; unset, the target's default (``EXECUTED``)."""
    rollout: RolloutSettings = Field(default_factory=RolloutSettings)
    smoke: SmokeSettings = Field(default_factory=SmokeSettings)
    data: DataSettings = Field(default_factory=DataSettings)
    local: LocalSettings = Field(default_factory=LocalSettings)
    kubernetes: KubernetesSettings | None = None
    bentocloud: BentoCloudSettings = Field(default_factory=BentoCloudSettings)

    @property
    def rollout_strategy(self) -> Strategy:
        """The strategy a roll-out uses: the configured one, or the target's default."""
        return self.strategy or EXECUTED[self.target][0]

    @model_validator(mode="after")
    def _kubernetes_has_its_section(self) -> Self:
        if self.target == "kubernetes" and self.kubernetes is None:
            raise invalid("target 'kubernetes' needs a [kubernetes] section with image", "kubernetes")
        executed = EXECUTED[self.target]
        if self.strategy is not None and self.strategy not in executed:
            raise invalid(
                f"target '{self.target}' carries out {', '.join(executed)} only, not '{self.strategy}'; "
                "print the Kubernetes manifests of any strategy with `python -m stockcast.deploy manifests`",
                "strategy",
            )
        return self


def parse_deploy_config(text: str) -> DeployConfig:
    """Deploy TOML validated; ``ConfigError`` lists every problem with its field path."""
    return parse_settings(text, DeployConfig, source=SOURCE)


def load_deploy_config(path: str | Path = DEPLOY_CONFIG_FILE) -> DeployConfig:
    """A deploy configuration file, validated."""
    return load_settings(path, DeployConfig, source=SOURCE)


def with_strategy(config: DeployConfig, strategy: str) -> DeployConfig:
    """``config`` with another strategy (``stockcast-rollout --strategy``), validated as the file would be."""
    try:
        return DeployConfig.model_validate({**config.model_dump(exclude_unset=True), "strategy": strategy})
    except ValidationError as error:
        raise ConfigError(describe_errors(error, "rollout strategy")) from None
