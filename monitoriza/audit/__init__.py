"""The hash-chained audit log: a pure chain core, the store-backed log, signed checkpoints.

See :mod:`monitoriza.audit.chain` for the format and the guarantees.
"""

from __future__ import annotations

from monitoriza.audit.chain import (
    DOMAIN,
    GENESIS,
    AuditEntry,
    AuditError,
    VerifyResult,
    canonical,
    canonical_data,
    canonical_stored,
    entry_hash,
    format_ts,
    verify_chain,
)
from monitoriza.audit.checkpoints import Checkpoint, CheckpointError, Checkpoints
from monitoriza.audit.log import AuditLog

__all__ = [
    "DOMAIN",
    "GENESIS",
    "AuditEntry",
    "AuditError",
    "AuditLog",
    "Checkpoint",
    "CheckpointError",
    "Checkpoints",
    "VerifyResult",
    "canonical",
    "canonical_data",
    "canonical_stored",
    "entry_hash",
    "format_ts",
    "verify_chain",
]
