"""The healing, forecasts, audit and drills pages, and the two changes an operator can make.

Every page reads what the responder itself uses: the healer's breakers, budgets, memory and
kill switch (:mod:`monitoriza.console.healing_state`), the exporter's forecasts as Prometheus
has them (:mod:`monitoriza.console.forecast_state`), the audit log and its verifier, and the
drill results the drill commands wrote. The two changes, the kill switch and "verify now", are
operator-only forms with a CSRF token; each is an audit entry naming ``console:operator``. A
change answers with a redirect to its page (so a reload does not repeat it) and a flash
message saying what happened.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flask import Flask, current_app, flash, redirect, render_template, request, url_for
from markupsafe import Markup
from werkzeug.exceptions import BadRequest
from werkzeug.wrappers import Response

from monitoriza.audit.chain import AuditEntry, VerifyResult
from monitoriza.audit.checkpoints import CheckpointError, CheckpointReport
from monitoriza.config.schema import ConsoleSettings
from monitoriza.console import access
from monitoriza.console.blueprint import console
from monitoriza.console.forecast_state import read_forecasts
from monitoriza.console.healing_state import read_healing
from monitoriza.drill.matrix import counts_text
from monitoriza.drill.matrix_html import (
    STYLE,
    blind_spots_section,
    cell_details,
    legend,
    loads_section,
    matrix_table,
)
from monitoriza.durations import format_duration
from monitoriza.healing.kill_switch import set_kill_switch
from monitoriza.report.collect import PrometheusReader
from monitoriza.report.drills import collect_drills, drills_directory
from monitoriza.responder.query import MAX_ID
from monitoriza.responder.state import responder_of
from monitoriza.store import reading, writing

PROMETHEUS_TIMEOUT = 3.0  # seconds; a page must not hang on a slow Prometheus
AUDIT_VERIFY_KIND = "audit.verify_requested"
LISTED_CHECKPOINTS = 10  # newest checkpoints listed of the file and of the store
RECENT_ENTRIES = 15  # newest audit entries listed, each linking to its full text
# Where the drill results are: the app's config key when set (the responder's command line
# knows the configuration file), else drills/ beside the responder's token file.
DRILLS_DIR_KEY = "MONITORIZA_DRILLS_DIR"
CONFIG_FILE_KEY = "MONITORIZA_CONFIG_FILE"


def _settings() -> ConsoleSettings:
    settings: ConsoleSettings = current_app.extensions["monitoriza.console"]["settings"]
    return settings


def utc(moment: float | None) -> str:
    """A unix time as ``2026-12-05 09:30:00Z``; an em dash for none."""
    if moment is None:
        return "—"
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def relative(moment: float | None) -> str:
    """``in 45s`` or ``3m ago`` from now."""
    if moment is None:
        return ""
    delta = moment - time.time()
    return f"in {format_duration(round(delta))}" if delta >= 1 else \
        f"{format_duration(round(-delta))} ago" if delta <= -1 else "now"


def seconds(value: float | None) -> str:
    """A time to failure as a duration: ``4h5m``, ``none within the horizon`` for +Inf."""
    if value is None:
        return "—"
    if value == float("inf"):
        return "none in horizon"
    return format_duration(round(value)) if value > 0 else "now (beyond)"


console.add_app_template_filter(utc, "ops_utc")
console.add_app_template_filter(relative, "ops_relative")
console.add_app_template_filter(seconds, "ops_seconds")


# -- healing ----------------------------------------------------------------------------------

@console.get("/healing")
@access.login_required()
def healing() -> str:
    state = responder_of(current_app)
    with reading(state.journal.engine) as conn:
        view = read_healing(conn, state.config, state.healer.kill_switch_on(conn), time.time())
    return render_template("healing.html", view=view, refresh=_settings().refresh,
                           pooled_memory_weight=responder_of(current_app).config.responder
                           .healing.pooled_memory_weight)


@console.post("/healing/kill-switch")
@access.login_required("operator")
def kill_switch() -> Response:
    """``enabled=on`` stops all healing, ``enabled=off`` lets it run again; ``reason`` is
    kept in the audit entry."""
    wanted = request.form.get("enabled")
    if wanted not in {"on", "off"}:
        raise BadRequest("enabled must be on or off")
    state = responder_of(current_app)
    set_kill_switch(state.journal.engine, state.audit, enabled=wanted == "on",
                    by=access.actor(), reason=request.form.get("reason", "").strip())
    with reading(state.journal.engine) as conn:
        on = state.healer.kill_switch_on(conn)
    if wanted == "on":
        flash("Kill switch on: no healing action runs until it is turned off.", "bad")
    elif on:
        flash("The stored switch is off, but the kill-switch file "
              f"{state.config.responder.healing.kill_switch_file} still stops all healing.",
              "warn")
    else:
        flash("Kill switch off: healing runs again.", "ok")
    return redirect(url_for("console.healing"))


# -- forecasts --------------------------------------------------------------------------------

@console.get("/forecasts")
@access.login_required()
def forecasts() -> str:
    config = responder_of(current_app).config
    reader = PrometheusReader(str(config.exporter.prometheus_url), timeout=PROMETHEUS_TIMEOUT)
    panels, notice = read_forecasts(config, reader, time.time())
    return render_template("forecasts.html", panels=panels, notice=notice,
                           prometheus_url=str(config.exporter.prometheus_url),
                           refresh=_settings().refresh)


# -- audit ------------------------------------------------------------------------------------

def _last_verification(app: Flask) -> tuple[VerifyResult | None, float | None]:
    """The verifier's last result and when it ran; (None, None) before any."""
    verifier = responder_of(app).verifier
    return verifier.last, verifier.last_at


