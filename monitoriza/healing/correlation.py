"""Alert correlation: which alerts form one incident, and which failing service explains it.

A cascading failure fires alerts on every service it reaches, and healing the symptoms (restart
the backend because Redis is down) only adds churn. So the responder folds alerts that arrive
close in time and are linked through ``depends_on`` into one incident, names its root cause,
and the policy acts on that alone. The module is pure: no I/O and no clock (``now`` is a
parameter), so the rules are checked as a table of timed events; the worker feeds one alert
event at a time and persists the incident that comes back.

An alert storm can put thousands of alerts in one incident, so an incident is not the list of
its alerts but a summary per kind of alert (:class:`AlertSummary`): root cause, risk and
signature are decided on it, and folding in one more alert costs the same whatever the size
of the incident. The alerts themselves are rows of the store (:class:`Members`).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, Protocol

from monitoriza.config.sites import site_services
from monitoriza.exceptions import MonitorizaError
from monitoriza.healing.sites import DEFAULT_SITE

if TYPE_CHECKING:
    from monitoriza.config.schema import Config

AlertStatus = Literal["firing", "resolved"]
IncidentState = Literal["open", "healing", "resolved"]
RootCauseKind = Literal["service", "component"]
Risk = Literal["low", "medium", "high", "critical"]

RISKS: tuple[Risk, ...] = ("low", "medium", "high", "critical")
ACTIVE_STATES: frozenset[str] = frozenset({"open", "healing"})
# P1 is declared by people, never by rules; ranking it keeps a human's word above the rules'.
SEVERITY_RANK: Mapping[str, int] = {"P1": 4, "P2": 3, "P3": 2, "P4": 1}
SERVICE_DOWN = "ServiceDown"
# Alerts that a faulty component causes by itself (it lowers the dependencies dimension and
# so the score): next to a component alert they do not mean the service itself is broken.
COMPONENT_CONSEQUENCES: frozenset[str] = frozenset({"ServiceDegraded", "HealthScoreFallingFast"})
# The name an alert without ``alertname`` goes by: no Prometheus rule can have it (rule names
# must be valid metric names), so it never mixes with a real alert's history.
UNNAMED_ALERT = "(unnamed)"
_COMPONENT_STATUS: Mapping[str, str] = {"ComponentUnknown": "unknown",
                                        "ComponentUnhealthy": "unhealthy"}


class AlertFormatError(MonitorizaError, ValueError):
    """An alert document lacks what correlation needs (status, labels, startsAt, fingerprint)."""


def _parse_time(text: str) -> float:
    """RFC 3339 to epoch seconds; Alertmanager's nanoseconds are cut to microseconds."""
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


@dataclass(frozen=True)
class AlertEvent:
    """One notification of one alert: what Alertmanager said, and when the responder heard it.

    ``starts_at`` is when the condition began (the onset, used to order causes);
    ``received_at`` is when the responder got this event (used for the correlation window).
    """

    fingerprint: str
    starts_at: float
    status: AlertStatus
    alertname: str
    service: str | None
    severity: str | None
    labels: Mapping[str, str] = field(hash=False)
    received_at: float

    def __post_init__(self) -> None:
        # A private copy, so that the caller mutating its dict cannot change a recorded event.
        object.__setattr__(self, "labels", dict(self.labels))

    @property
    def component(self) -> str | None:
        """The ``component`` label of Component* alerts: what the service's health reports."""
        return self.labels.get("component")

    @classmethod
    def from_alert(cls, document: Mapping[str, object], received_at: float) -> AlertEvent:
        """Read one alert of an Alertmanager webhook (``status``, ``labels``, ``startsAt``,
        ``fingerprint``); other keys are ignored, as Alertmanager may add some."""
        raw_status = document.get("status")
        status: AlertStatus
        if raw_status == "firing":
            status = "firing"
        elif raw_status == "resolved":
            status = "resolved"
        else:
            raise AlertFormatError(f"status: expected firing or resolved, got {raw_status!r}")
        raw_labels = document.get("labels")
        if not isinstance(raw_labels, Mapping):
            raise AlertFormatError("labels: expected an object of strings")
        labels: dict[str, str] = {}
        for key, value in raw_labels.items():
            if not isinstance(key, str) or not isinstance(value, str):
                raise AlertFormatError(f"labels.{key}: expected a string, got {value!r}")
            labels[key] = value
        # Alertmanager accepts alerts without one (posted by other tools than Prometheus).
        alertname = labels.get("alertname") or UNNAMED_ALERT
        fingerprint = document.get("fingerprint")
        if not isinstance(fingerprint, str) or not fingerprint:
            raise AlertFormatError("fingerprint: expected a non-empty string")
        starts = document.get("startsAt")
        if not isinstance(starts, str):
            raise AlertFormatError("startsAt: expected an RFC 3339 time")
        try:
            starts_at = _parse_time(starts)
        except ValueError:
            raise AlertFormatError(f"startsAt: {starts!r} is not an RFC 3339 time") from None
        return cls(fingerprint=fingerprint, starts_at=starts_at, status=status,
                   alertname=alertname, service=labels.get("service") or None,
                   severity=labels.get("severity") or None, labels=labels,
                   received_at=received_at)


