"""Correlation: which alerts form one incident, and which failing service explains it.

Events are timed in seconds after a fixed ``T0`` and fed one by one, with ``now`` equal to the
event's arrival; no real clock is read. The estate is Conecta Plus (examples/conecta-plus.yml).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitoriza.config.loader import load_config
from monitoriza.healing.correlation import (
    UNNAMED_ALERT,
    AlertEvent,
    AlertFormatError,
    AlertSummary,
    Correlation,
    Incident,
    MemoryMembers,
    Topology,
    correlate,
    is_symptom,
    risk,
    root_cause,
    signature,
)

T0 = 1_700_000_000.0
WINDOW = 300.0

CONECTA = Topology(
    depends_on={
        "nginx": ("frontend", "api-gateway"),
        "frontend": ("api-gateway",),
        "api-gateway": ("backend", "ai-orchestrator", "guardian"),
        "backend": ("postgres", "redis", "mongodb"),
        "ai-orchestrator": ("backend", "redis", "mongodb"),
        "guardian": ("backend", "mongodb"),
        "postgres": (), "redis": (), "mongodb": (), "host": (),
    },
    tiers={
        "nginx": "critical", "frontend": "standard", "api-gateway": "critical",
        "backend": "critical", "ai-orchestrator": "standard", "guardian": "critical",
        "postgres": "critical", "redis": "critical", "mongodb": "standard", "host": "standard",
    },
)


def _event(status: str, at: float, alertname: str, service: str | None, *, severity: str,
           component: str | None, starts: float) -> AlertEvent:
    labels = {"alertname": alertname, "severity": severity}
    if service is not None:
        labels |= {"service": service, "tier": CONECTA.tier(service)}
    if component is not None:
        labels["component"] = component
    return AlertEvent.from_alert({
        "status": status, "labels": labels, "fingerprint": f"{alertname}/{service}/{component}/"
        f"{severity}", "startsAt": _rfc3339(T0 + starts)}, received_at=T0 + at)


def _rfc3339(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).isoformat().replace("+00:00", "Z")


def fire(at: float, alertname: str, service: str | None, severity: str = "P4", *,
         component: str | None = None, starts: float | None = None) -> AlertEvent:
    """A firing event received ``at`` seconds after T0; the alert began at ``starts``
    (default: when received)."""
    return _event("firing", at, alertname, service, severity=severity, component=component,
                  starts=at if starts is None else starts)


def resolve(at: float, alertname: str, service: str | None, severity: str = "P4", *,
            since: float, component: str | None = None) -> AlertEvent:
    """The resolved event of the episode that began at ``since``."""
    return _event("resolved", at, alertname, service, severity=severity, component=component,
                  starts=since)


def run(events: Sequence[AlertEvent], topology: Topology = CONECTA,
        window: float = WINDOW, members: MemoryMembers | None = None,
        cooldown: float = 0.0) -> list[Incident]:
    """Feed the events as the worker does, numbering new incidents and keeping each alert
    in ``members`` as the store would; with a ``cooldown``, recently resolved incidents are
    handed in too, as the worker does."""
    book = MemoryMembers() if members is None else members
    incidents: list[Incident] = []
    for event in events:
        given = [incident for incident in incidents if incident.state != "resolved"
                 or (incident.resolved_at or 0.0) >= event.received_at - cooldown]
        result = correlate(given, event, topology, now=event.received_at, window=window,
                           members=book, cooldown=cooldown)
        if result is None:
            continue
        incident = result.incident
        if result.created:
            incident.id = len(incidents) + 1
            incidents.append(incident)
        else:
            assert incident.id is not None
            incidents[incident.id - 1] = incident
        book.record(incident.id, event)
    return incidents


@dataclass(frozen=True)
class Expect:
    """One expected incident; ``alerts`` and ``firing`` are checked when given."""

    root: str
    state: str = "open"
    risk: str = "low"
    component: str | None = None
    alerts: int | None = None
    firing: int | None = None


@dataclass(frozen=True)
class Case:
    name: str
    events: tuple[AlertEvent, ...]
    expected: tuple[Expect, ...]
    cooldown: float = 0.0


CASES = [
    Case("conecta-a-backend-redis-unknown-only", (
        fire(0, "ComponentUnknown", "backend", component="redis"),
    ), (Expect("backend", component="redis", risk="medium"),)),
    Case("conecta-a-with-backend-degraded", (
        fire(0, "ComponentUnknown", "backend", component="redis"),
        fire(30, "ServiceDegraded", "backend"),
    ), (Expect("backend", component="redis", risk="medium", alerts=2),)),
    Case("conecta-b-redis-down-too", (
        fire(0, "ServiceDown", "redis", "P3"),
        fire(60, "ComponentUnknown", "backend", component="redis"),
        fire(90, "ServiceDegraded", "backend"),
    ), (Expect("redis", risk="high", alerts=3),)),
    Case("postgres-outage-cascades-into-four-services", (
        fire(0, "ServiceDown", "postgres", "P2"),
        fire(30, "ServiceDegraded", "backend", "P3"),
        fire(60, "ServiceDegraded", "api-gateway"),
        fire(90, "ServiceDegraded", "guardian"),
        fire(120, "ServiceDegraded", "ai-orchestrator"),
    ), (Expect("postgres", risk="critical", alerts=5),)),
    Case("postgres-cascade-at-p4-is-raised-by-tier-and-spread", (
        fire(0, "ServiceDown", "postgres"),
        fire(30, "ServiceDegraded", "backend"),
        fire(60, "ServiceDegraded", "api-gateway"),
    ), (Expect("postgres", risk="high", alerts=3),)),
    Case("deepest-of-a-whole-chain", (
        fire(0, "ServiceDown", "nginx"),
        fire(10, "ServiceDegraded", "frontend"),
        fire(20, "ServiceDegraded", "api-gateway"),
        fire(30, "ServiceDegraded", "backend"),
        fire(40, "ServiceDown", "postgres"),
    ), (Expect("postgres", risk="high", alerts=5),)),
    Case("two-unrelated-failures-at-once", (
        fire(0, "ServiceDown", "postgres"),
        fire(0, "ServiceDown", "mongodb"),
    ), (Expect("postgres", risk="medium"), Expect("mongodb", risk="low"))),
    Case("two-unrelated-failures-each-with-its-symptom", (
        fire(0, "ServiceDown", "redis", "P2"),
        fire(5, "FailureForecast", "host", "P3"),
        fire(30, "ComponentUnknown", "backend", component="redis"),
    ), (Expect("redis", risk="critical", alerts=2), Expect("host", risk="medium", alerts=1))),
    Case("shared-dependent-joins-the-most-recent-incident", (
        fire(0, "ServiceDown", "postgres"),
        fire(10, "ServiceDown", "mongodb"),
        fire(20, "ServiceDegraded", "backend"),
    ), (Expect("postgres", risk="medium", alerts=1), Expect("mongodb", risk="low", alerts=2))),
    Case("flapping-refire-after-resolution-opens-a-new-incident", (
        fire(0, "ProbeFailing", "redis"),
        resolve(60, "ProbeFailing", "redis", since=0),
        fire(120, "ProbeFailing", "redis"),
    ), (Expect("redis", state="resolved", risk="medium"), Expect("redis", risk="medium"))),
    Case("repeated-firing-does-not-duplicate", (
        fire(0, "ServiceDown", "redis"),
        fire(30, "ServiceDown", "redis", starts=0),
        fire(60, "ServiceDown", "redis", starts=0),
    ), (Expect("redis", risk="medium", alerts=1),)),
    Case("flap-inside-an-open-incident-stays-in-it", (
        fire(0, "ServiceDown", "redis", "P3"),
        fire(30, "ServiceDegraded", "backend"),
        resolve(60, "ServiceDegraded", "backend", since=30),
        fire(600, "ServiceDegraded", "backend"),
    ), (Expect("redis", risk="high", alerts=2, firing=2),)),
    Case("late-duplicate-of-a-resolved-alert-is-ignored", (
        fire(0, "ProbeFailing", "redis"),
        fire(10, "ServiceDown", "redis"),
        resolve(60, "ProbeFailing", "redis", since=0),
        fire(70, "ProbeFailing", "redis", starts=0),
    ), (Expect("redis", risk="medium", alerts=2, firing=1),)),
    Case("late-symptom-within-the-window-joins", (
        fire(0, "ServiceDown", "redis"),
        fire(240, "ServiceDegraded", "backend"),
    ), (Expect("redis", risk="medium", alerts=2),)),
    Case("late-symptom-after-the-window-joins-while-the-root-fires", (
        fire(0, "ServiceDown", "redis"),
        fire(400, "ServiceDegraded", "backend"),
    ), (Expect("redis", risk="medium", alerts=2),)),
    Case("late-dependency-after-the-window-opens-its-own", (
        fire(0, "ServiceDegraded", "backend"),
        fire(400, "ServiceDown", "postgres"),
    ), (Expect("backend", risk="medium"), Expect("postgres", risk="medium"))),
    Case("escalation-long-after-the-last-notification-stays-in-the-incident", (
        fire(0, "ServiceDown", "guardian"),
        fire(20, "ServiceDegraded", "api-gateway"),
        fire(900, "ProbeStale", "guardian", "P3", starts=880),
        fire(1800, "ServiceDown", "guardian", "P2", starts=0),
    ), (Expect("guardian", risk="critical", alerts=4),)),
    Case("late-symptom-of-a-symptom-joins-the-root", (
        fire(0, "ServiceDown", "redis", "P3"),
        fire(2000, "ServiceDegraded", "frontend"),
    ), (Expect("redis", risk="high", alerts=2),)),
    Case("symptoms-before-the-root-cause", (
        fire(0, "ComponentUnknown", "backend", component="redis"),
        fire(20, "ServiceDegraded", "api-gateway"),
        fire(60, "ServiceDown", "redis", "P3"),
    ), (Expect("redis", risk="critical", alerts=3),)),
    Case("onset-not-arrival-breaks-ties", (
        fire(0, "ServiceDegraded", "backend"),
        fire(10, "ServiceDown", "postgres"),
        fire(20, "ServiceDown", "redis", starts=-120),
    ), (Expect("redis", risk="medium", alerts=3),)),
    Case("severity-breaks-ties-of-equal-onset", (
        fire(0, "ServiceDegraded", "backend"),
        fire(10, "ServiceDown", "redis", starts=5),
        fire(10, "ServiceDown", "postgres", "P3", starts=5),
    ), (Expect("postgres", risk="high", alerts=3),)),
    Case("all-alerts-resolved-resolves-the-incident", (
        fire(0, "ServiceDown", "redis", "P3"),
        fire(30, "ComponentUnknown", "backend", component="redis"),
        resolve(300, "ServiceDown", "redis", "P3", since=0),
        resolve(330, "ComponentUnknown", "backend", component="redis", since=30),
    ), (Expect("redis", state="resolved", risk="high", alerts=2, firing=0),)),
    Case("root-recovers-first-and-the-backend-stays-broken", (
        fire(0, "ServiceDown", "redis", "P3"),
        fire(30, "ComponentUnknown", "backend", component="redis"),
        resolve(300, "ServiceDown", "redis", "P3", since=0),
    ), (Expect("backend", component="redis", risk="medium", alerts=2, firing=1),)),
    Case("alert-after-resolution-reopens-as-a-new-incident", (
        fire(0, "ServiceDown", "redis"),
        resolve(60, "ServiceDown", "redis", since=0),
        fire(90, "ServiceDegraded", "backend"),
    ), (Expect("redis", state="resolved", risk="medium"), Expect("backend", risk="medium"))),
    Case("after-effect-within-the-cool-down-stays-in-the-healed-incident", (
        fire(0, "ServiceDown", "redis", "P3"),
        resolve(60, "ServiceDown", "redis", "P3", since=0),
        fire(90, "ServiceDegraded", "redis"),
        fire(100, "ServiceDegraded", "backend"),
    ), (Expect("redis", state="resolved", risk="high", alerts=3, firing=2),), cooldown=180),
    Case("after-effect-resolving-in-the-cool-down-updates-the-healed-incident", (
        fire(0, "ServiceDown", "redis", "P3"),
        resolve(60, "ServiceDown", "redis", "P3", since=0),
        fire(90, "ServiceDegraded", "redis"),
        resolve(120, "ServiceDegraded", "redis", since=90),
    ), (Expect("redis", state="resolved", risk="high", alerts=2, firing=0),), cooldown=180),
    Case("after-the-cool-down-a-new-incident-opens", (
        fire(0, "ServiceDown", "redis", "P3"),
        resolve(60, "ServiceDown", "redis", "P3", since=0),
        fire(241, "ServiceDegraded", "redis"),
    ), (Expect("redis", state="resolved", risk="high"), Expect("redis", risk="medium")),
        cooldown=180),
    Case("unrelated-alert-in-the-cool-down-opens-its-own", (
        fire(0, "ServiceDown", "redis", "P3"),
        resolve(60, "ServiceDown", "redis", "P3", since=0),
        fire(90, "ServiceDown", "postgres"),
    ), (Expect("redis", state="resolved", risk="high", firing=0),
        Expect("postgres", risk="medium")), cooldown=180),
    Case("an-open-incident-wins-over-a-cooling-one", (
        fire(0, "ServiceDown", "redis", "P3"),
        resolve(60, "ServiceDown", "redis", "P3", since=0),
        fire(70, "ServiceDown", "postgres"),
        fire(90, "ServiceDegraded", "backend"),
    ), (Expect("redis", state="resolved", risk="high", firing=0),
        Expect("postgres", risk="medium", alerts=2)), cooldown=180),
    Case("resolved-event-for-an-unknown-fingerprint-is-ignored", (
        resolve(0, "ServiceDown", "redis", since=-60),
    ), ()),
    Case("resolved-event-for-an-unknown-fingerprint-leaves-others-alone", (
        fire(0, "ServiceDown", "postgres"),
        resolve(10, "ServiceDown", "redis", since=-60),
    ), (Expect("postgres", risk="medium", alerts=1, firing=1),)),
    Case("alert-without-a-service-stands-alone", (
        fire(0, "MonitorizaExporterDown", None, "P2"),
        fire(5, "ServiceDown", "redis"),
    ), (Expect("", risk="high"), Expect("redis", risk="medium"))),
]


class TestCorrelationTable:
    """Timed events become the expected incidents, root causes, states and risks."""

    @pytest.mark.parametrize("case", [pytest.param(case, id=case.name) for case in CASES])
    def test_case(self, case: Case) -> None:
        """Each case yields exactly its expected incidents, in the order they opened."""
        incidents = run(case.events, cooldown=case.cooldown)
        got = []
        for incident in incidents:
            assert incident.root_cause is not None
            got.append((incident.root_cause.service, incident.root_cause.kind,
                        incident.root_cause.component, incident.state, incident.risk))
        assert got == [(e.root, "component" if e.component else "service", e.component,
                        e.state, e.risk) for e in case.expected]
        for incident, expected in zip(incidents, case.expected, strict=True):
            if expected.alerts is not None:
                assert incident.summary.count() == expected.alerts
            if expected.firing is not None:
                assert incident.firing_count() == expected.firing
            assert (incident.resolved_at is not None) == (incident.state == "resolved")
            if expected.firing is None and incident.state == "resolved":
                assert incident.firing_count() == 0

    def test_enough_cases(self) -> None:
        """The table covers at least fifteen situations."""
        assert len(CASES) >= 15


class TestAlertEvent:
    """Alertmanager webhook alerts are read strictly into events."""

    def test_from_alert(self) -> None:
        """Labels, severity, service and the nanosecond RFC 3339 onset are read."""
        document: dict[str, object] = {
            "status": "firing", "fingerprint": "a1b2c3", "endsAt": "0001-01-01T00:00:00Z",
            "startsAt": "2023-11-14T22:13:20.123456789Z", "generatorURL": "http://x/",
            "labels": {"alertname": "ComponentUnknown", "service": "backend",
                       "component": "redis", "severity": "P4", "tier": "critical"}}
        event = AlertEvent.from_alert(document, received_at=T0 + 5)
        assert event.fingerprint == "a1b2c3"
        assert event.starts_at == pytest.approx(T0 + 0.123456)
        assert (event.status, event.alertname, event.service, event.severity) == (
            "firing", "ComponentUnknown", "backend", "P4")
        assert event.component == "redis"
        assert event.received_at == T0 + 5
        assert event.labels["tier"] == "critical"

    def test_labels_are_copied(self) -> None:
        """Changing the caller's labels afterwards does not change the event."""
        labels = {"alertname": "ServiceDown", "service": "redis"}
        event = AlertEvent.from_alert({"status": "resolved", "labels": labels,
                                       "fingerprint": "f", "startsAt": "2023-11-14T22:13:20Z"},
                                      received_at=T0)
        labels["service"] = "postgres"
        assert event.labels["service"] == "redis"
        assert event.service == "redis"

    def test_optional_labels(self) -> None:
        """An alert without service or severity has None for them; a naive time is UTC."""
        event = AlertEvent.from_alert({"status": "firing", "labels": {"alertname": "Watchdog"},
                                       "fingerprint": "w", "startsAt": "2023-11-14T22:13:20"},
                                      received_at=T0)
        assert (event.service, event.severity, event.component) == (None, None, None)
        assert event.starts_at == T0

    def test_round_trips_through_asdict(self) -> None:
        """The store saves ``asdict(event)`` and rebuilds it with ``AlertEvent(**data)``."""
        event = fire(0, "ComponentUnknown", "backend", component="redis")
        assert AlertEvent(**asdict(event)) == event
        assert hash(event) == hash(AlertEvent(**asdict(event)))

    @pytest.mark.parametrize(("change", "message"), [
        ({"status": "pending"}, "status"),
        ({"labels": ["alertname"]}, "labels"),
        ({"labels": {"alertname": "X", "service": 3}}, "labels.service"),
        ({"fingerprint": ""}, "fingerprint"),
        ({"startsAt": "yesterday"}, "startsAt"),
        ({"startsAt": None}, "startsAt"),
    ])
    def test_rejects(self, change: dict[str, object], message: str) -> None:
        """A document missing what correlation needs is refused, naming the field."""
        document: dict[str, object] = {"status": "firing", "labels": {"alertname": "X"},
                                       "fingerprint": "f", "startsAt": "2023-11-14T22:13:20Z"}
        with pytest.raises(AlertFormatError, match=message):
            AlertEvent.from_alert({**document, **change}, received_at=T0)


    def test_unnamed_alert(self) -> None:
        """An alert without ``alertname`` (Alertmanager accepts one) goes by a name no
        Prometheus rule can have, instead of being refused."""
        event = AlertEvent.from_alert({"status": "firing", "labels": {"service": "redis"},
                                       "fingerprint": "f", "startsAt": "2023-11-14T22:13:20Z"},
                                      received_at=T0)
        assert event.alertname == UNNAMED_ALERT


