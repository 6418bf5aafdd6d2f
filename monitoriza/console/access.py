"""Who may see and change what in the console.

A person logs in with the responder's token (role ``operator``: may switch healing off and
on, verify the audit chain) or with the read-only token (role ``viewer``: sees everything,
changes nothing). The session is Flask's signed cookie (HttpOnly, SameSite=Strict, path
/console), signed with a secret read from ``responder.console.session_secret_file`` (generated
there, 0600, when the file is missing) or, without that file, derived from the token. Every
form that changes state carries a CSRF token bound to the session; a POST without it is
refused whatever the role. Failed logins are counted (``monitoriza_console_logins_total``).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import os
import secrets
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal, TypeVar, cast

from flask import Flask, abort, redirect, request, session, url_for

Role = Literal["viewer", "operator"]
ROLES: dict[Role, int] = {"viewer": 0, "operator": 1}
CSRF_FIELD = "csrf_token"
SECRET_BYTES = 32

F = TypeVar("F", bound=Callable[..., Any])


def session_secret(path: str) -> bytes:
    """The cookie-signing secret in ``path``; made (0600, random) when the file is missing,
    so that sessions survive a restart of the responder."""
    file = Path(path)
    try:
        secret = file.read_bytes().strip()
    except FileNotFoundError:
        file.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as out:
            out.write(secrets.token_hex(SECRET_BYTES) + "\n")
        secret = file.read_bytes().strip()
    if len(secret) < SECRET_BYTES:
        raise ValueError(f"responder.console.session_secret_file: {path} holds fewer than "
                         f"{SECRET_BYTES} bytes")
    return secret


def derived_secret(token: str) -> bytes:
    """A signing secret derived from the responder's token, when no secret file is set: the
    same on every replica and across restarts, and a new token ends every session."""
    return hmac.new(token.encode(), b"monitoriza console session", hashlib.sha256).digest()


def configure_sessions(app: Flask, secret: bytes, lifetime_seconds: float) -> None:
    app.config.update(
        SECRET_KEY=secret, SESSION_COOKIE_NAME="monitoriza_console",
        SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Strict",
        SESSION_COOKIE_PATH="/console",
        PERMANENT_SESSION_LIFETIME=timedelta(seconds=lifetime_seconds))


def role_for(given: str, operator_token: str, viewer_token: str | None) -> Role | None:
    """The role ``given`` logs in as, compared in constant time; None for a wrong token."""
    candidate = given.strip().encode()
    if candidate and hmac.compare_digest(candidate, operator_token.encode()):
        return "operator"
    if viewer_token and candidate and hmac.compare_digest(candidate, viewer_token.encode()):
        return "viewer"
    return None


def start_session(role: Role) -> None:
    session.clear()
    session.permanent = True
    session["role"] = role
    session[CSRF_FIELD] = secrets.token_urlsafe(32)


def current_role() -> Role | None:
    role = session.get("role")
    return cast(Role, role) if role in ROLES else None


def csrf_token() -> str:
    """The session's CSRF token, for the hidden field of every state-changing form."""
    return str(session.get(CSRF_FIELD, ""))


def csrf_valid() -> bool:
    expected = session.get(CSRF_FIELD)
    given = request.form.get(CSRF_FIELD, "")
    return bool(expected) and hmac.compare_digest(str(expected).encode(), given.encode())


def login_required(role: Role = "viewer") -> Callable[[F], F]:
    """No session: redirect to the login page. A lower role: 403. A POST: its CSRF token
    must match the session's, else 400 (nothing changes)."""

    def decorate(view: F) -> F:
        @functools.wraps(view)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            have = current_role()
            if have is None:
                return redirect(url_for("console.login", next=request.full_path))
            if ROLES[have] < ROLES[role]:
                abort(403)
            if request.method == "POST" and not csrf_valid():
                abort(400, "the form's CSRF token is missing or wrong: reload the page")
            return view(*args, **kwargs)

        return cast(F, guarded)

    return decorate


def actor() -> str:
    """How audit entries name a change made from the console: ``console:operator``."""
    return f"console:{current_role() or 'anonymous'}"
