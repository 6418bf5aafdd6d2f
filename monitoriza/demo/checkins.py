"""Residents' check-ins of the demo: what its ``resident-checkin`` flow exercises.

One book is shared by every simulated service of the demo server, as Conecta's services
share a database: a check-in made through the API gateway is read back from the backend.
"""

from __future__ import annotations

import itertools
import threading
from typing import Any

MAX_CHECKINS = 10_000  # the oldest are forgotten: a flow runs every few seconds for days


class CheckinBook:
    """Check-ins by id, safe to use from every request thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._checkins: dict[str, dict[str, Any]] = {}

    def create(self, resident: str, via: str) -> dict[str, Any]:
        with self._lock:
            checkin = {"id": f"chk-{next(self._ids)}", "resident": resident, "via": via,
                       "status": "checked_in"}
            self._checkins[checkin["id"]] = checkin
            while len(self._checkins) > MAX_CHECKINS:
                del self._checkins[next(iter(self._checkins))]
            return dict(checkin)

    def get(self, checkin_id: str) -> dict[str, Any] | None:
        with self._lock:
            found = self._checkins.get(checkin_id)
            return None if found is None else dict(found)
