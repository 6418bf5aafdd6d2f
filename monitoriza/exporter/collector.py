"""What a scrape returns: the latest probe snapshot, health, and the exporter's own metrics.

A scrape copies the snapshot under a short lock and joins lines that the scheduler rendered
when each probe finished (see exposition.py); nothing here waits on a target. Each section is
timed and reported through ``monitoriza_collector_success`` and
``monitoriza_collector_duration_seconds`` (node_exporter style): a broken section sets its
success to 0 and is logged, and never breaks the scrape.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from typing import Protocol

from prometheus_client import CollectorRegistry, generate_latest

from monitoriza.config.schema import Config
from monitoriza.exporter import metrics
from monitoriza.exporter.exposition import Family, render
from monitoriza.exporter.forecasts import ForecastEngine, forecast_section
from monitoriza.exporter.health import (
    HealthModel,
    availability,
    merge_components,
    service_health,
    states_by_service,
)
from monitoriza.exporter.samples import component_lines
from monitoriza.exporter.state import ProbeKey, ProbeState

log = logging.getLogger(__name__)

Section = Iterable[tuple[Family, Iterable[str]]]


class SnapshotSource(Protocol):
    """What the collector needs from the scheduler."""

    def snapshot(self) -> dict[ProbeKey, ProbeState]: ...

    @property
    def in_flight(self) -> int: ...

    @property
    def skipped_runs(self) -> int: ...


def topology_section(config: Config) -> list[tuple[Family, list[str]]]:
    """Each service's tier and dependencies, and the services each flow touches, so alert
    rules can join on them."""
    return [
        (metrics.SERVICE_INFO, [metrics.SERVICE_INFO.sample((name, service.tier), 1.0)
                                for name, service in config.services.items()]),
        (metrics.SERVICE_DEPENDENCY, [metrics.SERVICE_DEPENDENCY.sample((name, dependency), 1.0)
                                      for name, service in config.services.items()
                                      for dependency in service.depends_on]),
        (metrics.FLOW_TOUCHES, [metrics.FLOW_TOUCHES.sample((flow_name, service), 1.0)
                                for flow_name, flow in config.flows.items()
                                for service in dict.fromkeys(flow.services)]),
    ]


def probe_section(states: list[ProbeState]) -> list[tuple[Family, list[str]]]:
    """Per-probe samples, measurements and component statuses, all pre-rendered.

    Component statuses are merged per service (the worst wins) only in the rare case where
    two probes of one service report components; otherwise the probe's own lines are used.
    """
    buckets: dict[str, list[str]] = defaultdict(list)
    reporting: dict[str, list[ProbeState]] = defaultdict(list)
    for state in states:
        for name, text in state.lines.items():
            buckets[name].append(text)
        if state.components:
            reporting[state.job.service].append(state)
    families = [*metrics.PER_PROBE_FAMILIES, *metrics.MEASUREMENT_FAMILIES.values(),
                *metrics.FLOW_FAMILIES]
    section = [(family, buckets.get(family.name, [])) for family in families]
    lines = [found[0].lines[metrics.COMPONENT_STATUS.name] if len(found) == 1
             else component_lines(service, merge_components(found))
             for service, found in reporting.items()]
    section.append((metrics.COMPONENT_STATUS, lines))
    return section


class HealthSection:
    """Health dimensions and scores, recomputed only for services whose inputs changed.

    A service's health depends on its own probe states and on the availability of the
    services it depends on; both are part of the cache key, with each state identified by its
    finish time, so an unchanged service costs a tuple comparison instead of a recomputation.
    """

    def __init__(self) -> None:
        self._cache: dict[str, tuple[object, str, str]] = {}

    def __call__(self, config: Config, states: list[ProbeState]) -> list[tuple[Family, list[str]]]:
        by_service = states_by_service(config, states)
        service_availability = {name: availability(found) for name, found in by_service.items()}
        model = HealthModel.from_config(config.health)
        dimension_lines, score_lines = [], []
        cache: dict[str, tuple[object, str, str]] = {}
        for name, service in config.services.items():
            found = by_service[name]
            key = (id(config), tuple((s.job.key, s.finished_at) for s in found),
                   tuple(service_availability.get(d) for d in service.depends_on))
            cached = self._cache.get(name)
            if cached is None or cached[0] != key:
                health = service_health(found, service.depends_on, service_availability, model)
                cached = (key, "".join(metrics.HEALTH_DIMENSION.sample((name, dimension), value)
                                       for dimension, value in health.dimensions.items()),
                          "" if health.score is None
                          else metrics.HEALTH_SCORE.sample((name,), health.score))
            cache[name] = cached
            dimension_lines.append(cached[1])
            score_lines.append(cached[2])
        self._cache = cache  # services removed by a reload drop out here
        return [(metrics.HEALTH_DIMENSION, dimension_lines), (metrics.HEALTH_SCORE, score_lines)]


class ExporterCollector:
    """Renders the exposition served at /metrics."""

    def __init__(self, source: SnapshotSource, config: Callable[[], Config],
                 registry: CollectorRegistry | None = None,
                 forecasts: ForecastEngine | None = None) -> None:
        self._source = source
        self._config = config
        self._forecasts = forecasts
        self._health = HealthSection()
        # Process, build and reload metrics: few, so prometheus_client renders them.
        self._registry = registry

    def sections(self, states: list[ProbeState]) -> Iterator[tuple[str, Callable[[], Section]]]:
        yield "config", lambda: topology_section(self._config())
        yield "probes", lambda: probe_section(states)
        yield "health", lambda: self._health(self._config(), states)
        if self._forecasts is not None and self._config().forecasts:
            engine = self._forecasts
            yield "forecast", lambda: forecast_section(engine.results(), engine.refusals())

    def _healthy(self, name: str) -> bool:
        """A section that rendered may still report its source failing (forecasts keep their
        last results published while Prometheus is unreachable)."""
        return name != "forecast" or self._forecasts is None or self._forecasts.healthy()

    def render(self) -> bytes:
        states = list(self._source.snapshot().values())
        parts = []
        success, duration = [], []
        for name, build in self.sections(states):
            started = time.perf_counter()
            try:
                text = render(build())
            except Exception:  # a bug in one section must not take the whole scrape down
                log.exception("collector %s failed", name)
                text, ok = "", 0.0
            else:
                ok = 1.0 if self._healthy(name) else 0.0
            parts.append(text)
            duration.append(metrics.COLLECTOR_DURATION.sample(
                (name,), time.perf_counter() - started))
            success.append(metrics.COLLECTOR_SUCCESS.sample((name,), ok))
        parts.append(render([
            (metrics.COLLECTOR_SUCCESS, success),
            (metrics.COLLECTOR_DURATION, duration),
            (metrics.PROBES_IN_FLIGHT,
             [metrics.PROBES_IN_FLIGHT.sample((), self._source.in_flight)]),
            (metrics.PROBE_RUNS_SKIPPED,
             [metrics.PROBE_RUNS_SKIPPED.sample((), self._source.skipped_runs)]),
        ]))
        body = "".join(parts).encode()
        if self._registry is not None:
            body += generate_latest(self._registry)
        return body
