"""Telling people: chat posts for incidents and healing, and P2 escalations of refusals.

Both go through background queues: a chat or Alertmanager outage never blocks healing, and
its failures are counted (``monitoriza_chat_messages_total``, the escalation counter).
"""

from __future__ import annotations

import logging
import queue
import threading
from datetime import UTC, datetime, timedelta

import requests

from monitoriza.healing.chat import ChatMessage, Notifier
from monitoriza.healing.correlation import Incident
from monitoriza.healing.healer import HealOutcome

log = logging.getLogger(__name__)

TITLES = {
    "opened": "Incident opened",
    "resolved": "Incident resolved",
    "success": "Healed",
    "failure": "Healing failed",
    "blocked": "Healing refused: escalated to people",
    "dry_run": "Dry run: healing would have run",
}


class Escalator:
    """Raises a P2 in Alertmanager when the policy refuses to heal (so on-call is paged)."""

    def __init__(self, alertmanager_url: str | None, timeout: float = 5.0) -> None:
        self.url = alertmanager_url.rstrip("/") if alertmanager_url else None
        self.timeout = timeout
        self.sent = 0
        self.failed = 0
        self._queue: queue.Queue[list[dict[str, object]]] = queue.Queue(maxsize=1000)
        if self.url is not None:
            threading.Thread(target=self._run, name="escalator", daemon=True).start()

    def escalate(self, outcome: HealOutcome) -> None:
        if self.url is None:
            return
        now = datetime.now(UTC)
        alert: dict[str, object] = {
            "labels": {"alertname": "MonitorizaHealingRefused", "severity": "P2",
                       "service": outcome.job.service, "playbook": outcome.job.playbook},
            "annotations": {
                "summary": f"Healing of {outcome.job.service} was refused",
                "description": outcome.reason,
                "runbook_url": "docs/runbooks.md#healingbreakeropen"},
            "startsAt": now.isoformat(),
            "endsAt": (now + timedelta(hours=1)).isoformat(),
        }
        try:
            self._queue.put_nowait([alert])
        except queue.Full:
            self.failed += 1

    def _run(self) -> None:
        session = requests.Session()
        while True:
            alerts = self._queue.get()
            try:
                session.post(f"{self.url}/api/v2/alerts", json=alerts,
                             timeout=self.timeout).raise_for_status()
                self.sent += 1
            except requests.RequestException:
                log.warning("could not escalate to Alertmanager at %s", self.url)
                self.failed += 1


class IncidentNotifier:
    """Turns incident and healing events into chat messages."""

    def __init__(self, chat: Notifier, escalator: Escalator) -> None:
        self.chat = chat
        self.escalator = escalator

    def incident(self, event: str, incident: Incident, reason: str) -> None:
        cause = incident.root_cause
        root = "unknown" if cause is None else (
            f"{cause.service} ({cause.component} connection)" if cause.kind == "component"
            else cause.service)
        self.chat.post(ChatMessage(
            title=f"{TITLES[event]} #{incident.id}: {root}",
            text=" ".join(cause.reasoning) if cause else reason,
            severity="resolved" if event == "resolved" else _severity(incident),
            incident_id=incident.id,
            fields={"risk": incident.risk, "alerts": str(incident.firing_count()),
                    "signature": incident.signature}))

    def outcome(self, outcome: HealOutcome) -> None:
        if outcome.outcome == "skipped":
            return
        if outcome.outcome == "blocked":
            self.escalator.escalate(outcome)
        self.chat.post(ChatMessage(
            title=f"{TITLES[outcome.outcome]}: {outcome.job.service} ({outcome.job.playbook})",
            text=outcome.reason,
            severity="resolved" if outcome.outcome == "success" else "P2"
            if outcome.outcome in {"blocked", "failure"} else "P4",
            incident_id=outcome.job.incident_id,
            fields={"service": outcome.job.service, "playbook": outcome.job.playbook}))


def _severity(incident: Incident) -> str | None:
    levels = [kind.severity for kind in incident.summary.kinds("firing") if kind.severity]
    return min(levels) if levels else None  # "P2" < "P3" < "P4"
