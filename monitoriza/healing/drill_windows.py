"""Fire-drill windows: which drill, if any, an incident belongs to.

A drill (``monitoriza drill run``) tells the responder when it starts an experiment and over
which services (``POST /api/v1/drills/events``, :mod:`monitoriza.responder.drills`); the
window stays open until the drill's ``end`` or ``abort``, or until its ``expires_at`` passes,
so that a drill that crashed leaves no window open for ever. An incident opened while a
window is open, whose services (its root cause or any of its alerts') meet the window's, is
the drill's: reports and people can tell a rehearsal from an outage.

:func:`drill_for` is pure; :func:`windows_open_at` and :func:`drill_of` read the store.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, select

from monitoriza.healing.correlation import Incident
from monitoriza.store import drill_windows


@dataclass(frozen=True, slots=True)
class DrillWindow:
    """One experiment's window: from its ``start`` event until it ended or expired."""

    event_id: str
    drill_id: str
    experiment: str
    services: tuple[str, ...]
    started_at: float
    expires_at: float
    ended_at: float | None = None
    site: str | None = None  # the site the drill runs at; None: every site

    def open_at(self, moment: float) -> bool:
        """Whether the window was open at ``moment``: started, not yet expired nor ended."""
        closes = self.expires_at if self.ended_at is None else min(self.expires_at,
                                                                   self.ended_at)
        return self.started_at <= moment < closes

    def as_data(self) -> dict[str, object]:
        return {"event_id": self.event_id, "drill_id": self.drill_id,
                "experiment": self.experiment, "services": list(self.services),
                "started_at": self.started_at, "expires_at": self.expires_at}


def incident_services(incident: Incident) -> frozenset[str]:
    """The services an incident touches: its alerts' and its root cause's."""
    cause = incident.root_cause
    return frozenset(incident.services()) | (
        {cause.service} if cause is not None and cause.service else frozenset())


def drill_for(windows: Iterable[DrillWindow], opened_at: float,
              services: Collection[str], site: str | None = None) -> str | None:
    """The drill of an incident of ``site`` opened at ``opened_at`` over ``services``: that
    of the most recently started window open then, at that site (or at every site), that
    shares a service with it; None when none does. A drill at one condominium never claims
    another's outage of the same services."""
    matching = [window for window in windows
                if window.open_at(opened_at) and window.site in (None, site)
                and not set(window.services).isdisjoint(services)]
    if not matching:
        return None
    return max(matching, key=lambda window: (window.started_at, window.event_id)).drill_id


def window_from_row(row: Any) -> DrillWindow:
    return DrillWindow(row.event_id, row.drill_id, row.experiment,
                       tuple(json.loads(row.services)), row.started_at, row.expires_at,
                       row.ended_at, row.site)


def windows_open_at(conn: Connection, moment: float) -> list[DrillWindow]:
    """The windows open at ``moment``, oldest first."""
    rows = conn.execute(select(drill_windows).where(
        drill_windows.c.started_at <= moment, drill_windows.c.expires_at > moment,
        (drill_windows.c.ended_at.is_(None)) | (drill_windows.c.ended_at > moment))
        .order_by(drill_windows.c.started_at, drill_windows.c.event_id)).all()
    return [window_from_row(row) for row in rows]


def drill_of(conn: Connection, incident: Incident) -> str | None:
    """The drill ``incident`` belongs to, from the windows open when it was opened."""
    return drill_for(windows_open_at(conn, incident.opened_at), incident.opened_at,
                     incident_services(incident), incident.site)
