"""What the overview shows, collected apart from how it is shown.

Two readers do the I/O: :func:`read_prometheus` (scores, dimensions, the score's trend,
firing alerts, times to failure: one query each, whatever the number of services) and
:func:`read_open_incidents` (the responder's store). :func:`overview_rows` is pure: it joins
what they read with the configured services into one :class:`ServiceRow` per service, worst
first, so that a benchmark or a test can build rows from fixed data and render them with
:func:`monitoriza.console.views_main.render_overview`.

Firing alerts come from Prometheus's ``ALERTS`` series: it is what fires now, including alerts
that Alertmanager routes to people only, never to the responder, and alerts that are still
waiting out an inhibition. The responder's open incidents hold only what reached it, and an
alert stays "firing" there until its resolution arrives. When Prometheus cannot be read, the
overview falls back to the incidents' firing alerts and says so.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy import Connection, Engine, select

from monitoriza.healing import repository
from monitoriza.report.collect import PrometheusReader, ReportError
from monitoriza.store import actions, reading

DIMENSIONS = ("availability", "latency", "saturation", "errors", "dependencies")
SEVERITIES = ("P1", "P2", "P3", "P4")
TREND_POINTS = 72  # points of a sparkline: one per 5 minutes over the default 6 h
MIN_STEP = 5.0  # seconds: finer says nothing more in a 140-pixel sparkline of a young stack

AlertSource = Literal["prometheus", "incidents"]

SCORE_QUERY = "min by (service) (monitoriza_health_score)"
DIMENSION_QUERY = "min by (service, dimension) (monitoriza_health_dimension_score)"
ALERTS_QUERY = 'count by (service, severity) (ALERTS{alertstate="firing"})'
TTF_QUERY = "monitoriza_time_to_failure_seconds"


@dataclass(frozen=True)
class TimeToFailure:
    """The soonest forecast failure of a service: its forecast and its estimates (seconds)."""

    forecast: str
    median: float
    lower: float | None = None
    upper: float | None = None


@dataclass(frozen=True)
class LatestAction:
    """An incident's latest action: its playbook, and its outcome or (not done) its state."""

    playbook: str
    service: str
    status: str  # success, failure, dry_run, blocked, skipped; or pending, claimed, running


@dataclass(frozen=True)
class IncidentLink:
    """An open incident, as a service's row links to it."""

    id: int
    state: str
    root_service: str | None
    opened_at: float
    drill_id: str | None = None
    firing: dict[str, dict[str, int]] = field(default_factory=dict)  # service → severity → n
    action: LatestAction | None = None


@dataclass
class PrometheusFacts:
    """What Prometheus said about the services, and what it could not say (``problems``)."""

    scores: dict[str, float] = field(default_factory=dict)
    dimensions: dict[str, dict[str, float]] = field(default_factory=dict)
    trends: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    alerts: dict[str, dict[str, int]] | None = None  # None: ALERTS could not be read
    ttf: dict[str, TimeToFailure] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ServiceRow:
    """One service on the overview."""

    service: str
    tier: str
    score: float | None
    dimensions: Mapping[str, float | None]
    trend: Sequence[tuple[float, float]]
    alerts: Mapping[str, int]  # severity → firing alerts
    incident: IncidentLink | None
    ttf: TimeToFailure | None

    def worst_severity(self) -> int:
        """The rank of its most severe firing alert: 0 for P1 … 3 for P4, 4 for none."""
        return min((SEVERITIES.index(level) for level, count in self.alerts.items()
                    if count and level in SEVERITIES), default=len(SEVERITIES))

    def sort_key(self) -> tuple[float, int, int, float, str]:
        """Worst first: no score at all (nothing can tell how it is), then the lowest score;
        ties by the most severe alert, an open incident, the soonest failure, the name."""
        return (-1.0 if self.score is None else self.score, self.worst_severity(),
                0 if self.incident is not None else 1,
                self.ttf.median if self.ttf is not None else math.inf, self.service)


@dataclass(frozen=True)
class Overview:
    """Everything the overview page renders."""

    rows: Sequence[ServiceRow]
    start: float  # the sparklines' window
    end: float
    alert_source: AlertSource
    notices: Sequence[str] = ()


