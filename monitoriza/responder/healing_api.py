"""Incidents, operational memory and the kill switch over HTTP (bearer token required).

Incidents are listed as summaries (counts and services, never every alert: a storm puts
thousands in one) and paged; an incident's alerts are paged on their own.
"""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request
from sqlalchemy import select

from monitoriza.healing import kill_switch, repository
from monitoriza.healing.correlation import AlertSummary
from monitoriza.healing.memory import with_pooled
from monitoriza.healing.sites import stored_site
from monitoriza.responder.auth import protect
from monitoriza.responder.drill_events import IDENTIFIER
from monitoriza.responder.errors import error
from monitoriza.responder.query import MAX_ID, integer_arg
from monitoriza.responder.state import responder_of
from monitoriza.store import incidents, reading

blueprint = protect(Blueprint("healing", __name__))


MAX_LIMIT = 1000
DETAIL_ALERTS = 100  # alerts listed with one incident; the rest from .../alerts


def _limit() -> int | None:
    """The ``limit`` query parameter (default 100), or None when it is not 1..1000."""
    return integer_arg("limit", 100, 1, MAX_LIMIT)


def _default_site() -> str:
    return responder_of(current_app).config.responder.default_site


def _incident(row: Any, summary: AlertSummary) -> dict[str, Any]:
    """An incident's summary: what was concluded, and how many alerts of which services,
    at which site."""
    return {
        "id": row.id, "state": row.state, "risk": row.risk, "signature": row.signature,
        "opened_at": row.opened_at, "updated_at": row.updated_at,
        "resolved_at": row.resolved_at,
        "root_cause": None if row.root_service is None else {
            "service": row.root_service, "component": row.root_component,
            "kind": row.root_kind},
        "reasoning": json.loads(row.reasoning),
        "alert_count": summary.count(), "firing_count": summary.count("firing"),
        "resolved_count": summary.count("resolved"), "services": list(summary.services()),
        "first_alert_at": summary.earliest(),
        "drill": row.drill_id, "site": stored_site(row.site, _default_site()),
    }


@blueprint.get("/api/v1/incidents")
def list_incidents() -> tuple[Response, int]:
    """Newest first, ``limit`` at a time; ``after=ID`` continues below incident ``ID``
    (``next_after`` of the previous page, null on the last one); ``drill=ID`` keeps the
    incidents of that fire drill, ``site=NAME`` those of that site."""
    site = request.args.get("site")
    state = request.args.get("state")
    service = request.args.get("service")
    drill = request.args.get("drill")
    limit = _limit()
    after = integer_arg("after", MAX_ID)
    if limit is None or state not in {None, "open", "healing", "resolved"}:
        return error(400, "bad request", "limit must be 1..1000 and state open|healing|resolved")
    if after is None:
        return error(400, "bad request", "after must be an incident id")
    if drill is not None and not IDENTIFIER.fullmatch(drill):
        return error(400, "bad request", "drill must be a drill id: 1 to 64 characters of "
                                         "A-Z a-z 0-9 . _ : -")
    query = select(incidents).order_by(incidents.c.id.desc()).limit(limit)
    if state:
        query = query.where(incidents.c.state == state)
    if service:
        # No service name holds a NUL (the webhook refuses them); PostgreSQL could not compare.
        query = query.where(incidents.c.root_service == service.replace("\x00", "\ufffd"))
    if drill is not None:
        query = query.where(incidents.c.drill_id == drill)
    if site is not None:
        query = query.where(repository.of_site(incidents.c.site, site.replace("\x00", "\ufffd"),
                                               _default_site()))
    if after < MAX_ID:
        query = query.where(incidents.c.id < after)
    with reading(responder_of(current_app).journal.engine) as conn:
        rows = conn.execute(query).all()
        summaries = repository.read_summaries(conn, rows)
    found = [_incident(row, summaries[int(row.id)]) for row in rows]
    return jsonify(incidents=found,
                   next_after=found[-1]["id"] if len(found) == limit else None), 200


@blueprint.get("/api/v1/incidents/<int:incident_id>")
def get_incident(incident_id: int) -> tuple[Response, int]:
    """One incident's summary, its actions, and its first 100 alerts by fingerprint
    (``alerts_next_after``: where ``.../alerts?after=`` continues, null when that was all)."""
    if incident_id > MAX_ID:  # no such id can be stored; the driver would overflow binding it
        return error(404, "not found", f"no incident {incident_id}")
    engine = responder_of(current_app).journal.engine
    with reading(engine) as conn:
        row = conn.execute(select(incidents).where(incidents.c.id == incident_id)).first()
        if row is None:
            return error(404, "not found", f"no incident {incident_id}")
        document = _incident(row, repository.read_summaries(conn, [row])[incident_id])
        alerts = repository.alerts_page(conn, incident_id, row.alerts, after=None,
                                        limit=DETAIL_ALERTS)
        document["alerts"] = alerts
        document["alerts_next_after"] = (alerts[-1]["fingerprint"]
                                         if len(alerts) == DETAIL_ALERTS else None)
        document["actions"] = [
            {key: value for key, value in action.items() if key not in {"lease_owner",
                                                                          "lease_expires"}}
            | {"alert": json.loads(action["alert"])}
            for action in repository.actions_of(conn, incident_id)]
    return jsonify(document), 200


@blueprint.get("/api/v1/incidents/<int:incident_id>/alerts")
def get_incident_alerts(incident_id: int) -> tuple[Response, int]:
    """The incident's alerts (the latest event of each), by fingerprint, ``limit`` at a time
    after the fingerprint ``after``; ``status=firing|resolved`` keeps those."""
    limit = _limit()
    status = request.args.get("status")
    if limit is None or status not in {None, "firing", "resolved"}:
        return error(400, "bad request", "limit must be 1..1000 and status firing|resolved")
    if incident_id > MAX_ID:
        return error(404, "not found", f"no incident {incident_id}")
    engine = responder_of(current_app).journal.engine
    with reading(engine) as conn:
        row = conn.execute(select(incidents.c.alerts).where(
            incidents.c.id == incident_id)).first()
        if row is None:
            return error(404, "not found", f"no incident {incident_id}")
        after = request.args.get("after")
        # No fingerprint holds a NUL: the fingerprints after "a<NUL>..." are those after "a".
        alerts = repository.alerts_page(conn, incident_id, row.alerts,
                                        after=None if after is None else after.split("\x00")[0],
                                        limit=limit, status=status)
    return jsonify(incident=incident_id, alerts=alerts,
                   next_after=alerts[-1]["fingerprint"] if len(alerts) == limit else None), 200


@blueprint.get("/api/v1/memory")
def get_memory() -> tuple[Response, int]:
    """What memory learned, one row per (site, signature, service, action): the local
    counts and ``success_ratio`` as before sites, plus what the other sites pooled and the
    ranking's view of both (monitoriza.healing.memory.with_pooled)."""
    state = responder_of(current_app)
    with reading(state.journal.engine) as conn:
        rows = repository.all_memory(conn, state.config.responder.default_site)
    return jsonify(memory=with_pooled(
        rows, state.config.responder.healing.pooled_memory_weight)), 200


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
    kill_switch.set_kill_switch(state.journal.engine, state.audit, enabled=body["enabled"],
                                by="api", reason=str(body.get("reason", "")))
    return jsonify(enabled=body["enabled"]), 200
