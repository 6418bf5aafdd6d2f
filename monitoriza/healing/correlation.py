"""Alert correlation: which alerts form one incident, and which failing service explains it.

A cascading failure fires alerts on every service it reaches, and healing the symptoms (restart
the backend because Redis is down) only adds churn. So the responder folds alerts that arrive
close in time and are linked through ``depends_on`` into one incident, names its root cause,
and the policy acts on that alone. The module is pure: no I/O and no clock (``now`` is a
parameter), so the rules are checked as a table of timed events; the worker feeds one alert
event at a time and persists the incident that comes back.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal

from monitoriza.exceptions import MonitorizaError

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
    def from_config(cls, config: Config) -> Topology:
        return cls(depends_on={name: tuple(service.depends_on)
                               for name, service in config.services.items()},
                   tiers={name: service.tier for name, service in config.services.items()})

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


@dataclass
class Incident:
    """Alerts that fail together. ``alerts`` holds the latest event of each fingerprint.

    Mutable because the store assigns ``id`` and the policy moves ``state`` to ``healing``;
    :func:`correlate` itself never changes the incidents it is given, it returns a new one.
    """

    id: int | None
    state: IncidentState
    opened_at: float
    resolved_at: float | None
    alerts: dict[str, AlertEvent]
    root_cause: RootCause | None = None
    risk: str = "low"
    signature: str = ""

    def firing(self) -> tuple[AlertEvent, ...]:
        """The alerts whose latest event is firing, oldest onset first."""
        return tuple(sorted((event for event in self.alerts.values()
                             if event.status == "firing"),
                            key=lambda event: (event.starts_at, event.fingerprint)))

    def services(self) -> tuple[str, ...]:
        """Every service with an alert in the incident, firing or since resolved, sorted."""
        return tuple(sorted({event.service for event in self.alerts.values()
                             if event.service is not None}))

    def last_activity(self) -> float:
        """When the responder last heard a firing event of the incident's firing alerts."""
        return max((event.received_at for event in self.firing()), default=self.opened_at)


@dataclass(frozen=True)
class Correlation:
    """What one event did: the incident it now belongs to (a new object, to be saved),
    whether the incident was opened or resolved by it, and whether its root cause moved
    (the policy re-plans when it does)."""

    incident: Incident
    created: bool
    resolved: bool
    root_cause_changed: bool = False


@dataclass(frozen=True)
class _Failure:
    """The failing services among some alerts, and which of them need which (transitively,
    through ``depends_on`` or through a component alert that names another failing service)."""

    by_service: Mapping[str, tuple[AlertEvent, ...]]
    needs: Mapping[str, frozenset[str]]

    def dependents(self, service: str) -> frozenset[str]:
        return frozenset(other for other, needs in self.needs.items() if service in needs)

    def onset(self, service: str) -> float:
        return min(event.starts_at for event in self.by_service[service])

    def severity(self, service: str) -> int:
        return max(SEVERITY_RANK.get(event.severity or "", 0)
                   for event in self.by_service[service])


def _considered(alerts: Iterable[AlertEvent]) -> tuple[AlertEvent, ...]:
    """The firing alerts, or every alert when none fires (to explain a resolved incident)."""
    everything = tuple(alerts)
    return tuple(event for event in everything if event.status == "firing") or everything


def _analyse(alerts: Iterable[AlertEvent], topology: Topology) -> _Failure:
    grouped: dict[str, list[AlertEvent]] = {}
    for event in _considered(alerts):
        if event.service is not None:
            grouped.setdefault(event.service, []).append(event)
    graph: dict[str, set[str]] = {name: set(deps) for name, deps in topology.depends_on.items()}
    for service, events in grouped.items():
        for event in events:
            if event.component in grouped and event.component != service:
                graph.setdefault(service, set()).add(event.component)
    failing = frozenset(grouped)
    return _Failure(
        by_service={service: tuple(events) for service, events in grouped.items()},
        needs={service: _reach(graph, service) & failing for service in grouped})


