"""The audit log in the store: appends inside the caller's transaction, reads, verification.

:meth:`AuditLog.append` reads the head and inserts the next entry on the caller's connection,
so an alert's processing and its audit entries commit or roll back together. Appends must be
serialised: SQLite's ``BEGIN IMMEDIATE`` (see :mod:`monitoriza.store`) already does it; on
PostgreSQL the chain's transaction-scoped advisory lock (:data:`CHAIN_LOCK_KEY`) does, because
``SELECT ... FOR UPDATE`` of the head alone lets a waiting transaction re-read the old head
after the holder commits. Should two appends still meet, the primary key on ``seq`` turns the
second into an error, never a fork.

On PostgreSQL, alert processing does not take the head: :meth:`AuditLog.enqueue` (through
:class:`QueuedEntries`) queues its entries in ``audit_pending`` in the caller's transaction, and
:meth:`AuditLog.integrate`, which every replica runs after each processing batch and when idle,
links a batch of them into the chain under one lock of the head (docs/audit.md, "The
sequencer").

Reads (:meth:`AuditLog.verify`, :meth:`AuditLog.entries`...) take a consistent snapshot without
blocking writers: on SQLite a plain deferred ``BEGIN`` on the WAL (``BEGIN IMMEDIATE`` would
hold the write lock for the whole scan), elsewhere an ordinary read transaction.

Checkpoints are written by :meth:`AuditLog.maybe_checkpoint`, which the caller runs after its
transaction commits (a checkpoint of an entry that is then rolled back would read as a
truncation) and from time to time, so that ``checkpoint_interval`` is honoured when idle, and
by :meth:`AuditLog.checkpoint` on a graceful stop, so that no entry is left unanchored. Each
checkpoint written to the file is then recorded in the store (``audit_checkpoints``), and
:meth:`AuditLog.verify` fails when the file lacks or contradicts a recorded one: deleting or
shortening the file is no longer a way to make a truncation unseen.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Generator, Iterator, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from sqlalchemy import Connection, Engine, Select, func, insert, select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

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
    Recorded,
    checkpoint_due,
    compare_recorded,
    key_fingerprint,
    load_private_key,
    load_public_key,
    public_key_path,
    write_public_key,
)
from monitoriza.config.schema import Audit as AuditConfig
from monitoriza.pipeline import JournalRow, Processor
from monitoriza.store import (
    LOCK_HOLDS,
    audit,
    audit_checkpoints,
    audit_pending,
    reading,
)

log = logging.getLogger(__name__)

BATCH = 10_000
INTEGRATE_BATCH = 1_000  # pending entries given their place in the chain per lock taken
# The lock of the chain's head on PostgreSQL: held by the sequencer while it integrates a
# batch, and by a direct append until its transaction ends.
CHAIN_LOCK_KEY = int.from_bytes(hashlib.sha256(b"monitoriza.audit.chain").digest()[:8],
                                "big", signed=True)
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


def _open_checkpoints(config: AuditConfig, *, read_only: bool,
                      public_key: str | Path | None = None) -> Checkpoints | None:
    """Signing checkpoints needs the private key (made if missing, unless ``read_only``);
    checking them needs only the public key, so an auditor may have just that, or name
    another (``public_key``) instead of the one next to the private key."""
    private_path = Path(config.signing_key_file)
    if public_key is not None:
        return Checkpoints(config.checkpoint_file, load_public_key(public_key),
                           key_file=public_key)
    if not read_only:
        key = load_private_key(private_path, create=True)
        write_public_key(key, private_path)
        return Checkpoints(config.checkpoint_file, key, key_file=private_path)
    if private_path.exists():
        return Checkpoints(config.checkpoint_file, load_private_key(private_path),
                           key_file=private_path)
    public_path = public_key_path(private_path)
    if public_path.exists():
        return Checkpoints(config.checkpoint_file, load_public_key(public_path),
                           key_file=public_path)
    checkpoint_file = Path(config.checkpoint_file)
    if checkpoint_file.exists() and checkpoint_file.stat().st_size > 0:
        raise CheckpointError(f"cannot check {checkpoint_file}: neither the signing key "
                              f"{private_path} nor its public key {public_path} exists")
    return None


class AuditLog:
    """The hash-chained audit log kept in the store's ``audit`` table."""

    def __init__(self, engine: Engine, *, hmac_key: bytes | None,
                 checkpoints: Checkpoints | None, checkpoint_every: int = 100,
                 checkpoint_interval: float = 5.0,
                 checkpoint_file: str | Path | None = None, sequencer: bool = True) -> None:
        """``checkpoint_file`` names the file when ``checkpoints`` is None because neither it
        nor a key exists: then checkpoints the store records still make verification fail.
        Without either, verification checks the chain alone."""
        self.engine = engine
        self.checkpoints = checkpoints
        self.checkpoint_file = checkpoints.path if checkpoints is not None else (
            Path(checkpoint_file) if checkpoint_file is not None else None)
        self.key_fingerprint = (key_fingerprint(checkpoints.public_key)
                                if checkpoints is not None else None)
        self._key = hmac_key
        # On PostgreSQL, processing queues its entries (enqueue) and the sequencer integrates
        # them (integrate); on SQLite every writer already takes turns, so entries go straight
        # into the chain.
        self.sequenced = sequencer and engine.dialect.name == "postgresql"
        self._every = checkpoint_every
        self._interval = checkpoint_interval
        # The newest checkpoint this process knows of; others may have written newer ones.
        self._known: tuple[int, datetime] | None = None

    @classmethod
    def from_config(cls, engine: Engine, config: AuditConfig, *, read_only: bool = False,
                    public_key: str | Path | None = None) -> AuditLog:
        """The log as ``config`` describes it; ``read_only`` creates no key (for auditors),
        ``public_key`` checks the checkpoints with that key file (and signs none)."""
        key = read_hmac_key(config.hmac_key_file) if config.hmac_key_file else None
        return cls(engine, hmac_key=key,
                   checkpoints=_open_checkpoints(config, read_only=read_only,
                                                 public_key=public_key),
                   checkpoint_every=config.checkpoint_every,
                   checkpoint_interval=config.checkpoint_interval,
                   checkpoint_file=config.checkpoint_file, sequencer=config.sequencer)

    # Writing, inside the caller's transaction.

    def append(self, conn: Connection, kind: str, data: Mapping[str, object], *,
               now: datetime | None = None) -> AuditEntry:
        """Add an entry on ``conn``, in its transaction; it commits or rolls back with it.

        The chain's head stays locked until that transaction ends: for writers that need the
        entry's seq at once (drill events, the kill switch), not for alert processing, which
        uses :meth:`enqueue`.
        """
        ts, data_text = self._entry(kind, data, now)
        return self._append_text(conn, ts, kind, data_text)

    def _append_text(self, conn: Connection, ts: str, kind: str, data_text: str) -> AuditEntry:
        head_seq, head_hash = self._lock_head(conn)
        row = link(head_seq, head_hash, ts, kind, data_text, key=self._key)
        seq, _, _, _, prev, digest = row
        conn.execute(insert(audit).values(seq=seq, ts=ts, kind=kind, data=data_text, prev=prev,
                                          hash=digest))
        return AuditEntry.from_row(row)

    def enqueue(self, conn: Connection, kind: str, data: Mapping[str, object], *,
                now: datetime | None = None) -> AuditEntry | None:
        """Add an entry on ``conn``, in its transaction, without waiting for the chain.

        With the sequencer (PostgreSQL), the entry waits in ``audit_pending`` until
        :meth:`integrate` gives it its place: it commits or rolls back with the caller's
        transaction, like an appended one, and returns None (its seq is not known yet).
        Otherwise this is :meth:`append`.
        """
        if not self.sequenced:
            return self.append(conn, kind, data, now=now)
        self.enqueue_rows(conn, [self.pending_row(kind, data, now)])
        return None

    def pending_row(self, kind: str, data: Mapping[str, object],
                    now: datetime | None = None) -> dict[str, object]:
        """An entry as ``audit_pending`` keeps it; a bad kind fails here."""
        ts, data_text = self._entry(kind, data, now)
        return {"ts": ts, "kind": kind, "data": data_text, "queued_at": time.time()}

    def enqueue_rows(self, conn: Connection, rows: list[dict[str, object]]) -> None:
        """Queue :meth:`pending_row` rows, in order, in one statement (with the sequencer;
        otherwise each is appended to the chain)."""
        if not self.sequenced:
            for row in rows:
                self._append_text(conn, str(row["ts"]), str(row["kind"]), str(row["data"]))
            return
        if rows:
            conn.execute(insert(audit_pending).values(rows))

    @staticmethod
    def _entry(kind: str, data: Mapping[str, object],
               now: datetime | None) -> tuple[str, str]:
        if not 1 <= len(kind) <= MAX_KIND_LENGTH:
            raise AuditError(f"audit kind must be 1 to {MAX_KIND_LENGTH} characters: {kind!r}")
        return format_ts(now if now is not None else datetime.now(UTC)), canonical_data(data)

    def _lock_head(self, conn: Connection) -> tuple[int, str]:
        if conn.dialect.name == "postgresql":
            # Already held if this transaction appended before; the sequencer takes it too.
            conn.execute(select(func.pg_advisory_xact_lock(CHAIN_LOCK_KEY)))
        found = conn.execute(select(audit.c.seq, audit.c.hash).order_by(audit.c.seq.desc())
                             .limit(1).with_for_update()).first()
        return (0, GENESIS) if found is None else (found.seq, found.hash)

    def integrate(self, limit: int = INTEGRATE_BATCH) -> int:
        """Give the committed pending entries their place in the chain, oldest first, up to
        ``limit`` per transaction (one lock of the head per batch, the way a Certificate
        Transparency log integrates its queued leaves); returns how many.

        Any replica may run it; the head's lock makes them take turns, and an entry leaves
        ``audit_pending`` in the transaction that puts it in the chain, so none is integrated
        twice or lost. When it returns, every entry committed before it was called is in the
        chain (unless a concurrent call integrated it first).
        """
        if not self.sequenced:
            return 0
        total = 0
        while True:
            if not self._anything_pending():
                return total
            held_from = None
            try:
                with self.engine.begin() as conn:
                    head_seq, head_hash = self._lock_head(conn)
                    held_from = time.perf_counter()
                    pending = conn.execute(
                        select(audit_pending.c.id, audit_pending.c.ts, audit_pending.c.kind,
                               audit_pending.c.data)
                        .order_by(audit_pending.c.id).limit(limit)).all()
                    rows = []
                    for _, ts, kind, data_text in pending:
                        row = link(head_seq, head_hash, ts, kind, data_text, key=self._key)
                        head_seq, head_hash = row[0], row[5]
                        rows.append(dict(zip(("seq", "ts", "kind", "data", "prev", "hash"),
                                             row, strict=True)))
                    if rows:
                        conn.execute(insert(audit), rows)
                        conn.execute(audit_pending.delete().where(
                            audit_pending.c.id.in_([entry[0] for entry in pending])))
            finally:
                if held_from is not None:
                    LOCK_HOLDS.add("chain", time.perf_counter() - held_from)
            total += len(pending)
            if len(pending) < limit:
                return total

    def _anything_pending(self) -> bool:
        """Without a lock: most calls find nothing, and must not queue on the head for it."""
        with self.engine.connect() as conn:
            return conn.execute(select(audit_pending.c.id).limit(1)).first() is not None

    def pending(self) -> tuple[int, float | None]:
        """How many entries wait for the sequencer, and when the oldest was queued."""
        with reading(self.engine) as conn:
            count, oldest = conn.execute(select(func.count(), func.min(
                audit_pending.c.queued_at))).one()
        return int(count), None if oldest is None else float(oldest)

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
        """Verify every entry, the chain against the signed checkpoints, and the checkpoint
        file against the checkpoints the store recorded.

        The store's record is read first, then the file, then the entries: a checkpoint is
        recorded only after it is in the file, and written only after its entries commit, so
        nothing read earlier can be ahead of what is read later. Problems are reported in that
        order of precedence: a bad entry, a bad line in the file, a recorded checkpoint the
        file lacks or contradicts.
        """
        recorded = self.recorded_checkpoints() if self.checkpoint_file is not None else []
        report = (self.checkpoints.read() if self.checkpoints is not None
                  else CheckpointReport([], None, {}, exists=self.checkpoint_file is not None
                                        and self.checkpoint_file.exists()))
        with contextlib.closing(self._chain_rows()) as rows:
            result = verify_chain(rows, self._key, checkpoints=report.anchors)
        if result.ok and report.problem is not None:
            result = replace(result, ok=False, reason=report.problem)
        if result.ok and self.checkpoint_file is not None:
            mismatch = compare_recorded(recorded, report, self.checkpoint_file,
                                        self.key_fingerprint)
            if mismatch is not None:
                result = replace(result, ok=False, reason=mismatch.reason)
        return replace(result, checkpoints=len(report.checkpoints))

    def recorded_checkpoints(self) -> list[Recorded]:
        """The checkpoints the store recorded as written to this log's file, in seq order."""
        table = audit_checkpoints.c
        stmt = (select(table.seq, table.hash, table.ts, table.key_fingerprint)
                .where(table.checkpoint_file == str(self.checkpoint_file)).order_by(table.seq))
        with reading(self.engine) as conn:
            return [Recorded(int(seq), str(digest), str(ts), str(fingerprint))
                    for seq, digest, ts, fingerprint in conn.execute(stmt)]

    def recorded_elsewhere(self) -> list[tuple[str, int, int]]:
        """``(file, checkpoints, last seq)`` of every other checkpoint file the store records
        (replicas on other hosts, each with its own file), which this log does not check."""
        table = audit_checkpoints.c
        stmt = (select(table.checkpoint_file, func.count(), func.max(table.seq))
                .where(table.checkpoint_file != str(self.checkpoint_file))
                .group_by(table.checkpoint_file).order_by(table.checkpoint_file))
        with reading(self.engine) as conn:
            return [(str(path), int(count), int(last))
                    for path, count, last in conn.execute(stmt)]

    def hashes(self, seqs: list[int]) -> dict[int, str]:
        """The stored hash of each of ``seqs`` that exists."""
        found: dict[int, str] = {}
        with reading(self.engine) as conn:
            for start in range(0, len(seqs), 500):
                chunk = seqs[start:start + 500]
                found.update((int(seq), str(digest)) for seq, digest in conn.execute(
                    select(audit.c.seq, audit.c.hash).where(audit.c.seq.in_(chunk))))
        return found

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
        if written is None:
            return False
        self._known = (seq, moment)
        self._record(written)
        return True

    def _record(self, checkpoint: Checkpoint) -> None:
        """Record in the store a checkpoint now in the file; a failure only loses the record
        (verification asks the file to hold what the store records, not the reverse)."""
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(audit_checkpoints).values(
                    checkpoint_file=str(self.checkpoint_file), seq=checkpoint.seq,
                    hash=checkpoint.hash, ts=checkpoint.ts,
                    key_fingerprint=self.key_fingerprint))
        except IntegrityError:
            pass  # already recorded (the same head checkpointed again)
        except SQLAlchemyError:
            log.warning("audit checkpoint at seq %d is in %s but could not be recorded in the "
                        "store", checkpoint.seq, self.checkpoint_file, exc_info=True)