def _label(sample: Mapping[str, Any], name: str) -> str:
    return str(sample.get("metric", {}).get(name, ""))


def _number(text: object) -> float | None:
    try:
        value = float(str(text))
    except ValueError:
        return None
    return value if not math.isnan(value) else None


def parse_scores(samples: Iterable[Mapping[str, Any]]) -> dict[str, float]:
    found: dict[str, float] = {}
    for sample in samples:
        value = _number(sample["value"][1])
        if value is not None and _label(sample, "service"):
            found[_label(sample, "service")] = value
    return found


def parse_dimensions(samples: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    found: dict[str, dict[str, float]] = defaultdict(dict)
    for sample in samples:
        value = _number(sample["value"][1])
        if value is not None and _label(sample, "service"):
            found[_label(sample, "service")][_label(sample, "dimension")] = value
    return dict(found)


def parse_trends(series: Iterable[Mapping[str, Any]]) -> dict[str, list[tuple[float, float]]]:
    found: dict[str, list[tuple[float, float]]] = {}
    for one in series:
        points = [(float(t), value) for t, text in one.get("values", [])
                  if (value := _number(text)) is not None]
        if _label(one, "service"):
            found[_label(one, "service")] = points
    return found


def parse_alerts(samples: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, int]]:
    found: dict[str, dict[str, int]] = defaultdict(dict)
    for sample in samples:
        value = _number(sample["value"][1])
        if value:
            severity = _label(sample, "severity") or "none"
            found[_label(sample, "service")][severity] = int(value)
    return dict(found)


def parse_ttf(samples: Iterable[Mapping[str, Any]]) -> dict[str, TimeToFailure]:
    """Each service's soonest finite median time to failure (+Inf: none forecast)."""
    # One forecast publishes one set of estimates per source series: keep each set whole.
    estimates: dict[tuple[str, str, tuple[tuple[str, str], ...]], dict[str, float]] = \
        defaultdict(dict)
    for sample in samples:
        value = _number(sample["value"][1])
        if value is not None:
            series = tuple(sorted((name, text) for name, text in sample["metric"].items()
                                  if name not in {"__name__", "estimate"}))
            key = (_label(sample, "service"), _label(sample, "forecast"), series)
            estimates[key][_label(sample, "estimate")] = value
    found: dict[str, TimeToFailure] = {}
    for (service, forecast, _), values in sorted(estimates.items()):
        median = values.get("median")
        if median is None or not math.isfinite(median) or not service:
            continue
        if service not in found or median < found[service].median:
            lower, upper = values.get("lower"), values.get("upper")
            found[service] = TimeToFailure(forecast, median, lower,
                                           upper if upper is not None and math.isfinite(upper)
                                           else None)
    return found


def read_trends(reader: PrometheusReader, now: float,
                window: float) -> dict[str, list[tuple[float, float]]]:
    """Each service's score over ``window`` seconds, about :data:`TREND_POINTS` points.
    When Prometheus holds less history than that (a stack started minutes ago), the span it
    has is read again at a finer step, so that a young history is a line, not one point."""
    step = max(MIN_STEP, window / TREND_POINTS)
    trends = parse_trends(reader.range(SCORE_QUERY, now - window, now, step))
    earliest = min((points[0][0] for points in trends.values() if points), default=None)
    if earliest is not None and earliest - step > now - window:
        start = earliest - step  # a sample up to one step earlier may exist
        fine = max(MIN_STEP, (now - start) / TREND_POINTS)
        if fine < step:
            trends = parse_trends(reader.range(SCORE_QUERY, start, now, fine))
    return trends


def read_prometheus(reader: PrometheusReader, now: float, window: float) -> PrometheusFacts:
    """Scores, dimensions, trends over ``window`` seconds, firing alerts and times to
    failure, each from one query; a query that fails leaves its part empty and a problem."""
    facts = PrometheusFacts()
    try:
        facts.scores = parse_scores(reader.instant(SCORE_QUERY, now))
    except ReportError as exc:
        # Unreachable: the other queries would fail the same way, each after a timeout.
        facts.problems.append(f"Prometheus unreachable: {exc}")
        return facts
    parts: list[tuple[str, Any]] = [
        ("dimensions", lambda: parse_dimensions(reader.instant(DIMENSION_QUERY, now))),
        ("trends", lambda: read_trends(reader, now, window)),
        ("alerts", lambda: parse_alerts(reader.instant(ALERTS_QUERY, now))),
        ("ttf", lambda: parse_ttf(reader.instant(TTF_QUERY, now)))]
    for name, read in parts:
        try:
            setattr(facts, name, read())
        except ReportError as exc:
            facts.problems.append(f"Prometheus: {exc}")
    return facts