class TestTopology:
    """Dependencies are followed transitively, in both directions."""

    def test_from_config(self) -> None:
        """The test estate is the example configuration's."""
        assert Topology.from_config(load_config("examples/conecta-plus.yml")) == CONECTA

    def test_dependencies(self) -> None:
        """nginx needs everything behind the gateway, down to the datastores."""
        assert CONECTA.dependencies("nginx") == {
            "frontend", "api-gateway", "backend", "ai-orchestrator", "guardian", "postgres",
            "redis", "mongodb"}
        assert CONECTA.dependencies("redis") == frozenset()

    def test_dependents(self) -> None:
        """Everything that reaches Redis, directly or through others, depends on it."""
        assert CONECTA.dependents("redis") == {
            "backend", "ai-orchestrator", "guardian", "api-gateway", "frontend", "nginx"}
        assert CONECTA.dependents("nginx") == frozenset()

    @pytest.mark.parametrize(("a", "b", "linked"), [
        ("backend", "redis", True), ("redis", "backend", True), ("nginx", "postgres", True),
        ("guardian", "mongodb", True), ("postgres", "mongodb", False),
        ("redis", "host", False), ("redis", "redis", False), ("redis", "unknown", False)])
    def test_linked(self, a: str, b: str, linked: bool) -> None:
        """Linked means one depends on the other; siblings and a service itself are not."""
        assert CONECTA.linked(a, b) is linked

    def test_unknown_service(self) -> None:
        """A service the configuration does not name has no links and the standard tier."""
        assert CONECTA.dependencies("cctv") == frozenset()
        assert CONECTA.tier("cctv") == "standard"
        assert not CONECTA.knows("cctv")

    def test_cycle_terminates(self) -> None:
        """A cycle (which the loader rejects) still gives finite answers."""
        looped = Topology({"a": ("b",), "b": ("a",)}, {})
        assert looped.dependencies("a") == {"b"}
        assert looped.dependents("a") == {"b"}