def _checkpoint_file(app: Flask) -> tuple[CheckpointReport | None, str | None]:
    audit = responder_of(app).audit
    if audit.checkpoints is None:
        return None, None
    try:
        return audit.checkpoints.read(), None
    except CheckpointError as exc:
        return None, str(exc)


def _entry(seq: int) -> AuditEntry | None:
    """Audit entry ``seq``, for the links to the evidence of a change (``?seq=N``)."""
    found = responder_of(current_app).audit.entries(since_seq=seq - 1, limit=1)
    return found[0] if found and found[0].seq == seq else None


@console.get("/audit", endpoint="audit")
@access.login_required()
def audit_page() -> str:
    state = responder_of(current_app)
    head_seq, head_hash = state.audit.head()
    last, when = _last_verification(current_app)
    report, file_error = _checkpoint_file(current_app)
    recorded = state.audit.recorded_checkpoints() if state.audit.checkpoint_file else []
    seq = request.args.get("seq", type=int)
    entry = _entry(seq) if seq is not None and 0 < seq <= MAX_ID else None
    return render_template(
        "audit.html", entry=entry, missing_seq=seq if entry is None else None,
        entry_data=json.dumps(entry.data, sort_keys=True, ensure_ascii=False)
        if entry is not None else "",
        recent=list(reversed(state.audit.entries(since_seq=max(0, head_seq - RECENT_ENTRIES),
                                                  limit=RECENT_ENTRIES))),
        head_seq=head_seq, head_hash=head_hash,
        verified_ok=None if last is None else last.ok, verified_at=when, last=last,
        interval=state.verifier.interval,
        checkpoint_file=state.audit.checkpoint_file, report=report, file_error=file_error,
        file_checkpoints=list(reversed(report.checkpoints[-LISTED_CHECKPOINTS:]))
        if report is not None else [],
        recorded_count=len(recorded),
        recorded=list(reversed(recorded[-LISTED_CHECKPOINTS:])),
        elsewhere=state.audit.recorded_elsewhere(), refresh=_settings().refresh)


@console.post("/audit/verify")
@access.login_required("operator")
def verify_now() -> Response:
    """Run the verifier now, as its own loop does (the result is published the same way),
    and audit who asked and what it found."""
    state = responder_of(current_app)
    try:
        ok = state.verifier.verify()
    except Exception as exc:  # the store or the checkpoint file unreadable: say so
        flash(f"The verification could not run: {exc}", "bad")
        return redirect(url_for("console.audit"))
    head_seq, _ = state.audit.head()
    with writing(state.journal.engine) as conn:
        entry = state.audit.append(conn, AUDIT_VERIFY_KIND, {
            "by": access.actor(), "ok": ok, "head_seq": head_seq})
    if ok:
        flash(f"The audit chain verified: entries 1 to {head_seq} and every checkpoint "
              f"(recorded as audit entry #{entry.seq}).", "ok")
    else:
        flash("The audit chain did NOT verify. `monitoriza audit verify --config FILE` names "
              "the first bad entry; the responder's log has the reason "
              f"(recorded as audit entry #{entry.seq}).", "bad")
    return redirect(url_for("console.audit"))


# -- drills -----------------------------------------------------------------------------------

def drills_dir(app: Flask) -> Path:
    """Where ``monitoriza drill run``/``load`` wrote their results. The responder is given
    a parsed configuration, not its file: the file's directory is known only when the app
    was told it (``MONITORIZA_CONFIG_FILE``, or the directory itself as
    ``MONITORIZA_DRILLS_DIR``); otherwise ``drills/`` beside the responder's token file,
    which the configuration keeps beside itself unless it names another place."""
    explicit = app.config.get(DRILLS_DIR_KEY)
    if explicit:
        return Path(explicit)
    config_file = app.config.get(CONFIG_FILE_KEY)
    if config_file:
        return drills_directory(Path(config_file))
    token_file = Path(responder_of(app).config.responder.token_file)
    return token_file.absolute().parent / "drills"


def _fragments(facts: Any) -> dict[str, Markup]:
    """The drill pages' HTML (built and escaped by :mod:`monitoriza.drill.matrix_html`)."""
    parts = {"style": Markup(STYLE), "loads": Markup(loads_section(facts.loads))}
    if facts.matrix is not None:
        parts |= {"matrix": Markup(matrix_table(facts.matrix)), "legend": Markup(legend()),
                  "blind_spots": Markup(blind_spots_section(facts.blind_spots)),
                  "details": Markup(cell_details(facts.matrix))}
    return parts


@console.get("/drills")
@access.login_required()
def drills() -> str:
    facts = collect_drills(drills_dir(current_app))
    return render_template("drills.html", facts=facts, html=_fragments(facts),
                           counts=counts_text(facts.matrix) if facts.matrix else None)
