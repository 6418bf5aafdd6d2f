"""Derive a drill's fault matrix from the estate: pure, no I/O (``commands`` reads the files).

For each service and each fault kind that applies to it (docker probe: container stop, kill,
pause and crash loop; process probe: process kill; ``depends_on``: an outage of each
dependency; host probe or disk forecast: disk filling), the plan says which alerts must fire
(:mod:`monitoriza.drill.rules`), which receivers each must reach
(:mod:`monitoriza.drill.routes`, on the real route tree), the root cause the responder must
name, the playbook expected to heal it (chosen as the responder chooses,
:func:`monitoriza.healing.decide.matching_playbooks`) and a deadline per stage that lists the
timers it adds up (see docs/drills.md, "How deadlines are derived").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from monitoriza.config.schema import (
    Config,
    DockerProbe,
    ForecastSpec,
    HostProbe,
    Playbook,
    ProcessProbe,
    Service,
)
from monitoriza.drill.model import (
    Deadline,
    DrillPlan,
    Expectation,
    ExpectedAlert,
    Experiment,
    FaultKind,
    Heal,
    Reach,
    Term,
    Timers,
)
from monitoriza.drill.routes import RouteTree
from monitoriza.drill.rules import AlertRule, Condition, PlanInputError, escalation
from monitoriza.durations import parse_duration
from monitoriza.exceptions import DurationError
from monitoriza.healing.correlation import AlertEvent, Topology
from monitoriza.healing.decide import matching_playbooks
from monitoriza.healing.notices import NOTICE_ALERTNAME, levels_up_to
from monitoriza.healing.policy import SELF_RAISED_LABEL, SELF_RAISED_VALUE
from monitoriza.lint.routing import route_alert

CONTAINER_FAULTS: tuple[FaultKind, ...] = (
    "container_stop", "container_kill", "container_pause", "crash_loop")
#: The job whose scrape interval delays the exporter's metrics (prometheus/prometheus.yml).
EXPORTER_JOB = "monitoriza-exporter"
#: Prometheus's own defaults when the file does not set them.
PROMETHEUS_DEFAULT_INTERVAL = 60.0
MARGIN_RATIO = 0.10
MARGIN_RULE = "each deadline = its timers + one scrape interval + 10 % of the timers"
DISK_WORDS = ("filesystem", "disk")
#: The incident label of the notices the plan routes; any value groups them the same way.
DRILL_INCIDENT = "drill"


def read_timers(prometheus: Mapping[str, Any], source: str) -> Timers:
    """The exporter's scrape interval and the evaluation interval of ``prometheus.yml``."""
    top = prometheus.get("global") or {}
    scrape = _duration(top.get("scrape_interval"), f"{source}: global.scrape_interval")
    for index, job in enumerate(prometheus.get("scrape_configs") or []):
        if isinstance(job, Mapping) and job.get("job_name") == EXPORTER_JOB \
                and job.get("scrape_interval") is not None:
            where = f"{source}: scrape_configs[{index}].scrape_interval"
            scrape = _duration(job["scrape_interval"], where)
    evaluation = _duration(top.get("evaluation_interval"),
                           f"{source}: global.evaluation_interval")
    return Timers(Term("scrape interval", *scrape), Term("evaluation interval", *evaluation))


def _duration(value: object, where: str) -> tuple[float, str]:
    if value is None:
        return PROMETHEUS_DEFAULT_INTERVAL, f"Prometheus's default (not set at {where})"
    try:
        return parse_duration(str(value)), where
    except DurationError as exc:
        raise PlanInputError(f"{where}: {exc}") from None


@dataclass(frozen=True, slots=True)
class _Signal:
    """A condition a fault raises on one service, and the timers before its rules see it."""

    service: str
    condition: Condition
    origin: tuple[Term, ...]
    labels: tuple[tuple[str, str], ...] = ()


@dataclass
class _Group:
    fired_after: float  # the ``for`` of the alert that opened it
    timer: Term