class TestRootCause:
    """The deepest failing dependency explains the incident, with reasons people can read."""

    def test_conecta_a_blames_the_backends_connection(self) -> None:
        """Redis quiet, backend reports it unknown: the backend's Redis connection is at fault."""
        cause = root_cause([fire(0, "ComponentUnknown", "backend", component="redis"),
                            fire(30, "ServiceDegraded", "backend")], CONECTA)
        assert (cause.service, cause.component, cause.kind) == ("backend", "redis", "component")
        assert ("redis itself reports healthy (no alert fires for it), so restarting redis "
                "would not help") in cause.reasoning
        assert "the fault is most likely in backend's connection to redis" in cause.reasoning

    def test_conecta_b_blames_redis(self) -> None:
        """Redis down too: Redis is the root and the backend's alerts are its symptoms."""
        cause = root_cause([fire(0, "ServiceDown", "redis", "P3"),
                            fire(60, "ComponentUnknown", "backend", component="redis"),
                            fire(90, "ServiceDegraded", "api-gateway")], CONECTA)
        assert (cause.service, cause.component, cause.kind) == ("redis", None, "service")
        assert cause.reasoning[:3] == (
            "redis is down and api-gateway and backend depend on it",
            "backend reports its redis component as unknown",
            "the alerts of api-gateway and backend started after redis's")

    def test_earlier_symptoms_are_explained(self) -> None:
        """Symptoms that started first are still blamed on what they depend on."""
        cause = root_cause([fire(0, "ServiceDegraded", "backend"),
                            fire(60, "ServiceDown", "postgres")], CONECTA)
        assert cause.service == "postgres"
        assert "backend's alerts started first, but it depends on postgres" in cause.reasoning

    def test_component_alert_points_at_a_failing_service(self) -> None:
        """Without a depends_on edge, a component named like a failing service links them."""
        bare = Topology({"backend": (), "redis": ()}, {"redis": "critical"})
        cause = root_cause([fire(0, "ComponentUnhealthy", "backend", component="redis"),
                            fire(30, "ServiceDown", "redis")], bare)
        assert (cause.service, cause.kind) == ("redis", "service")
        assert "backend reports its redis component as unhealthy" in cause.reasoning

    def test_down_service_is_not_a_component_fault(self) -> None:
        """A down backend reports every component unknown; the backend itself is the root."""
        cause = root_cause([fire(0, "ServiceDown", "backend"),
                            *(fire(300, "ComponentUnknown", "backend", component=name)
                              for name in ("postgres", "redis", "mongodb"))], CONECTA)
        assert (cause.service, cause.kind, cause.component) == ("backend", "service", None)
        assert "backend's component alerts follow from backend itself failing" in cause.reasoning

    def test_component_outside_the_estate(self) -> None:
        """A component that is no service of the estate is a fault inside the service."""
        cause = root_cause([fire(0, "ComponentUnhealthy", "backend", component="s3")], CONECTA)
        assert (cause.service, cause.component, cause.kind) == ("backend", "s3", "component")
        assert "s3 is not a service of the estate, so the fault is inside backend" in (
            cause.reasoning)

    def test_independent_failures_are_named(self) -> None:
        """Two roots under one dependent: the other one is reported as independent."""
        cause = root_cause([fire(0, "ServiceDown", "postgres"), fire(5, "ServiceDown", "mongodb"),
                            fire(10, "ServiceDegraded", "backend")], CONECTA)
        assert cause.service == "postgres"
        assert ("postgres and mongodb explain as many failing services; postgres's alerts "
                "started first") in cause.reasoning
        assert "mongodb fails too, independently of postgres" in cause.reasoning

    def test_arrival_order_does_not_matter(self) -> None:
        """Every order of the same alerts gives the same root cause and reasons."""
        alerts = [fire(0, "ServiceDegraded", "backend"), fire(10, "ServiceDown", "postgres"),
                  fire(20, "ServiceDown", "redis", starts=-120),
                  fire(30, "ServiceDegraded", "guardian")]
        answers = {root_cause(order, CONECTA) for order in itertools.permutations(alerts)}
        assert len(answers) == 1
        assert answers.pop().service == "redis"

    def test_resolved_alerts_explain_a_resolved_incident(self) -> None:
        """With nothing firing, every alert is considered."""
        cause = root_cause([resolve(60, "ServiceDown", "redis", since=0)], CONECTA)
        assert cause.service == "redis"

    def test_needs_an_alert(self) -> None:
        """There is nothing to explain without alerts."""
        with pytest.raises(ValueError, match="at least one alert"):
            root_cause([], CONECTA)


