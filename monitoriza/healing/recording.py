"""The first step of processing a journaled alert: record its state and audit it.

It runs inside the same transaction that marks the journal row done, so its database effects
and its audit entries happen exactly once, or not at all. :class:`HealingProcessor`
(:mod:`monitoriza.healing.decide`) runs it before correlating the alert.
"""

from __future__ import annotations

import time

from sqlalchemy import Connection, insert, select, update

from monitoriza.audit.appender import AuditAppender
from monitoriza.pipeline import JournalRow
from monitoriza.store import alert_state


def alert_summary(row: JournalRow) -> dict[str, object]:
    """The identifying part of an alert, as written to the audit log."""
    document = row.document()
    return {"journal_id": row.id, "receiver": row.receiver, "group_key": row.group_key,
            "fingerprint": row.fingerprint, "status": row.status, "starts_at": row.starts_at,
            "labels": document.get("labels", {})}


class RecordingProcessor:
    """Keeps the state of each alert occurrence and audits every alert it receives.

    A firing notification for an occurrence already resolved is stale (an HA peer that had
    not yet heard of the resolution): it is audited as such and does not reopen the alert.
    """

    def __init__(self, audit: AuditAppender) -> None:
        self.audit = audit

    def __call__(self, conn: Connection, row: JournalRow) -> str:
        known = conn.execute(select(alert_state.c.status).where(
            alert_state.c.fingerprint == row.fingerprint,
            alert_state.c.starts_at == row.starts_at)).scalar_one_or_none()
        summary = alert_summary(row)
        if row.status == "firing" and known == "resolved":
            self.audit.append(conn, "alert.stale", {
                **summary, "reason": "firing received after this occurrence was resolved"})
            return "stale"
        now = time.time()
        if known is None:
            conn.execute(insert(alert_state).values(
                fingerprint=row.fingerprint, starts_at=row.starts_at, status=row.status,
                updated_at=now))
        else:
            conn.execute(update(alert_state).where(
                alert_state.c.fingerprint == row.fingerprint,
                alert_state.c.starts_at == row.starts_at).values(status=row.status,
                                                                  updated_at=now))
        self.audit.append(conn, "alert.received", summary)
        return "recorded"
