"""The journal: every accepted alert, durably recorded before the webhook answers 2xx.

Rows are keyed by (receiver, groupKey, fingerprint, status, startsAt): Alertmanager repeats,
retries and HA duplicates all map to keys already present, so they add nothing. Workers
claim pending rows with a lease; a row whose lease expired (its worker died) is claimed again.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, func, insert, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from monitoriza.responder.webhook import Notification
from monitoriza.store import journal, notifications, reading, writing


@dataclass(frozen=True, slots=True)
class Accepted:
    """What one notification added to the journal."""

    alerts: int
    new: int

    @property
    def duplicates(self) -> int:
        return self.alerts - self.new


@dataclass(frozen=True, slots=True)
class JournalRow:
    id: int
    receiver: str
    group_key: str
    fingerprint: str
    status: str
    starts_at: str
    alert: str
    attempts: int

    def document(self) -> dict[str, object]:
        decoded: dict[str, object] = json.loads(self.alert)
        return decoded


def alert_documents(notification: Notification) -> list[dict[str, object]]:
    """Each alert as stored: the alert itself plus what of its notification gives context."""
    context = {"receiver": notification.receiver, "groupKey": notification.groupKey,
               "externalURL": notification.externalURL,
               "truncatedAlerts": notification.truncatedAlerts}
    return [{**alert.model_dump(), "notification": context} for alert in notification.alerts]


class Journal:
    """Durable intake and leased claims over the ``journal`` table."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        dialect = engine.dialect.name
        self._insert = pg_insert if dialect == "postgresql" else sqlite_insert

    def accept(self, notification: Notification, now: float | None = None) -> Accepted:
        """Journal every alert of ``notification`` in one committed transaction."""
        now = time.time() if now is None else now
        rows = [{"receiver": notification.receiver, "group_key": notification.groupKey,
                 "fingerprint": alert.fingerprint, "status": alert.status,
                 "starts_at": alert.startsAt,
                 "alert": json.dumps(document, sort_keys=True, separators=(",", ":")),
                 "received_at": now}
                for alert, document in zip(notification.alerts,
                                           alert_documents(notification), strict=True)]
        # Concurrent intakes need no turn-taking: the unique key settles duplicates.
        with writing(self.engine, serialized=False) as conn:
            new = 0
            if rows:
                # No conflict target: the alert key is the table's only unique key besides
                # the generated id, and on PostgreSQL it is an index over expressions.
                statement = self._insert(journal).on_conflict_do_nothing().returning(
                    journal.c.id)
                # One statement per row: executemany with RETURNING is not portable.
                new = sum(len(conn.execute(statement, row).all()) for row in rows)
            conn.execute(insert(notifications).values(
                received_at=now, receiver=notification.receiver,
                group_key=notification.groupKey, status=notification.status,
                alerts=len(rows), new_alerts=new,
                truncated_alerts=notification.truncatedAlerts))
        return Accepted(len(rows), new)

    def claim(self, owner: str, lease: float, limit: int = 50,
              now: float | None = None) -> list[JournalRow]:
        """Lease up to ``limit`` rows that are pending or whose lease has expired."""
        now = time.time() if now is None else now
        claimable = (select(journal.c.id)
                     .where(or_(journal.c.state == "pending",
                                (journal.c.state == "claimed") & (journal.c.lease_expires < now)))
                     .order_by(journal.c.id).limit(limit)
                     .with_for_update(skip_locked=True))
        statement = (update(journal).where(journal.c.id.in_(claimable.scalar_subquery()))
                     .values(state="claimed", lease_owner=owner, lease_expires=now + lease,
                             attempts=journal.c.attempts + 1)
                     .returning(journal.c.id, journal.c.receiver, journal.c.group_key,
                                journal.c.fingerprint, journal.c.status, journal.c.starts_at,
                                journal.c.alert, journal.c.attempts))
        # SKIP LOCKED keeps concurrent claimers apart without the write lock.
        with writing(self.engine, serialized=False) as conn:
            claimed = [JournalRow(*row) for row in conn.execute(statement)]
        return sorted(claimed, key=lambda row: row.id)

    @staticmethod
    def complete(conn: Connection, row: JournalRow, owner: str, outcome: str,
                 now: float | None = None) -> bool:
        """Mark ``row`` done inside the processing transaction, if the lease is still ours."""
        result = conn.execute(
            update(journal)
            .where(journal.c.id == row.id, journal.c.lease_owner == owner,
                   journal.c.state == "claimed")
            .values(state="done", outcome=outcome,
                    processed_at=time.time() if now is None else now))
        return result.rowcount == 1

    @staticmethod
    def complete_outcome(conn: Connection, row: JournalRow, outcome: str) -> None:
        conn.execute(update(journal).where(journal.c.id == row.id).values(outcome=outcome))

    def depth(self) -> tuple[int, float | None]:
        """Rows not yet processed, and when the oldest of them was received."""
        with reading(self.engine) as conn:
            count, oldest = conn.execute(
                select(func.count(), func.min(journal.c.received_at))
                .where(journal.c.state != "done")).one()
        return int(count), oldest

    def outcomes(self) -> Sequence[tuple[str, int]]:
        with reading(self.engine) as conn:
            return [(str(outcome), int(count)) for outcome, count in conn.execute(
                select(journal.c.outcome, func.count()).where(journal.c.state == "done")
                .group_by(journal.c.outcome))]
