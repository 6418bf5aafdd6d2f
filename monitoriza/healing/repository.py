"""Incidents, actions, breaker and budget state, and memory in the store (thin I/O).

Every function takes a connection inside the caller's transaction, so that what the
responder decides commits together with the journal row and the audit entries about it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import asdict
from typing import Any

from sqlalchemy import Connection, bindparam, func, insert, or_, select, text, update

from monitoriza.config.schema import Breaker
from monitoriza.healing.breaker import BreakerState
from monitoriza.healing.budget import BudgetState
from monitoriza.healing.correlation import (
    AlertEvent,
    AlertKind,
    AlertStatus,
    AlertSummary,
    Incident,
    RootCause,
)
from monitoriza.healing.memory import Outcomes
from monitoriza.healing.sites import DEFAULT_SITE, stored_site
from monitoriza.store import (
    actions,
    healing_state,
    incident_alerts,
    incident_summaries,
    incidents,
    memory,
    settings,
    site_memory,
)

log = logging.getLogger(__name__)


def _event_from(data: Mapping[str, Any]) -> AlertEvent:
    return AlertEvent(**{**data, "labels": dict(data["labels"])})


def kind_key(kind: AlertKind) -> str:
    """The ``incident_alerts.kind`` of alerts of ``kind``: a hash, short enough to index
    whatever the length of the label values."""
    text = json.dumps([kind.service, kind.alertname, kind.component, kind.severity])
    return hashlib.sha256(text.encode()).hexdigest()


# Built once: the worker runs these for every alert, and building and keying a statement
# costs more than running it.
_HELD = select(incident_alerts.c.incident_id, incident_alerts.c.event).where(
    incident_alerts.c.fingerprint == bindparam("w_fingerprint"),
    incident_alerts.c.incident_id.in_(bindparam("w_ids", expanding=True)))
_BUCKET = (incident_alerts.c.incident_id == bindparam("w_incident"),
           incident_alerts.c.status == bindparam("w_status"),
           incident_alerts.c.kind == bindparam("w_kind"),
           incident_alerts.c.fingerprint != bindparam("w_fingerprint"))
_EARLIEST = select(incident_alerts.c.starts_at).where(*_BUCKET).order_by(
    incident_alerts.c.starts_at).limit(1)
_LATEST = select(incident_alerts.c.received_at).where(*_BUCKET).order_by(
    incident_alerts.c.received_at.desc()).limit(1)
_INSERT_ALERT = insert(incident_alerts)
_UPDATE_ALERT = update(incident_alerts).where(
    incident_alerts.c.incident_id == bindparam("w_incident"),
    incident_alerts.c.fingerprint == bindparam("w_fingerprint"))


class StoredMembers:
    """:class:`~monitoriza.healing.correlation.Members` over the ``incident_alerts`` rows, in
    the caller's transaction: each question is one indexed lookup, never a whole incident."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def held(self, fingerprint: str, incident_ids: Collection[int]) -> dict[int, AlertEvent]:
        rows = self.conn.execute(_HELD, {"w_fingerprint": fingerprint,
                                         "w_ids": list(incident_ids)})
        return {int(row.incident_id): _event_from(json.loads(row.event)) for row in rows}

    def others(self, incident_id: int, kind: AlertKind, status: AlertStatus,
               fingerprint: str) -> tuple[float, float] | None:
        bucket = {"w_incident": incident_id, "w_status": status, "w_kind": kind_key(kind),
                  "w_fingerprint": fingerprint}
        earliest = self.conn.execute(_EARLIEST, bucket).scalar_one_or_none()
        if earliest is None:
            return None
        latest = self.conn.execute(_LATEST, bucket).scalar_one()
        return float(earliest), float(latest)


