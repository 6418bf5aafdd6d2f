"""The state of each probe: its job, its latest outcome, and its pre-rendered samples.

Pure data and pure functions, tested without threads; :mod:`.scheduler` drives them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from monitoriza.config.schema import Config, Flow, ProbeBase
from monitoriza.exporter.probes.base import ProbeOutcome
from monitoriza.exporter.samples import flow_lines, probe_lines

ProbeKey = tuple[str, str]  # (service, probe name)
# The ``service`` of a flow's job: never a valid service name, so a flow and a probe cannot
# share a key; health counts a flow for each service its ``services:`` lists instead.
FLOW_SERVICE = "@flow"


@dataclass(frozen=True, slots=True)
class ProbeJob:
    """One probe of one service, with its schedule resolved from the configuration."""

    service: str
    name: str
    kind: str
    interval: float
    timeout: float
    spec: ProbeBase | Flow

    @property
    def key(self) -> ProbeKey:
        return (self.service, self.name)


@dataclass(frozen=True, slots=True)
class ProbeState:
    """The latest known result of a probe, as a scrape sees it."""

    job: ProbeJob
    outcome: ProbeOutcome
    duration_seconds: float
    finished_at: float  # wall clock, seconds since the epoch
    last_success_at: float | None
    recent_successes: tuple[bool, ...]  # oldest first, at most ``errors_window`` long
    components: Mapping[str, str] = field(default_factory=dict)
    # Family name -> this probe's exposition lines, rendered once when the run finished.
    lines: Mapping[str, str] = field(default_factory=dict)


def jobs_from_config(config: Config) -> list[ProbeJob]:
    """Every probe of every service, in configuration order."""
    jobs = []
    for service_name, service in config.services.items():
        for spec in service.probes:
            # The loader fills name, interval and timeout; a None here is a loader bug.
            assert spec.name is not None and spec.interval is not None
            assert spec.timeout is not None
            kind: str = getattr(spec, "kind")  # noqa: B009 - every concrete spec has one
            jobs.append(ProbeJob(service_name, spec.name, kind, spec.interval, spec.timeout,
                                 spec))
    for flow_name, flow in config.flows.items():
        jobs.append(ProbeJob(FLOW_SERVICE, flow_name, "flow", flow.interval, flow.timeout, flow))
    return jobs


def next_state(previous: ProbeState | None, job: ProbeJob, outcome: ProbeOutcome, *,
               duration: float, finished_at: float, window: int) -> ProbeState:
    """Fold one outcome into a probe's state (pure, so it is tested without threads).

    When a health endpoint stops answering, its components are not dropped: they are kept
    with status ``unknown``, because that is what we now know about them, and a vanished
    series would hide the problem from alert rules.
    """
    recent = (*(previous.recent_successes if previous else ()), outcome.success)[-window:]
    last_success = finished_at if outcome.success else (
        previous.last_success_at if previous else None)
    components: Mapping[str, str] = outcome.components
    if not components and not outcome.success and previous is not None:
        components = dict.fromkeys(previous.components, "unknown")
    if job.kind == "flow":
        lines = flow_lines(job.name, interval=job.interval, outcome=outcome, duration=duration,
                           finished_at=finished_at, last_success_at=last_success)
    else:
        lines = probe_lines(job.service, job.name, interval=job.interval, outcome=outcome,
                            duration=duration, finished_at=finished_at,
                            last_success_at=last_success, components=components)
    return ProbeState(job, outcome, duration, finished_at, last_success, recent, components,
                      lines)
