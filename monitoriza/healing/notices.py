"""Incident notices: one alert per incident and severity that the responder raises in
Alertmanager, so that people hear of an outage once, as an incident, not once per alert.

Alertmanager routes ``MonitorizaIncident`` to the chat receivers only (never back to the
responder) and groups it by ``incident``: the team channel gets the notice when the incident
reaches P3 and again when it escalates to P2, the on-call channel when it reaches P2, and
each gets one resolution when the responder ends the notices (see docs/alerting.md). The
notices carry no ``service`` label, so the per-service inhibition rules never hide them (an
inhibited alert that resolves is never reported resolved). An incident of a fire drill
(``Incident.drill_id``) has a ``drill`` annotation and its summary starts ``[drill ID]``.

:func:`notice_alerts` is pure; :class:`NoticeSender` posts from a background thread, so an
Alertmanager outage never blocks the journal worker.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from monitoriza.healing.alert_poster import AlertPoster
from monitoriza.healing.correlation import SEVERITY_RANK, Incident
from monitoriza.healing.policy import SELF_RAISED_LABEL, SELF_RAISED_VALUE

log = logging.getLogger(__name__)

NOTICE_ALERTNAME = "MonitorizaIncident"
# People hear of an incident from P3 up (P4 is the responder's alone); P1 pages like P2.
NOTICE_LEVELS: tuple[str, ...] = ("P3", "P2")
# A notice lives this long unless posted again: a responder that dies mid-incident leaves
# no notice firing for ever. The notifier re-posts well before it runs out.
NOTICE_TTL = 3600.0
RUNBOOK = "docs/runbooks.md#monitorizaincident"


def notice_level(incident: Incident) -> str | None:
    """The notice severity the incident has reached: its highest firing severity, P1
    counted as P2; None below P3 (and for an incident without firing alerts)."""
    ranks = [SEVERITY_RANK.get(kind.severity or "", 0)
             for kind in incident.summary.kinds("firing")]
    top = max(ranks, default=0)
    if top >= SEVERITY_RANK["P2"]:
        return "P2"
    return "P3" if top >= SEVERITY_RANK["P3"] else None


def levels_up_to(level: str | None) -> tuple[str, ...]:
    """The notice severities an incident at ``level`` has: P3 alone, or P3 and P2."""
    return () if level is None else NOTICE_LEVELS[:NOTICE_LEVELS.index(level) + 1]


def root_text(incident: Incident) -> str:
    cause = incident.root_cause
    if cause is None or not cause.service:
        return "unknown"
    return f"{cause.service} ({cause.component} connection)" if cause.kind == "component" \
        else cause.service


def symptoms(incident: Incident) -> tuple[str, ...]:
    """The services of the incident other than the root cause's, sorted."""
    cause = incident.root_cause
    return tuple(name for name in incident.services() if cause is None or name != cause.service)


def _time(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).isoformat()


def notice_alerts(incident: Incident, levels: Sequence[str], *, now: float,
                  ended: bool, outcome: str = "",
                  site_label: str = "site") -> list[dict[str, object]]:
    """The Alertmanager v2 alerts of the incident's notices at ``levels``: firing for
    ``NOTICE_TTL`` from ``now``, or ended at ``now`` when ``ended``. ``outcome`` is what
    healing did (healed or refused), told in the description. The incident's site is the
    label ``site_label`` (``responder.site_label``), as on the alerts it came from, so that
    routes grouping by site keep each condominium's notices apart."""
    if incident.id is None:
        raise ValueError("an incident is noticed once saved (it needs its id)")
    root = root_text(incident)
    others = symptoms(incident)
    # A drill's incident says so first: whoever hears it must not mistake it for an outage.
    drill = f"[drill {incident.drill_id}] " if incident.drill_id is not None else ""
    summary = f"{drill}Incident #{incident.id}: {root}" + (
        f"; symptoms: {', '.join(others)}" if others else "")
    cause = incident.root_cause
    lines = list(cause.reasoning) if cause else []
    if outcome:
        lines.append(outcome)
    annotations: Mapping[str, str] = {
        "summary": summary, "description": ". ".join(lines),
        "root_cause": root, "symptoms": ", ".join(others), "risk": incident.risk,
        "runbook_url": RUNBOOK,
        **({"drill": incident.drill_id} if incident.drill_id is not None else {})}
    return [{"labels": {"alertname": NOTICE_ALERTNAME, "incident": str(incident.id),
                        "severity": level, "root_cause": cause.service if cause else "",
                        site_label: incident.site,
                        # Should a route ever send it to the responder, it is never healed.
                        SELF_RAISED_LABEL: SELF_RAISED_VALUE},
             "annotations": dict(annotations),
             "startsAt": _time(incident.opened_at),
             "endsAt": _time(now if ended else now + NOTICE_TTL)}
            for level in levels]


class NoticeSender(AlertPoster):
    """Posts notices to Alertmanager from a daemon thread; a full queue or a failed post is
    counted (``monitoriza_healing_notices_total``) and logged, never raised."""

    def __init__(self, alertmanager_url: str | None, timeout: float = 5.0) -> None:
        super().__init__(alertmanager_url, "incident-notices", timeout)

    def send(self, alerts: list[dict[str, object]]) -> None:
        self.post(alerts)
