"""A clock that only moves when a test says so, for the exporter's background loops.

It implements :class:`monitoriza.exporter.clock.Clock`. A loop that waits on it is woken by
:meth:`ManualClock.advance` (or by its own condition being notified, as with the real clock),
and :meth:`ManualClock.caught_up` tells the test when every waiting loop has looked at the
clock since the last advance and gone back to waiting: everything due by then has been done.
"""

from __future__ import annotations

import threading


class ManualClock:
    """Monotonic and wall time that advance only by :meth:`advance`."""

    def __init__(self, wall_start: float = 1_700_000_000.0) -> None:
        self._now = 1000.0  # monotonic time starts anywhere, as the machine's does
        self._wall_offset = wall_start - self._now
        self._lock = threading.Lock()
        self._generation = 0  # bumped by every advance
        self._read_at: dict[int, int] = {}  # thread -> generation it last read the clock at
        self._waiting: dict[int, int] = {}  # thread -> generation it went to wait at
        self._conditions: set[threading.Condition] = set()

    def monotonic(self) -> float:
        with self._lock:
            self._read_at[threading.get_ident()] = self._generation
            return self._now

    def time(self) -> float:
        with self._lock:
            self._read_at[threading.get_ident()] = self._generation
            return self._now + self._wall_offset

    def wait(self, condition: threading.Condition, timeout: float | None) -> bool:
        """Wait for a notification or an advance; the timeout passes only through advance.

        A caller that read the clock before the latest advance returns at once, so that an
        advance landing between its read and its wait is never lost."""
        me = threading.get_ident()
        with self._lock:
            if self._read_at.get(me) != self._generation:
                return True
            self._conditions.add(condition)
            self._waiting[me] = self._generation
        try:
            condition.wait()
        finally:
            with self._lock:
                del self._waiting[me]
        return True

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError(f"a monotonic clock cannot go back ({seconds} s)")
        with self._lock:
            self._now += seconds
            self._generation += 1
            conditions = list(self._conditions)
        for condition in conditions:
            # Taking the lock means each waiter is inside condition.wait (or has not read the
            # new time yet), so the notification cannot fall between its check and its wait.
            with condition:
                condition.notify_all()

    def caught_up(self, waiters: int = 1) -> bool:
        """True when ``waiters`` threads wait on this clock, each having read it since the
        latest advance."""
        with self._lock:
            current = [g for g in self._waiting.values() if g == self._generation]
            return len(current) >= waiters