def _reach(graph: Mapping[str, Iterable[str]], start: str) -> frozenset[str]:
    """Every node reachable from ``start`` (not ``start`` itself); safe on cycles."""
    seen: set[str] = set()
    stack = list(graph.get(start, ()))
    while stack:
        node = stack.pop()
        if node not in seen:
            seen.add(node)
            stack.extend(graph.get(node, ()))
    seen.discard(start)
    return frozenset(seen)


@dataclass(frozen=True)
class Topology:
    """Who depends on whom, and how critical each service is: the configuration's estate.

    Services the configuration does not know have no dependencies and the standard tier, so an
    alert about them still correlates (with itself) instead of failing.
    """

    depends_on: Mapping[str, tuple[str, ...]]
    tiers: Mapping[str, str]

    def __post_init__(self) -> None:
        object.__setattr__(self, "depends_on",
                           {name: tuple(deps) for name, deps in self.depends_on.items()})
        object.__setattr__(self, "tiers", dict(self.tiers))

    @classmethod
    def from_config(cls, config: Config, site: str | None = None) -> Topology:
        """The estate of ``site`` (its ``sites`` differences applied), or the catalogue's."""
        services = config.services if site is None else site_services(config, site)
        return cls(depends_on={name: tuple(service.depends_on)
                               for name, service in services.items()},
                   tiers={name: service.tier for name, service in services.items()})

    def knows(self, service: str) -> bool:
        """Whether ``service`` is part of the estate (named by the configuration)."""
        return service in self.tiers or service in self.depends_on or any(
            service in deps for deps in self.depends_on.values())

    def tier(self, service: str) -> str:
        return self.tiers.get(service, "standard")

    def dependencies(self, service: str) -> frozenset[str]:
        """Every service ``service`` needs, directly or through others."""
        return _reach(self.depends_on, service)

    def dependents(self, service: str) -> frozenset[str]:
        """Every service that needs ``service``, directly or through others."""
        reverse: dict[str, list[str]] = {}
        for name, deps in self.depends_on.items():
            for dep in deps:
                reverse.setdefault(dep, []).append(name)
        return _reach(reverse, service)

    def linked(self, a: str, b: str) -> bool:
        """Whether one of two distinct services depends on the other, transitively."""
        return a != b and (b in self.dependencies(a) or a in self.dependencies(b))


@dataclass(frozen=True)
class RootCause:
    """The failing service that best explains an incident.

    ``kind`` is ``component`` when the fault is one component of ``service`` as its health
    endpoint reports it (``component``), not the service as a whole: the Conecta backend that
    cannot reach a healthy Redis. ``reasoning`` is short sentences for people and the audit.
    An empty ``service`` means no alert of the incident names one: nothing can be healed.
    """

    service: str
    component: str | None
    kind: RootCauseKind
    reasoning: tuple[str, ...]


@dataclass(frozen=True)
class AlertKind:
    """What correlation tells alerts apart by: their service, name, component and severity.

    Alerts of one kind (a thousand ``HighLatency`` of ``checkout`` at P3, one per instance)
    are interchangeable to it, so an incident keeps a :class:`Tally` per kind rather than
    every alert.
    """

    service: str | None
    alertname: str
    component: str | None
    severity: str | None

    @classmethod
    def of(cls, event: AlertEvent) -> AlertKind:
        return cls(event.service, event.alertname, event.component, event.severity)

    def sort_key(self) -> tuple[str, str, str, str]:
        return (self.service or "", self.alertname, self.component or "", self.severity or "")


@dataclass(frozen=True)
class Tally:
    """The alerts of one kind in one status: how many, the earliest onset (``starts_at``)
    among them, and the latest time the responder heard one of them (``received_at``)."""

    count: int
    earliest: float
    latest: float


Bucket = tuple[AlertKind, AlertStatus]
# The earliest onset and latest receipt among the alerts of one bucket but the one that moves.
Others = Callable[[], "tuple[float, float] | None"]


class _Counted(NamedTuple):
    kind: AlertKind
    tally: Tally


def _with(tally: Tally | None, event: AlertEvent) -> Tally:
    if tally is None:
        return Tally(1, event.starts_at, event.received_at)
    return Tally(tally.count + 1, min(tally.earliest, event.starts_at),
                 max(tally.latest, event.received_at))


def _without(tally: Tally, previous: AlertEvent, others: Others) -> Tally | None:
    if tally.count <= 1:
        return None
    if previous.starts_at > tally.earliest and previous.received_at < tally.latest:
        return Tally(tally.count - 1, tally.earliest, tally.latest)
    rest = others()
    return Tally(tally.count - 1, *(rest or (tally.earliest, tally.latest)))