def _incident(*alerts: AlertEvent, topology: Topology = CONECTA) -> Incident:
    """An incident holding ``alerts``, evaluated as correlation would."""
    incident = Incident(1, "open", T0, None, AlertSummary.of(alerts))
    incident.root_cause = root_cause(alerts, topology)
    incident.risk = risk(incident, topology)
    incident.signature = signature(incident)
    return incident


class TestRisk:
    """Risk is the severity's baseline, raised by a critical root and by spread."""

    @pytest.mark.parametrize(("severity", "tier", "spread", "expected"), [
        ("P4", "standard", 0, "low"), ("P4", "critical", 0, "medium"),
        ("P4", "standard", 2, "medium"), ("P4", "critical", 2, "high"),
        ("P3", "standard", 0, "medium"), ("P3", "critical", 0, "high"),
        ("P3", "standard", 2, "high"), ("P3", "critical", 2, "critical"),
        ("P2", "standard", 0, "high"), ("P2", "critical", 0, "critical"),
        ("P2", "standard", 2, "critical"), ("P2", "critical", 2, "critical"),
        ("P1", "standard", 0, "critical"), ("none", "standard", 0, "low"),
        ("P4", "critical", 1, "medium"), ("P3", "standard", 1, "medium")])
    def test_table(self, severity: str, tier: str, spread: int, expected: str) -> None:
        """The documented table, one cell at a time."""
        topology = Topology({"db": (), "app1": ("db",), "app2": ("db",)}, {"db": tier})
        alerts = [fire(0, "ServiceDown", "db", severity),
                  *(fire(10, "ServiceDegraded", name) for name in ("app1", "app2")[:spread])]
        assert risk(_incident(*alerts, topology=topology), topology) == expected

    def test_unevaluated_incident(self) -> None:
        """An incident without a root cause yet has one worked out for its risk."""
        alert = fire(0, "ServiceDown", "redis", "P2")
        incident = Incident(None, "open", T0, None, AlertSummary.of([alert]))
        assert risk(incident, CONECTA) == "critical"


