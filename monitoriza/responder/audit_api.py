"""``GET /api/v1/audit``: read the audit chain (same bearer token as the webhook)."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify

from monitoriza.responder.auth import protect
from monitoriza.responder.errors import error
from monitoriza.responder.query import integer_arg
from monitoriza.responder.state import responder_of

blueprint = protect(Blueprint("audit", __name__))
MAX_LIMIT = 1000


@blueprint.get("/api/v1/audit")
def list_audit() -> tuple[Response, int]:
    state = responder_of(current_app)
    since = integer_arg("since", 0)
    limit = integer_arg("limit", 100, 1, MAX_LIMIT)
    if since is None or limit is None:
        return error(400, "bad request", f"since must be >= 0 and limit in 1..{MAX_LIMIT}")
    entries = state.audit.entries(since_seq=since, limit=limit)
    head_seq, head_hash = state.audit.head()
    return jsonify(
        entries=[{"seq": e.seq, "ts": e.ts, "kind": e.kind, "data": e.data, "prev": e.prev,
                  "hash": e.hash} for e in entries],
        head={"seq": head_seq, "hash": head_hash},
        next_since=entries[-1].seq if entries else since,
    ), 200
