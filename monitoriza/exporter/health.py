"""Health dimensions and the health score of each service, computed from probe states.

A flow (docs/flows.md) counts as one more probe of every service it lists.

Pure functions of the probe states and the configuration: no clock, no I/O. The formulas,
with a worked example, are in docs/health-score.md; keep the two in step.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from monitoriza.config.schema import Config, Flow, Health
from monitoriza.exporter.state import ProbeState

DIMENSIONS = ("availability", "latency", "saturation", "errors", "dependencies")
# Only for these kinds does a probe's duration measure the target rather than ourselves.
LATENCY_KINDS = frozenset({"http", "tcp", "redis", "postgres"})
# Worst last: when several probes of one service report the same component, the worst
# status wins. ``unknown`` ranks below ``degraded`` because silence hides real failures.
STATUS_ORDER = ("healthy", "degraded", "unknown", "unhealthy")


@dataclass(frozen=True, slots=True)
class HealthModel:
    """The ``health`` section as plain values, read once rather than per service."""

    weights: Mapping[str, float]
    component_scores: Mapping[str, float]
    latency_target: float
    saturation_warn: float

    @classmethod
    def from_config(cls, health: Health) -> HealthModel:
        return cls(health.weights.model_dump(), health.component_scores.model_dump(),
                   health.latency_target, health.saturation_warn)


@dataclass(frozen=True, slots=True)
class ServiceHealth:
    """The dimensions that have a signal (0..1) and the score (0..100), if any."""

    dimensions: Mapping[str, float]
    score: float | None


def availability(states: Sequence[ProbeState]) -> float | None:
    """Fraction of the service's probes whose last run succeeded."""
    if not states:
        return None
    return sum(1 for state in states if state.outcome.success) / len(states)


def latency_score(latency: float, target: float, limit: float) -> float:
    """1 up to the target, falling linearly to 0 at the limit (the probe's timeout)."""
    if latency <= target:
        return 1.0
    if latency >= limit or limit <= target:
        return 0.0
    return (limit - latency) / (limit - target)


def latency(states: Sequence[ProbeState], default_target: float) -> float | None:
    """The worst latency score among probes that measure a target's response time."""
    scores = []
    for state in states:
        if state.job.kind not in LATENCY_KINDS:
            continue
        outcome = state.outcome
        if outcome.failure_reason == "timeout":
            scores.append(0.0)
            continue
        if not outcome.success:
            continue  # a refused connection says nothing about latency
        seconds = outcome.latency_seconds
        if seconds is None:
            seconds = state.duration_seconds
        target = getattr(state.job.spec, "latency_target", None) or default_target
        scores.append(latency_score(seconds, target, state.job.timeout))
    return min(scores) if scores else None


def saturation_score(utilization: float, warn: float) -> float:
    """1 up to ``warn``, falling linearly to 0 at full use; over-use counts as full."""
    if utilization <= warn:
        return 1.0
    return max(0.0, (1.0 - utilization) / (1.0 - warn))


def saturation(states: Sequence[ProbeState], warn: float) -> float | None:
    """The worst saturation score over every resource the probes report."""
    scores = [saturation_score(value, warn)
              for state in states if state.outcome.success
              for value in state.outcome.utilization.values()]
    return min(scores) if scores else None


def errors(states: Sequence[ProbeState]) -> float | None:
    """1 minus the failure ratio of the recent runs of all the service's probes."""
    runs = [ok for state in states for ok in state.recent_successes]
    if not runs:
        return None
    return sum(runs) / len(runs)


def merge_components(states: Iterable[ProbeState]) -> dict[str, str]:
    """Components reported by any probe of a service; the worst status wins."""
    merged: dict[str, str] = {}
    for state in states:
        for name, status in state.components.items():
            known = merged.get(name)
            if known is None or STATUS_ORDER.index(status) > STATUS_ORDER.index(known):
                merged[name] = status
    return merged


def dependencies(depends_on: Sequence[str], dependency_availability: Mapping[str, float | None],
                 components: Mapping[str, str],
                 component_scores: Mapping[str, float]) -> float | None:
    """The weakest link: the least available dependency or the worst reported component."""
    scores = [value for name in depends_on
              if (value := dependency_availability.get(name)) is not None]
    scores += [component_scores[status] for status in components.values()]
    return min(scores) if scores else None


def weighted_score(dimensions: Mapping[str, float], weights: Mapping[str, float]) -> float | None:
    """0..100: the weighted mean of the dimensions that have a signal, capped by availability.

    The cap keeps a service that is down from scoring well on the dimensions it still has
    (a down service with fine dependencies would otherwise score 65).
    """
    total_weight = sum(weights[name] for name in dimensions)
    if total_weight <= 0:
        return None
    score = 100.0 * sum(weights[name] * value for name, value in dimensions.items()) / total_weight
    if "availability" in dimensions:
        score = min(score, 100.0 * dimensions["availability"])
    return score


def service_health(states: Sequence[ProbeState], depends_on: Sequence[str],
                   dependency_availability: Mapping[str, float | None],
                   model: HealthModel) -> ServiceHealth:
    """All five dimensions (those with a signal) and the score of one service."""
    candidates = {
        "availability": availability(states),
        "latency": latency(states, model.latency_target),
        "saturation": saturation(states, model.saturation_warn),
        "errors": errors(states),
        "dependencies": dependencies(depends_on, dependency_availability,
                                     merge_components(states), model.component_scores),
    }
    dimensions = {name: value for name, value in candidates.items() if value is not None}
    return ServiceHealth(dimensions, weighted_score(dimensions, model.weights))


def states_by_service(config: Config,
                      states: Iterable[ProbeState]) -> dict[str, list[ProbeState]]:
    """Probe states grouped by configured service (services without results get []).

    A flow's state counts once for each service its ``services:`` lists, as one more probe
    of that service: a journey that fails through a service is that service failing a user,
    even while its own probes pass. Its kind (``flow``) keeps it out of the latency
    dimension, and it reports no resources or components.
    """
    by_service: dict[str, list[ProbeState]] = {name: [] for name in config.services}
    for state in states:
        if state.job.service in by_service:
            by_service[state.job.service].append(state)
        elif isinstance(state.job.spec, Flow):
            for service in dict.fromkeys(state.job.spec.services):
                if service in by_service:
                    by_service[service].append(state)
    return by_service


def estate_health(config: Config, states: Iterable[ProbeState]) -> dict[str, ServiceHealth]:
    """Health of every configured service, from the current probe states."""
    by_service = states_by_service(config, states)
    service_availability = {name: availability(found) for name, found in by_service.items()}
    model = HealthModel.from_config(config.health)
    return {
        name: service_health(by_service[name], service.depends_on, service_availability, model)
        for name, service in config.services.items()
    }