def save_alert(conn: Connection, incident_id: int, event: AlertEvent, *,
               held: bool | None = None) -> None:
    """Keep ``event`` as the incident's alert of its fingerprint: one row, updated when
    ``held`` (the incident had one), inserted when not, either when None (not known)."""
    values = {"service": event.service, "alertname": event.alertname,
              "component": event.component, "severity": event.severity,
              "kind": kind_key(AlertKind.of(event)), "status": event.status,
              "starts_at": event.starts_at, "received_at": event.received_at,
              "event": json.dumps(asdict(event), sort_keys=True)}
    if held is not False and conn.execute(_UPDATE_ALERT, {
            "w_incident": incident_id, "w_fingerprint": event.fingerprint, **values}).rowcount:
        return
    conn.execute(_INSERT_ALERT, {"incident_id": incident_id, "fingerprint": event.fingerprint,
                                 **values})


def legacy_alerts(text: str | None) -> list[AlertEvent]:
    """The alerts a store of an earlier release kept in ``incidents.alerts`` (JSON)."""
    return [_event_from(event) for event in json.loads(text or "{}").values()]


def _events_of(conn: Connection, incident_id: int) -> list[AlertEvent]:
    rows = conn.execute(select(incident_alerts.c.event).where(
        incident_alerts.c.incident_id == incident_id))
    return [_event_from(json.loads(text)) for text, in rows]


def _upgrade(conn: Connection, incident_id: int) -> AlertSummary:
    """An open incident without a summary, written by an earlier release: its alerts, kept as
    JSON in ``incidents.alerts``, become rows (once), and its summary is made from them."""
    if conn.execute(select(incident_alerts.c.fingerprint).where(
            incident_alerts.c.incident_id == incident_id).limit(1)).first() is None:
        text = conn.execute(select(incidents.c.alerts).where(
            incidents.c.id == incident_id)).scalar_one()
        for event in legacy_alerts(text):
            save_alert(conn, incident_id, event)
    summary = AlertSummary.of(_events_of(conn, incident_id))
    conn.execute(update(incidents).where(incidents.c.id == incident_id).values(alerts="{}"))
    _save_summary(conn, incident_id, summary)
    log.info("incident %d: %d alerts of an earlier release's store moved to rows",
             incident_id, summary.count())
    return summary


_SUMMARY_COLUMNS = [column for column in incidents.c if column.name != "alerts"]


def of_site(column: Any, site: str, default_site: str) -> Any:
    """The SQL condition "``column`` is ``site``": rows without a site (written before sites
    existed) are the default site's."""
    return or_(column == site, column.is_(None)) if site == default_site else column == site


def incident_from_row(row: Any, summary: AlertSummary,
                      default_site: str = DEFAULT_SITE) -> Incident:
    cause = None
    if row.root_service is not None:
        cause = RootCause(row.root_service, row.root_component, row.root_kind,
                          tuple(json.loads(row.reasoning)))
    return Incident(row.id, row.state, row.opened_at, row.resolved_at, summary, cause,
                    row.risk, row.signature, row.drill_id,
                    stored_site(row.site, default_site))


_OPEN = (select(*_SUMMARY_COLUMNS, incident_summaries.c.tallies)
         .select_from(incidents.outerjoin(incident_summaries,
                                          incident_summaries.c.incident_id == incidents.c.id))
         .where(incidents.c.state != "resolved").order_by(incidents.c.id))


def open_incidents(conn: Connection, site: str | None = None,
                   default_site: str = DEFAULT_SITE) -> list[Incident]:
    """The open and healing incidents (of ``site``, or of every site when None) with their
    summaries (never their alerts); an incident of an earlier release's store is upgraded in
    place on the way (see ``_upgrade``)."""
    query = _OPEN if site is None else _OPEN.where(of_site(incidents.c.site, site,
                                                           default_site))
    rows = conn.execute(query).all()
    return [incident_from_row(row, _upgrade(conn, row.id) if row.tallies is None
                              else AlertSummary.from_data(json.loads(row.tallies)),
                              default_site)
            for row in rows]


def recently_resolved(conn: Connection, since: float, site: str | None = None,
                      default_site: str = DEFAULT_SITE) -> list[Incident]:
    """Incidents (of ``site``, or of every site when None) resolved at or after ``since``
    (their recovery cool-down has not ended), with their summaries."""
    query = select(incidents).where(incidents.c.state == "resolved",
                                    incidents.c.resolved_at >= since)
    if site is not None:
        query = query.where(of_site(incidents.c.site, site, default_site))
    rows = conn.execute(query).all()
    summaries = read_summaries(conn, rows)
    return [incident_from_row(row, summaries[int(row.id)], default_site) for row in rows]


