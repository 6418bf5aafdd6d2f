"""The journal: every accepted alert, durably recorded before the webhook answers 2xx.

Rows are keyed by (receiver, groupKey, fingerprint, status, startsAt): Alertmanager repeats,
retries and HA duplicates all map to keys already present, so they add nothing. Workers
claim pending rows with a lease; a row whose lease expired (its worker died) is claimed again.

Nothing acknowledged may be stuck: a row whose processing fails goes back to ``pending`` with
``next_attempt_at`` pushed out by an exponential backoff (:class:`RetryPolicy`), and claims
skip it until then; after ``max_attempts`` it becomes ``dead`` with ``last_error`` kept, until
someone replays it (:meth:`Journal.replay`). Claims take half a batch from the oldest rows
and half from the newest (:meth:`Journal.claim`), so a huge or poisonous notification cannot
hold up the alerts received after it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    and_,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from monitoriza.pipeline import JournalRow
from monitoriza.responder.webhook import Notification
from monitoriza.store import journal, notifications, reading, writing

LAST_ERROR_CHARS = 2000  # of ``last_error``: the exception's class and message
_REPLAY_CHUNK = 500  # ids per statement (SQLite binds at most 32766 parameters)
KEY_COLUMNS = ("receiver", "group_key", "fingerprint", "status", "starts_at")
UNFINISHED = ("pending", "claimed")
  # the journal's depth; ``done`` and ``dead`` are not in it


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often a failing row is tried, and how long it waits between tries."""

    max_attempts: int = 5
    backoff: float = 1.0
    backoff_max: float = 300.0

    def delay(self, attempts: int) -> float:
        """Seconds before the next try after ``attempts`` tries: ``backoff`` doubled for each
        try after the first, at most ``backoff_max``; no jitter, so tests can predict it."""
        return min(self.backoff_max, self.backoff * 2.0 ** min(max(attempts - 1, 0), 64))