class TestSignature:
    """Signatures name the pattern, the same every time it recurs."""

    def test_service(self) -> None:
        """Root service, kind, and the root's alert names, severity left out."""
        incident = _incident(fire(0, "ServiceDown", "redis", "P3"),
                             fire(0, "ServiceDown", "redis", "P2"),
                             fire(30, "ComponentUnknown", "backend", component="redis"))
        assert incident.signature == "redis:service:ServiceDown"

    def test_component(self) -> None:
        """A component root names the component and only the alerts about it."""
        incident = _incident(fire(0, "ComponentUnknown", "backend", component="redis"),
                             fire(30, "ServiceDegraded", "backend"))
        assert incident.signature == "backend:component=redis:ComponentUnknown"

    def test_several_alertnames_are_sorted(self) -> None:
        """Names are sorted and joined, so arrival order cannot change them."""
        incident = _incident(fire(0, "ServiceDown", "redis"), fire(0, "ProbeFailing", "redis"))
        assert incident.signature == "redis:service:ProbeFailing,ServiceDown"

    def test_stable_across_orders_and_recurrences(self) -> None:
        """The same outage, in any order and on another day, has the same signature."""
        outage = [fire(0, "ServiceDown", "postgres"), fire(30, "ServiceDegraded", "backend"),
                  fire(60, "ServiceDegraded", "guardian")]
        signatures = {run(order)[0].signature for order in itertools.permutations(outage)}
        day_later = [replace(event, starts_at=event.starts_at + 86400,
                             received_at=event.received_at + 86400) for event in outage]
        signatures.add(run(day_later)[0].signature)
        assert signatures == {"postgres:service:ServiceDown"}

    def test_kept_through_resolution(self) -> None:
        """Resolution records the whole story: the root that recovered first stays the root."""
        incident = run([fire(0, "ServiceDown", "redis"),
                        fire(30, "ComponentUnknown", "backend", component="redis"),
                        resolve(300, "ServiceDown", "redis", since=0),
                        resolve(330, "ComponentUnknown", "backend", component="redis",
                                since=30)])[0]
        assert incident.state == "resolved"
        assert incident.signature == "redis:service:ServiceDown"

    def test_without_root_cause(self) -> None:
        """An incident not yet evaluated has no signature."""
        assert signature(Incident(None, "open", T0, None, AlertSummary())) == ""


