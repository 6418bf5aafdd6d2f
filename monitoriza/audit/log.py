"""The audit log in the store: appends inside the caller's transaction, reads, verification.

:meth:`AuditLog.append` reads the head and inserts the next entry on the caller's connection,
so an alert's processing and its audit entries commit or roll back together. Appends must be
serialised: SQLite's ``BEGIN IMMEDIATE`` (see :mod:`monitoriza.store`) already does it; on
PostgreSQL a transaction-scoped advisory lock does, because ``SELECT ... FOR UPDATE`` of the
head alone lets a waiting transaction re-read the old head after the holder commits. Should two
appends still meet, the primary key on ``seq`` turns the second into an error, never a fork.

Reads (:meth:`AuditLog.verify`, :meth:`AuditLog.entries`...) take a consistent snapshot without
blocking writers: on SQLite a plain deferred ``BEGIN`` on the WAL (``BEGIN IMMEDIATE`` would
hold the write lock for the whole scan), elsewhere an ordinary read transaction.

Checkpoints are written by :meth:`AuditLog.maybe_checkpoint`, which the caller runs after its
transaction commits (a checkpoint of an entry that is then rolled back would read as a
truncation) and from time to time, so that ``checkpoint_interval`` is honoured when idle.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Generator, Iterator, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from sqlalchemy import Connection, Engine, Select, func, insert, select

from monitoriza.audit.chain import (
    GENESIS,
    MAX_KIND_LENGTH,
    AuditEntry,
    AuditError,
    StoredRow,
    VerifyResult,
    canonical_data,
    format_ts,
    link,
    verify_chain,
)
from monitoriza.audit.checkpoints import (
    Checkpoint,
    CheckpointError,
    CheckpointReport,
    Checkpoints,
    checkpoint_due,
    load_private_key,
    load_public_key,
    public_key_path,
    write_public_key,
)
from monitoriza.config.schema import Audit as AuditConfig
from monitoriza.store import audit, serialize

BATCH = 10_000
_COLUMNS = (audit.c.seq, audit.c.ts, audit.c.kind, audit.c.data, audit.c.prev, audit.c.hash)


class UndecodableTextError(AuditError):
    """A stored text value is not valid UTF-8 (SQLite does not check)."""


def _decode_tolerantly(value: bytes) -> str:
    return value.decode("utf-8", "surrogateescape")


def read_hmac_key(path: str | Path) -> bytes:
    """The HMAC key in ``path``, without surrounding whitespace; it must not be empty."""
    try:
        key = Path(path).read_bytes().strip()
    except OSError as exc:
        raise AuditError(f"cannot read audit HMAC key file {path}: {exc}") from None
    if not key:
        raise AuditError(f"audit HMAC key file {path} is empty")
    return key


def _open_checkpoints(config: AuditConfig, *, read_only: bool) -> Checkpoints | None:
    """Signing checkpoints needs the private key (made if missing, unless ``read_only``);
    checking them needs only the public key, so an auditor may have just that."""
    private_path = Path(config.signing_key_file)
    if not read_only:
        key = load_private_key(private_path, create=True)
        write_public_key(key, private_path)
        return Checkpoints(config.checkpoint_file, key)
    if private_path.exists():
        return Checkpoints(config.checkpoint_file, load_private_key(private_path))
    public_path = public_key_path(private_path)
    if public_path.exists():
        return Checkpoints(config.checkpoint_file, load_public_key(public_path))
    checkpoint_file = Path(config.checkpoint_file)
    if checkpoint_file.exists() and checkpoint_file.stat().st_size > 0:
        raise CheckpointError(f"cannot check {checkpoint_file}: neither the signing key "
                              f"{private_path} nor its public key {public_path} exists")
    return None


class AuditLog:
    """The hash-chained audit log kept in the store's ``audit`` table."""

    def __init__(self, engine: Engine, *, hmac_key: bytes | None,
                 checkpoints: Checkpoints | None, checkpoint_every: int = 100,
                 checkpoint_interval: float = 60.0) -> None:
        self.engine = engine
        self.checkpoints = checkpoints
        self._key = hmac_key
        self._every = checkpoint_every
        self._interval = checkpoint_interval
        # The newest checkpoint this process knows of; others may have written newer ones.
        self._known: tuple[int, datetime] | None = None

    @classmethod
    def from_config(cls, engine: Engine, config: AuditConfig, *,
                    read_only: bool = False) -> AuditLog:
        """The log as ``config`` describes it; ``read_only`` creates no key (for auditors)."""
        key = read_hmac_key(config.hmac_key_file) if config.hmac_key_file else None
        return cls(engine, hmac_key=key,
                   checkpoints=_open_checkpoints(config, read_only=read_only),
                   checkpoint_every=config.checkpoint_every,
                   checkpoint_interval=config.checkpoint_interval)

    # Writing, inside the caller's transaction.

    def append(self, conn: Connection, kind: str, data: Mapping[str, object], *,
               now: datetime | None = None) -> AuditEntry:
        """Add an entry on ``conn``, in its transaction; it commits or rolls back with it."""
        if not 1 <= len(kind) <= MAX_KIND_LENGTH:
            raise AuditError(f"audit kind must be 1 to {MAX_KIND_LENGTH} characters: {kind!r}")
        data_text = canonical_data(data)
        ts = format_ts(now if now is not None else datetime.now(UTC))
        head_seq, head_hash = self._lock_head(conn)
        row = link(head_seq, head_hash, ts, kind, data_text, key=self._key)
        seq, _, _, _, prev, digest = row
        conn.execute(insert(audit).values(seq=seq, ts=ts, kind=kind, data=data_text, prev=prev,
                                          hash=digest))
        return AuditEntry.from_row(row)

    def _lock_head(self, conn: Connection) -> tuple[int, str]:
        serialize(conn)  # already held if the transaction began in writing()
        found = conn.execute(select(audit.c.seq, audit.c.hash).order_by(audit.c.seq.desc())
                             .limit(1).with_for_update()).first()
        return (0, GENESIS) if found is None else (found.seq, found.hash)

    # Reading, from a snapshot of committed entries.

    def _rows(self, stmt: Select[Any], batch: int = BATCH, *,
              tolerant: bool = False) -> Generator[Any, None, None]:
        """Stream ``stmt``'s rows from one read snapshot that does not block writers.

        SQLite does not check that TEXT is UTF-8, so a flipped bit can make a value
        undecodable: that raises :class:`UndecodableTextError`, unless ``tolerant``, when such
        bytes are decoded with ``surrogateescape`` (and then fail any hash check).
        """
        if self.engine.dialect.name != "sqlite":
            with self.engine.connect() as conn:
                result = conn.execution_options(yield_per=batch).execute(stmt)
                try:
                    yield from result
                finally:
                    result.close()  # a server-side cursor, when the caller stops early
            return
        sql = str(stmt.compile(dialect=self.engine.dialect,
                               compile_kwargs={"literal_binds": True}))
        raw = self.engine.raw_connection()
        driver = cast(sqlite3.Connection, raw.driver_connection)
        try:
            if tolerant:
                driver.text_factory = _decode_tolerantly
            cursor = raw.cursor()
            try:
                cursor.execute("BEGIN")  # deferred: a WAL read snapshot, no write lock
                cursor.execute(sql)
                while rows := cursor.fetchmany(batch):
                    yield from rows
            except sqlite3.OperationalError as exc:
                if "decode" in str(exc):
                    raise UndecodableTextError(f"the audit table holds text that is not UTF-8: "
                                          f"{exc}") from None
                raise
            finally:
                cursor.close()
                raw.rollback()
        finally:
            driver.text_factory = str
            raw.close()

    def _first(self, stmt: Select[Any]) -> Any:
        with contextlib.closing(self._rows(stmt, batch=1)) as rows:
            return next(rows, None)

    def head(self, conn: Connection | None = None) -> tuple[int, str]:
        """``(seq, hash)`` of the last entry, ``(0, GENESIS)`` when empty; on ``conn`` if given
        (seeing its uncommitted entries), else committed."""
        stmt = select(audit.c.seq, audit.c.hash).order_by(audit.c.seq.desc()).limit(1)
        found = conn.execute(stmt).first() if conn is not None else self._first(stmt)
        return (0, GENESIS) if found is None else (int(found[0]), str(found[1]))

    def count(self) -> int:
        """How many entries the store holds."""
        return int(self._first(select(func.count()).select_from(audit))[0])

    def _select(self, since_seq: int, since_ts: datetime | None) -> Select[Any]:
        stmt = select(*_COLUMNS).where(audit.c.seq > since_seq).order_by(audit.c.seq)
        if since_ts is not None:
            stmt = stmt.where(audit.c.ts >= format_ts(since_ts))
        return stmt

    def entries(self, since_seq: int = 0, since_ts: datetime | None = None,
                limit: int | None = None) -> list[AuditEntry]:
        """Entries after seq ``since_seq`` and at or after ``since_ts``, in seq order."""
        stmt = self._select(since_seq, since_ts)
        if limit is not None:
            stmt = stmt.limit(limit)
        with contextlib.closing(self._rows(stmt)) as rows:
            return [AuditEntry.from_row(cast(StoredRow, tuple(row))) for row in rows]

    def iter_all(self, since_seq: int = 0, since_ts: datetime | None = None, *,
                 batch: int = BATCH) -> Iterator[AuditEntry]:
        """Like :meth:`entries`, streamed ``batch`` rows at a time."""
        with contextlib.closing(self._rows(self._select(since_seq, since_ts), batch)) as rows:
            for row in rows:
                yield AuditEntry.from_row(cast(StoredRow, tuple(row)))

    def verify(self) -> VerifyResult:
        """Verify every entry, and the chain against the signed checkpoints.

        The checkpoint file is read before the entries: checkpoints are written only after
        their entries commit, so none read first can be ahead of the snapshot scanned next.
        """
        report = (self.checkpoints.read() if self.checkpoints is not None
                  else CheckpointReport([], None, {}))
        with contextlib.closing(self._chain_rows()) as rows:
            result = verify_chain(rows, self._key, checkpoints=report.anchors)
        if result.ok and report.problem is not None:
            result = replace(result, ok=False, reason=report.problem)
        return replace(result, checkpoints=len(report.checkpoints))

    def _chain_rows(self) -> Generator[Any, None, None]:
        """Every row in seq order; on text that is not UTF-8, read again tolerantly from
        the last row given, so the verifier names the entry instead of failing to read."""
        last = 0
        try:
            for row in self._rows(select(*_COLUMNS).order_by(audit.c.seq)):
                last = row[0]
                yield row
        except UndecodableTextError:
            yield from self._rows(select(*_COLUMNS).where(audit.c.seq > last)
                                  .order_by(audit.c.seq), tolerant=True)

    # Checkpoints, after commit.

    def maybe_checkpoint(self, now: datetime | None = None) -> bool:
        """Checkpoint the committed head if ``checkpoint_every`` entries were added since the
        last checkpoint, or ``checkpoint_interval`` seconds passed and one was; True if written.
        """
        moment = now if now is not None else datetime.now(UTC)
        return self._checkpoint(moment, lambda last, seq: checkpoint_due(
            last, seq, moment, every=self._every, interval=self._interval))

    def checkpoint(self, now: datetime | None = None) -> bool:
        """Checkpoint the committed head now if it moved since the last checkpoint (as on
        shutdown); True if written."""
        moment = now if now is not None else datetime.now(UTC)
        return self._checkpoint(moment, lambda last, seq: last is None or seq > last.seq,
                                force=True)

    def _checkpoint(self, moment: datetime, due: Callable[[Checkpoint | None, int], bool], *,
                    force: bool = False) -> bool:
        if self.checkpoints is None or not self.checkpoints.can_sign:
            return False
        seq, digest = self.head()
        known = self._known
        if not force and known is not None:
            # A lower bound on the file's last checkpoint: not due by it means not due.
            new = seq - known[0]
            if new < self._every and (new < 1 or (moment - known[1]).total_seconds()
                                      < self._interval):
                return False

        def decide(last: Checkpoint | None) -> bool:
            written_at = last.time() if last is not None else None
            if last is not None and written_at is not None:
                self._known = (last.seq, written_at)
            return due(last, seq)

        written = self.checkpoints.append(seq, digest, now=moment, when=decide)
        if written is not None:
            self._known = (seq, moment)
        return written is not None