@dataclass(frozen=True, slots=True)
class Failure:
    """What :meth:`Journal.fail` did with a row: back to pending until ``retry_at``, dead, or
    nothing because the lease was no longer ours (another worker took the row over)."""

    outcome: str  # "retry", "dead" or "lost"
    retry_at: float | None = None


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A dead row as listed for people: what it was, and why it was given up."""

    id: int
    receiver: str
    group_key: str
    fingerprint: str
    status: str
    starts_at: str
    received_at: float
    attempts: int
    last_error: str | None
    dead_lettered_at: float | None
    labels: dict[str, object]

    def document(self) -> dict[str, object]:
        return {"id": self.id, "receiver": self.receiver, "group_key": self.group_key,
                "fingerprint": self.fingerprint, "status": self.status,
                "starts_at": self.starts_at, "received_at": self.received_at,
                "attempts": self.attempts, "last_error": self.last_error,
                "dead_lettered_at": self.dead_lettered_at, "labels": self.labels}


def describe_error(error: BaseException) -> str:
    """``Class: message`` for ``last_error``, cut to a bounded length and always storable
    (a message quoting a lone surrogate is escaped: neither store nor audit could hold it)."""
    text = f"{type(error).__name__}: {error}"
    if len(text) > LAST_ERROR_CHARS:
        text = text[:LAST_ERROR_CHARS - 3] + "..."
    return text.encode("utf-8", "backslashreplace").decode()


def _key(row: dict[str, object]) -> tuple[str, ...]:
    """A journal row's alert key, the table's unique key."""
    return tuple(str(row[column]) for column in KEY_COLUMNS)


def _labels(alert: str) -> dict[str, object]:
    try:
        labels = json.loads(alert).get("labels")
    except (ValueError, AttributeError):
        return {}
    return labels if isinstance(labels, dict) else {}


@dataclass(frozen=True, slots=True)
class Accepted:
    """What one notification added to the journal."""

    alerts: int
    new: int

    @property
    def duplicates(self) -> int:
        return self.alerts - self.new


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
        return self.accept_batch([notification], now)[0]

    def accept_batch(self, batch: Sequence[Notification],
                     now: float | None = None) -> list[Accepted]:
        """Journal every alert of every notification of ``batch`` in one committed
        transaction (a group commit): all of them, or, when it raises, none."""
        with self.intake_transaction() as conn:
            return self.journal_batch(conn, batch, now)

    def intake_transaction(self) -> AbstractContextManager[Connection]:
        """The transaction intake writes in: it commits when the block ends. On SQLite the
        store's write lock is held from its start (``BEGIN IMMEDIATE``)."""
        # Concurrent intakes need no turn-taking: the unique key settles duplicates.
        return writing(self.engine, serialized=False)

    def journal_batch(self, conn: Connection, batch: Sequence[Notification],
                      now: float | None = None) -> list[Accepted]:
        """Journal every alert of every notification of ``batch`` in ``conn``'s transaction.

        Each notification's answer is what it would have been had the batch's notifications
        been accepted one after the other, ordered by their alert keys: an alert key held by
        two of them is new for the first and a duplicate for the second. Ordering by key,
        not by arrival (they arrived together), makes batches on PostgreSQL that hold the same
        notifications (an HA pair posting one group to two replicas) insert their keys in one
        order, so that they wait for each other instead of deadlocking. A notification's own
        alerts keep their order: the worker processes them in it.

        A few statements for the whole batch, not one per row: SQLAlchemy compiles each
        statement once and sends the rows as parameter lists.
        """
        now = time.time() if now is None else now
        rows = [self._rows(notification, now) for notification in batch]
        order = sorted(range(len(batch)), key=lambda position: [_key(row) for row in
                                                                 rows[position]])
        holder: dict[tuple[str, ...], int] = {}  # each key's first notification, in order
        candidates = []
        for position in order:
            for row in rows[position]:
                if (key := _key(row)) not in holder:
                    holder[key] = position
                    candidates.append(row)
        new = [0] * len(batch)
        for key in self._insert_new(conn, candidates):
            new[holder[key]] += 1
        records = [{"received_at": now, "receiver": batch[position].receiver,
                    "group_key": batch[position].groupKey, "status": batch[position].status,
                    "alerts": len(rows[position]), "new_alerts": new[position],
                    "truncated_alerts": batch[position].truncatedAlerts}
                   for position in order]
        if records:
            conn.execute(insert(notifications), records)
        return [Accepted(len(notification.alerts), new[position])
                for position, notification in enumerate(batch)]

    def _insert_new(self, conn: Connection, rows: list[dict[str, object]]
                    ) -> list[tuple[str, ...]]:
        """Insert those of ``rows`` (distinct keys) whose key is not stored yet; return the
        keys inserted. The unique key decides, so a replica inserting the same key at the
        same time is settled too; no conflict target, because on PostgreSQL the alert key is
        an index over expressions."""
        if not rows:
            return []
        insert_new = self._insert(journal).on_conflict_do_nothing().returning(
            *(journal.c[name] for name in KEY_COLUMNS))
        # With RETURNING, a parameter list is sent as multi-row INSERTs ("insertmanyvalues").
        return [tuple(row) for row in conn.execute(insert_new, rows)]

    @staticmethod
    def _rows(notification: Notification, now: float) -> list[dict[str, object]]:
        return [{"receiver": notification.receiver, "group_key": notification.groupKey,
                 "fingerprint": alert.fingerprint, "status": alert.status,
                 "starts_at": alert.startsAt,
                 "alert": json.dumps(document, sort_keys=True, separators=(",", ":")),
                 "received_at": now}
                for alert, document in zip(notification.alerts,
                                           alert_documents(notification), strict=True)]

    def claim(self, owner: str, lease: float, limit: int = 50,
              now: float | None = None) -> list[JournalRow]:
        """Lease up to ``limit`` rows: first those whose lease has expired (their worker died),
        then pending rows not backing off, half of them the oldest and half the newest.

        Oldest first alone would make every alert wait for a storm received before it (6,000
        alerts of one notification take seconds to process); newest first alone could starve
        the oldest. Taking from both ends costs the same at any backlog (each end is a scan of
        the ``(state, id)`` index that stops after a few rows; ranking every waiting row by
        its group instead cost 50 ms per claim at 6,000 rows and 300 ms at 50,000), keeps an
        alert posted after a storm within a batch or two of being processed, and still
        drains the oldest at half speed or more.
        """
        with writing(self.engine, serialized=False) as conn:
            # The lease starts once the store is ours, not before waiting for its lock.
            now = time.time() if now is None else now
            pending = and_(journal.c.state == "pending", or_(
                journal.c.next_attempt_at.is_(None), journal.c.next_attempt_at <= now))
            expired = and_(journal.c.state == "claimed", journal.c.lease_expires < now)
            # One state per scan: an OR of both would read and sort every waiting row.
            claimed = self._take(conn, owner, now + lease, [(expired, limit, False)])
            left = limit - len(claimed)
            if left > 0:
                claimed += self._take(conn, owner, now + lease, [
                    (pending, (left + 1) // 2, False), (pending, left // 2, True)])
        return sorted(claimed, key=lambda row: row.id)

    @staticmethod
    def _take(conn: Connection, owner: str, lease_expires: float,
              ends: list[tuple[ColumnElement[bool], int, bool]]) -> list[JournalRow]:
        """Lease the rows matching each ``(where, count, newest_first)``, in one statement."""
        chosen = [journal.c.id.in_(
            select(journal.c.id).where(where)
            .order_by(journal.c.id.desc() if newest_first else journal.c.id).limit(count)
            # SKIP LOCKED keeps concurrent claimers apart without the write lock.
            .with_for_update(skip_locked=True).scalar_subquery())
            for where, count, newest_first in ends if count > 0]
        statement = (update(journal).where(or_(*chosen))
                     .values(state="claimed", lease_owner=owner, lease_expires=lease_expires,
                             attempts=journal.c.attempts + 1)
                     .returning(journal.c.id, journal.c.receiver, journal.c.group_key,
                                journal.c.fingerprint, journal.c.status, journal.c.starts_at,
                                journal.c.alert, journal.c.attempts))
        return [JournalRow(*row) for row in conn.execute(statement)]

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

    @staticmethod
    def fail(conn: Connection, row: JournalRow, owner: str, error: str, *,
             policy: RetryPolicy, now: float | None = None) -> Failure:
        """Record that processing ``row`` failed with ``error``, in the caller's transaction
        (not the failed one, which was rolled back): back to ``pending`` until the backoff
        ends, or ``dead`` once ``row.attempts`` reached ``policy.max_attempts``."""
        now = time.time() if now is None else now
        ours = (journal.c.id == row.id, journal.c.lease_owner == owner,
                journal.c.state == "claimed")
        if row.attempts >= policy.max_attempts:
            changes: dict[str, object] = {"state": "dead", "processed_at": now,
                                          "next_attempt_at": None}
            failure = Failure("dead")
        else:
            retry_at = now + policy.delay(row.attempts)
            changes = {"state": "pending", "next_attempt_at": retry_at}
            failure = Failure("retry", retry_at)
        result = conn.execute(update(journal).where(*ours).values(
            **changes, last_error=error, lease_owner=None, lease_expires=None))
        return failure if result.rowcount == 1 else Failure("lost")

    @staticmethod
    def replay(conn: Connection, ids: Sequence[int] | None) -> list[int]:
        """Put dead rows (those of ``ids``, or all when None) back to ``pending`` with their
        attempts reset, in the caller's transaction; returns the ids replayed. Ids of rows
        that are not dead are ignored, so replaying twice processes nothing twice."""
        fresh = {"state": "pending", "attempts": 0, "next_attempt_at": None,
                 "lease_owner": None, "lease_expires": None, "processed_at": None,
                 "outcome": None}
        dead = journal.c.state == "dead"
        if ids is None:
            chunks: list[ColumnElement[bool]] = [dead]
        else:
            unique = sorted(set(ids))
            chunks = [and_(dead, journal.c.id.in_(unique[start:start + _REPLAY_CHUNK]))
                      for start in range(0, len(unique), _REPLAY_CHUNK)]
        replayed: list[int] = []
        for where in chunks:
            replayed += conn.execute(
                update(journal).where(where).values(**fresh).returning(journal.c.id)).scalars()
        return sorted(replayed)

    def dead_letters(self, after: int = 0, limit: int = 100) -> list[DeadLetter]:
        """Dead rows with an id above ``after``, oldest first."""
        with reading(self.engine) as conn:
            rows = conn.execute(
                select(journal.c.id, journal.c.receiver, journal.c.group_key,
                       journal.c.fingerprint, journal.c.status, journal.c.starts_at,
                       journal.c.received_at, journal.c.attempts, journal.c.last_error,
                       journal.c.processed_at, journal.c.alert)
                .where(journal.c.state == "dead", journal.c.id > after)
                .order_by(journal.c.id).limit(limit)).all()
        return [DeadLetter(id=row.id, receiver=row.receiver, group_key=row.group_key,
                           fingerprint=row.fingerprint, status=row.status,
                           starts_at=row.starts_at, received_at=row.received_at,
                           attempts=row.attempts, last_error=row.last_error,
                           dead_lettered_at=row.processed_at, labels=_labels(row.alert))
                for row in rows]

    def dead_letter_count(self) -> int:
        """Rows dead-lettered and not replayed: each is an alert nobody has processed."""
        with reading(self.engine) as conn:
            count = conn.execute(select(func.count()).select_from(journal)
                                 .where(journal.c.state == "dead")).scalar_one()
        return int(count)

    def depth(self) -> tuple[int, float | None]:
        """Rows not yet processed (pending, backing off or claimed; not dead), and when the
        oldest of them was received."""
        with reading(self.engine) as conn:
            count, oldest = conn.execute(
                select(func.count(), func.min(journal.c.received_at))
                .where(journal.c.state.in_(UNFINISHED))).one()
        return int(count), oldest

    def outcomes(self) -> Sequence[tuple[str, int]]:
        with reading(self.engine) as conn:
            return [(str(outcome), int(count)) for outcome, count in conn.execute(
                select(journal.c.outcome, func.count()).where(journal.c.state == "done")
                .group_by(journal.c.outcome))]