class TestIsSymptom:
    """Only the root cause's own alerts are acted on."""

    def test_symptoms(self) -> None:
        """The backend's alerts are symptoms of a Redis outage; Redis's are not."""
        redis_down = fire(0, "ServiceDown", "redis")
        backend = fire(30, "ComponentUnknown", "backend", component="redis")
        incident = _incident(redis_down, backend)
        assert is_symptom(backend, incident)
        assert not is_symptom(redis_down, incident)

    def test_component_root_is_acted_on(self) -> None:
        """In the Conecta case the backend is the root, so its alerts are not symptoms."""
        backend = fire(0, "ComponentUnknown", "backend", component="redis")
        assert not is_symptom(backend, _incident(backend))

    def test_without_root_cause(self) -> None:
        """Without a root cause nothing is acted on."""
        alert = fire(0, "ServiceDown", "redis")
        assert is_symptom(alert, Incident(None, "open", T0, None, AlertSummary.of([alert])))

    def test_alert_without_service(self) -> None:
        """An alert naming no service is never acted on."""
        alert = fire(0, "MonitorizaExporterDown", None, "P2")
        assert is_symptom(alert, _incident(alert))


class TestCorrelate:
    """One event at a time, without touching the incidents it is given."""

    members: MemoryMembers

    def _open(self, *events: AlertEvent) -> Incident:
        """The one incident ``events`` open; its alerts are in ``self.members``."""
        self.members = MemoryMembers()
        incidents = run(events, members=self.members)
        assert len(incidents) == 1
        return incidents[0]

    def test_created(self) -> None:
        """A first alert opens an incident, not yet saved, at ``now``."""
        result = correlate([], fire(0, "ServiceDown", "redis"), CONECTA, now=T0 + 1,
                           window=WINDOW, members=MemoryMembers())
        assert result is not None
        assert (result.created, result.resolved, result.root_cause_changed) == (True, False, True)
        assert (result.incident.id, result.incident.state) == (None, "open")
        assert result.incident.opened_at == T0 + 1

    def test_inputs_are_not_modified(self) -> None:
        """The given incident stays as it was; the result is a copy with the same id."""
        incident = self._open(fire(0, "ServiceDown", "redis"))
        before = replace(incident)
        result = correlate([incident], fire(10, "ServiceDegraded", "backend"), CONECTA,
                           now=T0 + 10, window=WINDOW, members=self.members)
        assert result is not None
        assert incident == before
        assert result.incident is not incident
        assert result.incident.id == incident.id
        assert result.incident.summary.count() == 2

    def test_symptom_does_not_move_the_root(self) -> None:
        """A symptom joining reports the root cause as unchanged; the root arriving moves it."""
        incident = self._open(fire(0, "ServiceDown", "redis"))
        joined = correlate([incident], fire(10, "ServiceDegraded", "backend"), CONECTA,
                           now=T0 + 10, window=WINDOW, members=self.members)
        assert joined is not None
        assert not joined.root_cause_changed
        early = self._open(fire(0, "ServiceDegraded", "backend"))
        moved = correlate([early], fire(10, "ServiceDown", "redis"), CONECTA, now=T0 + 10,
                          window=WINDOW, members=self.members)
        assert moved is not None
        assert moved.root_cause_changed
        assert moved.incident.root_cause is not None
        assert moved.incident.root_cause.service == "redis"

    def test_resolved_flag(self) -> None:
        """The event that resolves the last firing alert says so and stamps ``now``."""
        incident = self._open(fire(0, "ServiceDown", "redis"))
        result = correlate([incident], resolve(90, "ServiceDown", "redis", since=0), CONECTA,
                           now=T0 + 91, window=WINDOW, members=self.members)
        assert result is not None
        assert (result.created, result.resolved) == (False, True)
        assert (result.incident.state, result.incident.resolved_at) == ("resolved", T0 + 91)

    def test_ignored_events(self) -> None:
        """An unknown resolution and a duplicate resolution change nothing."""
        incident = self._open(fire(0, "ServiceDown", "redis"), fire(5, "ProbeFailing", "redis"))
        assert correlate([incident], resolve(10, "ServiceDown", "postgres", since=0), CONECTA,
                         now=T0 + 10, window=WINDOW, members=self.members) is None
        once = correlate([incident], resolve(10, "ProbeFailing", "redis", since=5), CONECTA,
                         now=T0 + 10, window=WINDOW, members=self.members)
        assert once is not None
        self.members.record(1, resolve(10, "ProbeFailing", "redis", since=5))
        assert correlate([once.incident], resolve(11, "ProbeFailing", "redis", since=5),
                         CONECTA, now=T0 + 11, window=WINDOW, members=self.members) is None

    def test_resolution_with_an_earlier_onset_counts(self) -> None:
        """Alertmanager may report an earlier startsAt on the resolution; it still resolves."""
        incident = self._open(fire(0, "ServiceDown", "redis"))
        result = correlate([incident], resolve(60, "ServiceDown", "redis", since=-120), CONECTA,
                           now=T0 + 60, window=WINDOW, members=self.members)
        assert result is not None
        assert result.resolved

    def test_healing_incident_takes_linked_alerts(self) -> None:
        """An incident being healed still gathers its symptoms, and stays healing."""
        incident = self._open(fire(0, "ServiceDown", "redis"))
        incident.state = "healing"
        result = correlate([incident], fire(20, "ServiceDegraded", "backend"), CONECTA,
                           now=T0 + 20, window=WINDOW, members=self.members)
        assert result is not None
        assert not result.created
        assert result.incident.state == "healing"

    def test_resolved_incidents_take_nothing(self) -> None:
        """A resolved incident handed in by mistake is not reopened."""
        incident = self._open(fire(0, "ServiceDown", "redis"))
        incident.state = "resolved"
        result = correlate([incident], fire(20, "ServiceDown", "redis", starts=0), CONECTA,
                           now=T0 + 20, window=WINDOW, members=self.members)
        assert result is not None
        assert result.created

    def test_repeat_refreshes_activity(self) -> None:
        """A repeated notification keeps the incident active for a late new service."""
        incidents = run([fire(0, "ServiceDegraded", "backend"),
                         fire(250, "ServiceDegraded", "backend", starts=0),
                         fire(500, "ServiceDown", "postgres")])
        assert len(incidents) == 1
        assert incidents[0].last_activity() == T0 + 500

    def test_window_edge(self) -> None:
        """Activity exactly ``window`` seconds ago still lets a new service join."""
        assert len(run([fire(0, "ServiceDegraded", "backend"),
                        fire(WINDOW, "ServiceDown", "postgres")])) == 1
        assert len(run([fire(0, "ServiceDegraded", "backend"),
                        fire(WINDOW + 0.5, "ServiceDown", "postgres")])) == 2

    def test_after_effect_keeps_the_story(self) -> None:
        """An after-effect in the cool-down is flagged, and the healed incident keeps its
        state, resolution time, root cause of record, risk and signature."""
        incident = self._open(fire(0, "ServiceDown", "redis", "P3"))
        healed = correlate([incident], resolve(60, "ServiceDown", "redis", "P3", since=0),
                           CONECTA, now=T0 + 60, window=WINDOW, members=self.members)
        assert healed is not None and healed.resolved
        self.members.record(1, resolve(60, "ServiceDown", "redis", "P3", since=0))
        before = healed.incident
        result = correlate([before], fire(90, "ServiceDegraded", "backend"), CONECTA,
                           now=T0 + 90, window=WINDOW, members=self.members, cooldown=180)
        assert result is not None
        assert (result.after_effect, result.created, result.resolved) == (True, False, False)
        after = result.incident
        assert (after.id, after.state, after.resolved_at) == (1, "resolved", T0 + 60)
        assert (after.root_cause, after.risk, after.signature) == (
            before.root_cause, before.risk, before.signature)
        assert after.summary.services("firing") == ("backend",)

    def test_without_cool_down_a_resolved_incident_takes_nothing(self) -> None:
        """``cooldown=0`` (the default) keeps the old rule: later alerts open a new one."""
        incident = self._open(fire(0, "ServiceDown", "redis"))
        incident.state, incident.resolved_at = "resolved", T0 + 60
        result = correlate([incident], fire(61, "ServiceDegraded", "redis"), CONECTA,
                           now=T0 + 61, window=WINDOW, members=self.members)
        assert result is not None and result.created and not result.after_effect

    def test_correlation_is_a_value(self) -> None:
        """Results compare by value, so a test or a log can show them whole."""
        incident = Incident(None, "open", T0, None, AlertSummary())
        assert Correlation(incident, True, False) == Correlation(incident, True, False)


