"""Bearer-token authentication, compared in constant time: one guard for every API blueprint.

:func:`protect` registers :func:`require_token` as a blueprint's ``before_request``, so no
endpoint writes the check itself and none can forget it. Operations endpoints (``/healthz``,
``/readyz``, ``/metrics``, the OpenAPI document) live in a blueprint that is not protected.
"""

from __future__ import annotations

import hmac

from flask import Blueprint, Request, Response, current_app, request

from monitoriza.responder.errors import error
from monitoriza.responder.state import responder_of


def authorized(request: Request, token: str) -> bool:
    """True when the request carries ``Authorization: Bearer <token>``."""
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    # compare_digest on bytes: its time does not depend on where the strings differ.
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(),
                                                              token.encode())


def require_token() -> tuple[Response, int] | None:
    """401 unless the request carries the responder's bearer token; None lets it through."""
    if not authorized(request, responder_of(current_app).token):
        return error(401, "unauthorized", "a valid bearer token is required")
    return None


def protect(blueprint: Blueprint) -> Blueprint:
    """Guard every endpoint of ``blueprint`` with :func:`require_token`, before anything else
    (content type, size, body) is looked at."""
    blueprint.before_request(require_token)
    return blueprint
