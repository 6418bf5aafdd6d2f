"""The Prometheus collector: turns the latest probe snapshot into metric families.

Each scrape builds fresh families from a snapshot copied under a short lock; nothing here
waits on a target. Each section of the collection is timed and reported through
``monitoriza_collector_success`` and ``monitoriza_collector_duration_seconds`` (node_exporter
style): a broken section sets success to 0 and is logged, and never breaks the scrape.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from monitoriza.config.schema import Config
from monitoriza.exporter.health import DIMENSIONS, estate_health, merge_components
from monitoriza.exporter.metrics import MEASUREMENT_HELP
from monitoriza.exporter.probes.base import COMPONENT_STATUSES, FAILURE_REASONS
from monitoriza.exporter.scheduler import ProbeKey, ProbeState

log = logging.getLogger(__name__)

PROBE_LABELS = ["service", "probe"]


class SnapshotSource(Protocol):
    """What the collector needs from the scheduler."""

    def snapshot(self) -> dict[ProbeKey, ProbeState]: ...

    @property
    def in_flight(self) -> int: ...

    @property
    def skipped_runs(self) -> int: ...


def probe_families(states: Iterable[ProbeState]) -> list[Metric]:
    """Per-probe results, component statuses and the probes' own measurements."""
    success = GaugeMetricFamily("monitoriza_probe_success", "1 when the last probe succeeded",
                                labels=PROBE_LABELS)
    duration = GaugeMetricFamily("monitoriza_probe_duration_seconds",
                                 "Duration of the last probe run", labels=PROBE_LABELS)
    last_success = GaugeMetricFamily(
        "monitoriza_probe_last_success_timestamp_seconds",
        "When the probe last succeeded (0 if it never has), for staleness rules",
        labels=PROBE_LABELS)
    interval = GaugeMetricFamily("monitoriza_probe_interval_seconds",
                                 "Configured interval between probe runs", labels=PROBE_LABELS)
    reason = GaugeMetricFamily(
        "monitoriza_probe_failure_reason",
        f"1 for the reason the last probe failed ({', '.join(FAILURE_REASONS)})",
        labels=[*PROBE_LABELS, "reason"])
    measured: dict[str, list[tuple[list[str], float]]] = defaultdict(list)
    by_service: dict[str, list[ProbeState]] = defaultdict(list)

    for state in states:
        job = state.job
        labels = [job.service, job.name]
        success.add_metric(labels, 1.0 if state.outcome.success else 0.0)
        duration.add_metric(labels, state.duration_seconds)
        last_success.add_metric(labels, state.last_success_at or 0.0)
        interval.add_metric(labels, job.interval)
        if state.outcome.failure_reason is not None:
            reason.add_metric([*labels, state.outcome.failure_reason], 1.0)
        for sample in state.outcome.measurements:
            measured[sample.metric].append(
                ([job.service, *(value for _, value in sample.labels)], sample.value))
        by_service[job.service].append(state)

    components = GaugeMetricFamily(
        "monitoriza_component_status",
        "1 for the current status of a component reported by a health endpoint",
        labels=["service", "component", "status"])
    for service, service_states in by_service.items():
        for component, current in merge_components(service_states).items():
            for status in COMPONENT_STATUSES:
                components.add_metric([service, component, status],
                                      1.0 if status == current else 0.0)

    families: list[Metric] = [success, duration, last_success, interval, reason, components]
    for name, samples in measured.items():
        help_text, label_names = MEASUREMENT_HELP[name]
        family = GaugeMetricFamily(name, help_text, labels=["service", *label_names])
        for labels, value in samples:
            family.add_metric(labels, value)
        families.append(family)
    return families


def health_families(config: Config, states: Iterable[ProbeState]) -> list[Metric]:
    """Health dimensions (0..1) and the health score (0..100) of every service."""
    dimension = GaugeMetricFamily("monitoriza_health_dimension_score",
                                  f"Health of one dimension ({', '.join(DIMENSIONS)}), 0..1",
                                  labels=["service", "dimension"])
    score = GaugeMetricFamily("monitoriza_health_score",
                              "Health score of the service, 0..100, weighted from its dimensions",
                              labels=["service"])
    for service, health in estate_health(config, states).items():
        for name, value in health.dimensions.items():
            dimension.add_metric([service, name], value)
        if health.score is not None:
            score.add_metric([service], health.score)
    return [dimension, score]


class ExporterCollector(Collector):
    """Collects probe results, health and scheduler metrics on every scrape."""

    def __init__(self, source: SnapshotSource, config: Callable[[], Config]) -> None:
        self._source = source
        self._config = config

    def collect(self) -> Iterator[Metric]:
        snapshot = self._source.snapshot()
        states = list(snapshot.values())
        sections: Mapping[str, Callable[[], list[Metric]]] = {
            "probes": lambda: probe_families(states),
            "health": lambda: health_families(self._config(), states),
        }
        success = GaugeMetricFamily("monitoriza_collector_success",
                                    "1 when the collector section succeeded on this scrape",
                                    labels=["collector"])
        duration = GaugeMetricFamily("monitoriza_collector_duration_seconds",
                                     "Time the collector section took on this scrape",
                                     labels=["collector"])
        for name, build in sections.items():
            started = time.perf_counter()
            try:
                families = build()
            except Exception:  # a bug in one section must not take the whole scrape down
                log.exception("collector %s failed", name)
                families, ok = [], 0.0
            else:
                ok = 1.0
            duration.add_metric([name], time.perf_counter() - started)
            success.add_metric([name], ok)
            yield from families
        yield success
        yield duration
        yield GaugeMetricFamily("monitoriza_probes_in_flight", "Probe runs in progress",
                                value=self._source.in_flight)
        yield CounterMetricFamily(
            "monitoriza_probe_runs_skipped",
            "Runs not started because the previous run of the same probe was still going",
            value=self._source.skipped_runs)
