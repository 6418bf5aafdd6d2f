"""The responder's Flask application factory.

``create_app(config)`` wires the store, the journal, the audit log, the journal worker (whose
processor, ``monitoriza.healing.decide.HealingProcessor``, correlates alerts and queues
healing), the healer, chat and escalation into one app. Blueprints add the
endpoints: intake (``POST /api/v1/alerts``), audit (``/api/v1/audit``), the healing API
(incidents, operational memory, the kill switch), dead letters, fire drills
(``/api/v1/drills``), and operations (health, readiness, metrics, OpenAPI). Every blueprint
but operations and the console is guarded by the one bearer-token check of
:mod:`monitoriza.responder.auth`; the console (``/console``, :mod:`monitoriza.console`) has its
own login and session.
Tests pass ``start_worker=False`` and drive the worker and the healer themselves.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException

from monitoriza.audit.log import AuditLog, QueuedEntries, collecting_processor
from monitoriza.audit.metrics import AuditHeadCollector
from monitoriza.config.schema import Config
from monitoriza.config.schema import Responder as ResponderSettings
from monitoriza.console import init_console
from monitoriza.exceptions import ConfigError
from monitoriza.healing.chat import notifier_from_config
from monitoriza.healing.decide import HealingProcessor
from monitoriza.healing.healer import Healer, HealOutcome
from monitoriza.healing.metrics import HealingCollector
from monitoriza.healing.notices import NoticeSender
from monitoriza.healing.notify import Escalator, IncidentNotifier
from monitoriza.healing.sites import site_of
from monitoriza.logs import register_secret
from monitoriza.pipeline import JournalRow, Processor
from monitoriza.responder import audit_api, drills, healing_api, intake, operations
from monitoriza.responder.dead_letters import blueprint as dead_letters_api
from monitoriza.responder.intake import committer_of
from monitoriza.responder.journal import Journal
from monitoriza.responder.metrics import ResponderMetrics
from monitoriza.responder.state import Responder, responder_of
from monitoriza.responder.verifier import AuditVerifier
from monitoriza.responder.worker import JournalWorker
from monitoriza.store import create_store

log = logging.getLogger(__name__)


def read_token(path: str) -> str:
    """The webhook's bearer token; a missing or empty file is a configuration error."""
    try:
        token = Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError([f"responder.token_file: cannot read {path}: {exc.strerror}"]) from None
    if not token:
        raise ConfigError([f"responder.token_file: {path} is empty"])
    register_secret(token)  # never in a log line, whatever logs it
    return token


def processor_for(config: Config, audit: AuditLog, notifier: IncidentNotifier) -> Processor:
    """What the journal worker runs on each alert. With the sequencer, processing queues its
    audit entries (one statement per alert) and locks only its sites."""
    if not audit.sequenced:
        return HealingProcessor(config, audit, notify=notifier.incident)
    queued = QueuedEntries(audit)
    return collecting_processor(HealingProcessor(config, queued, notify=notifier.incident),
                                queued)


def row_site(settings: ResponderSettings) -> Callable[[JournalRow], str]:
    """The site of a journaled alert, by the responder's site label."""

    def site_of_row(row: JournalRow) -> str:
        labels = row.document().get("labels")
        return site_of(labels if isinstance(labels, dict) else {}, settings.site_label,
                       settings.default_site)

    return site_of_row


def create_app(config: Config, *, token: str | None = None, start_worker: bool = True,
               test_config: dict[str, Any] | None = None,
               config_file: Path | None = None) -> Flask:
    """Build the responder app for ``config`` (read from ``config_file``, if known: the
    console shows the drill results beside it); raises ConfigError for a missing token."""
    settings = config.responder
    app = Flask("monitoriza.responder")
    app.config.update(MAX_CONTENT_LENGTH=settings.max_body_bytes, JSON_SORT_KEYS=False)
    if config_file is not None:
        app.config["MONITORIZA_CONFIG_FILE"] = str(config_file.absolute())
    if test_config:
        app.config.update(test_config)

    engine = create_store(settings.store_url, settings.store_timeout)
    journal = Journal(engine)
    audit = AuditLog.from_config(engine, settings.audit)
    metrics = ResponderMetrics()
    metrics.watch_store(journal, audit.count, audit.pending if audit.sequenced else None)
    metrics.registry.register(AuditHeadCollector(audit.head))  # Prometheus as a witness

    chat = notifier_from_config(settings.healing.chat)
    escalator = Escalator(
        str(settings.healing.alertmanager_url) if settings.healing.alertmanager_url else None,
        site_label=settings.site_label)
    notices = NoticeSender(escalator.url)
    notifier = IncidentNotifier(chat, escalator, notices=notices, site_label=settings.site_label)
    metrics.watch_healing(HealingCollector(engine, settings.healing, chat.stats,
                                           escalator.stats, notices.stats,
                                           default_site=settings.default_site))

    def count_outcome(outcome: HealOutcome) -> None:
        metrics.healing_actions.labels(outcome.job.service, outcome.job.playbook,
                                       outcome.outcome).inc()

    healer = Healer(engine, config, audit, listeners=[count_outcome, notifier.outcome])

    def on_processed(row: JournalRow, outcome: str) -> None:
        metrics.processed.labels(outcome).inc()
        healer.wake()

    def checkpoint() -> None:
        # After commits only: a checkpoint of an uncommitted entry would read as truncation.
        # The batch's queued entries are integrated first, so they are in the chain before
        # the healer acts on the batch; an idle round integrates what others left.
        audit.integrate()
        audit.maybe_checkpoint()

    def intake_waiting() -> bool:
        committer = committer_of(app)
        return committer is not None and committer.unanswered() > 0

    worker = JournalWorker(
        journal, processor_for(config, audit, notifier), lease=settings.lease,
        on_processed=on_processed, after_batch=checkpoint, intake_waiting=intake_waiting,
        site_of=row_site(settings) if audit.sequenced else None)
    verifier = AuditVerifier(audit, metrics, settings.audit.verify_interval)
    app.extensions["monitoriza"] = Responder(
        config, token if token is not None else read_token(settings.token_file), journal,
        audit, metrics, worker, verifier, healer)

    app.register_blueprint(intake.blueprint)
    app.register_blueprint(audit_api.blueprint)
    app.register_blueprint(operations.blueprint)
    app.register_blueprint(healing_api.blueprint)
    app.register_blueprint(dead_letters_api)
    app.register_blueprint(drills.blueprint)
    init_console(app, settings.console, responder_of(app).token)

    @app.errorhandler(HTTPException)
    def json_error(error: HTTPException) -> tuple[Any, int]:
        """API errors are JSON, whatever raised them (routing, size limit, method), with the
        exception's own headers (405's ``Allow``) but not its HTML content type."""
        status = error.code or 500
        response = jsonify(error=error.name, message=error.description)
        for name, value in error.get_headers():
            if name.lower() != "content-type":
                response.headers.add(name, value)
        return response, status

    if start_worker:
        worker.start()
        verifier.start()
        healer.start()
    return app


def stop_app(app: Flask) -> None:
    """Stop the journal worker, the healer and the verifier (waiting for each), then
    integrate the entries still queued and sign a final checkpoint of the audit chain's head,
    so that a graceful stop leaves no entry outside a checkpoint. Calling it again does
    nothing more."""
    state = responder_of(app)
    state.worker.stop()
    state.healer.stop()
    state.verifier.stop()
    try:
        state.audit.integrate()
        if state.audit.checkpoint():
            log.info("audit checkpoint written on stop")
    except Exception:  # a stop must complete; the next start checkpoints within the interval
        log.exception("audit checkpoint on stop failed")
