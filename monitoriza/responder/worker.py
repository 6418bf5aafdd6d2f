"""The journal worker: claims rows with a lease and processes each exactly once.

A row whose processing fails is not retried at once, nor for ever: it goes back to the journal
with a backoff and, after ``RetryPolicy.max_attempts``, is dead-lettered (``journal.dead_letter``
in the audit log, a counter, one log line). Only the store being unavailable is not the row's
fault: then the worker waits and the row keeps its attempts. Each failure logs one line; the
traceback only at DEBUG, so a poison row cannot flood the log.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from monitoriza.audit.appender import AuditAppender
from monitoriza.exceptions import MonitorizaError
from monitoriza.pipeline import JournalRow, Processor, worker_id
from monitoriza.responder.journal import Journal, RetryPolicy, describe_error
from monitoriza.store import writing

log = logging.getLogger(__name__)

# How long the worker, having committed early for waiting notifications, leaves the store to
# them before its next transaction (a group commit takes a few milliseconds).
INTAKE_GRACE_SECONDS = 0.05
LOGGED_ERROR_CHARS = 300  # of an error in a log line; the store keeps more (last_error)


class LeaseExpiredError(MonitorizaError):
    """A row was claimed more often than allowed without ever finishing: processing it kills
    or hangs its worker (or takes longer than the lease), so it is dead-lettered untried."""


def store_unavailable(error: BaseException) -> bool:
    """The store failed, not the row: locked past its timeout, disconnected, pool exhausted.
    Other database errors (a constraint, bad data) are the row's and count as attempts."""
    if isinstance(error, OperationalError | InterfaceError | DisconnectionError
                  | PoolTimeoutError):
        return True
    return isinstance(error, DBAPIError) and error.connection_invalidated