def read_summaries(conn: Connection, rows: Sequence[Any]) -> dict[int, AlertSummary]:
    """The summaries of these incident rows (which include ``alerts``), read only: from the
    summary table, or for an incident of an earlier release from its JSON alerts."""
    ids = [int(row.id) for row in rows]
    found = {int(incident_id): AlertSummary.from_data(json.loads(tallies))
             for incident_id, tallies in conn.execute(
                 select(incident_summaries.c.incident_id, incident_summaries.c.tallies)
                 .where(incident_summaries.c.incident_id.in_(ids)))} if ids else {}
    for row in rows:
        if int(row.id) not in found:
            legacy = legacy_alerts(row.alerts)
            found[int(row.id)] = AlertSummary.of(legacy or _events_of(conn, int(row.id)))
    return found


def alerts_page(conn: Connection, incident_id: int, alerts_json: str | None, *,
                after: str | None, limit: int,
                status: str | None = None) -> list[dict[str, Any]]:
    """Up to ``limit`` alerts of the incident (their latest event), by fingerprint, after
    ``after``; for an incident of an earlier release's store, from its JSON."""
    if alerts_json not in (None, "", "{}") and conn.execute(
            select(incident_alerts.c.fingerprint).where(
                incident_alerts.c.incident_id == incident_id).limit(1)).first() is None:
        legacy = sorted((asdict(event) for event in legacy_alerts(alerts_json)
                         if (after is None or event.fingerprint > after)
                         and status in (None, event.status)),
                        key=lambda event: str(event["fingerprint"]))
        return legacy[:limit]
    query = select(incident_alerts.c.event).where(incident_alerts.c.incident_id == incident_id)
    if after is not None:
        query = query.where(incident_alerts.c.fingerprint > after)
    if status is not None:
        query = query.where(incident_alerts.c.status == status)
    rows = conn.execute(query.order_by(incident_alerts.c.fingerprint).limit(limit))
    return [json.loads(text) for text, in rows]


_UPDATE_SUMMARY = update(incident_summaries).where(
    incident_summaries.c.incident_id == bindparam("w_incident"))
_INSERT_SUMMARY = insert(incident_summaries)
_UPDATE_INCIDENT = update(incidents).where(incidents.c.id == bindparam("w_incident"))


def _save_summary(conn: Connection, incident_id: int, summary: AlertSummary) -> None:
    values = {"firing": summary.count("firing"), "resolved": summary.count("resolved"),
              "tallies": json.dumps(summary.as_data(), sort_keys=True)}
    if not conn.execute(_UPDATE_SUMMARY, {"w_incident": incident_id, **values}).rowcount:
        conn.execute(_INSERT_SUMMARY, {"incident_id": incident_id, **values})


def save_incident(conn: Connection, incident: Incident, now: float) -> int:
    """Insert or update ``incident`` and its summary; returns its id. Its alerts are saved
    one at a time, by :func:`save_alert`."""
    cause = incident.root_cause
    values = {
        "state": incident.state, "updated_at": now, "resolved_at": incident.resolved_at,
        "root_service": cause.service if cause else None,
        "root_component": cause.component if cause else None,
        "root_kind": cause.kind if cause else None,
        "reasoning": json.dumps(list(cause.reasoning) if cause else []),
        "risk": incident.risk, "signature": incident.signature,
        "drill_id": incident.drill_id, "site": incident.site,
    }
    if incident.id is None:
        # Stores of earlier releases have no default for ``alerts``: the empty object is
        # written explicitly.
        new_id = conn.execute(insert(incidents).values(opened_at=incident.opened_at,
                                                       alerts="{}", **values)
                              .returning(incidents.c.id)).scalar_one()
        incident.id = int(new_id)
    else:
        conn.execute(_UPDATE_INCIDENT, {"w_incident": incident.id, **values})
    _save_summary(conn, incident.id, incident.summary)
    return incident.id