class Planner:
    """Builds a :class:`DrillPlan`; one instance per set of inputs."""

    def __init__(self, config: Config, alertmanager: Mapping[str, Any], alertmanager_source: str,
                 rules: list[AlertRule], timers: Timers) -> None:
        self.config = config
        self.tree = RouteTree(alertmanager, alertmanager_source)
        self.rules = rules
        self.timers = timers
        self.topology = Topology.from_config(config)

    def plan(self) -> DrillPlan:
        experiments: list[Experiment] = []
        for name, service in self.config.services.items():
            experiments += self._experiments(name, service)
        return DrillPlan(tuple(experiments), self.timers, MARGIN_RULE)

    # -- the matrix ---------------------------------------------------------------------

    def _experiments(self, name: str, service: Service) -> list[Experiment]:
        found: list[Experiment] = []
        docker = next((p for p in service.probes if isinstance(p, DockerProbe)), None)
        if docker is not None:
            for fault in CONTAINER_FAULTS:
                notes = (("between crashes the container runs; a probe that passes then keeps "
                          "availability above 0 and delays ServiceDown",)
                         if fault == "crash_loop" else ())
                found.append(self._experiment(name, fault, docker.container, name,
                                              [self._down(name)], notes=notes))
        process = next((p for p in service.probes if isinstance(p, ProcessProbe)), None)
        if process is not None:
            found.append(self._experiment(name, "process_kill", process.process_name, name,
                                          [self._down(name)]))
        for dependency in service.depends_on:
            notes = () if self._injectable(dependency) else (
                f"{dependency} has no docker or process probe: a drill cannot stop it",)
            found.append(self._experiment(name, "dependency_outage", dependency, dependency,
                                          [self._down(dependency)], notes=notes))
        disk = self._disk_signals(name, service)
        if disk:
            paths = [path for p in service.probes if isinstance(p, HostProbe)
                     for path in p.disk_paths]
            found.append(self._experiment(
                name, "disk_fill", ", ".join(paths) or "forecast", name, disk,
                notes=("deadlines count from the moment the disk crosses the alert's "
                       f"condition (health.saturation_warn "
                       f"{self.config.health.saturation_warn:g} for ServiceDegraded; the "
                       "forecast's threshold inside its horizon for FailureForecast), not "
                       "from the start of the filling",)))
        return found

    def _injectable(self, name: str) -> bool:
        service = self.config.services.get(name)
        return service is not None and any(isinstance(p, DockerProbe | ProcessProbe)
                                           for p in service.probes)

    def _probe_terms(self, service_name: str, kinds: tuple[type, ...] | None = None
                     ) -> tuple[Term, ...]:
        """Interval and timeout of the probe that is last to see the fault: the service is
        ``down`` only once every probe has failed."""
        probes = [(index, probe) for index, probe in
                  enumerate(self.config.services[service_name].probes)
                  if kinds is None or isinstance(probe, kinds)]
        if not probes:
            return ()
        index, slowest = max(probes, key=lambda item: (item[1].interval or 0.0)
                             + (item[1].timeout or 0.0))
        where = f"services.{service_name}.probes[{index}] ({slowest.kind} {slowest.name})"
        return (Term(f"probe interval ({slowest.name})", slowest.interval or 0.0,
                     f"{where}.interval"),
                Term(f"probe timeout ({slowest.name})", slowest.timeout or 0.0,
                     f"{where}.timeout"))

    def _down(self, service_name: str) -> _Signal:
        return _Signal(service_name, "down", self._probe_terms(service_name))

    def _disk_signals(self, name: str, service: Service) -> list[_Signal]:
        signals: list[_Signal] = []
        if any(isinstance(p, HostProbe) for p in service.probes):
            recording = Term("evaluation interval (recording rule the alert reads)",
                             self.timers.evaluation_interval.seconds,
                             self.timers.evaluation_interval.source)
            signals.append(_Signal(name, "degraded",
                                   (*self._probe_terms(name, (HostProbe,)), recording)))
        for forecast, spec in self.config.forecasts.items():
            if spec.service == name and _about_disk(spec):
                origin = (Term(f"forecast interval ({forecast})", spec.interval,
                               f"forecasts.{forecast}.interval"),)
                signals.append(_Signal(name, "forecast", origin, (("forecast", forecast),)))
        return signals

    def _experiment(self, service: str, fault: FaultKind, target: str, root: str,
                    signals: Sequence[_Signal], *, notes: Sequence[str] = ()) -> Experiment:
        alerts, alert_notes = self._alerts(signals)
        heal, heal_notes = self._heal(root, alerts)
        return Experiment(service=service, fault=fault, target=target, root_cause=root,
                          alerts=tuple(alerts), heal=heal,
                          affected=tuple(sorted(self.topology.dependents(root))),
                          notes=(*notes, *alert_notes, *heal_notes))

    # -- alerts and receivers -------------------------------------------------------------

    def _detect_terms(self, signal: _Signal, rule: AlertRule) -> tuple[Term, ...]:
        evaluation = self.timers.evaluation_interval
        if rule.evaluation_interval is not None:
            evaluation = Term("evaluation interval", rule.evaluation_interval,
                              f"{rule.source} (group interval)")
        return (*signal.origin, self.timers.scrape_interval, evaluation,
                Term(f"for ({rule.alertname} {rule.severity})", rule.for_seconds, rule.source))

    def _alerts(self, signals: Sequence[_Signal]) -> tuple[list[ExpectedAlert], list[str]]:
        candidates: list[tuple[_Signal, AlertRule, dict[str, str], tuple[Term, ...]]] = []
        for signal in signals:
            tier = self.config.services[signal.service].tier
            for rule in escalation(self.rules, signal.condition, tier):
                labels = {"alertname": rule.alertname, "service": signal.service,
                          "tier": tier, **dict(rule.labels), **dict(signal.labels)}
                candidates.append((signal, rule, labels, self._detect_terms(signal, rule)))
        candidates.sort(key=lambda item: sum(t.seconds for t in item[3]))
        groups: dict[tuple[object, ...], _Group] = {}
        noticed: set[str] = set()
        alerts: list[ExpectedAlert] = []
        notes: list[str] = []
        for position, (signal, rule, labels, detect) in enumerate(candidates):
            # A forecast's P2 needs a nearer failure than its P3 (a stricter condition), so
            # it never fires with the P3 at onset; a down or degraded condition is one state.
            earlier = [other[2] for other in candidates
                       if other[2] is not labels and other[1].for_seconds <= rule.for_seconds
                       and other[0].service == signal.service
                       and other[0].condition != "forecast"]
            muted_by = self.tree.inhibitor(labels, earlier)
            reaches: tuple[Reach, ...] = ()
            name = f"{rule.alertname} {rule.severity} of {signal.service}"
            if muted_by is not None:
                notes.append(f"{name} fires but is inhibited while "
                             f"{muted_by['alertname']} {muted_by.get('severity', '')} fires: "
                             "it notifies no one")
            else:
                reaches = self._reaches(labels, detect, rule.for_seconds, groups, noticed)
                if not any(reach.person for reach in reaches):
                    names = ", ".join(sorted({r.receiver for r in reaches})) or "no receiver"
                    if rule.severity in {"P2", "P3"}:
                        notes.append(f"{name} reaches no person (only {names})")
            expectation: Expectation = "first" if position == 0 else "if_persisting"
            alerts.append(ExpectedAlert(
                alertname=rule.alertname, severity=rule.severity, service=signal.service,
                for_seconds=rule.for_seconds, rule=rule.source,
                labels=tuple(sorted(labels.items())), expectation=expectation,
                detect=deadline(detect, self.timers), reaches=reaches))
        return alerts, notes

    def _group_timer(self, route_path: str, labels: Mapping[str, str], fired_after: float,
                     groups: dict[tuple[object, ...], _Group]) -> Term:
        key = self.tree.group_key(route_path, labels)
        group = groups.get(key)
        if group is not None and group.fired_after < fired_after:
            timer = self.tree.timer(route_path, "group_interval")
            return Term("group_interval (joins a group that already notified)",
                        timer.seconds, timer.source)
        if group is not None:  # opened by an alert firing at the same moment: same flush
            return group.timer
        timer = self.tree.timer(route_path, "group_wait")
        term = Term("group_wait", timer.seconds, timer.source)
        groups[key] = _Group(fired_after, term)
        return term

    def _reaches(self, labels: Mapping[str, str], detect: tuple[Term, ...], fired_after: float,
                 groups: dict[tuple[object, ...], _Group], noticed: set[str]
                 ) -> tuple[Reach, ...]:
        found: list[Reach] = []
        responder_wait: Term | None = None
        listen = self.config.responder.listen
        for destination in route_alert(self.tree.config, labels):
            wait = self._group_timer(destination.route_path, labels, fired_after, groups)
            to_responder = self.tree.posts_to(destination.receiver, listen)
            if to_responder and responder_wait is None:
                responder_wait = wait
            found.append(Reach(destination.receiver, destination.route_path, "alertmanager",
                               self.tree.channels(destination.receiver), to_responder,
                               deadline((*detect, wait), self.timers)))
        if responder_wait is None or self.config.responder.healing.alertmanager_url is None:
            return tuple(found)
        for level in levels_up_to(labels.get("severity") if labels.get("severity") in
                                  {"P2", "P3"} else None):
            if level in noticed:
                continue
            noticed.add(level)
            notice = {"alertname": NOTICE_ALERTNAME, "incident": DRILL_INCIDENT,
                      "severity": level, "root_cause": labels.get("service", ""),
                      SELF_RAISED_LABEL: SELF_RAISED_VALUE}
            for destination in route_alert(self.tree.config, notice):
                wait = self._group_timer(destination.route_path, notice, fired_after, groups)
                delivered = Term(f"{responder_wait.name} to the responder",
                                 responder_wait.seconds, responder_wait.source)
                found.append(Reach(
                    destination.receiver, destination.route_path, "notice",
                    self.tree.channels(destination.receiver),
                    self.tree.posts_to(destination.receiver, listen),
                    deadline((*detect, delivered,
                              Term(f"{wait.name} ({NOTICE_ALERTNAME} {level})", wait.seconds,
                                   wait.source)), self.timers),
                    notice=f"{NOTICE_ALERTNAME} {level}"))
        return tuple(found)

    # -- healing --------------------------------------------------------------------------

    def _heal(self, root: str, alerts: Sequence[ExpectedAlert]) -> tuple[Heal | None, list[str]]:
        service = self.config.services.get(root)
        books = service.healing if service else []
        if not books:
            return None, [f"{root} has no healing playbook: people must restore it"]
        for alert in alerts:
            delivery = next((r for r in alert.reaches
                             if r.to_responder and r.via == "alertmanager"), None)
            if alert.service != root or delivery is None:
                continue
            event = AlertEvent(fingerprint="drill-plan", starts_at=0.0, status="firing",
                               alertname=alert.alertname, service=alert.service,
                               severity=alert.severity, labels=dict(alert.labels),
                               received_at=0.0)
            matching = matching_playbooks(list(books), event)
            if not matching:
                continue
            chosen = matching[0]
            index = books.index(chosen)
            wait = delivery.deadline.terms[-1]  # the route's group timer, after detection
            terms = (*alert.detect.terms,
                     Term(f"{wait.name} to the responder", wait.seconds, wait.source),
                     *_playbook_terms(root, index, chosen))
            notes = []
            if chosen.verify is None:
                notes.append(f"playbook {chosen.name} has no verify: the responder cannot "
                             "confirm the heal")
            if chosen.dry_run or self.config.responder.healing.dry_run:
                notes.append(f"playbook {chosen.name} runs in dry-run: nothing will be healed")
            return Heal(root, chosen.name, f"{alert.alertname} {alert.severity}",
                        tuple(book.name for book in matching[1:]),
                        deadline(terms, self.timers)), notes
        names = ", ".join(sorted({f"{a.alertname} {a.severity}" for a in alerts})) or "none"
        return None, [f"no playbook of {root} matches an alert that reaches the responder "
                      f"({names}): people must restore it"]


