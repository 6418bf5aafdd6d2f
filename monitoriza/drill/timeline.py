"""What a drill saw of the pipeline, poll by poll: the pure core of
:mod:`monitoriza.drill.observe`.

A :class:`Timeline` is fed the documents the watcher fetched (Prometheus's
``/api/v1/alerts``, Alertmanager's ``/api/v2/alerts``, the responder's incidents, actions and
audit entries) with the moment of the poll, and keeps only *first moments*: when an alert was
first seen firing, first listed by Alertmanager for a receiver, first gone. Those moments,
minus the moment of the fault, are what :func:`monitoriza.drill.verdict.judge` compares with
the plan's deadlines. Everything here is plain data (``as_data``/``from_data``), so a results
file can carry the evidence and a verdict can be recomputed from it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from monitoriza.exceptions import MonitorizaError
from monitoriza.healing.notices import NOTICE_ALERTNAME

#: Python before 3.12 may refuse more than 6 fractional digits; Prometheus writes up to 9.
_FRACTION = re.compile(r"(\.\d{6})\d+")

LabelSet = tuple[tuple[str, str], ...]
RouteKey = tuple[str, str, str, str]  # alertname, severity, service (or root_cause), receiver


class TimelineDataError(MonitorizaError, ValueError):
    """A document from Prometheus, Alertmanager or the responder is not the shape expected."""


def parse_time(text: object) -> float:
    """Epoch seconds of an RFC 3339 time such as Prometheus's ``activeAt``
    (``2026-12-05T08:22:18.123456789Z``; nanoseconds are truncated to microseconds)."""
    if not isinstance(text, str):
        raise TimelineDataError(f"expected an RFC 3339 time, got {text!r}")
    try:
        moment = datetime.fromisoformat(_FRACTION.sub(r"\1", text.replace("Z", "+00:00")))
    except ValueError:
        raise TimelineDataError(f"not an RFC 3339 time: {text!r}") from None
    if moment.tzinfo is None:
        raise TimelineDataError(f"RFC 3339 time without a time zone: {text!r}")
    return moment.timestamp()


def _labels(document: Mapping[str, Any], where: str) -> dict[str, str]:
    labels = document.get("labels")
    if not isinstance(labels, Mapping):
        raise TimelineDataError(f"{where}: an alert without labels: {document!r}")
    return {str(key): str(value) for key, value in labels.items()}


def subject_of(labels: Mapping[str, str]) -> str:
    """The service an alert is about: its ``service`` label, or the ``root_cause`` of a
    responder notice (``MonitorizaIncident`` carries no ``service``)."""
    if labels.get("alertname") == NOTICE_ALERTNAME:
        return labels.get("root_cause", "")
    return labels.get("service", "")


@dataclass(slots=True)
class AlertTrack:
    """One alert of Prometheus (one label set) across polls.

    ``active_at`` is Prometheus's own ``activeAt`` of the first episode that fired (or of
    the pending one, until one fires); ``firing_seen_at`` the first poll that saw it firing;
    ``resolved_seen_at`` the first poll after that where it was gone (cleared when it fires
    again: ``fired`` counts the episodes)."""

    labels: dict[str, str]
    active_at: float | None = None
    pending_seen_at: float | None = None
    firing_seen_at: float | None = None
    resolved_seen_at: float | None = None
    fired: int = 0

    @property
    def alertname(self) -> str:
        return self.labels.get("alertname", "")

    @property
    def severity(self) -> str:
        return self.labels.get("severity", "")

    @property
    def service(self) -> str:
        return subject_of(self.labels)

    def as_data(self) -> dict[str, Any]:
        return {"labels": dict(self.labels), "active_at": self.active_at,
                "pending_seen_at": self.pending_seen_at, "firing_seen_at": self.firing_seen_at,
                "resolved_seen_at": self.resolved_seen_at, "fired": self.fired}

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> AlertTrack:
        return cls(dict(data["labels"]), data.get("active_at"), data.get("pending_seen_at"),
                   data.get("firing_seen_at"), data.get("resolved_seen_at"),
                   int(data.get("fired", 0)))


@dataclass(slots=True)
class RouteTrack:
    """An alert as Alertmanager listed it for one receiver: first seen ``active`` (routed,
    neither inhibited nor silenced) and first seen ``suppressed`` (with what by)."""

    labels: dict[str, str]
    receiver: str
    routed_seen_at: float | None = None
    suppressed_seen_at: float | None = None
    inhibited_by: tuple[str, ...] = ()
    silenced_by: tuple[str, ...] = ()

    @property
    def key(self) -> RouteKey:
        return (self.labels.get("alertname", ""), self.labels.get("severity", ""),
                subject_of(self.labels), self.receiver)

    def as_data(self) -> dict[str, Any]:
        return {"labels": dict(self.labels), "receiver": self.receiver,
                "routed_seen_at": self.routed_seen_at,
                "suppressed_seen_at": self.suppressed_seen_at,
                "inhibited_by": list(self.inhibited_by), "silenced_by": list(self.silenced_by)}

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> RouteTrack:
        return cls(dict(data["labels"]), str(data["receiver"]), data.get("routed_seen_at"),
                   data.get("suppressed_seen_at"), tuple(data.get("inhibited_by", ())),
                   tuple(data.get("silenced_by", ())))


@dataclass(frozen=True, slots=True)
class AuditRef:
    """One audit chain entry about an action (``action.started``, ``action.failure``...)."""

    seq: int
    kind: str

    def as_data(self) -> dict[str, Any]:
        return {"seq": self.seq, "kind": self.kind}


@dataclass(slots=True)
class ActionTrack:
    """A healing action of an incident, as the responder last reported it."""

    id: int
    service: str
    playbook: str
    state: str
    outcome: str | None
    created_at: float | None
    started_at: float | None
    finished_at: float | None
    detail: str | None
    audit: tuple[AuditRef, ...] = ()

    def as_data(self) -> dict[str, Any]:
        return {"id": self.id, "service": self.service, "playbook": self.playbook,
                "state": self.state, "outcome": self.outcome, "created_at": self.created_at,
                "started_at": self.started_at, "finished_at": self.finished_at,
                "detail": self.detail, "audit": [ref.as_data() for ref in self.audit]}

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> ActionTrack:
        return cls(int(data["id"]), str(data.get("service", "")), str(data.get("playbook", "")),
                   str(data.get("state", "")), data.get("outcome"), data.get("created_at"),
                   data.get("started_at"), data.get("finished_at"), data.get("detail"),
                   tuple(AuditRef(int(ref["seq"]), str(ref["kind"]))
                         for ref in data.get("audit", ())))


@dataclass(slots=True)
class IncidentTrack:
    """An incident the responder opened while the drill watched."""

    id: int
    state: str
    root_cause: str | None
    services: tuple[str, ...]
    opened_at: float
    updated_at: float | None
    resolved_at: float | None
    drill: str | None
    actions: tuple[ActionTrack, ...] = ()

    def as_data(self) -> dict[str, Any]:
        return {"id": self.id, "state": self.state, "root_cause": self.root_cause,
                "services": list(self.services), "opened_at": self.opened_at,
                "updated_at": self.updated_at, "resolved_at": self.resolved_at,
                "drill": self.drill, "actions": [a.as_data() for a in self.actions]}

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> IncidentTrack:
        return cls(int(data["id"]), str(data["state"]), data.get("root_cause"),
                   tuple(data.get("services", ())), float(data["opened_at"]),
                   data.get("updated_at"), data.get("resolved_at"), data.get("drill"),
                   tuple(ActionTrack.from_data(a) for a in data.get("actions", ())))


@dataclass(slots=True)
class PollError:
    """A source that could not be polled; repeats of the same message are counted."""

    source: str
    message: str
    first_at: float
    last_at: float
    count: int = 1

    def as_data(self) -> dict[str, Any]:
        return {"source": self.source, "message": self.message, "first_at": self.first_at,
                "last_at": self.last_at, "count": self.count}

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> PollError:
        return cls(str(data["source"]), str(data["message"]), float(data["first_at"]),
                   float(data["last_at"]), int(data.get("count", 1)))


def _drill_of(value: object) -> str | None:
    """The incident's ``drill`` field: a drill id, or an object carrying one."""
    if isinstance(value, Mapping):
        value = value.get("id", value.get("drill_id"))
    return None if value in (None, "") else str(value)


