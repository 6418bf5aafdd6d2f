"""``POST /api/v1/alerts``: the Alertmanager webhook.

Order of checks: token (401), content type (415), size (413), JSON (400), v4 schema (400),
then one committed journal transaction for the whole notification, and only then 200. If the
journal cannot be written the answer is 503, which Alertmanager retries; nothing that got a
2xx is ever lost. A rejected request writes nothing.
"""

from __future__ import annotations

import json
import logging
import time

from flask import Blueprint, Response, current_app, jsonify, request
from sqlalchemy.exc import SQLAlchemyError

from monitoriza.responder.auth import authorized
from monitoriza.responder.errors import error
from monitoriza.responder.state import responder_of
from monitoriza.responder.webhook import WebhookError, parse_notification

log = logging.getLogger(__name__)
blueprint = Blueprint("intake", __name__)


@blueprint.post("/api/v1/alerts")
def receive_alerts() -> tuple[Response, int]:
    started = time.perf_counter()
    state = responder_of(current_app)
    if not authorized(request, state.token):
        return error(401, "unauthorized", "a valid bearer token is required")
    if request.mimetype != "application/json":
        return error(415, "unsupported media type", "the body must be application/json")
    body = request.get_data(cache=False)  # 413 past MAX_CONTENT_LENGTH, as JSON
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return error(400, "bad request", "the body is not valid JSON")
    try:
        notification = parse_notification(data)
    except WebhookError as exc:
        return error(400, "bad request", str(exc), details=exc.details[:20])
    try:
        accepted = state.journal.accept(notification)
    except SQLAlchemyError:
        log.exception("journal write failed; answering 503 so that Alertmanager retries")
        return error(503, "service unavailable", "the journal cannot be written right now")
    state.worker.wake()
    state.metrics.alerts_received.inc(accepted.alerts)
    state.metrics.duplicates.inc(accepted.duplicates)
    state.metrics.truncated.inc(notification.truncatedAlerts)
    state.metrics.intake_duration.observe(time.perf_counter() - started)
    return jsonify(alerts=accepted.alerts, accepted=accepted.new,
                   duplicates=accepted.duplicates,
                   truncated_alerts=notification.truncatedAlerts), 200
