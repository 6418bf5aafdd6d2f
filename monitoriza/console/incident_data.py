"""What the incident page shows: the incident, its alerts, its actions and the audit entries
that record them, read from the store apart from how they are shown.

:func:`read_incident` does the I/O (one incident, its first alerts, its actions, and the audit
entries whose data names it); :func:`timeline` is pure: it joins the actions to their audit
entries (steps, verify result, rollback come from the entry that closed the action) and says
of each entry whether a verification of the chain and a signed checkpoint cover it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, or_, select

from monitoriza.healing import repository
from monitoriza.store import audit, incidents, reading

MAX_ALERTS = 200  # alerts shown on the page; the rest are counted (a storm has thousands)
MAX_AUDIT = 500  # audit entries of one incident read for its page


@dataclass(frozen=True)
class AuditRef:
    """An audit entry that records part of the incident, and how far it is vouched for."""

    seq: int
    ts: str
    kind: str
    data: Mapping[str, Any]
    verification: str  # verified, not_verified_yet, verification_failed, never_verified
    anchored: bool  # a signed checkpoint at or after it exists


@dataclass(frozen=True)
class Step:
    target: str
    ok: bool | None  # None: described, not run (dry run, or not finished)
    detail: str = ""
    duration: float | None = None


@dataclass(frozen=True)
class ActionView:
    """One action of the incident: what ran, how it was checked, and how it ended."""

    id: int
    service: str
    playbook: str
    state: str
    outcome: str | None
    created_at: float
    started_at: float | None
    finished_at: float | None
    detail: str
    steps: Sequence[Step]
    verify: str | None
    rollback: Sequence[Step]
    audit: Sequence[AuditRef]

    @property
    def duration(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return self.finished_at - self.started_at


@dataclass(frozen=True)
class AlertLine:
    fingerprint: str
    alertname: str
    service: str | None
    component: str | None
    severity: str | None
    status: str
    starts_at: float
    received_at: float  # when the responder last heard of it (its resolution, if resolved)


@dataclass(frozen=True)
class IncidentPage:
    """Everything the incident page renders."""

    id: int
    state: str
    risk: str
    signature: str
    opened_at: float
    updated_at: float
    resolved_at: float | None
    root_service: str | None
    root_component: str | None
    root_kind: str | None
    reasoning: Sequence[str]
    drill_id: str | None
    services: Sequence[str]
    alert_count: int
    firing_count: int
    alerts: Sequence[AlertLine]
    actions: Sequence[ActionView]
    decisions: Sequence[AuditRef] = field(default_factory=list)  # incident.* and decision.*
    audit_truncated: bool = False


@dataclass(frozen=True)
class LastVerification:
    """The responder's last verification of the whole chain: when, whether it passed, the
    last entry it covered, and (failed) the first bad entry (None: a checkpoint problem)."""

    at: float
    ok: bool
    head_seq: int
    first_bad_seq: int | None = None


@dataclass(frozen=True)
class StoredIncident:
    """The rows :func:`read_incident` read, before :func:`timeline` joins them."""

    row: Mapping[str, Any]
    alert_count: int
    firing_count: int
    services: Sequence[str]
    alerts: Sequence[Mapping[str, Any]]
    actions: Sequence[Mapping[str, Any]]
    entries: Sequence[tuple[int, str, str, Mapping[str, Any]]]  # seq, ts, kind, data


def _names_incident(incident_id: int) -> Any:
    # The store keeps entry data as canonical JSON (sorted keys, no spaces), so the key
    # "incident" is followed by the id and then "," or "}": never a prefix of a longer id.
    text = f'"incident":{incident_id}'
    return or_(audit.c.data.like(f"%{text},%"), audit.c.data.like(f"%{text}}}%"))


def read_incident(engine: Engine, incident_id: int) -> StoredIncident | None:
    """The incident's row, its first :data:`MAX_ALERTS` alerts, its actions and up to
    :data:`MAX_AUDIT` (+1, to tell that there were more) audit entries naming it; None when
    there is no such incident."""
    with reading(engine) as conn:
        row = conn.execute(select(incidents).where(incidents.c.id == incident_id)).first()
        if row is None:
            return None
        summary = repository.read_summaries(conn, [row])[incident_id]
        alerts = repository.alerts_page(conn, incident_id, row.alerts, after=None,
                                        limit=MAX_ALERTS)
        actions = repository.actions_of(conn, incident_id)
        entries = [(int(seq), str(ts), str(kind), json.loads(data)) for seq, ts, kind, data in
                   conn.execute(select(audit.c.seq, audit.c.ts, audit.c.kind, audit.c.data)
                                .where(_names_incident(incident_id))
                                .order_by(audit.c.seq).limit(MAX_AUDIT + 1))]
    return StoredIncident(dict(row._mapping), summary.count(), summary.count("firing"),
                          summary.services(), alerts, actions, entries)


def verification_of(seq: int, last: LastVerification | None) -> str:
    """Whether the responder's last verification of the chain vouches for entry ``seq``:
    ``verified``, ``verification_failed`` (at or after the first bad entry, or every entry
    when the checkpoints were the problem), ``not_verified_yet`` (written after it) or
    ``never_verified``."""
    if last is None:
        return "never_verified"
    if last.ok:
        return "verified" if seq <= last.head_seq else "not_verified_yet"
    if last.first_bad_seq is not None and seq < last.first_bad_seq:
        return "verified"
    return "verification_failed"


def _steps(items: object, *, ran: bool) -> list[Step]:
    steps = []
    for item in items if isinstance(items, list) else []:
        if isinstance(item, Mapping):
            steps.append(Step(str(item.get("target", "")), bool(item.get("ok")) if ran else None,
                              str(item.get("detail", "")),
                              float(item["duration"]) if ran and item.get("duration") is not None
                              else None))
        else:  # a described step (action.started, a dry run's would_run): a plain string
            steps.append(Step(str(item), None))
    return steps


def _action(action: Mapping[str, Any], refs: Sequence[AuditRef]) -> ActionView:
    closing = next((ref for ref in reversed(refs) if ref.kind != "action.started"), None)
    started = next((ref for ref in refs if ref.kind == "action.started"), None)
    steps: list[Step] = []
    verify: str | None = None
    rollback: list[Step] = []
    if closing is not None and "steps" in closing.data:
        steps = _steps(closing.data["steps"], ran=True)
        verify = str(closing.data["verify"]) if closing.data.get("verify") else None
        rollback = _steps(closing.data.get("rollback"), ran=True)
    elif closing is not None and "would_run" in closing.data:
        steps = _steps(closing.data["would_run"], ran=False)
    elif started is not None:
        steps = _steps(started.data.get("steps"), ran=False)
    return ActionView(
        id=int(action["id"]), service=str(action["service"]), playbook=str(action["playbook"]),
        state=str(action["state"]), outcome=action.get("outcome"),
        created_at=float(action["created_at"]), started_at=action.get("started_at"),
        finished_at=action.get("finished_at"), detail=str(action.get("detail") or ""),
        steps=steps, verify=verify, rollback=rollback, audit=list(refs))


def _alert(event: Mapping[str, Any]) -> AlertLine:
    labels = event.get("labels") or {}
    return AlertLine(str(event["fingerprint"]), str(event["alertname"]), event.get("service"),
                     labels.get("component"), event.get("severity"), str(event["status"]),
                     float(event["starts_at"]), float(event["received_at"]))


def timeline(stored: StoredIncident, last: LastVerification | None,
             anchored_through: int) -> IncidentPage:
    """The page of ``stored``: each action with the audit entries that name it (their
    verification state from ``last``; anchored when ``anchored_through`` — the last signed
    checkpoint's seq — reaches them), the other entries as the incident's decisions."""
    entries = stored.entries[:MAX_AUDIT]
    refs = [AuditRef(seq, ts, kind, data, verification_of(seq, last), seq <= anchored_through)
            for seq, ts, kind, data in entries]
    by_action: dict[int, list[AuditRef]] = {}
    decisions = []
    for ref in refs:
        action_id = ref.data.get("action")
        if ref.kind.startswith("action.") and isinstance(action_id, int):
            by_action.setdefault(action_id, []).append(ref)
        else:
            decisions.append(ref)
    row = stored.row
    return IncidentPage(
        id=int(row["id"]), state=str(row["state"]), risk=str(row["risk"]),
        signature=str(row["signature"]), opened_at=float(row["opened_at"]),
        updated_at=float(row["updated_at"]), resolved_at=row.get("resolved_at"),
        root_service=row.get("root_service"), root_component=row.get("root_component"),
        root_kind=row.get("root_kind"), reasoning=list(json.loads(row.get("reasoning") or "[]")),
        drill_id=row.get("drill_id"), services=list(stored.services),
        alert_count=stored.alert_count, firing_count=stored.firing_count,
        alerts=sorted((_alert(event) for event in stored.alerts),
                      key=lambda alert: (alert.starts_at, alert.fingerprint)),
        actions=[_action(action, by_action.get(int(action["id"]), []))
                 for action in stored.actions],
        decisions=decisions, audit_truncated=len(stored.entries) > MAX_AUDIT)
