"""Telling people: chat posts for incidents and healing, and P2 escalations of refusals.

Both go through background queues: a chat or Alertmanager outage never blocks healing, and
its failures are counted (``monitoriza_chat_messages_total``, the escalation counter).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from monitoriza.healing.alert_poster import AlertPoster, PostStats
from monitoriza.healing.chat import ChatMessage, Notifier
from monitoriza.healing.correlation import Incident
from monitoriza.healing.healer import HealOutcome
from monitoriza.healing.notices import (
    NOTICE_LEVELS,
    NOTICE_TTL,
    NoticeSender,
    levels_up_to,
    notice_alerts,
    notice_level,
    root_text,
    symptoms,
)
from monitoriza.healing.policy import SELF_RAISED_LABEL, SELF_RAISED_VALUE

log = logging.getLogger(__name__)

TITLES = {
    "opened": "Incident opened",
    "escalated": "Incident escalated",
    "resolved": "Incident resolved",
    "success": "Healed",
    "failure": "Healing failed",
    "blocked": "Healing refused: escalated to people",
    "dry_run": "Dry run: healing would have run",
}


# The runbook section for each policy check that can refuse (policy.decide's check names);
# a check not listed (one added later) links to the alert's own section.
REFUSAL_RUNBOOKS = {
    "kill_switch": "refused-kill-switch",
    "maintenance": "refused-maintenance-window",
    "budget": "refused-restart-budget",
    "breaker": "refused-circuit-breaker-open",
    "one_per_target": "refused-an-action-already-running-on-the-target",
    "global_limit": "refused-concurrency-limit",
    "blast_radius": "refused-blast-radius",
}
REFUSAL_RUNBOOK_FALLBACK = "monitorizahealingrefused"


def refusal_runbook_url(check: str) -> str:
    """The runbook link of a refusal by ``check``."""
    return f"docs/runbooks.md#{REFUSAL_RUNBOOKS.get(check, REFUSAL_RUNBOOK_FALLBACK)}"


EscalationStats = PostStats  # what became of the refusals escalated so far


class Escalator(AlertPoster):
    """Raises a P2 in Alertmanager when the policy refuses to heal (so on-call is paged)."""

    def __init__(self, alertmanager_url: str | None, timeout: float = 5.0,
                 site_label: str = "site") -> None:
        """``site_label`` names the label carrying the refused target's site, so that a
        refusal at one condominium pages as that condominium's."""
        super().__init__(alertmanager_url, "escalator", timeout)
        self.site_label = site_label

    def escalate(self, outcome: HealOutcome) -> None:
        """Queue the P2 for a refusal; the policy check that refused it picks the runbook."""
        if self.url is None:
            return
        now = datetime.now(UTC)
        alert: dict[str, object] = {
            "labels": {"alertname": "MonitorizaHealingRefused", "severity": "P2",
                       "service": outcome.job.service, "playbook": outcome.job.playbook,
                       self.site_label: outcome.job.site,
                       SELF_RAISED_LABEL: SELF_RAISED_VALUE},
            "annotations": {
                "summary": f"Healing of {outcome.job.service} was refused",
                "description": outcome.reason,
                "runbook_url": refusal_runbook_url(outcome.check)},
            "startsAt": now.isoformat(),
            "endsAt": (now + timedelta(hours=1)).isoformat(),
        }
        self.post([alert])



@dataclass
class _Thread:
    """What one incident's thread has told so far: the notice level, the incident as last
    heard of (what a refresh re-posts), and what healing did."""

    level: str | None = None
    incident: Incident | None = None
    outcome: str = ""


