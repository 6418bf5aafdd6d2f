"""Login, logout, the overview and the incident pages, and the console's error pages.

The views are thin: :mod:`monitoriza.console.overview_data` and
:mod:`monitoriza.console.incident_data` collect what a page shows, and
:func:`render_overview` renders the overview from rows alone (a benchmark renders 500
services from fixed data with it). A page whose Prometheus queries fail still renders, with a
notice saying so.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlsplit

from flask import Flask, abort, current_app, redirect, render_template, request, session, url_for
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response

from monitoriza.config.schema import ConsoleSettings
from monitoriza.console import access, formatting
from monitoriza.console.blueprint import console
from monitoriza.console.charts import sparkline
from monitoriza.console.incident_data import LastVerification, read_incident, timeline
from monitoriza.console.overview_data import (
    DIMENSIONS,
    SEVERITIES,
    IncidentLink,
    Overview,
    overview_rows,
    read_open_incidents,
    read_prometheus,
    trend_start,
)
from monitoriza.report.collect import PrometheusReader
from monitoriza.responder.metrics import ResponderMetrics
from monitoriza.responder.state import responder_of
from monitoriza.responder.verifier import AuditVerifier

PROMETHEUS_TIMEOUT = 3.0


def console_settings(app: Flask) -> ConsoleSettings:
    settings: ConsoleSettings = app.extensions["monitoriza.console"]["settings"]
    return settings


def _console_pages(app: Flask) -> frozenset[str]:
    """The console's endpoints (for the navigation), computed once per app."""
    key = "monitoriza.console.pages"
    if key not in app.extensions:
        app.extensions[key] = frozenset(rule.endpoint for rule in app.url_map.iter_rules()
                                        if rule.endpoint.startswith("console."))
    pages: frozenset[str] = app.extensions[key]
    return pages


@console.context_processor
def console_context() -> dict[str, Any]:
    """What base.html needs on every page; a view's own ``refresh`` wins over None."""
    return {"role": access.current_role(), "console_pages": _console_pages(current_app),
            "refresh": None, "fmt": formatting}


# -- login and logout -------------------------------------------------------------------------

def safe_next(target: str | None) -> str | None:
    """``target`` if it is a path of the console on this host (never another site, nor a
    path outside /console), else None."""
    if not target:
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or "\\" in target or target.startswith("//"):
        return None
    if parts.path != "/console" and not parts.path.startswith("/console/"):
        return None
    return target.rstrip("?")


def _login_page(status: int, message: str | None = None) -> tuple[str, int]:
    return render_template("login.html", message=message,
                           next=safe_next(request.values.get("next")) or ""), status


@console.get("/login")
def login() -> tuple[str, int]:
    return _login_page(200)


@console.post("/login")
def login_submit() -> Response | tuple[str, int]:
    """The responder's token logs in as operator, the read-only token as viewer; a wrong
    token is a 401 and a counted failure (``monitoriza_console_logins_total``)."""
    state = responder_of(current_app)
    metrics: ResponderMetrics = state.metrics
    role = access.role_for(request.form.get("token", ""), state.token,
                           current_app.extensions["monitoriza.console"]["viewer_token"])
    if role is None:
        metrics.console_logins.labels(result="failure").inc()
        return _login_page(401, "That token is not valid for this console.")
    metrics.console_logins.labels(result="success").inc()
    access.start_session(role)
    return redirect(safe_next(request.form.get("next")) or url_for("console.overview"))


@console.post("/logout")
@access.login_required("viewer")
def logout() -> Response:
    session.clear()
    return redirect(url_for("console.login"))


# -- the overview -----------------------------------------------------------------------------

def collect_overview(app: Flask, now: float) -> Overview:
    """Every configured service's row, from Prometheus and the responder's store."""
    state = responder_of(app)
    window = console_settings(app).trend_window
    reader = PrometheusReader(str(state.config.exporter.prometheus_url),
                              timeout=PROMETHEUS_TIMEOUT)
    facts = read_prometheus(reader, now, window)
    notices = list(facts.problems)
    incidents: list[IncidentLink] = []
    try:
        incidents = read_open_incidents(state.journal.engine)
    except SQLAlchemyError as exc:
        notices.append(f"The responder's store could not be read: {exc.__class__.__name__}")
    tiers = {name: service.tier for name, service in state.config.services.items()}
    rows, source = overview_rows(tiers, facts, incidents)
    return Overview(rows, trend_start(rows, now - window, now), now, source, notices)


def render_overview(overview: Overview, *, refresh: float | None = None) -> str:
    """The overview page of ``overview`` (needs an app and a request context: the layout
    names the session's role and links the pages)."""
    return render_template("overview.html", overview=overview, refresh=refresh,
                           dimensions=DIMENSIONS, severities=SEVERITIES, sparkline=sparkline,
                           score_class=formatting.score_class,
                           dimension_class=formatting.dimension_class)


@console.get("/")
@access.login_required("viewer")
def overview() -> str:
    settings = console_settings(current_app)
    return render_overview(collect_overview(current_app, time.time()),
                           refresh=settings.refresh)


# -- an incident ------------------------------------------------------------------------------

def last_verification(verifier: AuditVerifier) -> LastVerification | None:
    """The responder's last verification of the whole audit chain; None before the first."""
    result, at = verifier.last, verifier.last_at
    if result is None or at is None:
        return None
    return LastVerification(at, result.ok, result.head_seq, result.first_bad_seq)


@console.get("/incidents/<int:incident_id>")
@access.login_required("viewer")
def incident(incident_id: int) -> str:
    state = responder_of(current_app)
    stored = read_incident(state.journal.engine, incident_id)
    if stored is None:
        abort(404, f"There is no incident {incident_id}.")
    checkpoints = state.audit.recorded_checkpoints() if state.audit.checkpoint_file else []
    page = timeline(stored, last_verification(state.verifier),
                    max((checkpoint.seq for checkpoint in checkpoints), default=0))
    refresh = console_settings(current_app).refresh if page.state != "resolved" else None
    return render_template("incident.html", incident=page, refresh=refresh, now=time.time())


# -- the console's own errors, as pages (the API's stay JSON) ---------------------------------

@console.get("/<path:unknown>")
def not_found(unknown: str) -> Response:
    """Any other path under /console: the console's 404 page, not the API's JSON."""
    abort(404, "There is no such page in the console.")


def error_page(error: HTTPException) -> tuple[str, int]:
    code = error.code or 500
    return render_template("error.html", code=code, name=error.name,
                           description=error.description), code


for _code in (400, 401, 403, 404, 405):
    console.register_error_handler(_code, error_page)