def _playbook_terms(service: str, index: int, book: Playbook) -> tuple[Term, ...]:
    where = f"services.{service}.healing[{index}]"
    terms = [Term(f"step {step_index + 1} timeout ({step.action})", step.timeout,
                  f"{where}.steps[{step_index}].timeout")
             for step_index, step in enumerate(book.steps)]
    if book.verify is not None:
        if book.verify.settle is not None:
            terms.append(Term("verify settle", book.verify.settle, f"{where}.verify.settle"))
        terms.append(Term("verify timeout", book.verify.timeout, f"{where}.verify.timeout"))
    return tuple(terms)


def _about_disk(spec: ForecastSpec) -> bool:
    return any(word in spec.expr.lower() for word in DISK_WORDS)


def deadline(terms: Sequence[Term], timers: Timers) -> Deadline:
    """A deadline of ``terms`` with the plan's margin: one scrape interval (a sample can
    land just after a scrape) plus 10 % of the timers (slow runs on a busy host)."""
    total = sum(term.seconds for term in terms)
    scrape = timers.scrape_interval
    return Deadline(tuple(terms), (
        Term("margin: one scrape interval", scrape.seconds, scrape.source),
        Term("margin: 10 % of the timers", round(total * MARGIN_RATIO, 3), MARGIN_RULE)))


def build_plan(config: Config, alertmanager: Mapping[str, Any], rules: list[AlertRule],
               timers: Timers, alertmanager_source: str = "alertmanager.yml") -> DrillPlan:
    """The fault matrix of ``config`` under these rules, routes and timers."""
    return Planner(config, alertmanager, alertmanager_source, rules, timers).plan()
