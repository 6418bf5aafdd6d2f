"""The journal step of the responder's brain: correlate each alert, decide whether to heal.

Runs inside the journal worker's transaction, so the incident update, the queued action and
the audit entries about them commit together with the journal row, exactly once. Executing
the action, which has effects outside the store, is the healer's job (healer.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict

from sqlalchemy import Connection, select

from monitoriza.audit.appender import AuditAppender
from monitoriza.config.schema import Config, Playbook
from monitoriza.healing import repository
from monitoriza.healing.budget import budget_key, record_healthy
from monitoriza.healing.correlation import AlertEvent, Incident, correlate, is_symptom
from monitoriza.healing.drill_windows import drill_of
from monitoriza.healing.estates import Estates
from monitoriza.healing.memory import Outcomes, rank
from monitoriza.healing.policy import (
    SELF_RAISED_LABEL,
    SELF_RAISED_VALUE,
    judge_alert,
    raised_by_responder,
)
from monitoriza.healing.recording import RecordingProcessor
from monitoriza.logs import get_logger
from monitoriza.pipeline import JournalRow
from monitoriza.store import actions

log = logging.getLogger(__name__)
events = get_logger(__name__)
WEEK = 7 * 86400.0

Notify = Callable[[str, Incident, str], None]
_NO_HISTORY = Outcomes(0, 0)


def matching_playbooks(playbooks: list[Playbook], event: AlertEvent) -> list[Playbook]:
    return [book for book in playbooks
            if (not book.match.alertname or event.alertname in book.match.alertname)
            and (not book.match.severity or event.severity in book.match.severity)]


def incident_summary(incident: Incident, event: AlertEvent) -> dict[str, object]:
    """The audit entry of an incident that ``event`` changed: the alert that changed it and
    how many alerts fire and have resolved (never the list of them, which a storm makes long;
    ``GET /api/v1/incidents/<id>/alerts`` has it)."""
    cause = incident.root_cause
    return {"incident": incident.id, "state": incident.state, "risk": incident.risk,
            "signature": incident.signature,
            "root_cause": None if cause is None else {
                "service": cause.service, "component": cause.component, "kind": cause.kind},
            "reasoning": list(cause.reasoning) if cause else [],
            "alert": event.fingerprint, "firing": incident.summary.count("firing"),
            "resolved": incident.summary.count("resolved"), "site": incident.site,
            **({"drill": incident.drill_id} if incident.drill_id is not None else {})}


class HealingProcessor:
    """Records the alert, correlates it into an incident, and queues a playbook if fitting."""

    def __init__(self, config: Config, audit: AuditAppender,
                 notify: Notify | None = None, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.audit = audit
        self.recorder = RecordingProcessor(audit)
        self.estates = Estates(config)
        self.notify = notify
        self.clock = clock

    def __call__(self, conn: Connection, row: JournalRow) -> str:
        outcome = self.recorder(conn, row)
        if outcome == "stale":
            return outcome
        now = self.clock()
        event = AlertEvent.from_alert(row.document(), received_at=now)
        if event.service is None or event.alertname == "Watchdog":
            return outcome
        if raised_by_responder(event.labels):
            # The responder's own refusal, back through Alertmanager: it is for people; a
            # broad playbook must never try to heal it, nor may it keep an incident open.
            self.audit.append(conn, "decision.skipped", {
                "alert": event.fingerprint, "alertname": event.alertname,
                "service": event.service, "check": "self_raised",
                "reason": f"raised by the responder itself ({SELF_RAISED_LABEL}="
                          f"{SELF_RAISED_VALUE}); never healed"})
            return outcome
        healing = self.config.responder.healing
        site, default = self.estates.site_of(event.labels), self.estates.default_site
        result = correlate([*repository.open_incidents(conn, site, default),
                            *repository.recently_resolved(conn, now - healing.recovery_cooldown,
                                                          site, default)],
                           event, self.estates.topology(site), now, healing.correlation_window,
                           members=repository.StoredMembers(conn),
                           cooldown=healing.recovery_cooldown, site=site)
        if result is None:
            return outcome  # a resolution of an alert in no open incident, or a stale repeat
        incident = result.incident
        if incident.drill_id is None and event.status == "firing" and not result.after_effect:
            # Firing alerts alone bring services in; an after-effect's incident is told.
            incident.drill_id = drill_of(conn, incident)
        repository.save_alert(conn, repository.save_incident(conn, incident, now), event,
                              held=result.previous is not None)
        kind = ("incident.opened" if result.created
                else "incident.resolved" if result.resolved
                else "incident.after_effect" if result.after_effect else "incident.updated")
        self.audit.append(conn, kind, incident_summary(incident, event))
        change = ("opened" if result.created else "resolved" if result.resolved
                  else "grew" if result.previous is None or result.root_cause_changed else None)
        if change is not None and not result.after_effect:
            # Logged inside the worker's transaction: a batch rolled back is retried row by
            # row, so in that rare case a line can repeat (the audit entry never does).
            cause = incident.root_cause
            events.info(f"incident.{change}", incident=incident.id, state=incident.state,
                        root_cause=None if cause is None else cause.service,
                        root_component=None if cause is None else cause.component,
                        reasoning=list(cause.reasoning) if cause else [],
                        risk=incident.risk, alert=event.fingerprint,
                        alertname=event.alertname, service=event.service,
                        firing=incident.summary.count("firing"),
                        resolved=incident.summary.count("resolved"), drill=incident.drill_id,
                        site=incident.site)
        if result.after_effect:
            # The recovery of a resolved incident: recorded in it, never healed again.
            if event.status == "firing":
                self.audit.append(conn, "decision.skipped", {
                    "incident": incident.id, "alert": event.fingerprint,
                    "alertname": event.alertname, "service": event.service,
                    "site": incident.site, "check": "recovery_cooldown",
                    "reason": f"an after-effect of incident {incident.id}'s recovery "
                              f"(within recovery_cooldown, {healing.recovery_cooldown:g} s); "
                              "not healed again"})
            return outcome
        if result.created:
            self._recurring(conn, incident, now)
        if result.resolved:
            self._healthy_again(conn, incident, now)
        if self.notify is not None:
            self.notify("opened" if result.created else "resolved" if result.resolved
                        else "updated", incident, "")
        if event.status == "firing":
            self._decide(conn, incident, event, row, now)
        return outcome

    def _recurring(self, conn: Connection, incident: Incident, now: float) -> None:
        seen = repository.count_signature(conn, incident.signature, now - WEEK, incident.site,
                                          self.estates.default_site)
        threshold = self.config.responder.healing.recurring_threshold
        if seen >= threshold:
            self.audit.append(conn, "incident.recurring", {
                "incident": incident.id, "signature": incident.signature, "seen_in_7d": seen,
                "site": incident.site,
                "reason": f"the same pattern opened {seen} incidents in 7 days "
                          f"(threshold {threshold}): healing treats symptoms, look for the cause"})

    def _healthy_again(self, conn: Connection, incident: Incident, now: float) -> None:
        """A resolved incident starts the clock that resets the target's backoff."""
        if incident.root_cause is None:
            return
        key = budget_key(incident.root_cause.service, self.estates.key_site(incident.site))
        if repository.load_state(conn, key) is not None:
            state = record_healthy(repository.load_budget(conn, key), now,
                                   self.config.responder.healing.budget)
            repository.save_state(conn, key, state.to_dict())

    def _decide(self, conn: Connection, incident: Incident, event: AlertEvent,
                row: JournalRow, now: float) -> None:
        base = {"incident": incident.id, "alert": event.fingerprint,
                "alertname": event.alertname, "service": event.service, "site": incident.site}
        cause = incident.root_cause
        refusal = judge_alert(True, is_symptom(event, incident),
                              cause.service if cause else None)
        if refusal is not None:
            self.audit.append(conn, "decision.skipped", {
                **base, "check": refusal.check, "reason": refusal.reason})
            self._log_decision(base, "skipped", None, refusal.reason, check=refusal.check)
            return
        target = incident.root_cause.service if incident.root_cause else event.service
        service = self.estates.services(incident.site).get(target or "")
        books = matching_playbooks(service.healing if service else [], event)
        if not books:
            self.audit.append(conn, "decision.no_playbook", {
                **base, "reason": f"no playbook of {target} matches {event.alertname}; "
                                  "people are told through Alertmanager's routing"})
            self._log_decision(base, "no_playbook", None,
                               f"no playbook of {target} matches {event.alertname}")
            return
        queued = conn.execute(select(actions.c.id).where(
            actions.c.incident_id == incident.id,
            actions.c.state.in_(["pending", "claimed", "running"]))).first()
        if queued is not None:
            self.audit.append(conn, "decision.skipped", {
                **base, "check": "already_queued",
                "reason": f"action {queued.id} for this incident is already queued"})
            self._log_decision(base, "skipped", None,
                               f"action {queued.id} for this incident is already queued",
                               check="already_queued")
            return
        learned, pooled = repository.outcomes(conn, incident.signature, target or "",
                                              incident.site, self.estates.default_site)
        # memory.rank is the one ranking (demoted playbooks already last): its first is queued.
        # Other sites' outcomes of the same signature inform it, below this site's own.
        names = rank({book.name: learned.get(book.name, _NO_HISTORY) for book in books},
                     pooled, self.config.responder.healing.pooled_memory_weight)
        chosen = next(book for book in books if book.name == names[0])
        action_id = repository.enqueue_action(conn, incident.id or 0, target or "", chosen.name,
                                              alert=asdict(event), now=now, site=incident.site)
        reason = (f"{target} is the root cause and playbook {chosen.name} matches "
                  f"{event.alertname}" + ("; ranked first by operational memory"
                                          if len(names) > 1 else ""))
        self.audit.append(conn, "decision.queued", {
            **base, "action": action_id, "playbook": chosen.name, "target": target,
            "ranking": names, "reason": reason})
        self._log_decision({**base, "service": target}, "queued", chosen.name, reason,
                           action=action_id, ranking=names)

    @staticmethod
    def _log_decision(base: Mapping[str, object], verdict: str, playbook: str | None,
                      reason: str, **more: object) -> None:
        """``healing.decision``: what the journal step decided for a firing alert."""
        events.info("healing.decision", incident=base["incident"], service=base["service"],
                    site=base.get("site"),
                    alert=base["alert"], alertname=base["alertname"], verdict=verdict,
                    playbook=playbook, reason=reason, **more)
