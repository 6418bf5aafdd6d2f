"""Group commit for the webhook: notifications that arrive together share one durable commit.

Each request thread queues its (validated) notification. One commit runs at a time per
process: it begins its transaction (on SQLite that waits for the store's write lock, which
the journal worker may hold), and only then takes everything queued so far (up to
``max_alerts`` alerts, never splitting a notification), so that what arrived during the wait
joins it rather than waiting for the next one; it journals the batch
(:meth:`monitoriza.responder.journal.Journal.journal_batch`), and only once the transaction
has committed wakes the threads whose notifications it held, which then answer 200. A batch
that fails commits nothing, and every request in it gets :class:`JournalCommitError` (503:
Alertmanager retries).

The committer is not a thread of its own but whichever request thread finds no commit
running (the leader); when its commit ends, it hands the role to the oldest notification
still queued, whose thread commits the next batch. So a notification that arrives alone is
committed by its own thread at once, with no hand-over between threads (each costs a wait for
the interpreter lock, up to its 5 ms switch interval while the journal worker computes), and
batches form exactly when commits are busy.

A request waits at most ``timeout`` for a commit to take its notification: past it the
notification is withdrawn and the answer is :class:`JournalCommitError` too. Once taken, the
answer is that commit's outcome, whose waits for the store's lock the store bounds by the same
timeout (SQLite's ``busy_timeout``, PostgreSQL's ``lock_timeout``); so a 503 means "not
journaled", except after a commit that hangs past both timeouts and a second's grace, which
is answered 503 while it may still commit (safe: the retry is a duplicate).

Why: every commit costs a turn on the store's write lock, a transaction and an fsync, and on
SQLite the request threads took those turns one after another. With a queue the cost is
paid once per batch, and a notification that arrives while the worker holds the lock waits
for one commit after it, not for every notification queued before it.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from monitoriza.exceptions import MonitorizaError
from monitoriza.responder.journal import Accepted
from monitoriza.responder.webhook import Notification

log = logging.getLogger(__name__)

_GRACE = 1.0  # seconds a request waits past two timeouts for the commit that holds it
Transaction = TypeVar("Transaction")  # what a begun transaction is: a Connection


class JournalCommitError(MonitorizaError):
    """The notification is not known to be journaled: its batch failed (the cause is chained)
    or no commit held it within the timeout."""


@dataclass(eq=False)
class Queued:
    """One queued notification and, once its batch ended, what became of it."""

    notification: Notification
    alerts: int
    wake: threading.Event = field(default_factory=threading.Event)  # done, or to lead
    lead: bool = False  # its thread is to commit the next batch
    taken: bool = False  # by a commit; then it cannot be withdrawn
    done: bool = False
    accepted: Accepted | None = None
    error: BaseException | None = None


def take_batch(queue: deque[Queued], max_alerts: int) -> list[Queued]:
    """Pop the oldest queued notifications whose alerts add up to at most ``max_alerts``;
    always at least one, however large, so that no notification waits for ever."""
    batch = [queue.popleft()]
    total = batch[0].alerts
    while queue and total + queue[0].alerts <= max_alerts:
        total += queue[0].alerts
        batch.append(queue.popleft())
    for waiting in batch:
        waiting.taken = True
    return batch


class GroupCommitter(Generic[Transaction]):
    """Queues notifications and journals them in shared commits, one commit at a time.

    ``begin()`` opens a transaction that commits when its block ends (and rolls back when it
    raises); ``write(transaction, notifications)`` journals a batch in it."""

    def __init__(self, begin: Callable[[], AbstractContextManager[Transaction]],
                 write: Callable[[Transaction, Sequence[Notification]], list[Accepted]], *,
                 max_alerts: int, timeout: float) -> None:
        if max_alerts < 1:
            raise ValueError("max_alerts must be at least 1")
        self._begin = begin
        self._write = write
        self.max_alerts = max_alerts
        self.timeout = timeout
        self._queue: deque[Queued] = deque()
        self._changed = threading.Lock()
        self._committing = False
        self._unanswered = 0

    def submit(self, notification: Notification) -> Accepted:
        """Journal ``notification`` in the next shared commit and return what it added, once
        that commit is durable; JournalCommitError if it failed or did not happen within
        ``timeout``."""
        waiting = Queued(notification, max(1, len(notification.alerts)))
        with self._changed:
            self._queue.append(waiting)
            self._unanswered += 1
            if not self._committing:
                self._committing = waiting.lead = True
        try:
            return self._wait(waiting)
        finally:
            with self._changed:
                self._unanswered -= 1

    def _wait(self, waiting: Queued) -> Accepted:
        """Lead when it is this notification's turn, else wait for the commit that holds it."""
        if not waiting.lead:
            waiting.wake.wait(self.timeout)
            with self._changed:
                if not (waiting.done or waiting.lead or waiting.taken):
                    # No commit took it: withdraw it, so that it cannot commit after its 503.
                    self._queue.remove(waiting)
                    raise JournalCommitError(f"no journal commit could start within "
                                             f"{self.timeout:g} s")
        if waiting.lead:
            self._lead()  # its notification is the oldest queued: this batch holds it
        # A commit holds it: its outcome is the answer. The store bounds that commit's wait
        # for a lock by the same timeout; the grace only guards against a hang.
        if not waiting.wake.wait(self.timeout + _GRACE) or not waiting.done:
            raise JournalCommitError("the journal commit holding it did not end in time")
        if waiting.error is not None:
            raise JournalCommitError(
                f"the journal commit failed: {waiting.error}") from waiting.error
        if waiting.accepted is None:  # pragma: no cover - set with done when error is not
            raise JournalCommitError("the journal commit ended without an answer")
        return waiting.accepted

    def queued(self) -> int:
        """Notifications waiting for a commit to take them (not those being committed)."""
        with self._changed:
            return len(self._queue)

    def unanswered(self) -> int:
        """Notifications submitted whose request is still waiting (queued or committing)."""
        with self._changed:
            return self._unanswered

    def busy(self) -> bool:
        """Whether a commit is running now."""
        with self._changed:
            return self._committing

    def _lead(self) -> None:
        """Commit one batch, then hand the committer's role to the oldest notification still
        queued (or give it up): whatever happens, the role is never left held by no one."""
        batch: list[Queued] = []
        try:
            with self._begin() as transaction:
                with self._changed:
                    batch = take_batch(self._queue, self.max_alerts)
                accepted = self._write(transaction, [waiting.notification
                                                     for waiting in batch])
            # The block ended without raising: committed.
            for waiting, result in zip(batch, accepted, strict=True):
                waiting.accepted = result
                waiting.done = True
                waiting.wake.set()
        except BaseException as exc:  # every request of the batch must hear of it
            if not batch:  # the transaction could not begin: fail what waited for it
                with self._changed:
                    batch = take_batch(self._queue, self.max_alerts)
            log.error("group commit of %d notifications failed, answering 503 to each: %s",
                      len(batch), exc, exc_info=True)
            for waiting in batch:
                waiting.error = exc
                waiting.done = True
                waiting.wake.set()
            if not isinstance(exc, Exception):
                raise  # KeyboardInterrupt, SystemExit: after the batch has its answer
        finally:
            with self._changed:
                if self._queue:
                    successor = self._queue[0]
                    successor.lead = True
                    successor.wake.set()
                else:
                    self._committing = False
