"""A probe's exposition lines, rendered once when its run finishes (see exposition.py)."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from monitoriza.exporter import metrics
from monitoriza.exporter.probes.base import COMPONENT_STATUSES, Measurement, ProbeOutcome

log = logging.getLogger(__name__)


def measurement_line(service: str, sample: Measurement) -> str | None:
    """The line of one measurement, or None (logged) if it breaks the declared families."""
    family = metrics.MEASUREMENT_FAMILIES.get(sample.metric)
    labels = dict(sample.labels)
    if family is None or set(labels) != set(family.labels[1:]):
        log.error("probe of %s reported an undeclared measurement %s%s; dropped", service,
                  sample.metric, sorted(labels))
        return None
    return family.sample([service, *(labels[name] for name in family.labels[1:])],
                         sample.value)


def component_lines(service: str, components: Mapping[str, str]) -> str:
    """A StateSet per component: 1 for its current status, 0 for the others."""
    family = metrics.COMPONENT_STATUS
    return "".join(family.sample((service, name, status), 1.0 if status == current else 0.0)
                   for name, current in components.items() for status in COMPONENT_STATUSES)


def probe_lines(service: str, probe: str, *, interval: float, outcome: ProbeOutcome,
                duration: float, finished_at: float, last_success_at: float | None,
                components: Mapping[str, str]) -> dict[str, str]:
    """Family name -> exposition lines of one probe's latest result."""
    labels = (service, probe)
    lines = {
        metrics.PROBE_SUCCESS.name: metrics.PROBE_SUCCESS.sample(
            labels, 1.0 if outcome.success else 0.0),
        metrics.PROBE_DURATION.name: metrics.PROBE_DURATION.sample(labels, duration),
        metrics.PROBE_LAST_SUCCESS.name: metrics.PROBE_LAST_SUCCESS.sample(
            labels, last_success_at or 0.0),
        metrics.PROBE_LAST_RUN.name: metrics.PROBE_LAST_RUN.sample(labels, finished_at),
        metrics.PROBE_INTERVAL.name: metrics.PROBE_INTERVAL.sample(labels, interval),
    }
    if outcome.failure_reason is not None:
        lines[metrics.PROBE_FAILURE_REASON.name] = metrics.PROBE_FAILURE_REASON.sample(
            (*labels, outcome.failure_reason), 1.0)
    if components:
        lines[metrics.COMPONENT_STATUS.name] = component_lines(service, components)
    for sample in outcome.measurements:
        line = measurement_line(service, sample)
        if line is not None:
            lines[sample.metric] = lines.get(sample.metric, "") + line
    return lines


def flow_lines(flow: str, *, interval: float, outcome: ProbeOutcome, duration: float,
               finished_at: float, last_success_at: float | None) -> dict[str, str]:
    """Family name -> exposition lines of one flow's latest run.

    Per-step samples come as measurements named after their flow families (see
    :mod:`monitoriza.exporter.probes.flow`); a run the watchdog cut short has none, and then
    only the flow's own samples are published.
    """
    labels = (flow,)
    lines = {
        metrics.FLOW_SUCCESS.name: metrics.FLOW_SUCCESS.sample(
            labels, 1.0 if outcome.success else 0.0),
        metrics.FLOW_DURATION.name: metrics.FLOW_DURATION.sample(labels, duration),
        metrics.FLOW_LAST_RUN.name: metrics.FLOW_LAST_RUN.sample(labels, finished_at),
        metrics.FLOW_LAST_SUCCESS.name: metrics.FLOW_LAST_SUCCESS.sample(
            labels, last_success_at or 0.0),
        metrics.FLOW_INTERVAL.name: metrics.FLOW_INTERVAL.sample(labels, interval),
    }
    families = {family.name: family for family in metrics.FLOW_FAMILIES}
    for sample in outcome.measurements:
        family = families.get(sample.metric)
        names = dict(sample.labels)
        if family is None or set(names) != set(family.labels[1:]):
            log.error("flow %s reported an undeclared sample %s%s; dropped", flow,
                      sample.metric, sorted(names))
            continue
        line = family.sample([flow, *(names[label] for label in family.labels[1:])],
                             sample.value)
        lines[sample.metric] = lines.get(sample.metric, "") + line
    return lines
