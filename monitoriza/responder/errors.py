"""JSON error responses with the status Alertmanager and people can act on."""

from __future__ import annotations

from flask import Response, jsonify


def error(status: int, name: str, message: str, **extra: object) -> tuple[Response, int]:
    response = jsonify(error=name, message=message, **extra)
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="monitoriza"'
    if status == 503:
        # Alertmanager retries 5xx on its own schedule; the header helps other clients.
        response.headers["Retry-After"] = "5"
    return response, status