class QueuedEntries:
    """An :class:`~monitoriza.audit.appender.AuditAppender` that queues entries for the
    sequencer (:meth:`AuditLog.enqueue`) instead of taking the chain's head: for alert
    processing, whose transactions must not wait for each other's audit entries.

    Inside :meth:`collecting`, entries are kept until the block ends and then queued in one
    statement (an alert's processing writes two to four), or dropped if it fails.
    """

    def __init__(self, log: AuditLog) -> None:
        self.log = log
        self._collected = threading.local()

    def append(self, conn: Connection, kind: str, data: Mapping[str, object]) -> object:
        collected: list[dict[str, object]] | None = getattr(self._collected, "rows", None)
        if collected is None:
            return self.log.enqueue(conn, kind, data)
        collected.append(self.log.pending_row(kind, data))
        return None

    @contextlib.contextmanager
    def collecting(self, conn: Connection) -> Iterator[None]:
        self._collected.rows = []
        try:
            yield
            rows = self._collected.rows
        finally:
            self._collected.rows = None
        self.log.enqueue_rows(conn, rows)


def collecting_processor(processor: Processor, queued: QueuedEntries) -> Processor:
    """``processor``, with each row's audit entries queued in one statement."""

    def process(conn: Connection, row: JournalRow) -> str:
        with queued.collecting(conn):
            return processor(conn, row)

    return process