@dataclass(slots=True)
class Timeline:
    """Everything observed about the watched ``services`` between ``watched_from`` and
    ``watched_until`` (the first and the last poll). An empty ``services`` watches all."""

    services: tuple[str, ...] = ()
    watched_from: float | None = None
    watched_until: float | None = None
    alerts: dict[LabelSet, AlertTrack] = field(default_factory=dict)
    routes: dict[tuple[LabelSet, str], RouteTrack] = field(default_factory=dict)
    incidents: dict[int, IncidentTrack] = field(default_factory=dict)
    audit: dict[int, tuple[AuditRef, ...]] = field(default_factory=dict)
    errors: list[PollError] = field(default_factory=list)

    # -- reading --------------------------------------------------------------------------

    def watches(self, labels: Mapping[str, str]) -> bool:
        return not self.services or subject_of(labels) in self.services

    def alerts_of(self, alertname: str, severity: str, service: str) -> list[AlertTrack]:
        return [track for track in self.alerts.values() if track.alertname == alertname
                and track.severity == severity and track.service == service]

    def firing_seen(self, alertname: str, severity: str, service: str) -> float | None:
        """The first poll that saw this alert firing (any of its label sets), or None."""
        seen = [track.firing_seen_at for track in self.alerts_of(alertname, severity, service)
                if track.firing_seen_at is not None]
        return min(seen) if seen else None

    def firing_services(self) -> set[str]:
        """Services with an alert firing at the last poll."""
        return {track.service for track in self.alerts.values()
                if track.firing_seen_at is not None and track.resolved_seen_at is None}

    def routes_of(self, alertname: str, severity: str, service: str) -> list[RouteTrack]:
        return [track for track in self.routes.values()
                if track.key[:3] == (alertname, severity, service)]

    # -- feeding --------------------------------------------------------------------------

    def mark_poll(self, at: float) -> None:
        if self.watched_from is None:
            self.watched_from = at
        self.watched_until = at

    def observe_prometheus(self, alerts: Iterable[Mapping[str, Any]], at: float) -> None:
        """One poll of Prometheus's ``/api/v1/alerts`` (``data.alerts``) at ``at``."""
        present: set[LabelSet] = set()
        for document in alerts:
            labels = _labels(document, "Prometheus")
            if not self.watches(labels):
                continue
            identity = tuple(sorted(labels.items()))
            present.add(identity)
            track = self.alerts.setdefault(identity, AlertTrack(labels))
            state = document.get("state")
            if state not in {"pending", "firing"}:
                raise TimelineDataError(f"Prometheus: alert state {state!r} is not "
                                        "pending or firing")
            if track.firing_seen_at is None:
                # The episode that fires first is the one detection is measured on.
                track.active_at = parse_time(document.get("activeAt"))
            if state == "pending" and track.pending_seen_at is None:
                track.pending_seen_at = at
            if state == "firing" and (track.firing_seen_at is None
                                      or track.resolved_seen_at is not None):
                track.firing_seen_at = track.firing_seen_at or at
                track.resolved_seen_at = None
                track.fired += 1
        for identity, track in self.alerts.items():
            if identity not in present and track.firing_seen_at is not None \
                    and track.resolved_seen_at is None:
                track.resolved_seen_at = at

    def observe_alertmanager(self, alerts: Iterable[Mapping[str, Any]], at: float) -> None:
        """One poll of Alertmanager's ``/api/v2/alerts`` at ``at``."""
        for document in alerts:
            labels = _labels(document, "Alertmanager")
            if not self.watches(labels):
                continue
            status = document.get("status")
            if not isinstance(status, Mapping):
                raise TimelineDataError(f"Alertmanager: an alert without status: {document!r}")
            state = status.get("state")
            identity = tuple(sorted(labels.items()))
            for receiver in document.get("receivers") or ():
                name = str(receiver.get("name", "")) if isinstance(receiver, Mapping) else ""
                track = self.routes.setdefault((identity, name), RouteTrack(labels, name))
                if state == "active" and track.routed_seen_at is None:
                    track.routed_seen_at = at
                elif state == "suppressed":
                    if track.suppressed_seen_at is None:
                        track.suppressed_seen_at = at
                    track.inhibited_by = tuple(status.get("inhibitedBy") or ()) \
                        or track.inhibited_by
                    track.silenced_by = tuple(status.get("silencedBy") or ()) \
                        or track.silenced_by

    def tracks_incident(self, summary: Mapping[str, Any]) -> bool:
        """Whether an incident summary is about a watched service."""
        if not self.services:
            return True
        root = summary.get("root_cause") or {}
        named = {root.get("service")} | set(summary.get("services") or ())
        return bool(named & set(self.services))

    def observe_incident(self, document: Mapping[str, Any]) -> None:
        """An incident summary (``/api/v1/incidents``) or detail (``/incidents/<id>``, with
        ``actions``); a summary keeps the actions already known."""
        try:
            incident_id = int(document["id"])
            root = document.get("root_cause") or {}
            known = self.incidents.get(incident_id)
            actions = known.actions if known else ()
            if "actions" in document:
                actions = tuple(self._action(a) for a in document["actions"])
            self.incidents[incident_id] = IncidentTrack(
                incident_id, str(document["state"]), root.get("service"),
                tuple(str(s) for s in document.get("services") or ()),
                float(document["opened_at"]), document.get("updated_at"),
                document.get("resolved_at"), _drill_of(document.get("drill")), actions)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise TimelineDataError(f"responder: an incident not as expected ({exc!r}): "
                                    f"{dict(document)!r}"[:500]) from None

    def _action(self, document: Mapping[str, Any]) -> ActionTrack:
        action_id = int(document["id"])
        return ActionTrack(action_id, str(document.get("service", "")),
                           str(document.get("playbook", "")), str(document.get("state", "")),
                           document.get("outcome"), document.get("created_at"),
                           document.get("started_at"), document.get("finished_at"),
                           document.get("detail"), self.audit.get(action_id, ()))

    def observe_audit(self, entries: Iterable[Mapping[str, Any]]) -> None:
        """Audit chain entries (``/api/v1/audit``): those about an action are kept by action
        id, so a verdict can cite the entries that record a heal that failed."""
        touched: set[int] = set()
        for entry in entries:
            kind = str(entry.get("kind", ""))
            data = entry.get("data")
            if not kind.startswith("action.") or not isinstance(data, Mapping):
                continue
            action_id = data.get("action")
            if not isinstance(action_id, int):
                continue
            ref = AuditRef(int(entry["seq"]), kind)
            if ref not in self.audit.get(action_id, ()):
                self.audit[action_id] = (*self.audit.get(action_id, ()), ref)
                touched.add(action_id)
        for incident in self.incidents.values():
            for action in incident.actions:
                if action.id in touched:
                    action.audit = self.audit[action.id]

    def record_error(self, source: str, message: str, at: float) -> None:
        last = self.errors[-1] if self.errors else None
        if last is not None and (last.source, last.message) == (source, message):
            last.last_at = at
            last.count += 1
            return
        self.errors.append(PollError(source, message, at, at))

    # -- plain data -----------------------------------------------------------------------

    def as_data(self) -> dict[str, Any]:
        return {"services": list(self.services), "watched_from": self.watched_from,
                "watched_until": self.watched_until,
                "alerts": [track.as_data() for track in self.alerts.values()],
                "routes": [track.as_data() for track in self.routes.values()],
                "incidents": [incident.as_data() for incident in self.incidents.values()],
                "errors": [error.as_data() for error in self.errors]}

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> Timeline:
        timeline = cls(tuple(data.get("services", ())), data.get("watched_from"),
                       data.get("watched_until"))
        for item in data.get("alerts", ()):
            track = AlertTrack.from_data(item)
            timeline.alerts[tuple(sorted(track.labels.items()))] = track
        for item in data.get("routes", ()):
            route = RouteTrack.from_data(item)
            timeline.routes[(tuple(sorted(route.labels.items())), route.receiver)] = route
        for item in data.get("incidents", ()):
            incident = IncidentTrack.from_data(item)
            timeline.incidents[incident.id] = incident
            for action in incident.actions:
                if action.audit:
                    timeline.audit[action.id] = action.audit
        timeline.errors = [PollError.from_data(item) for item in data.get("errors", ())]
        return timeline
