"""The console: what an operator looks at, served by the responder under ``/console``.

Server-rendered pages (Jinja templates shipped in the package, inline SVG charts, no
JavaScript: pages refresh themselves with a meta refresh), behind a login with the
responder's token (operator) or a read-only token (viewer); see docs/console.md.
:func:`init_console` registers it on the responder's app.
"""

from __future__ import annotations

from pathlib import Path

from flask import Flask

from monitoriza.config.schema import ConsoleSettings
from monitoriza.console import access
from monitoriza.console.blueprint import console
from monitoriza.logs import register_secret


def read_viewer_token(settings: ConsoleSettings) -> str | None:
    if settings.readonly_token_file is None:
        return None
    token = Path(settings.readonly_token_file).read_text(encoding="utf-8").strip()
    register_secret(token)
    return token or None


def init_console(app: Flask, settings: ConsoleSettings, token: str) -> None:
    """Register the console's pages on ``app`` (nothing when it is disabled); ``token`` is
    the responder's, the operator's login."""
    if not settings.enabled:
        return
    # The page modules register their routes on the blueprint when imported.
    from monitoriza.console import pages  # noqa: F401, PLC0415

    secret = (access.session_secret(settings.session_secret_file)
              if settings.session_secret_file else access.derived_secret(token))
    access.configure_sessions(app, secret, settings.session_lifetime)
    app.extensions["monitoriza.console"] = {"viewer_token": read_viewer_token(settings),
                                           "settings": settings}
    app.jinja_env.globals["csrf_token"] = access.csrf_token
    app.register_blueprint(console)