def incident_counts(conn: Connection) -> dict[str, int]:
    """How many incidents are in each state."""
    rows = conn.execute(select(incidents.c.state, func.count()).group_by(incidents.c.state))
    return {state: int(count) for state, count in rows}


def set_incident_state(conn: Connection, incident_id: int, state: str, now: float) -> None:
    conn.execute(update(incidents).where(incidents.c.id == incident_id,
                                         incidents.c.state != "resolved")
                 .values(state=state, updated_at=now))


def incident_state(conn: Connection, incident_id: int) -> str | None:
    state: str | None = conn.execute(select(incidents.c.state).where(
        incidents.c.id == incident_id)).scalar_one_or_none()
    return state


def count_signature(conn: Connection, signature: str, since: float,
                    site: str | None = None, default_site: str = DEFAULT_SITE) -> int:
    """Incidents with this signature opened since ``since`` (recurring patterns), at
    ``site`` (at every site when None)."""
    query = select(incidents.c.id).where(incidents.c.signature == signature,
                                         incidents.c.opened_at >= since)
    if site is not None:
        query = query.where(of_site(incidents.c.site, site, default_site))
    return len(conn.execute(query).all())


def load_state(conn: Connection, key: str) -> dict[str, Any] | None:
    value = conn.execute(select(healing_state.c.value).where(
        healing_state.c.key == key).with_for_update()).scalar_one_or_none()
    return None if value is None else dict(json.loads(value))


def save_state(conn: Connection, key: str, value: Mapping[str, Any]) -> None:
    text = json.dumps(value, sort_keys=True)
    now = time.time()
    updated = conn.execute(update(healing_state).where(healing_state.c.key == key)
                           .values(value=text, updated_at=now)).rowcount
    if not updated:
        conn.execute(insert(healing_state).values(key=key, value=text, updated_at=now))


def load_breaker(conn: Connection, key: str, cfg: Breaker) -> BreakerState:
    stored = load_state(conn, key)
    return BreakerState.initial(cfg) if stored is None else BreakerState.from_dict(stored)


def load_budget(conn: Connection, key: str) -> BudgetState:
    stored = load_state(conn, key)
    return BudgetState() if stored is None else BudgetState.from_dict(stored)


def all_states(conn: Connection, prefix: str) -> dict[str, dict[str, Any]]:
    rows = conn.execute(select(healing_state.c.key, healing_state.c.value).where(
        healing_state.c.key.startswith(prefix)))
    return {key: dict(json.loads(value)) for key, value in rows}


def _add(into: dict[str, Outcomes], action: str, successes: int, failures: int) -> None:
    held = into.get(action, Outcomes())
    into[action] = Outcomes(held.successes + int(successes), held.failures + int(failures))


def outcomes(conn: Connection, signature: str, service: str, site: str = DEFAULT_SITE,
             default_site: str = DEFAULT_SITE) -> tuple[dict[str, Outcomes],
                                                        dict[str, Outcomes]]:
    """What memory holds of ``signature`` on ``service``, per action: at ``site`` (local),
    and at every other site together (pooled). Rows of a store older than sites (the
    ``memory`` table) are the default site's."""
    local: dict[str, Outcomes] = {}
    pooled: dict[str, Outcomes] = {}
    for row_site, action, successes, failures in conn.execute(
            select(site_memory.c.site, site_memory.c.action, site_memory.c.successes,
                   site_memory.c.failures).where(site_memory.c.signature == signature,
                                                 site_memory.c.service == service)):
        _add(local if row_site == site else pooled, action, successes, failures)
    legacy = local if site == default_site else pooled
    for action, successes, failures in conn.execute(
            select(memory.c.action, memory.c.successes, memory.c.failures).where(
                memory.c.signature == signature, memory.c.service == service)):
        _add(legacy, action, successes, failures)
    return local, pooled


