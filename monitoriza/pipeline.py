"""The contract between the journal (responder) and the steps that process its rows (healing).

Kept apart from both so that the arrow runs one way: the responder's journal produces
:class:`JournalRow` values and calls a :class:`Processor`; healing implements processors and
never imports the responder. :func:`worker_id` names the holder of a lease, for the journal
worker and the healer alike.
"""

from __future__ import annotations

import json
import os
import socket
import uuid
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import Connection


@dataclass(frozen=True, slots=True)
class JournalRow:
    """One journaled alert as claimed by a worker."""

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


class Processor(Protocol):
    def __call__(self, conn: Connection, row: JournalRow) -> str:
        """Process ``row`` inside ``conn``'s transaction; return the outcome name."""


def worker_id() -> str:
    """Unique per worker: host, process and a random part (PIDs are reused after a crash)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
