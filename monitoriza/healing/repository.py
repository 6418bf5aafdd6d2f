"""Incidents, actions, breaker and budget state, and memory in the store (thin I/O).

Every function takes a connection inside the caller's transaction, so that what the
responder decides commits together with the journal row and the audit entries about it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

from sqlalchemy import Connection, func, insert, select, update

from monitoriza.config.schema import Breaker
from monitoriza.healing.breaker import BreakerState
from monitoriza.healing.budget import BudgetState
from monitoriza.healing.correlation import AlertEvent, Incident, RootCause
from monitoriza.healing.memory import Outcomes
from monitoriza.store import actions, healing_state, incidents, memory, settings


def _event_from(data: Mapping[str, Any]) -> AlertEvent:
    return AlertEvent(**{**data, "labels": dict(data["labels"])})


def incident_from_row(row: Any) -> Incident:
    alerts = {fingerprint: _event_from(event)
              for fingerprint, event in json.loads(row.alerts).items()}
    cause = None
    if row.root_service is not None:
        cause = RootCause(row.root_service, row.root_component, row.root_kind,
                          tuple(json.loads(row.reasoning)))
    return Incident(row.id, row.state, row.opened_at, row.resolved_at, alerts, cause,
                    row.risk, row.signature)


def open_incidents(conn: Connection) -> list[Incident]:
    rows = conn.execute(select(incidents).where(incidents.c.state != "resolved")
                        .order_by(incidents.c.id))
    return [incident_from_row(row) for row in rows]


def save_incident(conn: Connection, incident: Incident, now: float) -> int:
    """Insert or update ``incident``; returns its id."""
    cause = incident.root_cause
    values = {
        "state": incident.state, "updated_at": now, "resolved_at": incident.resolved_at,
        "root_service": cause.service if cause else None,
        "root_component": cause.component if cause else None,
        "root_kind": cause.kind if cause else None,
        "reasoning": json.dumps(list(cause.reasoning) if cause else []),
        "risk": incident.risk, "signature": incident.signature,
        "alerts": json.dumps({fp: asdict(event) for fp, event in incident.alerts.items()},
                             sort_keys=True),
    }
    if incident.id is None:
        new_id = conn.execute(insert(incidents).values(opened_at=incident.opened_at, **values)
                              .returning(incidents.c.id)).scalar_one()
        incident.id = int(new_id)
    else:
        conn.execute(update(incidents).where(incidents.c.id == incident.id).values(**values))
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


def count_signature(conn: Connection, signature: str, since: float) -> int:
    """Incidents with this signature opened since ``since`` (recurring patterns)."""
    rows = conn.execute(select(incidents.c.id).where(incidents.c.signature == signature,
                                                     incidents.c.opened_at >= since))
    return len(rows.all())


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


def outcomes(conn: Connection, signature: str, service: str) -> dict[str, Outcomes]:
    rows = conn.execute(select(memory.c.action, memory.c.successes, memory.c.failures).where(
        memory.c.signature == signature, memory.c.service == service))
    return {action: Outcomes(successes, failures) for action, successes, failures in rows}


def record_outcome(conn: Connection, signature: str, service: str, action: str,
                   success: bool) -> None:
    now = time.time()
    column = memory.c.successes if success else memory.c.failures
    updated = conn.execute(update(memory).where(
        memory.c.signature == signature, memory.c.service == service,
        memory.c.action == action).values({column: column + 1, "updated_at": now})).rowcount
    if not updated:
        conn.execute(insert(memory).values(signature=signature, service=service, action=action,
                                           successes=int(success), failures=int(not success),
                                           updated_at=now))


def all_memory(conn: Connection) -> list[dict[str, Any]]:
    rows = conn.execute(select(memory).order_by(memory.c.service, memory.c.action))
    return [dict(row._mapping) for row in rows]


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
                   alert: Mapping[str, Any], now: float) -> int:
    new_id = conn.execute(insert(actions).values(
        incident_id=incident_id, service=service, playbook=playbook,
        alert=json.dumps(alert, sort_keys=True), created_at=now).returning(actions.c.id)
    ).scalar_one()
    return int(new_id)


def actions_of(conn: Connection, incident_id: int) -> list[dict[str, Any]]:
    rows = conn.execute(select(actions).where(actions.c.incident_id == incident_id)
                        .order_by(actions.c.id))
    return [dict(row._mapping) for row in rows]
