"""``POST /api/v1/alerts``: the Alertmanager webhook.

Order of checks: token (401), content type (415), size (413), JSON (400), v4 schema (400),
then a committed journal transaction holding the whole notification, and only then 200. The
transaction is shared with the notifications that arrive at the same time
(:mod:`monitoriza.responder.group_commit`, ``responder.group_commit_max``; 0 commits each
notification in its own request thread). If the journal cannot be written within
``store_timeout`` the answer is 503, which Alertmanager retries; nothing that got a 2xx is
ever lost. A rejected request writes nothing.
"""

from __future__ import annotations

import json
import logging
import threading
import time

from flask import Blueprint, Flask, Response, current_app, jsonify, request
from sqlalchemy import Connection
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import RequestEntityTooLarge

from monitoriza.logs import first, get_logger
from monitoriza.responder.auth import protect
from monitoriza.responder.errors import error
from monitoriza.responder.group_commit import GroupCommitter, JournalCommitError
from monitoriza.responder.journal import Accepted
from monitoriza.responder.state import responder_of
from monitoriza.responder.webhook import Notification, WebhookError, parse_notification

log = logging.getLogger(__name__)
events = get_logger(__name__)
blueprint = protect(Blueprint("intake", __name__))
_COMMITTER = "monitoriza.group_commit"  # its key in app.extensions
_committer_made = threading.Lock()


def committer_of(app: Flask) -> GroupCommitter[Connection] | None:
    """The app's group committer, made on first use; None when group commit is off."""
    committer: GroupCommitter[Connection] | None = app.extensions.get(_COMMITTER)
    if committer is not None:
        return committer
    state = responder_of(app)
    settings = state.config.responder
    if settings.group_commit_max == 0:
        return None
    with _committer_made:
        committer = app.extensions.get(_COMMITTER)
        if committer is None:
            committer = GroupCommitter(state.journal.intake_transaction,
                                       state.journal.journal_batch,
                                       max_alerts=settings.group_commit_max,
                                       timeout=settings.store_timeout)
            app.extensions[_COMMITTER] = committer
    return committer


def journal_notification(app: Flask, notification: Notification) -> Accepted:
    """Journal ``notification`` durably: in a shared commit, or alone when group commit is
    off. JournalCommitError or SQLAlchemyError when it is not known to be journaled."""
    committer = committer_of(app)
    if committer is None:
        return responder_of(app).journal.accept(notification)
    return committer.submit(notification)


def read_body(limit: int) -> bytes:
    """The request body; RequestEntityTooLarge past ``limit`` bytes, chunked or not.

    With a Content-Length werkzeug refuses a body over the limit before reading it. A chunked
    body has none; werkzeug then stops reading *at* the limit and hands back the first
    ``limit`` bytes as if they were all, which reads as bad JSON (400). So read one byte past
    the limit from the server's terminated stream and refuse when it arrives."""
    too_large = RequestEntityTooLarge(f"the body is larger than {limit} bytes")
    if request.content_length is not None and request.content_length > limit:
        raise too_large
    if request.content_length is not None or "wsgi.input_terminated" not in request.environ:
        return request.get_data(cache=False)
    stream = request.environ["wsgi.input"]
    chunks: list[bytes] = []
    size = 0
    while size <= limit:
        chunk = stream.read(min(65_536, limit + 1 - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    if size > limit:
        raise too_large
    return b"".join(chunks)


@blueprint.post("/api/v1/alerts")
def receive_alerts() -> tuple[Response, int]:
    started = time.perf_counter()
    state = responder_of(current_app)
    if request.mimetype != "application/json":
        return error(415, "unsupported media type", "the body must be application/json")
    body = read_body(current_app.config["MAX_CONTENT_LENGTH"])  # 413 past it, as JSON
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return error(400, "bad request", "the body is not valid JSON")
    try:
        notification = parse_notification(data)
    except WebhookError as exc:
        return error(400, "bad request", str(exc), details=exc.details[:20])
    try:
        accepted = journal_notification(current_app, notification)
    except JournalCommitError as exc:
        # The committer logged a failed batch once, with its traceback.
        log.warning("%s; answering 503 so that Alertmanager retries", exc)
        return error(503, "service unavailable", "the journal cannot be written right now")
    except SQLAlchemyError:
        log.exception("journal write failed; answering 503 so that Alertmanager retries")
        return error(503, "service unavailable", "the journal cannot be written right now")
    state.worker.wake()
    firing = sum(alert.status == "firing" for alert in notification.alerts)
    # The fingerprints tie this line to the incident lines the worker logs for them later.
    events.info("notification.accepted", receiver=notification.receiver,
                group_key=notification.groupKey, alerts=accepted.alerts, new=accepted.new,
                duplicates=accepted.duplicates, firing=firing,
                resolved=len(notification.alerts) - firing,
                truncated_alerts=notification.truncatedAlerts,
                fingerprints=first(alert.fingerprint for alert in notification.alerts))
    state.metrics.alerts_received.inc(accepted.alerts)
    state.metrics.duplicates.inc(accepted.duplicates)
    state.metrics.truncated.inc(notification.truncatedAlerts)
    state.metrics.intake_duration.observe(time.perf_counter() - started)
    return jsonify(alerts=accepted.alerts, accepted=accepted.new,
                   duplicates=accepted.duplicates,
                   truncated_alerts=notification.truncatedAlerts), 200
