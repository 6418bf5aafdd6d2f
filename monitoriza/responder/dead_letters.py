"""Dead letters over HTTP: list the journal rows given up on, and replay them after a fix.

``GET /api/v1/dead-letters?limit=N&after=ID`` pages through dead rows by journal id;
``POST /api/v1/dead-letters/replay`` with ``{"ids": [...]}`` or ``{"all": true}`` puts them
back to ``pending`` with their attempts reset (audited as ``journal.replayed``) and wakes the
worker. Both need the bearer token, like every ``/api/v1`` endpoint.

Registering the blueprint also hands the journal worker what dead-lettering needs (the retry
settings, the audit log, the dead-letter counter), so the app factory wires it in one line.
"""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify, request
from flask.blueprints import BlueprintSetupState

from monitoriza.pipeline import JournalRow
from monitoriza.responder.auth import protect
from monitoriza.responder.errors import error
from monitoriza.responder.journal import Journal, RetryPolicy
from monitoriza.responder.query import MAX_ID, integer_arg
from monitoriza.responder.state import Responder, responder_of
from monitoriza.store import writing

blueprint = protect(Blueprint("dead_letters", __name__))
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
MAX_IDS = 10_000  # per replay request; {"all": true} has no limit


def retry_policy(state: Responder) -> RetryPolicy:
    settings = state.config.responder
    return RetryPolicy(max_attempts=settings.max_attempts, backoff=settings.retry_backoff,
                       backoff_max=settings.retry_backoff_max)


def _wire_worker(setup: BlueprintSetupState) -> None:
    """Dead-lettering as configured: retry settings, audit entries, the counter."""
    state: Responder = setup.app.extensions["monitoriza"]

    def count(row: JournalRow, reason: str) -> None:
        state.metrics.dead_letters.labels(reason).inc()

    state.worker.retry = retry_policy(state)
    state.worker.audit = state.audit
    state.worker.on_dead_letter = count


blueprint.record_once(_wire_worker)


@blueprint.get("/api/v1/dead-letters")
def list_dead_letters() -> tuple[Response, int]:
    limit = integer_arg("limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    after = integer_arg("after", 0, 0, MAX_ID)
    if limit is None or after is None:
        return error(400, "bad request",
                     f"limit must be an integer in 1..{MAX_LIMIT} and after a journal id >= 0")
    state = responder_of(current_app)
    found = state.journal.dead_letters(after=after, limit=limit)
    return jsonify(dead_letters=[row.document() for row in found],
                   total=state.journal.dead_letter_count(),
                   next_after=found[-1].id if len(found) == limit else None), 200


def _replay_ids(body: object) -> list[int] | str | None:
    """The ids asked for, None for all, or what is wrong with the body."""
    usage = 'the body must be {"ids": [journal ids]} or {"all": true}'
    if not isinstance(body, dict) or len(body) != 1:
        return usage
    if body.get("all") is True:
        return None
    ids = body.get("ids")
    if not isinstance(ids, list) or not 1 <= len(ids) <= MAX_IDS or not all(
            type(item) is int and 1 <= item <= MAX_ID for item in ids):
        return f"{usage}, with 1 to {MAX_IDS} ids"
    return ids


@blueprint.post("/api/v1/dead-letters/replay")
def replay_dead_letters() -> tuple[Response, int]:
    asked = _replay_ids(request.get_json(silent=True))
    if isinstance(asked, str):
        return error(400, "bad request", asked)
    state = responder_of(current_app)
    with writing(state.journal.engine) as conn:
        replayed = Journal.replay(conn, asked)
        if replayed:
            state.audit.append(conn, "journal.replayed", {
                "ids": replayed, "count": len(replayed), "by": "api",
                "requested": "all" if asked is None else "ids"})
    state.worker.wake()
    return jsonify(replayed=len(replayed)), 200
