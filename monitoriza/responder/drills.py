"""Fire drills over HTTP: a drill's steps into the audit chain, and its windows.

``POST /api/v1/drills/events`` records one step of a drill (start, inject, restore, verdict,
end, abort) as an audit entry ``drill.<event>``; ``start`` opens a window over the drill's
blast radius (monitoriza.healing.drill_windows marks the incidents opened in it), ``end`` and
``abort`` close the drill's windows (those of its ``experiment``, or all of them when it is
empty), and a window closes by itself at its ``expires_at``. The client chooses ``event_id``:
a retried POST finds it stored and answers the stored event again (200) without appending.
``GET /api/v1/drills`` lists the windows open now. Both need the bearer token.

Order of checks: token (401), content type (415), size (413), JSON (400), fields (400,
naming the field), an event id already stored (200, the stored event), the clock (409),
then one transaction for the event row, the window and the audit entry (201).
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request
from sqlalchemy import Connection, insert, select, update
from sqlalchemy.exc import SQLAlchemyError

from monitoriza.audit.log import AuditLog
from monitoriza.healing.drill_windows import window_from_row, windows_open_at
from monitoriza.responder.auth import protect
from monitoriza.responder.drill_events import (
    CLOSING_EVENTS,
    DrillEvent,
    DrillEventError,
    check_timing,
    decode_body,
    parse_drill_event,
)
from monitoriza.responder.errors import error
from monitoriza.responder.intake import read_body
from monitoriza.responder.state import responder_of
from monitoriza.store import drill_events, drill_windows, reading, writing

log = logging.getLogger(__name__)
blueprint = protect(Blueprint("drills", __name__))


def stored_event(conn: Connection, event_id: str) -> dict[str, Any] | None:
    """The event stored under ``event_id`` as it was answered, or None."""
    text = conn.execute(select(drill_events.c.document).where(
        drill_events.c.event_id == event_id)).scalar_one_or_none()
    return None if text is None else dict(json.loads(text))


def close_windows(conn: Connection, event: DrillEvent, now: float) -> list[str]:
    """Close the drill's open windows (of its experiment, or all when it names none);
    returns the start event ids of those closed."""
    query = select(drill_windows).where(drill_windows.c.drill_id == event.drill_id,
                                        drill_windows.c.ended_at.is_(None))
    if event.experiment:
        query = query.where(drill_windows.c.experiment == event.experiment)
    closing = [window_from_row(row) for row in conn.execute(query)]
    ids = sorted(window.event_id for window in closing if window.expires_at > now)
    if ids:
        conn.execute(update(drill_windows).where(drill_windows.c.event_id.in_(ids))
                     .values(ended_at=now, ended_by=event.event))
    return ids


def record(conn: Connection, audit: AuditLog, event: DrillEvent,
           now: float) -> dict[str, Any]:
    """Store ``event``, open or close its windows and append its audit entry, in ``conn``'s
    transaction; returns the stored event."""
    document: dict[str, Any] = {**event.as_data(), "received_at": now}
    if event.event == "start":
        assert event.expires_at is not None  # parse_drill_event requires it for start
        conn.execute(insert(drill_windows).values(
            event_id=event.event_id, drill_id=event.drill_id, experiment=event.experiment,
            services=json.dumps(list(event.services)), started_at=now,
            expires_at=event.expires_at, site=event.site))
    elif event.event in CLOSING_EVENTS:
        document["closed_windows"] = close_windows(conn, event, now)
    document["audit_seq"] = audit.append(conn, event.audit_kind, document).seq
    conn.execute(insert(drill_events).values(
        event_id=event.event_id, drill_id=event.drill_id, event=event.event, received_at=now,
        audit_seq=document["audit_seq"], document=json.dumps(document, sort_keys=True)))
    return document


def _store(event: DrillEvent) -> tuple[Response, int]:
    """Answer the stored event (200), refuse it for the clock (409) or record it (201)."""
    state = responder_of(current_app)
    now = time.time()
    try:
        with writing(state.journal.engine) as conn:
            # Under the write lock: a retry racing its original finds it or waits for it.
            found = stored_event(conn, event.event_id)
            if found is not None:
                return jsonify(found), 200
            try:
                check_timing(event, now)
            except DrillEventError as exc:
                return error(exc.status, "conflict", str(exc), field=exc.field)
            document = record(conn, state.audit, event, now)
    except SQLAlchemyError:
        log.exception("drill event %s could not be stored", event.event_id)
        return error(503, "service unavailable", "the store cannot be written right now")
    log.info("drill %s: %s %s (audit seq %s)", event.drill_id, event.event,
             event.experiment or "-", document["audit_seq"])
    return jsonify(document), 201


@blueprint.post("/api/v1/drills/events")
def post_drill_event() -> tuple[Response, int]:
    if request.mimetype != "application/json":
        return error(415, "unsupported media type", "the body must be application/json")
    raw = read_body(current_app.config["MAX_CONTENT_LENGTH"])  # 413 past it, as JSON
    try:
        event = parse_drill_event(decode_body(raw))
    except DrillEventError as exc:
        return error(400, "bad request", str(exc), field=exc.field)
    except ValueError:
        return error(400, "bad request", "the body is not valid JSON", field="body")
    return _store(event)


@blueprint.get("/api/v1/drills")
def list_drill_windows() -> tuple[Response, int]:
    """The drill windows open now, oldest first."""
    engine = responder_of(current_app).journal.engine
    now = time.time()
    with reading(engine) as conn:
        windows = windows_open_at(conn, now)
    return jsonify(windows=[window.as_data() for window in windows], now=now), 200