def _join(names: Iterable[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    items = list(names)
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def _alerts_of(services: Sequence[str]) -> str:
    return f"{services[0]}'s alerts" if len(services) == 1 else f"the alerts of {_join(services)}"


def _condition(events: Iterable[AlertEvent]) -> str:
    names = sorted({event.alertname for event in events})
    return "is down" if SERVICE_DOWN in names else f"is failing ({', '.join(names)})"


def _component_status(event: AlertEvent) -> str:
    return _COMPONENT_STATUS.get(event.alertname, "failing")


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


def _recovered(alerts: Sequence[AlertEvent], failure: _Failure, needed: Iterable[str]) -> str:
    """A sentence for dependencies whose alerts resolved while the root still fails, or ''."""
    resolved = sorted({event.service for event in alerts
                       if event.status == "resolved" and event.service is not None
                       and event.service not in failure.by_service
                       and event.service in set(needed)})
    return f"{_alerts_of(resolved)} have resolved" if resolved else ""


def _service_reasoning(alerts: Sequence[AlertEvent], failure: _Failure, topology: Topology,
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
    for service, status in sorted({(event.service or "", _component_status(event))
                                   for name in dependents for event in failure.by_service[name]
                                   if event.component == root}):
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
    if any(event.component is not None for event in own):
        lines.append(f"{root}'s component alerts follow from {root} itself failing")
    recovered = _recovered(alerts, failure, topology.dependencies(root))
    if recovered:
        lines.append(f"{recovered}, but {root} is still failing")
    return lines


def _component_reasoning(alerts: Sequence[AlertEvent], failure: _Failure, topology: Topology,
                         root: str, about: Sequence[AlertEvent]) -> list[str]:
    component = about[0].component or ""
    lines = [f"{root} reports its {component} component as {_component_status(about[0])}"]
    others = sorted({event.component or "" for event in about} - {component})
    if others:
        lines.append(f"{root} also reports trouble with {_join(others)}")
    if topology.knows(component):
        lines.append(f"{component} itself reports healthy (no alert fires for it), "
                     f"so restarting {component} would not help")
        lines.append(f"the fault is most likely in {root}'s connection to {component}")
    else:
        lines.append(f"{component} is not a service of the estate, so the fault is inside {root}")
    consequences = sorted({event.alertname for event in failure.by_service[root]
                           if event.component is None})
    if consequences:
        verb = "follows" if len(consequences) == 1 else "follow"
        lines.append(f"{root}'s {_join(consequences)} {verb} from the {component} component")
    dependents = sorted(failure.dependents(root))
    if dependents:
        verb = "depends" if len(dependents) == 1 else "depend"
        lines.append(f"{_join(dependents)} {verb} on {root}")
    recovered = _recovered(alerts, failure, {event.component or "" for event in about})
    if recovered:
        lines.append(f"{recovered}, but {root} still reports {component} as "
                     f"{_component_status(about[0])}")
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

    When no alert fires (a resolved incident), every alert is considered instead.
    """
    given = tuple(alerts)
    if not given:
        raise ValueError("root_cause needs at least one alert")
    failure = _analyse(given, topology)
    if not failure.by_service:
        names = sorted({event.alertname for event in _considered(given)})
        return RootCause("", None, "service", (
            f"no alert names a service ({', '.join(names)}), so there is nothing to heal",))
    candidates = [name for name in failure.by_service if not failure.needs[name]]
    ranked = sorted(candidates or failure.by_service,
                    key=lambda name: _ranking_key(failure, name))
    root = ranked[0]
    rivals = [name for name in ranked[1:]
              if len(failure.dependents(name)) == len(failure.dependents(root))]
    own = failure.by_service[root]
    about = sorted((event for event in own if event.component is not None
                    and event.component not in failure.by_service),
                   key=lambda event: (event.starts_at,
                                      -SEVERITY_RANK.get(event.severity or "", 0),
                                      event.component or ""))
    if about and all(event.alertname in COMPONENT_CONSEQUENCES
                     for event in own if event.component is None):
        return RootCause(root, about[0].component, "component",
                         tuple(_component_reasoning(given, failure, topology, root, about)))
    return RootCause(root, None, "service",
                     tuple(_service_reasoning(given, failure, topology, root, rivals)))


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
    considered = _considered(incident.alerts.values())
    if not considered:
        return "low"
    severity = max(SEVERITY_RANK.get(event.severity or "", 0) for event in considered)
    level = max(severity - 1, 0)
    cause = incident.root_cause or root_cause(considered, topology)
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
    own = [event for event in incident.alerts.values() if (event.service or "") == cause.service]
    if cause.kind == "component":
        own = [event for event in own if event.component == cause.component]
        kind = f"component={cause.component}"
    else:
        kind = "service"
    return f"{cause.service}:{kind}:{','.join(sorted({event.alertname for event in own}))}"


def is_symptom(event: AlertEvent, incident: Incident) -> bool:
    """Whether ``event`` belongs to a service other than the root cause's: the policy never
    heals symptoms. Without a root cause, or for an alert naming no service, every alert
    counts as one: acting would be a guess."""
    cause = incident.root_cause
    return cause is None or event.service is None or event.service != cause.service


def _evaluate(incident: Incident, topology: Topology) -> bool:
    """Refresh root cause, risk and signature; whether the root cause moved."""
    before = incident.root_cause
    incident.root_cause = root_cause(incident.alerts.values(), topology)
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
    if any(held.component == event.service for held in incident.alerts.values()):
        return True
    return any(topology.linked(event.service, service) for service in services)


def _most_recent(incidents: Iterable[Incident]) -> Incident:
    return max(incidents, key=lambda incident: (incident.last_activity(), incident.opened_at,
                                                -1 if incident.id is None else incident.id))


def _apply(holder: Incident, event: AlertEvent, topology: Topology, now: float) -> Correlation:
    incident = replace(holder, alerts={**holder.alerts, event.fingerprint: event})
    # Once nothing fires, the evaluation covers every alert the incident had: the whole story.
    # A root that recovers a minute before its symptoms (their alerts lag by their ``for``)
    # is then still the root of record, and recurring outages share one signature.
    changed = _evaluate(incident, topology)
    if incident.firing():
        return Correlation(incident, created=False, resolved=False, root_cause_changed=changed)
    incident.state = "resolved"
    incident.resolved_at = now
    return Correlation(incident, created=False, resolved=True, root_cause_changed=changed)


def correlate(open_incidents: Sequence[Incident], event: AlertEvent, topology: Topology,
              now: float, window: float) -> Correlation | None:
    """Fold one alert event into the incidents; ``None`` when the event changes nothing.

    - An event whose fingerprint an open or healing incident holds updates that incident,
      whatever the window (a repeat does not duplicate the alert, a flap inside an incident
      stays in it), unless it is stale (see ``_stale``): then ``None``.
    - Otherwise a resolved event is ignored (``None``): its alert is in no open incident.
    - A firing event joins the open or healing incident, among those active within ``window``
      seconds (``last_activity() >= now - window``), whose services include its service or
      one linked to it through ``depends_on`` either way, or that a component alert links;
      the most recently active wins. Incidents are never merged, so ids stay stable.
    - Otherwise it opens a new incident, ``opened_at = now``.
    - When no alert of an incident fires any more it is resolved (``resolved_at = now``);
      resolved incidents (passed or not) take nothing: later alerts open a new one.

    Root cause, risk and signature are re-evaluated after every change, over the firing
    alerts, and over all of the incident's alerts once it resolves. The incidents given
    are not modified; the returned incident is a copy (``id`` kept, ``None`` when new).
    """
    active = [incident for incident in open_incidents if incident.state in ACTIVE_STATES]
    holders = [incident for incident in active if event.fingerprint in incident.alerts]
    if holders:
        holder = _most_recent(holders)
        if _stale(holder.alerts[event.fingerprint], event):
            return None
        return _apply(holder, event, topology, now)
    if event.status == "resolved":
        return None
    candidates = [incident for incident in active
                  if incident.last_activity() >= now - window
                  and _joins(incident, event, topology)]
    if candidates:
        return _apply(_most_recent(candidates), event, topology, now)
    incident = Incident(id=None, state="open", opened_at=now, resolved_at=None,
                        alerts={event.fingerprint: event})
    _evaluate(incident, topology)
    return Correlation(incident, created=True, resolved=False, root_cause_changed=True)
