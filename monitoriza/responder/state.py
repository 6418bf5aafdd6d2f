"""What the responder's endpoints share, kept on ``app.extensions["monitoriza"]``."""

from __future__ import annotations

from dataclasses import dataclass

from flask import Flask

from monitoriza.audit.log import AuditLog
from monitoriza.config.schema import Config
from monitoriza.healing.healer import Healer
from monitoriza.responder.journal import Journal
from monitoriza.responder.metrics import ResponderMetrics
from monitoriza.responder.verifier import AuditVerifier
from monitoriza.responder.worker import JournalWorker


@dataclass
class Responder:
    """Everything the endpoints share, kept on ``app.extensions["monitoriza"]``."""

    config: Config
    token: str
    journal: Journal
    audit: AuditLog
    metrics: ResponderMetrics
    worker: JournalWorker
    verifier: AuditVerifier
    healer: Healer


def responder_of(app: Flask) -> Responder:
    state: Responder = app.extensions["monitoriza"]
    return state
