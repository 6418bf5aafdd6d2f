"""Bearer-token authentication, compared in constant time."""

from __future__ import annotations

import hmac

from flask import Request


def authorized(request: Request, token: str) -> bool:
    """True when the request carries ``Authorization: Bearer <token>``."""
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    # compare_digest on bytes: its time does not depend on where the strings differ.
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(),
                                                              token.encode())