SERVICES = ["nginx", "frontend", "api-gateway", "backend", "ai-orchestrator", "guardian",
            "postgres", "redis", "mongodb", "host"]
ALERTNAMES = ["ServiceDown", "ServiceDegraded", "ProbeFailing"]


@st.composite
def event_streams(draw: st.DrawFn) -> list[AlertEvent]:
    """Firing and resolving alerts over the estate, at increasing times, flaps included."""
    events: list[AlertEvent] = []
    started: dict[tuple[str, str], float] = {}
    at = 0.0
    for _ in range(draw(st.integers(1, 30))):
        at += draw(st.sampled_from([0.0, 5.0, 60.0, 200.0, 400.0]))
        key = (draw(st.sampled_from(SERVICES)), draw(st.sampled_from(ALERTNAMES)))
        if key in started and draw(st.booleans()):
            events.append(resolve(at, key[1], key[0], since=started.pop(key)))
        else:
            started.setdefault(key, at)
            events.append(fire(at, key[1], key[0], starts=started[key]))
    return events


class TestInvariants:
    """Whatever the stream of alerts, the incidents stay consistent."""

    @settings(max_examples=200, deadline=None)
    @given(event_streams())
    def test_invariants(self, events: list[AlertEvent]) -> None:
        """One active incident per alert, a firing root in each, resolved means quiet."""
        members = MemoryMembers()
        incidents = run(events, members=members)
        active = [incident for incident in incidents if incident.state != "resolved"]
        fingerprints = [fp for incident in active for fp in members.alerts[incident.id or 0]]
        assert len(fingerprints) == len(set(fingerprints))
        for incident in incidents:
            assert incident.root_cause is not None
            assert incident.signature.startswith(f"{incident.root_cause.service}:")
            assert incident.summary == AlertSummary.of(members.alerts[incident.id or 0].values())
            if incident.state == "resolved":
                assert incident.firing_count() == 0
                assert incident.resolved_at is not None
            else:
                assert incident.firing_count()
                assert incident.root_cause.service in incident.summary.services("firing")

    @settings(max_examples=200, deadline=None)
    @given(event_streams())
    def test_invariants_with_a_cool_down(self, events: list[AlertEvent]) -> None:
        """With a recovery cool-down, active incidents keep their invariants and a resolved
        one never reopens: after-effects fire in it, its root cause of record stays."""
        members = MemoryMembers()
        incidents = run(events, members=members, cooldown=300.0)
        active = [incident for incident in incidents if incident.state != "resolved"]
        fingerprints = [fp for incident in active for fp in members.alerts[incident.id or 0]]
        assert len(fingerprints) == len(set(fingerprints))
        for incident in incidents:
            assert incident.root_cause is not None
            assert incident.summary == AlertSummary.of(members.alerts[incident.id or 0].values())
            if incident.state == "resolved":
                assert incident.resolved_at is not None
            else:
                assert incident.firing_count()
                assert incident.root_cause.service in incident.summary.services("firing")
