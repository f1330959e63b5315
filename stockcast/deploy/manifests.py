"""Kubernetes manifests for every roll-out strategy, as the phases a roll-out applies in order.

A strategy is a sequence of ``Phase``s: objects to apply (``kubectl apply``), objects to delete once the phase is
applied, and the Deployments that must be rolled out before the phase counts as done. Only core Kubernetes kinds are
used (Deployment, Service, Ingress), so every manifest is checked offline against the Kubernetes API's own schemas
(``kubernetes-validate`` in the tests) and applies on any conformant cluster:

- ``recreate``: one Deployment with ``strategy: Recreate`` (every old pod stops before a new one starts: downtime).
- ``rolling``: one Deployment with ``RollingUpdate``, ``maxUnavailable: 0``: never fewer ready pods than asked for.
- ``blue-green``: a Deployment per model version; the new one is reached through the preview Service first, then
  the Service's selector switches to it in one ``apply`` (atomic for new connections); the old Deployment stays for
  ``keep_warm_s`` (rollback is the selector switched back) and is then deleted.
- ``canary``: stable and canary Deployments, each behind its own Service; an Ingress routes to the stable Service,
  and a second Ingress with the NGINX Ingress controller's ``canary-weight`` annotation sends each step's share of
  requests to the canary. The last step points the stable Service at the new version and removes the canary route.
- ``shadow``: the new version runs behind its own Service and the Ingress mirrors every request to it (NGINX's
  ``mirror-target``) for ``step_s``; its answers are discarded, nothing changes for the callers. Then the Service's
  selector switches to it, as blue-green's does, the mirror is removed and the old Deployment deleted.

Canary and shadow routes need the NGINX Ingress controller (the most deployed one); the Gateway API's weighted
``HTTPRoute`` is the portable alternative once a cluster has its CRDs, which the offline validator does not ship.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, get_args

from stockcast.deploy.config import KubernetesSettings, RolloutSettings, Strategy

STRATEGIES: tuple[Strategy, ...] = get_args(Strategy)
VERSION_LABEL = "stockcast/model-version"
NGINX = "nginx.ingress.kubernetes.io"
Manifest = dict[str, Any]


@dataclass(frozen=True)
class Release:
    """A model version, the image that serves it, and the environment its containers get (how they follow newer
    data: ``stockcast.serve.feed``)."""

    version: str
    image: str
    environment: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Phase:
    """One step of a roll-out: apply ``objects``, delete ``deletions`` (``kind/name``), and wait until the
    Deployments in ``rollouts`` are rolled out; ``pause_s`` is how long to watch the result before the next phase
    (a canary step's analysis window, blue's warm period)."""

    name: str
    objects: list[Manifest]
    deletions: list[str] = field(default_factory=list)
    rollouts: list[str] = field(default_factory=list)
    pause_s: float = 0.0


def image_of(settings: KubernetesSettings, version: str) -> str:
    """The image that serves a model version: the configured repository, tagged with the version."""
    return f"{settings.image}:{version}"


def rollout_phases(
    strategy: Strategy,
    settings: KubernetesSettings,
    rollout: RolloutSettings,
    new: Release,
    live: Release | None = None,
) -> list[Phase]:
    """The phases that replace ``live`` (None on a first roll-out) by ``new`` with ``strategy``.

    A first roll-out of a per-version strategy (blue-green, canary, shadow) has nothing to compare with: it starts the
    new version and routes every request to it.
    """
    if strategy in ("recreate", "rolling"):
        deployment = _deployment(settings, new, settings.name, strategy)
        return [Phase("apply", [deployment, _service(settings, settings.name)], rollouts=[settings.name])]
    if live is None or live.version == new.version:
        return [_first_phase(settings, new, strategy)]
    if strategy == "blue-green":
        return _blue_green(settings, rollout, new, live)
    if strategy == "canary":
        return _canary(settings, rollout, new, live)
    return _shadow(settings, rollout, new, live)


def _first_phase(settings: KubernetesSettings, new: Release, strategy: Strategy) -> Phase:
    objects = [_deployment(settings, new, _versioned(settings, new)), _service(settings, settings.name, new)]
    if strategy in ("canary", "shadow"):
        objects.append(_ingress(settings, settings.name, settings.name))
    return Phase("apply", objects, rollouts=[_versioned(settings, new)])


def _blue_green(settings: KubernetesSettings, rollout: RolloutSettings, new: Release, live: Release) -> list[Phase]:
    green, blue, preview = _versioned(settings, new), _versioned(settings, live), f"{settings.name}-preview"
    return [
        Phase("start green", [_deployment(settings, new, green), _service(settings, preview, new)], rollouts=[green]),
        Phase("switch", [_service(settings, settings.name, new)], pause_s=rollout.keep_warm_s),
        Phase("retire blue", [], deletions=[f"deployment/{blue}", f"service/{preview}"]),
    ]


def _canary(settings: KubernetesSettings, rollout: RolloutSettings, new: Release, live: Release) -> list[Phase]:
    canary, stable = _versioned(settings, new), _versioned(settings, live)
    canary_service = f"{settings.name}-canary"
    start = Phase(
        "start canary",
        [
            _deployment(settings, new, canary),
            _service(settings, canary_service, new),
            _ingress(settings, settings.name, settings.name),  # the route the canary's shares are taken from
        ],
        rollouts=[canary],
    )
    steps = [
        Phase(
            f"{weight}% to canary",
            [_ingress(settings, canary_service, canary_service, canary_weight=weight)],
            pause_s=rollout.step_s,
        )
        for weight in rollout.canary_steps
        if weight < 100
    ]
    promote = Phase(
        "promote",
        [_service(settings, settings.name, new)],
        deletions=[f"ingress/{canary_service}", f"service/{canary_service}", f"deployment/{stable}"],
    )
    return [start, *steps, promote]


def _shadow(settings: KubernetesSettings, rollout: RolloutSettings, new: Release, live: Release) -> list[Phase]:
    shadow = f"{settings.name}-shadow"
    mirror = f"http://{shadow}.{settings.namespace}.svc.cluster.local:{settings.port}$request_uri"
    return [
        Phase(
            "start shadow",
            [_deployment(settings, new, _versioned(settings, new)), _service(settings, shadow, new)],
            rollouts=[_versioned(settings, new)],
        ),
        Phase(
            "mirror",
            [_ingress(settings, settings.name, settings.name, mirror_target=mirror)],
            pause_s=rollout.step_s,
        ),
        Phase(
            "switch",
            [_service(settings, settings.name, new), _ingress(settings, settings.name, settings.name)],
            deletions=[f"service/{shadow}", f"deployment/{_versioned(settings, live)}"],
        ),
    ]


def _versioned(settings: KubernetesSettings, release: Release) -> str:
    """The name of a version's own Deployment (a DNS label: at most 63 characters)."""
    return f"{settings.name}-{release.version}"[:63].rstrip("-").lower()