def _one_line(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= LOGGED_ERROR_CHARS else text[:LOGGED_ERROR_CHARS - 3] + "..."


class JournalWorker:
    """Claims pending journal rows and runs the processor on each, in its own transaction.

    ``retry``, ``audit`` (where ``journal.dead_letter`` entries go) and ``on_dead_letter``
    (called with the row and the reason, the exception's class name) may be set after
    construction, before :meth:`start`.
    """

    def __init__(self, journal: Journal, processor: Processor, *, lease: float,
                 batch: int = 20, idle_sleep: float = 0.2,
                 on_processed: Callable[[JournalRow, str], None] | None = None,
                 after_batch: Callable[[], object] | None = None,
                 retry: RetryPolicy | None = None, audit: AuditAppender | None = None,
                 on_dead_letter: Callable[[JournalRow, str], None] | None = None,
                 clock: Callable[[], float] = time.time,
                 intake_waiting: Callable[[], bool] | None = None,
                 batch_while_intake_waits: int = 2,
                 site_of: Callable[[JournalRow], str] | None = None) -> None:
        """``intake_waiting`` says whether notifications wait for the store: the worker then
        claims ``batch_while_intake_waits`` rows, not ``batch``, and commits after the row it
        is processing, so that its transaction (which holds SQLite's write lock) ends soon
        and the webhook's commit goes first.

        ``site_of`` (given when the processor touches only its alerts' sites' state and
        queues its audit entries) makes a batch lock only its rows' sites on PostgreSQL, so
        that replicas process other sites meanwhile; without it, a batch excludes every
        other writer."""
        self.journal = journal
        self.processor = processor
        self.lease = lease
        self.batch = batch
        self.idle_sleep = idle_sleep
        self.owner = worker_id()
        self.retry = retry if retry is not None else RetryPolicy()
        self.audit = audit
        self.on_dead_letter = on_dead_letter
        self.clock = clock
        self._on_processed = on_processed
        self._after_batch = after_batch
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_loop_error: str | None = None
        self._intake_waiting = intake_waiting
        self.batch_while_intake_waits = batch_while_intake_waits
        self._site_of = site_of

    def run_once(self) -> int:
        """Claim one batch and process it; return how many rows were processed."""
        batch = self.batch_while_intake_waits if self._intake_waits() else self.batch
        rows = self.journal.claim(self.owner, self.lease, batch, now=self.clock())
        fresh = []
        for row in rows:
            if row.attempts > self.retry.max_attempts:
                self._failed(row, LeaseExpiredError(
                    f"claimed {row.attempts} times without finishing (lease expired)"))
            else:
                fresh.append(row)
        done = self._process(fresh) if fresh else []
        if self._after_batch is not None:
            self._after_batch()
        for row, outcome in done:
            if self._on_processed is not None:
                self._on_processed(row, outcome)
        return len(done)

    def _process(self, rows: list[JournalRow]) -> list[tuple[JournalRow, str]]:
        """Process a claimed batch, in as few transactions as intake allows."""
        done: list[tuple[JournalRow, str]] = []
        while rows:
            processed, rows = self._process_some(rows)
            done += processed
            if rows:
                self._let_intake_commit()
        return done

    def _let_intake_commit(self) -> None:
        """Wait, briefly, for the notifications that made this worker commit early to be
        committed: a lock released and at once taken again by the same thread usually goes
        to it again, not to the thread that waited for it."""
        deadline = time.monotonic() + INTAKE_GRACE_SECONDS
        while self._intake_waits() and time.monotonic() < deadline:
            time.sleep(0.001)

    def _process_some(self, rows: list[JournalRow]) -> tuple[list[tuple[JournalRow, str]],
                                                             list[JournalRow]]:
        """Process ``rows`` in one transaction, one commit (and fsync) for all of them; or,
        when notifications start waiting for the store meanwhile, commit those processed so
        far and return the rest: an acknowledgement then waits for one row's processing, not
        a batch's (on SQLite the worker's transaction holds the write lock).

        Completing a row first makes the transaction hold it: a row whose lease was lost to
        another worker is skipped, and nothing of it is committed. If processing one row
        fails, the transaction is rolled back and its rows retried one at a time, so that one
        bad row cannot hold up the others; a row that fails alone is recorded as failed
        (backoff, then dead letter).
        """
        sites = None if self._site_of is None else {self._site_of(row) for row in rows}
        try:
            with writing(self.journal.engine, sites=sites) as conn:
                done = []
                for index, row in enumerate(rows, start=1):
                    outcome = self._process_row(conn, row)
                    if outcome is not None:
                        done.append((row, outcome))
                    if index < len(rows) and self._intake_waits():
                        return done, rows[index:]
                return done, []
        except Exception as exc:
            if store_unavailable(exc):
                raise
            if len(rows) == 1:
                self._failed(rows[0], exc)
                return [], []
            log.debug("a batch of %d journal rows failed (%s); retrying them one by one",
                      len(rows), _one_line(describe_error(exc)), exc_info=True)
        done = []
        for row in rows:
            done += self._process([row])
        return done, []

    def _intake_waits(self) -> bool:
        return self._intake_waiting is not None and self._intake_waiting()

    def _process_row(self, conn: Connection, row: JournalRow) -> str | None:
        if not Journal.complete(conn, row, self.owner, "processing"):
            log.warning("lease on journal row %d lost; another worker has it", row.id)
            return None
        outcome = self.processor(conn, row)
        Journal.complete_outcome(conn, row, outcome)
        return outcome

    def _failed(self, row: JournalRow, error: Exception) -> None:
        """Record the failure in a transaction of its own: retry later, or dead-letter."""
        message = describe_error(error)
        reason = type(error).__name__
        with writing(self.journal.engine) as conn:
            failure = Journal.fail(conn, row, self.owner, message, policy=self.retry,
                                   now=self.clock())
            if failure.outcome == "dead" and self.audit is not None:
                self.audit.append(conn, "journal.dead_letter", {
                    "journal_id": row.id, "receiver": row.receiver, "group_key": row.group_key,
                    "fingerprint": row.fingerprint, "status": row.status,
                    "starts_at": row.starts_at, "reason": reason, "error": message,
                    "attempts": row.attempts})
        shown = _one_line(message)
        if failure.outcome == "retry" and failure.retry_at is not None:
            log.warning("journal row %d failed (attempt %d of %d); next try in %.3gs: %s",
                        row.id, row.attempts, self.retry.max_attempts,
                        self.retry.delay(row.attempts), shown)
        elif failure.outcome == "dead":
            log.error("journal row %d dead-lettered after %d attempts: %s", row.id,
                      row.attempts, shown)
            if self.on_dead_letter is not None:
                self.on_dead_letter(row, reason)
        else:
            log.warning("journal row %d failed, but another worker has taken it over: %s",
                        row.id, shown)
        log.debug("journal row %d failed", row.id, exc_info=error)

    def wake(self) -> None:
        """New rows were journaled: look now instead of after the idle sleep."""
        self._wake.set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="journal-worker", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                processed = self.run_once()
                self._last_loop_error = None
            except Exception as exc:  # nothing may stop the worker; claimed rows are retried
                self._loop_failed(exc)
                processed = 0
                self._stop.wait(1.0)
            if processed == 0:
                self._wake.wait(self.idle_sleep)
                self._wake.clear()

    def _loop_failed(self, error: Exception) -> None:
        """One line per failed round; the traceback once per distinct error (or at DEBUG)."""
        what = ("store unavailable, retrying" if store_unavailable(error)
                else "processing failed, retrying")
        text = _one_line(describe_error(error))
        repeated = text == self._last_loop_error
        self._last_loop_error = text
        if repeated:
            log.warning("journal worker: %s: %s", what, text)
            log.debug("journal worker: %s", what, exc_info=error)
        else:
            log.error("journal worker: %s: %s", what, text, exc_info=error)
