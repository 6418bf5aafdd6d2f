"""What a pipeline step needs of the audit log: append an entry inside the caller's transaction.

A protocol, so that healing and the journal worker depend on this shape and not on
:class:`monitoriza.audit.log.AuditLog` (tests hand them a recording fake or the real log).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from sqlalchemy import Connection


class AuditAppender(Protocol):
    def append(self, conn: Connection, kind: str, data: Mapping[str, object]) -> object: ...
