"""Incidents, operational memory and the kill switch over HTTP (bearer token required)."""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request
from sqlalchemy import select

from monitoriza.healing import repository
from monitoriza.healing.healer import KILL_SWITCH_SETTING
from monitoriza.healing.memory import Outcomes, success_ratio
from monitoriza.responder.auth import authorized
from monitoriza.responder.errors import error
from monitoriza.responder.state import responder_of
from monitoriza.store import incidents, reading, writing

blueprint = Blueprint("healing", __name__)


@blueprint.before_request
def require_token() -> tuple[Response, int] | None:
    if not authorized(request, responder_of(current_app).token):
        return error(401, "unauthorized", "a valid bearer token is required")
    return None


def _incident(row: Any, with_details: bool) -> dict[str, Any]:
    document: dict[str, Any] = {
        "id": row.id, "state": row.state, "risk": row.risk, "signature": row.signature,
        "opened_at": row.opened_at, "updated_at": row.updated_at,
        "resolved_at": row.resolved_at,
        "root_cause": None if row.root_service is None else {
            "service": row.root_service, "component": row.root_component,
            "kind": row.root_kind},
        "reasoning": json.loads(row.reasoning),
    }
    alerts = json.loads(row.alerts)
    document["alert_count"] = len(alerts)
    if with_details:
        document["alerts"] = list(alerts.values())
    return document


@blueprint.get("/api/v1/incidents")
def list_incidents() -> tuple[Response, int]:
    state = request.args.get("state")
    service = request.args.get("service")
    try:
        limit = int(request.args.get("limit", "100"))
    except ValueError:
        return error(400, "bad request", "limit must be an integer")
    if not 1 <= limit <= 1000 or state not in {None, "open", "healing", "resolved"}:
        return error(400, "bad request", "limit must be 1..1000 and state open|healing|resolved")
    query = select(incidents).order_by(incidents.c.id.desc()).limit(limit)
    if state:
        query = query.where(incidents.c.state == state)
    with reading(responder_of(current_app).journal.engine) as conn:
        rows = conn.execute(query).all()
    found = [_incident(row, False) for row in rows]
    if service:
        found = [i for i in found if i["root_cause"] and i["root_cause"]["service"] == service]
    return jsonify(incidents=found), 200


@blueprint.get("/api/v1/incidents/<int:incident_id>")
def get_incident(incident_id: int) -> tuple[Response, int]:
    engine = responder_of(current_app).journal.engine
    with reading(engine) as conn:
        row = conn.execute(select(incidents).where(incidents.c.id == incident_id)).first()
        if row is None:
            return error(404, "not found", f"no incident {incident_id}")
        document = _incident(row, True)
        document["actions"] = [
            {key: value for key, value in action.items() if key not in {"lease_owner",
                                                                          "lease_expires"}}
            | {"alert": json.loads(action["alert"])}
            for action in repository.actions_of(conn, incident_id)]
    return jsonify(document), 200


@blueprint.get("/api/v1/memory")
def get_memory() -> tuple[Response, int]:
    with reading(responder_of(current_app).journal.engine) as conn:
        rows = repository.all_memory(conn)
    for row in rows:
        row["success_ratio"] = round(success_ratio(Outcomes(row["successes"],
                                                            row["failures"])), 4)
    return jsonify(memory=rows), 200


@blueprint.get("/api/v1/kill-switch")
def get_kill_switch() -> tuple[Response, int]:
    state = responder_of(current_app)
    with reading(state.journal.engine) as conn:
        on = state.healer.kill_switch_on(conn)
    return jsonify(enabled=on), 200


@blueprint.post("/api/v1/kill-switch")
def set_kill_switch() -> tuple[Response, int]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or not isinstance(body.get("enabled"), bool):
        return error(400, "bad request", 'the body must be {"enabled": true|false}')
    state = responder_of(current_app)
    with writing(state.journal.engine) as conn:
        repository.put_setting(conn, KILL_SWITCH_SETTING, "on" if body["enabled"] else "off")
        state.audit.append(conn, "kill_switch", {
            "enabled": body["enabled"], "by": "api",
            "reason": str(body.get("reason", ""))[:500]})
    return jsonify(enabled=body["enabled"]), 200