def _labels(settings: KubernetesSettings, release: Release | None = None) -> dict[str, str]:
    labels = {"app.kubernetes.io/name": settings.name, "app.kubernetes.io/part-of": "stockcast"}
    return {**labels, VERSION_LABEL: release.version} if release else labels


def _deployment(settings: KubernetesSettings, release: Release, name: str, strategy: Strategy = "rolling") -> Manifest:
    selector = {"app.kubernetes.io/name": settings.name}
    if name != settings.name:  # a version's own Deployment selects only its pods
        selector = {**selector, VERSION_LABEL: release.version}
    labels = _labels(settings, release)
    container = {
        "name": "bento",
        "image": release.image,
        "ports": [{"name": "http", "containerPort": 3000}],
        **(
            {"env": [{"name": n, "value": v} for n, v in sorted(release.environment.items())]}
            if release.environment
            else {}
        ),
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http"}, "periodSeconds": 5},
        "livenessProbe": {"httpGet": {"path": "/livez", "port": "http"}, "periodSeconds": 10},
        "resources": {"requests": {"cpu": settings.cpu, "memory": settings.memory}},
    }
    update = (
        {"type": "Recreate"}
        if strategy == "recreate"
        # Never fewer ready pods than asked for: a new version that never gets ready leaves the old serving.
        else {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}
    )
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": settings.namespace, "labels": labels},
        "spec": {
            "replicas": settings.replicas,
            "selector": {"matchLabels": selector},
            "strategy": update,
            "template": {"metadata": {"labels": dict(labels)}, "spec": {"containers": [container]}},
        },
    }


def _service(settings: KubernetesSettings, name: str, release: Release | None = None) -> Manifest:
    """A Service named ``name`` on the pods of ``release`` (of any version when None)."""
    selector = {"app.kubernetes.io/name": settings.name}
    if release is not None:
        selector = {**selector, VERSION_LABEL: release.version}
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": settings.namespace, "labels": _labels(settings)},
        "spec": {"selector": selector, "ports": [{"name": "http", "port": settings.port, "targetPort": "http"}]},
    }


def _ingress(
    settings: KubernetesSettings,
    name: str,
    service: str,
    *,
    canary_weight: int | None = None,
    mirror_target: str | None = None,
) -> Manifest:
    annotations: dict[str, str] = {}
    if canary_weight is not None:
        annotations = {f"{NGINX}/canary": "true", f"{NGINX}/canary-weight": str(canary_weight)}
    if mirror_target is not None:
        annotations = {f"{NGINX}/mirror-target": mirror_target}
    backend = {"service": {"name": service, "port": {"number": settings.port}}}
    rule: Manifest = {"http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": backend}]}}
    if settings.host:
        rule = {"host": settings.host, **rule}
    metadata: Manifest = {"name": name, "namespace": settings.namespace, "labels": _labels(settings)}
    if annotations:
        metadata["annotations"] = annotations
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": metadata,
        "spec": {"ingressClassName": settings.ingress_class, "rules": [rule]},
    }


def render_phases(phases: list[Phase]) -> str:
    """The phases as one YAML stream, each object under a comment naming its phase and what follows it; what
    ``python -m stockcast.deploy manifests`` prints for a CD system or a reviewer."""
    import yaml

    parts = []
    for number, phase in enumerate(phases, start=1):
        then = [f"wait for rollout of deployment/{name}" for name in phase.rollouts]
        then += [f"delete {name}" for name in phase.deletions]
        if phase.pause_s:
            then.append(f"watch for {phase.pause_s:g} s")
        header = f"# phase {number}: {phase.name}" + (f" (then: {'; '.join(then)})" if then else "")
        body = yaml.safe_dump_all(phase.objects, sort_keys=False) if phase.objects else ""
        parts.append(f"{header}\n{body}".rstrip())
    return "\n---\n".join(parts) + "\n"