def record_outcome(conn: Connection, signature: str, service: str, action: str,
                   success: bool, *, site: str = DEFAULT_SITE) -> None:
    now = time.time()
    column = site_memory.c.successes if success else site_memory.c.failures
    updated = conn.execute(update(site_memory).where(
        site_memory.c.site == site, site_memory.c.signature == signature,
        site_memory.c.service == service, site_memory.c.action == action)
        .values({column: column + 1, "updated_at": now})).rowcount
    if not updated:
        conn.execute(insert(site_memory).values(
            site=site, signature=signature, service=service, action=action,
            successes=int(success), failures=int(not success), updated_at=now))


def all_memory(conn: Connection, default_site: str = DEFAULT_SITE) -> list[dict[str, Any]]:
    """Every row of memory (signature, service, action, site, successes, failures,
    updated_at), by service, action and site; a store's rows from before sites count as
    ``default_site``'s (added to its row of the same key, if it has one)."""
    rows: dict[tuple[str, str, str, str], dict[str, Any]] = {}
    for row in conn.execute(select(site_memory)):
        data = dict(row._mapping)
        rows[(data["service"], data["action"], data["site"], data["signature"])] = data
    for row in conn.execute(select(memory)):
        data = {**row._mapping, "site": default_site}
        key = (data["service"], data["action"], default_site, data["signature"])
        held = rows.get(key)
        if held is None:
            rows[key] = data
        else:
            held["successes"] += data["successes"]
            held["failures"] += data["failures"]
            held["updated_at"] = max(held["updated_at"], data["updated_at"])
    return [rows[key] for key in sorted(rows)]


def get_setting(conn: Connection, key: str) -> str | None:
    value: str | None = conn.execute(select(settings.c.value).where(
        settings.c.key == key)).scalar_one_or_none()
    return value


def put_setting(conn: Connection, key: str, value: str) -> None:
    now = time.time()
    if not conn.execute(update(settings).where(settings.c.key == key)
                        .values(value=value, updated_at=now)).rowcount:
        conn.execute(insert(settings).values(key=key, value=value, updated_at=now))


def enqueue_action(conn: Connection, incident_id: int, service: str, playbook: str, *,
                   alert: Mapping[str, Any], now: float, site: str = DEFAULT_SITE) -> int:
    new_id = conn.execute(insert(actions).values(
        incident_id=incident_id, service=service, playbook=playbook, site=site,
        alert=json.dumps(alert, sort_keys=True), created_at=now).returning(actions.c.id)
    ).scalar_one()
    return int(new_id)


def actions_of(conn: Connection, incident_id: int) -> list[dict[str, Any]]:
    rows = conn.execute(select(actions).where(actions.c.incident_id == incident_id)
                        .order_by(actions.c.id))
    return [dict(row._mapping) for row in rows]


# -- the action queue (the healer's claims, leases and outcomes) --------------------------------

# pg_advisory_xact_lock key under which every replica takes its policy decisions in turn.
_PG_POLICY_LOCK = int.from_bytes(hashlib.sha256(b"monitoriza.healing.policy").digest()[:8],
                                 "big", signed=True)