def _replaced(tally: Tally, previous: AlertEvent, event: AlertEvent, others: Others) -> Tally:
    """``previous`` gives way to ``event`` in the same bucket (a repeat, usually)."""
    lost_earliest = previous.starts_at <= tally.earliest < event.starts_at
    lost_latest = previous.received_at >= tally.latest > event.received_at
    if tally.count > 1 and (lost_earliest or lost_latest):
        rest = others()
        if rest is not None:
            return Tally(tally.count, min(rest[0], event.starts_at),
                         max(rest[1], event.received_at))
    if lost_earliest or lost_latest:
        return Tally(tally.count, event.starts_at, event.received_at)
    return Tally(tally.count, min(tally.earliest, event.starts_at),
                 max(tally.latest, event.received_at))


@dataclass(frozen=True)
class AlertSummary:
    """An incident's alerts as correlation needs them: a :class:`Tally` per kind and status.

    Its size grows with the kinds of alert in the incident, never with their number, so that
    folding one more alert into an incident of 10,000 costs what it costs in one of 10. The
    alerts themselves are kept elsewhere (the store's ``incident_alerts`` rows, or
    :class:`MemoryMembers`), which answers the two questions a summary cannot (:class:`Members`).
    """

    tallies: Mapping[Bucket, Tally] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "tallies", dict(self.tallies))

    @classmethod
    def of(cls, alerts: Iterable[AlertEvent]) -> AlertSummary:
        """The summary of ``alerts``, each the latest event of its own fingerprint."""
        tallies: dict[Bucket, Tally] = {}
        for event in alerts:
            bucket = (AlertKind.of(event), event.status)
            tallies[bucket] = _with(tallies.get(bucket), event)
        return cls(tallies)

    def counted(self, status: AlertStatus | None = None) -> tuple[_Counted, ...]:
        """The tallies in ``status`` (all when None), in a stable order."""
        return tuple(_Counted(kind, tally) for (kind, state), tally in sorted(
            self.tallies.items(), key=lambda item: (item[0][0].sort_key(), item[0][1]))
            if status in (None, state))

    def count(self, status: AlertStatus | None = None) -> int:
        """How many alerts are in ``status`` (all of them when None)."""
        return sum(tally.count for (_, state), tally in self.tallies.items()
                   if status in (None, state))

    def kinds(self, status: AlertStatus | None = None) -> tuple[AlertKind, ...]:
        return tuple(sorted({kind for kind, state in self.tallies if status in (None, state)},
                            key=AlertKind.sort_key))

    def services(self, status: AlertStatus | None = None) -> tuple[str, ...]:
        """Every service with an alert in ``status`` (any when None), sorted."""
        return tuple(sorted({kind.service for kind in self.kinds(status)
                             if kind.service is not None}))

    def earliest(self, status: AlertStatus | None = None) -> float | None:
        """The earliest onset among the alerts in ``status``; None without any."""
        return min((tally.earliest for tally in self._in(status)), default=None)

    def latest(self, status: AlertStatus | None = None) -> float | None:
        """When the responder last heard an alert now in ``status``; None without any."""
        return max((tally.latest for tally in self._in(status)), default=None)

    def _in(self, status: AlertStatus | None) -> Iterator[Tally]:
        return (tally for (_, state), tally in self.tallies.items() if status in (None, state))

    def replaced(self, previous: AlertEvent | None, event: AlertEvent,
                 others: Callable[[AlertKind, AlertStatus], tuple[float, float] | None]
                 ) -> AlertSummary:
        """The summary once ``event`` takes the place of ``previous``, the event held for its
        fingerprint (None for an alert new to the incident).

        ``others(kind, status)`` answers the earliest onset and the latest receipt among the
        other alerts of that bucket (not this fingerprint), or None when there is none: a
        tally cannot tell what is left when its extreme leaves. It is asked at most once, and
        only then; a repeat that moves nothing back never asks.
        """
        tallies = dict(self.tallies)
        bucket = (AlertKind.of(event), event.status)
        if previous is not None:
            old = (AlertKind.of(previous), previous.status)
            tally = tallies.pop(old, None)
            if tally is not None and old == bucket:
                tallies[bucket] = _replaced(tally, previous, event, lambda: others(*old))
                return AlertSummary(tallies)
            rest = None if tally is None else _without(tally, previous, lambda: others(*old))
            if rest is not None:
                tallies[old] = rest
        tallies[bucket] = _with(tallies.get(bucket), event)
        return AlertSummary(tallies)

    def as_data(self) -> list[dict[str, object]]:
        """Plain data for JSON, in a stable order; :meth:`from_data` reads it back."""
        return [{"service": kind.service, "alertname": kind.alertname,
                 "component": kind.component, "severity": kind.severity, "status": status,
                 "count": tally.count, "earliest": tally.earliest, "latest": tally.latest}
                for (kind, status), tally in sorted(
                    self.tallies.items(), key=lambda item: (item[0][0].sort_key(), item[0][1]))]

    @classmethod
    def from_data(cls, data: Iterable[Mapping[str, Any]]) -> AlertSummary:
        return cls({(AlertKind(item["service"], item["alertname"], item["component"],
                               item["severity"]), item["status"]):
                    Tally(int(item["count"]), float(item["earliest"]), float(item["latest"]))
                    for item in data})


