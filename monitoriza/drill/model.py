"""The fault matrix of a drill plan: experiments, the alerts each must raise, the receivers
each alert must reach, and deadlines that carry the terms they add up from.

Every type is frozen and turns into plain data with ``as_data()`` for ``--json``; a deadline
is never a bare number, so the output can always say where it comes from."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

FaultKind = Literal["container_stop", "container_kill", "container_pause", "crash_loop",
                    "process_kill", "dependency_outage", "disk_fill"]
FAULT_KINDS: tuple[FaultKind, ...] = ("container_stop", "container_kill", "container_pause",
                                      "crash_loop", "process_kill", "dependency_outage",
                                      "disk_fill")

#: ``first``: the earliest alert of the fault, expected in every run. ``if_persisting``: a
#: later severity of the same condition, expected only while the fault is not yet healed.
Expectation = Literal["first", "if_persisting"]


@dataclass(frozen=True, slots=True)
class Term:
    """One addend of a deadline: what it is, how many seconds, and where the value is read."""

    name: str
    seconds: float
    source: str

    def as_data(self) -> dict[str, object]:
        return {"name": self.name, "seconds": self.seconds, "source": self.source}


@dataclass(frozen=True, slots=True)
class Deadline:
    """Seconds after the fault is injected by which a stage must be seen: ``terms`` are the
    real timers on the path, ``margin`` what is allowed on top (jitter, slow runs)."""

    terms: tuple[Term, ...]
    margin: tuple[Term, ...]

    @property
    def expected_seconds(self) -> float:
        """The sum of the timers alone: the worst case when nothing is slow."""
        return sum(term.seconds for term in self.terms)

    @property
    def seconds(self) -> float:
        """The deadline itself: timers plus margin."""
        return self.expected_seconds + sum(term.seconds for term in self.margin)

    def explain(self) -> str:
        """``15s probe interval + ... + 10s margin (...) = 123s``."""
        parts = [f"{_seconds(t.seconds)} {t.name}" for t in (*self.terms, *self.margin)]
        return " + ".join(parts) + f" = {_seconds(self.seconds)}"

    def as_data(self) -> dict[str, object]:
        return {"seconds": self.seconds, "expected_seconds": self.expected_seconds,
                "terms": [t.as_data() for t in self.terms],
                "margin": [t.as_data() for t in self.margin], "explained": self.explain()}


@dataclass(frozen=True, slots=True)
class Reach:
    """A receiver an alert must reach, by which route, and by when.

    ``via`` is ``alertmanager`` for a receiver the alert's own route names, or ``notice``
    for one reached through the responder's ``MonitorizaIncident`` notice (``notice`` names
    it with its severity). ``channels`` are
    the receiver's integrations that reach a person (empty: a program, e.g. the responder)."""

    receiver: str
    route_path: str
    via: Literal["alertmanager", "notice"]
    channels: tuple[str, ...]
    to_responder: bool
    deadline: Deadline
    notice: str = ""  # "MonitorizaIncident P3" when via is "notice"

    @property
    def person(self) -> bool:
        return bool(self.channels)

    def as_data(self) -> dict[str, object]:
        return {"receiver": self.receiver, "route": self.route_path, "via": self.via,
                "notice": self.notice or None, "channels": list(self.channels),
                "reaches_person": self.person, "to_responder": self.to_responder,
                "deadline": self.deadline.as_data()}


@dataclass(frozen=True, slots=True)
class ExpectedAlert:
    """One alert (one rule) the fault must raise, and who must hear of it."""

    alertname: str
    severity: str
    service: str
    for_seconds: float
    rule: str  # "rules/service-alerts.yml: group monitoriza-service-health, rule 5"
    labels: tuple[tuple[str, str], ...]
    expectation: Expectation
    detect: Deadline
    reaches: tuple[Reach, ...]

    @property
    def reaches_person(self) -> bool:
        return any(reach.person for reach in self.reaches)

    def as_data(self) -> dict[str, object]:
        return {"alertname": self.alertname, "severity": self.severity,
                "service": self.service, "for_seconds": self.for_seconds, "rule": self.rule,
                "labels": dict(self.labels), "expectation": self.expectation,
                "detect": self.detect.as_data(), "reaches_person": self.reaches_person,
                "receivers": [reach.as_data() for reach in self.reaches]}


@dataclass(frozen=True, slots=True)
class Heal:
    """The playbook expected to heal the fault, on which alert, and by when."""

    service: str
    playbook: str
    trigger: str  # "ServiceDown P4"
    alternatives: tuple[str, ...]  # other matching playbooks (operational memory may pick one)
    deadline: Deadline

    def as_data(self) -> dict[str, object]:
        return {"service": self.service, "playbook": self.playbook, "trigger": self.trigger,
                "alternatives": list(self.alternatives), "deadline": self.deadline.as_data()}


@dataclass(frozen=True, slots=True)
class Experiment:
    """One cell of the matrix: a fault on a service and everything expected of it.

    ``target`` is what the fault acts on (a container, a process, the failing dependency, a
    disk path); ``affected`` are the services that depend on the root cause and may show
    symptoms (the blast radius a steady-state check must allow); ``notes`` say what the plan
    could not promise (no playbook, an alert that reaches no person, ...)."""

    service: str
    fault: FaultKind
    target: str
    root_cause: str
    alerts: tuple[ExpectedAlert, ...]
    heal: Heal | None
    affected: tuple[str, ...]
    notes: tuple[str, ...]

    @property
    def key(self) -> str:
        """``redis:container_stop``; ``backend:dependency_outage:redis``."""
        base = f"{self.service}:{self.fault}"
        return f"{base}:{self.target}" if self.fault == "dependency_outage" else base

    def as_data(self) -> dict[str, object]:
        return {"key": self.key, "service": self.service, "fault": self.fault,
                "target": self.target, "root_cause": self.root_cause,
                "alerts": [alert.as_data() for alert in self.alerts],
                "heal": self.heal.as_data() if self.heal else None,
                "affected": list(self.affected), "notes": list(self.notes)}


@dataclass(frozen=True, slots=True)
class Timers:
    """The pipeline's own timers, and the files they were read from."""

    scrape_interval: Term
    evaluation_interval: Term

    def as_data(self) -> dict[str, object]:
        return {"scrape_interval": self.scrape_interval.as_data(),
                "evaluation_interval": self.evaluation_interval.as_data()}


@dataclass(frozen=True, slots=True)
class DrillPlan:
    """The whole fault matrix, in configuration order of the services."""

    experiments: tuple[Experiment, ...]
    timers: Timers
    margin_rule: str

    def for_service(self, service: str) -> tuple[Experiment, ...]:
        return tuple(e for e in self.experiments if e.service == service)

    def as_data(self) -> dict[str, object]:
        return {"timers": self.timers.as_data(), "margin": self.margin_rule,
                "experiments": [e.as_data() for e in self.experiments]}


def _seconds(value: float) -> str:
    return f"{value:g}s"