def lock_policy(conn: Connection) -> None:
    """Take the cluster-wide policy lock (SQLite's BEGIN IMMEDIATE already is one)."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_POLICY_LOCK})


def claimable(conn: Connection, now: float) -> tuple[bool, bool]:
    """(any running action's lease expired, any action can be claimed) at ``now``."""
    interrupted = conn.execute(select(actions.c.id).where(
        actions.c.state == "running", actions.c.lease_expires < now).limit(1)).first()
    waiting = conn.execute(select(actions.c.id).where(or_(
        actions.c.state == "pending",
        (actions.c.state == "claimed") & (actions.c.lease_expires < now))).limit(1)).first()
    return interrupted is not None, waiting is not None


def take_interrupted(conn: Connection, now: float, detail: str) -> list[Any]:
    """Record as failed, with ``detail``, the running actions whose lease expired, and return
    them (id, incident_id, service, playbook, site). Locked and skipped when locked: two
    replicas never both record the same one."""
    rows = conn.execute(select(actions.c.id, actions.c.incident_id, actions.c.service,
                               actions.c.playbook, actions.c.site).where(
        actions.c.state == "running", actions.c.lease_expires < now)
        .order_by(actions.c.id).with_for_update(skip_locked=True)).all()
    for row in rows:
        finish_action(conn, row.id, "failure", now, detail)
    return list(rows)


def claim_actions(conn: Connection, owner: str, now: float, lease: float,
                  limit: int = 10) -> list[Any]:
    """Lease up to ``limit`` pending actions (or claimed ones whose lease expired) to
    ``owner``; returns their rows (id, incident_id, service, playbook, alert, site), by id."""
    claimable = (select(actions.c.id).where(or_(
        actions.c.state == "pending",
        (actions.c.state == "claimed") & (actions.c.lease_expires < now)))
        .order_by(actions.c.id).limit(limit).with_for_update(skip_locked=True))
    rows = conn.execute(
        update(actions).where(actions.c.id.in_(claimable.scalar_subquery()))
        .values(state="claimed", lease_owner=owner, lease_expires=now + lease)
        .returning(actions.c.id, actions.c.incident_id, actions.c.service,
                   actions.c.playbook, actions.c.alert, actions.c.site)).all()
    return sorted(rows, key=lambda row: int(row.id))


def held_by(conn: Connection, action_id: int, owner: str, state: str) -> bool:
    """Lock the action's row; is it still in ``state`` under ``owner``'s lease?"""
    row = conn.execute(select(actions.c.state, actions.c.lease_owner).where(
        actions.c.id == action_id).with_for_update()).one_or_none()
    return row is not None and row.state == state and row.lease_owner == owner


def renew_lease(conn: Connection, action_id: int, owner: str, expires: float) -> None:
    """Push out the lease of a running action that ``owner`` still holds."""
    conn.execute(update(actions).where(
        actions.c.id == action_id, actions.c.state == "running",
        actions.c.lease_owner == owner).values(lease_expires=expires))


def start_action(conn: Connection, action_id: int, now: float, lease_expires: float) -> None:
    conn.execute(update(actions).where(actions.c.id == action_id).values(
        state="running", started_at=now, lease_expires=lease_expires))


def finish_action(conn: Connection, action_id: int, outcome: str, now: float,
                  detail: str) -> None:
    conn.execute(update(actions).where(actions.c.id == action_id).values(
        state="done", outcome=outcome, finished_at=now, detail=detail))


def running_by_target(conn: Connection,
                      default_site: str = DEFAULT_SITE) -> dict[tuple[str, str], int]:
    """How many actions run now, per target: (site, service)."""
    counted: dict[tuple[str, str], int] = {}
    for site, service, count in conn.execute(
            select(actions.c.site, actions.c.service, func.count())
            .where(actions.c.state == "running").group_by(actions.c.site, actions.c.service)):
        key = (stored_site(site, default_site), str(service))
        counted[key] = counted.get(key, 0) + int(count)
    return counted


def services_acted_on_since(conn: Connection, since: float, site: str = DEFAULT_SITE,
                            default_site: str = DEFAULT_SITE) -> frozenset[str]:
    """The services of ``site`` an action started on at or after ``since`` (its blast
    radius: each site has its own)."""
    return frozenset(str(service) for (service,) in conn.execute(
        select(actions.c.service).where(actions.c.started_at >= since,
                                        of_site(actions.c.site, site, default_site))))


def incident_signature(conn: Connection, incident_id: int) -> str:
    """The signature of the incident, "" if it is gone."""
    signature: str | None = conn.execute(select(incidents.c.signature).where(
        incidents.c.id == incident_id)).scalar_one_or_none()
    return signature or ""


def load_incident(conn: Connection, incident_id: int,
                  default_site: str = DEFAULT_SITE) -> Incident | None:
    """One incident with its summary (never its alerts), or None if there is none."""
    row = conn.execute(select(incidents).where(incidents.c.id == incident_id)).one_or_none()
    if row is None:
        return None
    return incident_from_row(row, read_summaries(conn, [row])[int(row.id)], default_site)


def queued_event(data: Mapping[str, Any]) -> AlertEvent:
    """The alert event an action was queued for, as :func:`enqueue_action` stored it."""
    return _event_from(data)