class Members(Protocol):
    """Where the alerts of incidents are kept, one event per fingerprint and incident: the
    store's ``incident_alerts`` rows, or :class:`MemoryMembers`. Correlation asks it only what
    a summary cannot answer, with indexed lookups, never for a whole incident."""

    def held(self, fingerprint: str, incident_ids: Collection[int]) -> Mapping[int, AlertEvent]:
        """The event held for ``fingerprint`` by each of these incidents that holds one."""

    def others(self, incident_id: int, kind: AlertKind, status: AlertStatus,
               fingerprint: str) -> tuple[float, float] | None:
        """The earliest ``starts_at`` and the latest ``received_at`` among the incident's
        alerts of ``kind`` in ``status`` other than ``fingerprint``; None when there is none."""


class MemoryMembers:
    """:class:`Members` in memory, for tests and tools: every alert of every incident."""

    def __init__(self) -> None:
        self.alerts: dict[int, dict[str, AlertEvent]] = {}

    def record(self, incident_id: int, event: AlertEvent) -> None:
        """Keep ``event`` as the latest of its fingerprint in the incident (after saving)."""
        self.alerts.setdefault(incident_id, {})[event.fingerprint] = event

    def held(self, fingerprint: str, incident_ids: Collection[int]) -> dict[int, AlertEvent]:
        return {incident_id: self.alerts[incident_id][fingerprint]
                for incident_id in incident_ids
                if fingerprint in self.alerts.get(incident_id, {})}

    def others(self, incident_id: int, kind: AlertKind, status: AlertStatus,
               fingerprint: str) -> tuple[float, float] | None:
        rest = [event for event in self.alerts.get(incident_id, {}).values()
                if event.fingerprint != fingerprint and event.status == status
                and AlertKind.of(event) == kind]
        if not rest:
            return None
        return (min(event.starts_at for event in rest),
                max(event.received_at for event in rest))


@dataclass
class Incident:
    """Alerts that fail together, as an :class:`AlertSummary` (``summary``), with what
    correlation concluded from them.

    Mutable because the store assigns ``id`` and the policy moves ``state`` to ``healing``;
    :func:`correlate` itself never changes the incidents it is given, it returns a new one.
    """

    id: int | None
    state: IncidentState
    opened_at: float
    resolved_at: float | None
    summary: AlertSummary
    root_cause: RootCause | None = None
    risk: str = "low"
    signature: str = ""
    drill_id: str | None = None  # the fire drill it belongs to (healing.drill_windows)
    site: str = DEFAULT_SITE  # the site its alerts come from (healing.sites)

    def firing_count(self) -> int:
        """How many of its alerts fire (their latest event is firing)."""
        return self.summary.count("firing")

    def services(self) -> tuple[str, ...]:
        """Every service with an alert in the incident, firing or since resolved, sorted."""
        return self.summary.services()

    def last_activity(self) -> float:
        """When the responder last heard a firing event of the incident's firing alerts."""
        latest = self.summary.latest("firing")
        return self.opened_at if latest is None else latest


@dataclass(frozen=True)
class Correlation:
    """What one event did: the incident it now belongs to (a new object, to be saved with the
    event as its alert of that fingerprint), whether the incident was opened or resolved by
    it, whether its root cause moved (the policy re-plans when it does), the event it
    replaced in the incident (None when the alert is new to it), and whether the event is an
    after-effect of the incident's recovery (``after_effect``: the incident is resolved and
    stays so; nothing is healed for it)."""

    incident: Incident
    created: bool
    resolved: bool
    root_cause_changed: bool = False
    previous: AlertEvent | None = None
    after_effect: bool = False


@dataclass(frozen=True)
class _Failure:
    """The failing services among some alerts, and which of them need which (transitively,
    through ``depends_on`` or through a component alert that names another failing service)."""

    by_service: Mapping[str, tuple[_Counted, ...]]
    needs: Mapping[str, frozenset[str]]

    def dependents(self, service: str) -> frozenset[str]:
        return frozenset(other for other, needs in self.needs.items() if service in needs)

    def onset(self, service: str) -> float:
        return min(item.tally.earliest for item in self.by_service[service])

    def severity(self, service: str) -> int:
        return max(SEVERITY_RANK.get(item.kind.severity or "", 0)
                   for item in self.by_service[service])


