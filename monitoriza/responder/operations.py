"""Health, readiness, metrics and the OpenAPI document."""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response, current_app, jsonify, request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy.exc import SQLAlchemyError

from monitoriza.responder.errors import error
from monitoriza.responder.state import responder_of
from monitoriza.store import writing

blueprint = Blueprint("operations", __name__)
OPENAPI = Path(__file__).with_name("openapi.yaml")


@blueprint.get("/healthz")
def healthz() -> tuple[Response, int]:
    return jsonify(status="ok"), 200


@blueprint.get("/readyz")
def readyz() -> tuple[Response, int]:
    """Ready when the store takes a write transaction (SQLite: the write lock).

    Not the cluster-wide lock of PostgreSQL (``serialized=False``): intake does not take it
    either, and a health check must not queue behind a busy worker on another replica."""
    state = responder_of(current_app)
    try:
        with writing(state.journal.engine, serialized=False) as conn:
            conn.exec_driver_sql("SELECT 1")
    except SQLAlchemyError as exc:
        return error(503, "service unavailable",
                     f"the store is not writable: {exc.__class__.__name__}")
    return jsonify(status="ready"), 200


@blueprint.get("/metrics")
def metrics() -> Response:
    state = responder_of(current_app)
    return Response(generate_latest(state.metrics.registry), mimetype=CONTENT_TYPE_LATEST)


@blueprint.get("/api/v1/openapi.yaml")
def openapi() -> Response:
    return Response(OPENAPI.read_bytes(), mimetype="application/yaml")


@blueprint.after_app_request
def count_request(response: Response) -> Response:
    state = responder_of(current_app)
    endpoint = request.url_rule.rule if request.url_rule is not None else "unmatched"
    state.metrics.requests.labels(endpoint, str(response.status_code)).inc()
    return response