class IncidentNotifier:
    """Tells people about an incident as one thread per outage (docs/alerting.md).

    Notices (:mod:`monitoriza.healing.notices`) go to Alertmanager, which routes them to the
    team and on-call chats: one when the incident reaches P3, one more when it escalates to
    P2, and their resolution, told with the root cause, the symptoms and what healing did.
    The responder's own chat (``healing.chat``), when configured, gets the same thread:
    opened, escalated, healed or refused, resolved. Refusals are also escalated as P2.
    """

    def __init__(self, chat: Notifier, escalator: Escalator,
                 notices: NoticeSender | None = None,
                 clock: Callable[[], float] = time.time, site_label: str = "site") -> None:
        """``site_label`` names the label that carries the incident's site on its notices
        (``responder.site_label``)."""
        self.chat = chat
        self.site_label = site_label
        self.escalator = escalator
        self.notices = notices if notices is not None else NoticeSender(escalator.url)
        self.clock = clock
        self._lock = threading.Lock()
        self._threads: dict[int, _Thread] = {}
        if self.notices.url is not None:
            threading.Thread(target=self._refresh_forever, name="incident-notice-refresh",
                             daemon=True).start()

    def refresh(self) -> int:
        """Post the notices of every incident still open again, with a new ``endsAt``: a
        quiet incident (Alertmanager tells the responder nothing new for hours) keeps its
        notice firing, and a dead responder's notices end within ``NOTICE_TTL``. Returns
        how many incidents were refreshed."""
        now = self.clock()
        with self._lock:
            told = [(thread.incident, thread.level, thread.outcome)
                    for thread in self._threads.values()
                    if thread.incident is not None and thread.level is not None]
        for incident, level, outcome in told:
            self.notices.send(notice_alerts(incident, levels_up_to(level), now=now,
                                            ended=False, outcome=outcome,
                                            site_label=self.site_label))
        return len(told)

    def _refresh_forever(self) -> None:
        while True:
            time.sleep(NOTICE_TTL / 4)
            try:
                self.refresh()
            except Exception:  # the refresh must outlive any bug in one incident's notice
                log.exception("refreshing incident notices failed")

    def incident(self, event: str, incident: Incident, reason: str) -> None:
        """``event`` is ``opened``, ``updated`` or ``resolved``: what the journal step did."""
        if incident.id is None:
            return
        now = self.clock()
        level = notice_level(incident)
        with self._lock:
            thread = self._threads.pop(incident.id, None) if event == "resolved" else \
                self._threads.setdefault(incident.id, _Thread())
            if thread is None:
                thread = _Thread()
            before = thread.level
            rises = level is not None and (
                before is None or NOTICE_LEVELS.index(level) > NOTICE_LEVELS.index(before))
            thread.incident = incident
            if event != "resolved" and rises:
                thread.level = level
            outcome = thread.outcome
        if event == "resolved":
            # Every level is ended: Alertmanager tells a receiver of the resolution only if
            # it heard the notice fire, so ending a notice that never fired says nothing.
            self.notices.send(notice_alerts(incident, NOTICE_LEVELS, now=now, ended=True,
                                            outcome=outcome, site_label=self.site_label))
            self._post("resolved", incident, reason)
            return
        if rises:
            self.notices.send(notice_alerts(incident, levels_up_to(thread.level), now=now,
                                            ended=False, outcome=outcome,
                                            site_label=self.site_label))
        if event == "opened":
            self._post("opened", incident, reason)
        elif rises:
            self._post("escalated", incident, reason)

    def _post(self, event: str, incident: Incident, reason: str) -> None:
        cause = incident.root_cause
        others = symptoms(incident)
        text = " ".join(cause.reasoning) if cause else reason
        self.chat.post(ChatMessage(
            title=f"{TITLES[event]} #{incident.id}: {root_text(incident)}",
            text=text,
            severity="resolved" if event == "resolved" else _severity(incident),
            incident_id=incident.id,
            fields={"risk": incident.risk, "alerts": str(incident.firing_count()),
                    "signature": incident.signature,
                    **({"symptoms": ", ".join(others)} if others else {}),
                    **({"drill": incident.drill_id} if incident.drill_id is not None else {})}))

    def outcome(self, outcome: HealOutcome) -> None:
        if outcome.outcome == "skipped":
            return
        if outcome.outcome == "blocked":
            self.escalator.escalate(outcome)
        told = f"{TITLES[outcome.outcome]}: {outcome.job.playbook} on {outcome.job.service}" + (
            f" ({outcome.reason})" if outcome.reason else "")
        with self._lock:
            thread = self._threads.get(outcome.job.incident_id)
            if thread is not None:
                thread.outcome = told
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