def _considered(summary: AlertSummary) -> tuple[_Counted, ...]:
    """The firing alerts, or every alert when none fires (to explain a resolved incident)."""
    return summary.counted("firing") or summary.counted()


def _analyse(considered: Iterable[_Counted], topology: Topology) -> _Failure:
    grouped: dict[str, list[_Counted]] = {}
    for item in considered:
        if item.kind.service is not None:
            grouped.setdefault(item.kind.service, []).append(item)
    graph: dict[str, set[str]] = {name: set(deps) for name, deps in topology.depends_on.items()}
    for service, items in grouped.items():
        for item in items:
            if item.kind.component in grouped and item.kind.component != service:
                graph.setdefault(service, set()).add(item.kind.component)
    failing = frozenset(grouped)
    return _Failure(
        by_service={service: tuple(items) for service, items in grouped.items()},
        needs={service: _reach(graph, service) & failing for service in grouped})


def _join(names: Iterable[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    items = list(names)
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def _alerts_of(services: Sequence[str]) -> str:
    return f"{services[0]}'s alerts" if len(services) == 1 else f"the alerts of {_join(services)}"


def _condition(items: Iterable[_Counted]) -> str:
    names = sorted({item.kind.alertname for item in items})
    return "is down" if SERVICE_DOWN in names else f"is failing ({', '.join(names)})"


def _component_status(kind: AlertKind) -> str:
    return _COMPONENT_STATUS.get(kind.alertname, "failing")


def _ranking_key(failure: _Failure, service: str) -> tuple[int, float, int, str]:
    return (-len(failure.dependents(service)), failure.onset(service),
            -failure.severity(service), service)


def _tie_reason(failure: _Failure, root: str, rivals: Sequence[str]) -> str:
    """Why ``root`` was preferred to services that explain as many failures."""
    runner_up = rivals[0]
    if failure.onset(root) != failure.onset(runner_up):
        why = f"{root}'s alerts started first"
    elif failure.severity(root) != failure.severity(runner_up):
        why = f"{root}'s alerts are the most severe"
    else:
        why = f"{root} comes first by name"
    return f"{_join([root, *rivals])} explain as many failing services; {why}"


def _recovered(summary: AlertSummary, failure: _Failure, needed: Iterable[str]) -> str:
    """A sentence for dependencies whose alerts resolved while the root still fails, or ''."""
    wanted = set(needed)
    resolved = sorted(service for service in summary.services("resolved")
                      if service not in failure.by_service and service in wanted)
    return f"{_alerts_of(resolved)} have resolved" if resolved else ""


def _service_reasoning(summary: AlertSummary, failure: _Failure, topology: Topology,
                       root: str, rivals: Sequence[str]) -> list[str]:
    own = failure.by_service[root]
    dependents = sorted(failure.dependents(root))
    condition = _condition(own)
    if dependents:
        verb = "depends" if len(dependents) == 1 else "depend"
        lines = [f"{root} {condition} and {_join(dependents)} {verb} on it"]
    elif len(failure.by_service) == 1:
        lines = [f"{root} {condition} and is the only failing service"]
    else:
        lines = [f"{root} {condition} and depends on no other failing service"]
    for service, status in sorted({(item.kind.service or "", _component_status(item.kind))
                                   for name in dependents for item in failure.by_service[name]
                                   if item.kind.component == root}):
        lines.append(f"{service} reports its {root} component as {status}")
    onset = failure.onset(root)
    later = [name for name in dependents if failure.onset(name) > onset]
    earlier = [name for name in dependents if failure.onset(name) < onset]
    if later:
        lines.append(f"{_alerts_of(later)} started after {root}'s")
    if earlier:
        who = "it depends" if len(earlier) == 1 else "they depend"
        lines.append(f"{_alerts_of(earlier)} started first, but {who} on {root}")
    if rivals:
        lines.append(_tie_reason(failure, root, rivals))
    independent = sorted(set(failure.by_service) - {root, *dependents})
    if independent:
        verb = "fails" if len(independent) == 1 else "fail"
        lines.append(f"{_join(independent)} {verb} too, independently of {root}")
    if any(item.kind.component is not None for item in own):
        lines.append(f"{root}'s component alerts follow from {root} itself failing")
    recovered = _recovered(summary, failure, topology.dependencies(root))
    if recovered:
        lines.append(f"{recovered}, but {root} is still failing")
    return lines


def _component_reasoning(summary: AlertSummary, failure: _Failure, topology: Topology,
                         root: str, about: Sequence[_Counted]) -> list[str]:
    first = about[0].kind
    component = first.component or ""
    lines = [f"{root} reports its {component} component as {_component_status(first)}"]
    others = sorted({item.kind.component or "" for item in about} - {component})
    if others:
        lines.append(f"{root} also reports trouble with {_join(others)}")
    if topology.knows(component):
        lines.append(f"{component} itself reports healthy (no alert fires for it), "
                     f"so restarting {component} would not help")
        lines.append(f"the fault is most likely in {root}'s connection to {component}")
    else:
        lines.append(f"{component} is not a service of the estate, so the fault is inside {root}")
    consequences = sorted({item.kind.alertname for item in failure.by_service[root]
                           if item.kind.component is None})
    if consequences:
        verb = "follows" if len(consequences) == 1 else "follow"
        lines.append(f"{root}'s {_join(consequences)} {verb} from the {component} component")
    dependents = sorted(failure.dependents(root))
    if dependents:
        verb = "depends" if len(dependents) == 1 else "depend"
        lines.append(f"{_join(dependents)} {verb} on {root}")
    recovered = _recovered(summary, failure, {item.kind.component or "" for item in about})
    if recovered:
        lines.append(f"{recovered}, but {root} still reports {component} as "
                     f"{_component_status(first)}")
    return lines


def root_cause(alerts: Iterable[AlertEvent], topology: Topology) -> RootCause:
    """The deepest failing dependency among the services with firing alerts.

    Candidates are the failing services that depend on no other failing service (all of them,
    should a cycle leave none); the one most other failing services depend on wins, then the
    earliest onset (``starts_at``, not arrival), then the highest severity, then the name, so
    the answer never depends on the order alerts arrived in. A component alert whose
    ``component`` is a failing service counts as a dependency on it.

    The root is of kind ``component`` when its alerts are component alerts about components
    that are not failing services, plus at most what such a fault causes by itself
    (``ServiceDegraded``, ``HealthScoreFallingFast``): the Conecta backend reporting Redis as
    unknown while Redis is fine. A service that is down also reports its components as
    unknown (the exporter republishes them so), so ``ServiceDown`` makes it kind ``service``.
    The component named is that of the earliest such alert, then the most severe, then by
    component and alert name.

    When no alert fires (a resolved incident), every alert is considered instead.
    """
    summary = AlertSummary.of(alerts)
    if not summary.tallies:
        raise ValueError("root_cause needs at least one alert")
    return explain(summary, topology)


def explain(summary: AlertSummary, topology: Topology) -> RootCause:
    """:func:`root_cause` of the alerts ``summary`` stands for (it must hold one)."""
    considered = _considered(summary)
    failure = _analyse(considered, topology)
    if not failure.by_service:
        names = sorted({item.kind.alertname for item in considered})
        return RootCause("", None, "service", (
            f"no alert names a service ({', '.join(names)}), so there is nothing to heal",))
    candidates = [name for name in failure.by_service if not failure.needs[name]]
    ranked = sorted(candidates or failure.by_service,
                    key=lambda name: _ranking_key(failure, name))
    root = ranked[0]
    rivals = [name for name in ranked[1:]
              if len(failure.dependents(name)) == len(failure.dependents(root))]
    own = failure.by_service[root]
    about = sorted((item for item in own if item.kind.component is not None
                    and item.kind.component not in failure.by_service),
                   key=lambda item: (item.tally.earliest,
                                     -SEVERITY_RANK.get(item.kind.severity or "", 0),
                                     item.kind.component or "", item.kind.alertname))
    if about and all(item.kind.alertname in COMPONENT_CONSEQUENCES
                     for item in own if item.kind.component is None):
        return RootCause(root, about[0].kind.component, "component",
                         tuple(_component_reasoning(summary, failure, topology, root, about)))
    return RootCause(root, None, "service",
                     tuple(_service_reasoning(summary, failure, topology, root, rivals)))


def risk(incident: Incident, topology: Topology) -> Risk:
    """How much is at stake, from the highest severity, the root's tier and the spread.

    The baseline comes from the highest severity among the firing alerts (every alert, once
    none fires): P1 critical, P2 high, P3 medium, P4 or anything else low. It rises one step
    when the root cause's service is of the critical tier, and one more when two or more
    failing services of the incident depend on the root cause; it never exceeds critical:

    ========  ===========  ===========  ================  ================
    severity  standard,    critical,    standard,         critical,
              < 2 deps     < 2 deps     >= 2 deps         >= 2 deps
    ========  ===========  ===========  ================  ================
    P4        low          medium       medium            high
    P3        medium       high         high              critical
    P2        high         critical     critical          critical
    P1        critical     critical     critical          critical
    ========  ===========  ===========  ================  ================

    Dependents count only when they fail (have alerts), not every service that could:
    evidence of spread, while the tier already stands for what could be lost.
    """
    considered = _considered(incident.summary)
    if not considered:
        return "low"
    severity = max(SEVERITY_RANK.get(item.kind.severity or "", 0) for item in considered)
    level = max(severity - 1, 0)
    cause = incident.root_cause or explain(incident.summary, topology)
    if cause.service and topology.tier(cause.service) == "critical":
        level += 1
    failure = _analyse(considered, topology)
    if cause.service in failure.by_service and len(failure.dependents(cause.service)) >= 2:
        level += 1
    return RISKS[min(level, len(RISKS) - 1)]


def signature(incident: Incident) -> str:
    """Stable text naming the incident's pattern, for recurring-pattern detection and memory.

    ``service:kind:alertnames``: the root cause's service, ``service`` or
    ``component=NAME``, and the sorted distinct names of the root cause's alerts (severity
    left out, as escalation changes it), e.g. ``redis:service:ServiceDown`` or
    ``backend:component=redis:ComponentUnknown``. Empty while there is no root cause.
    """
    cause = incident.root_cause
    if cause is None:
        return ""
    own = [kind for kind in incident.summary.kinds() if (kind.service or "") == cause.service]
    if cause.kind == "component":
        own = [kind for kind in own if kind.component == cause.component]
        kind_text = f"component={cause.component}"
    else:
        kind_text = "service"
    return f"{cause.service}:{kind_text}:{','.join(sorted({kind.alertname for kind in own}))}"


def is_symptom(event: AlertEvent, incident: Incident) -> bool:
    """Whether ``event`` belongs to a service other than the root cause's: the policy never
    heals symptoms. Without a root cause, or for an alert naming no service, every alert
    counts as one: acting would be a guess."""
    cause = incident.root_cause
    return cause is None or event.service is None or event.service != cause.service


def _evaluate(incident: Incident, topology: Topology) -> bool:
    """Refresh root cause, risk and signature; whether the root cause moved."""
    before = incident.root_cause
    incident.root_cause = explain(incident.summary, topology)
    incident.risk = risk(incident, topology)
    incident.signature = signature(incident)
    after = incident.root_cause
    return before is None or (before.service, before.component, before.kind) != (
        after.service, after.component, after.kind)


def _stale(held: AlertEvent, event: AlertEvent) -> bool:
    """Whether ``event`` says nothing newer than the event already held for its fingerprint.

    Alertmanager HA delivers at least once and not always in order, so a firing event for an
    alert already resolved is a late duplicate unless it began later (a new episode has a new
    ``startsAt``). A resolution of a firing alert always counts: Alertmanager may move
    ``startsAt`` earlier when it merges updates of an alert, so an earlier onset on a
    resolution does not make it old, and dropping it would leave the incident open for ever.
    """
    return held.status == "resolved" and (
        event.status == "resolved" or event.starts_at <= held.starts_at)


def _joins(incident: Incident, event: AlertEvent, topology: Topology) -> bool:
    """Whether a firing event's service is the same as, or linked to, one of the incident's."""
    if event.service is None:
        return False
    services = set(incident.services())
    if event.service in services or event.component in services:
        return True
    if any(kind.component == event.service for kind in incident.summary.kinds()):
        return True
    return any(topology.linked(event.service, service) for service in services)


def _belongs(incident: Incident, event: AlertEvent, topology: Topology) -> bool:
    """Whether a firing event is part of the outage the incident already tracks, whatever
    the window: its service is already in the incident, is the root cause, or is a known
    symptom of it (depends on the root cause through ``depends_on``, or reports it as a
    component). An outage outlasts the window: Alertmanager re-notifies only when something
    changes, so an escalation or a late ``ProbeStale`` may come long after the last event."""
    if event.service is None:
        return False
    if event.service in incident.services():
        return True
    cause = incident.root_cause
    if cause is None or not cause.service:
        return False
    return (cause.service in (event.service, event.component)
            or event.service in topology.dependents(cause.service))


def _most_recent(incidents: Iterable[Incident]) -> Incident:
    return max(incidents, key=lambda incident: (incident.last_activity(), incident.opened_at,
                                                -1 if incident.id is None else incident.id))


def _apply(holder: Incident, previous: AlertEvent | None, event: AlertEvent,
           topology: Topology, now: float, *, members: Members) -> Correlation:
    def others(kind: AlertKind, status: AlertStatus) -> tuple[float, float] | None:
        if holder.id is None:
            return None
        return members.others(holder.id, kind, status, event.fingerprint)

    incident = replace(holder, summary=holder.summary.replaced(previous, event, others))
    # Once nothing fires, the evaluation covers every alert the incident had: the whole story.
    # A root that recovers a minute before its symptoms (their alerts lag by their ``for``)
    # is then still the root of record, and recurring outages share one signature.
    changed = _evaluate(incident, topology)
    if incident.firing_count():
        return Correlation(incident, created=False, resolved=False, root_cause_changed=changed,
                           previous=previous)
    incident.state = "resolved"
    incident.resolved_at = now
    return Correlation(incident, created=False, resolved=True, root_cause_changed=changed,
                       previous=previous)


def _after_effect(holder: Incident, previous: AlertEvent | None, event: AlertEvent,
                  members: Members) -> Correlation:
    """``event`` joins a resolved incident as an after-effect of its recovery: the summary
    takes it, but state, root cause of record, risk and signature stay as they were."""
    def others(kind: AlertKind, status: AlertStatus) -> tuple[float, float] | None:
        if holder.id is None:
            return None
        return members.others(holder.id, kind, status, event.fingerprint)

    incident = replace(holder, summary=holder.summary.replaced(previous, event, others))
    return Correlation(incident, created=False, resolved=False, previous=previous,
                       after_effect=True)


def _cooling(incidents: Iterable[Incident], now: float, cooldown: float) -> list[Incident]:
    """The resolved incidents still in their recovery cool-down at ``now``."""
    return [incident for incident in incidents if incident.state == "resolved"
            and incident.resolved_at is not None and incident.resolved_at >= now - cooldown]


def correlate(open_incidents: Sequence[Incident], event: AlertEvent, topology: Topology,
              now: float, window: float, *, members: Members,
              cooldown: float = 0.0, site: str = DEFAULT_SITE) -> Correlation | None:
    """Fold one alert event of ``site`` into the incidents; ``None`` when the event changes
    nothing.

    Only the incidents of ``site`` are considered (the others are another condominium's
    outage, however alike), ``topology`` is that site's, and a new incident is of ``site``.

    - An event whose fingerprint an open or healing incident holds updates that incident,
      whatever the window (a repeat does not duplicate the alert, a flap inside an incident
      stays in it), unless it is stale (see ``_stale``): then ``None``.
    - A firing event of a service the incident tracks (already one of its services, its root
      cause, or a known symptom: a service that depends on the root cause) joins that open or
      healing incident whatever the window: the incident follows the outage, not the clock.
    - A firing event of a service new to every incident joins the open or healing incident,
      among those active within ``window`` seconds (``last_activity() >= now - window``),
      whose services include one linked to it through ``depends_on`` either way, or that a
      component alert links. Among several candidates the most recently active wins.
      Incidents are never merged, so ids stay stable.
    - Otherwise, within ``cooldown`` seconds of the resolution of a resolved incident given in
      ``open_incidents`` that holds the fingerprint or that the event joins as above, the
      event is an after-effect of that recovery (a ``ServiceDegraded`` while a restarted
      service warms up): it is kept in that incident, which stays resolved, and the result
      says ``after_effect``; the decision step heals nothing for it. Events about alerts an
      after-effect brought in update that incident too while the cool-down lasts.
    - Otherwise a resolved event is ignored (``None``), and a firing event opens a new
      incident, ``opened_at = now``.
    - When no alert of an incident fires any more it is resolved (``resolved_at = now``).

    Root cause, risk and signature are re-evaluated after every change, over the firing
    alerts, and over all of the incident's alerts once it resolves (never for an
    after-effect: the incident's story is told). The incidents given are not modified; the
    returned incident is a copy (``id`` kept, ``None`` when new), and the caller keeps
    ``event`` as its alert of that fingerprint in ``members``.

    The work is bounded by the incidents' summaries: ``members`` is asked once which incident
    holds the fingerprint and, when an alert leaves an extreme of its tally, once more.
    """
    ours = [incident for incident in open_incidents if incident.site == site]
    active = [incident for incident in ours if incident.state in ACTIVE_STATES]
    cooling = _cooling(ours, now, cooldown) if cooldown > 0 else []
    ids = [incident.id for incident in [*active, *cooling] if incident.id is not None]
    held = members.held(event.fingerprint, ids) if ids else {}
    holders = [incident for incident in active if incident.id in held]
    if holders:
        holder = _most_recent(holders)
        previous = held[holder.id or 0]
        return None if _stale(previous, event) else _apply(holder, previous, event, topology,
                                                           now, members=members)
    if event.status == "firing":
        tracking = [incident for incident in active if _belongs(incident, event, topology)]
        candidates = tracking or [incident for incident in active
                                  if incident.last_activity() >= now - window
                                  and _joins(incident, event, topology)]
        if candidates:
            return _apply(_most_recent(candidates), None, event, topology, now,
                          members=members)
    recovering = [incident for incident in cooling if incident.id in held] or [
        incident for incident in cooling
        if event.status == "firing" and _joins(incident, event, topology)]
    if recovering:
        holder = max(recovering, key=lambda incident: incident.resolved_at or 0.0)
        kept = held.get(holder.id or 0)
        if kept is not None and _stale(kept, event):
            return None
        return _after_effect(holder, kept, event, members)
    if event.status == "resolved":
        return None
    incident = Incident(id=None, state="open", opened_at=now, resolved_at=None,
                        summary=AlertSummary.of([event]), site=site)
    _evaluate(incident, topology)
    return Correlation(incident, created=True, resolved=False, root_cause_changed=True)
