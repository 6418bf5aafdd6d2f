"""The clock the exporter's background loops read and wait on.

The probe scheduler and the forecast engine take a :class:`Clock` so that their schedules can
be tested by moving time by hand (``tests/support/clock.py``) instead of sleeping on real
timers. Production uses :data:`SYSTEM_CLOCK`. Probes themselves still do real I/O against
real socket timeouts; only the loops' notion of "when is the next run due" is injectable.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol


class Clock(Protocol):
    """Monotonic time for schedules, wall time for timestamps, and a way to wait for either a
    notification or a moment on that same monotonic time."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back; schedules and deadlines use it."""

    def time(self) -> float:
        """Seconds since the epoch, for timestamps that are published."""

    def wait(self, condition: threading.Condition, timeout: float | None) -> bool:
        """Like ``condition.wait(timeout)`` with ``timeout`` on this clock's monotonic time;
        the caller holds ``condition``. Returns False when the timeout passed."""


class SystemClock:
    """The real clocks of the machine."""

    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()

    def wait(self, condition: threading.Condition, timeout: float | None) -> bool:
        return condition.wait(timeout)


SYSTEM_CLOCK: Clock = SystemClock()