def read_open_incidents(engine: Engine) -> list[IncidentLink]:
    """The open and healing incidents, oldest first, each with its firing alerts counted by
    service and severity (from its summary, never its alerts)."""
    with reading(engine) as conn:
        found = repository.open_incidents(conn)
        latest = latest_actions(conn, [int(incident.id or 0) for incident in found])
    links = []
    for incident in found:
        firing: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for kind in incident.summary.kinds("firing"):
            firing[kind.service or ""][kind.severity or "none"] += 1
        links.append(IncidentLink(
            int(incident.id or 0), incident.state,
            incident.root_cause.service if incident.root_cause else None, incident.opened_at,
            incident.drill_id, {service: dict(counts) for service, counts in firing.items()},
            latest.get(int(incident.id or 0))))
    return links


def latest_actions(conn: Connection, incident_ids: Sequence[int]) -> dict[int, LatestAction]:
    """The latest action of each of these incidents that has one (one query)."""
    if not incident_ids:
        return {}
    rows = conn.execute(select(actions.c.incident_id, actions.c.playbook, actions.c.service,
                               actions.c.state, actions.c.outcome)
                        .where(actions.c.incident_id.in_(incident_ids)).order_by(actions.c.id))
    return {int(row.incident_id): LatestAction(str(row.playbook), str(row.service),
                                               str(row.outcome or row.state)) for row in rows}


def incident_by_service(incidents: Iterable[IncidentLink]) -> dict[str, IncidentLink]:
    """The open incident each service is in: as root cause first, else as a symptom; the
    newest when several."""
    found: dict[str, IncidentLink] = {}
    as_cause: set[str] = set()
    for incident in sorted(incidents, key=lambda one: one.id):
        if incident.root_service:
            found[incident.root_service] = incident
            as_cause.add(incident.root_service)
        for service in incident.firing:
            if service and service not in as_cause:
                found[service] = incident
    return found


def incident_alerts(incidents: Iterable[IncidentLink]) -> dict[str, dict[str, int]]:
    """Firing alerts by service and severity, summed over the open incidents."""
    found: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for incident in incidents:
        for service, counts in incident.firing.items():
            for severity, count in counts.items():
                found[service][severity] += count
    return {service: dict(counts) for service, counts in found.items()}


def trend_start(rows: Iterable[ServiceRow], start: float, end: float,
                minimum: float = 60.0) -> float:
    """Where the sparklines' common time axis starts: the window's start, or later when
    Prometheus holds less history than the window (a stack started minutes ago draws its
    minutes across the whole width, not a dot at the edge); at least ``minimum`` seconds
    before ``end``."""
    earliest = min((row.trend[0][0] for row in rows if row.trend), default=start)
    return min(max(start, earliest), end - minimum)


def overview_rows(tiers: Mapping[str, str], facts: PrometheusFacts,
                  incidents: Sequence[IncidentLink]) -> tuple[list[ServiceRow], AlertSource]:
    """One row per configured service (``tiers``: service → tier), worst first, and where
    its firing alerts came from (Prometheus's ALERTS, or the open incidents when Prometheus
    could not say)."""
    source: AlertSource = "prometheus" if facts.alerts is not None else "incidents"
    alerts = facts.alerts if facts.alerts is not None else incident_alerts(incidents)
    linked = incident_by_service(incidents)
    rows = [ServiceRow(
        service=service, tier=tier, score=facts.scores.get(service),
        dimensions={name: facts.dimensions.get(service, {}).get(name) for name in DIMENSIONS},
        trend=facts.trends.get(service, []), alerts=alerts.get(service, {}),
        incident=linked.get(service), ttf=facts.ttf.get(service))
        for service, tier in tiers.items()]
    return sorted(rows, key=ServiceRow.sort_key), source
