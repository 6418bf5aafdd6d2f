"""The responder's durable state, in SQL through SQLAlchemy Core.

SQLite (the default) runs in WAL mode with ``synchronous=FULL``, so a commit survives a power
cut, and every write transaction starts with ``BEGIN IMMEDIATE``, so concurrent writers (threads
or responder processes) queue on the database lock instead of failing half-way. PostgreSQL is
chosen by URL; the schema is the same, and so is the behaviour: a :func:`writing` transaction
first takes a transaction-scoped advisory lock, so those that read, decide and write (the
journal worker, the healer, audit appends) still take turns, as on SQLite, in every process
sharing the database. Writes that are safe side by side (the webhook's ``ON CONFLICT DO
NOTHING`` inserts, ``SKIP LOCKED`` claims) pass ``serialized=False`` and run concurrently. On
both, ``timeout`` bounds how long a write waits for a lock (SQLite's ``busy_timeout``,
PostgreSQL's ``lock_timeout``).
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    Engine,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    func,
    inspect,
    make_url,
    select,
    text,
)

from monitoriza.exceptions import MonitorizaError

metadata = MetaData()


def _string(length: int) -> String:
    """``VARCHAR(length)`` on SQLite, which does not enforce the length; ``TEXT`` on
    PostgreSQL, which would, so that a long value is stored on both rather than refused by one
    (the webhook would answer 503 for ever, or a journal row would never be processed)."""
    return String(length).with_variant(Text(), "postgresql")


# One row per alert of every accepted notification, keyed as Alertmanager identifies it. A
# repeated, retried or HA-duplicated notification maps to the same keys and adds no rows.
journal = Table(
    "journal", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("receiver", _string(255), nullable=False),
    Column("group_key", Text, nullable=False),
    Column("fingerprint", _string(64), nullable=False),
    Column("status", _string(16), nullable=False),
    Column("starts_at", _string(64), nullable=False),
    Column("alert", Text, nullable=False),  # the alert as JSON, with its notification's context
    Column("received_at", Float, nullable=False),
    Column("state", _string(16), nullable=False, server_default="pending"),
    Column("lease_owner", _string(128)),
    Column("lease_expires", Float),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("processed_at", Float),
    Column("outcome", _string(64)),
    # Failed processing: the row is not claimed again before ``next_attempt_at``; after
    # ``responder.max_attempts`` attempts its state becomes ``dead`` with ``last_error`` kept.
    Column("next_attempt_at", Float),
    Column("last_error", Text),
    # On PostgreSQL a btree entry holds at most ~2.7 kB, and receiver and groupKey may each be
    # 4 kB long: there the key indexes their MD5s instead (journal_alert_key_md5, below).
    UniqueConstraint("receiver", "group_key", "fingerprint", "status", "starts_at",
                     name="journal_alert_key").ddl_if(dialect="sqlite"),
)
Index("journal_alert_key_md5", func.md5(journal.c.receiver), func.md5(journal.c.group_key),
      journal.c.fingerprint, journal.c.status, journal.c.starts_at,
      unique=True).ddl_if(dialect="postgresql")
Index("journal_state_id", journal.c.state, journal.c.id)

# What the responder knows of each alert occurrence (an alert is identified by its fingerprint
# and the start of this firing). A resolved occurrence is never reopened by a late firing.
alert_state = Table(
    "alert_state", metadata,
    Column("fingerprint", _string(64), primary_key=True),
    Column("starts_at", _string(64), primary_key=True),
    Column("status", _string(16), nullable=False),
    Column("updated_at", Float, nullable=False),
)

# Every accepted notification, for truncatedAlerts and the intake record.
notifications = Table(
    "notifications", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("received_at", Float, nullable=False),
    Column("receiver", _string(255), nullable=False),
    Column("group_key", Text, nullable=False),
    Column("status", _string(16), nullable=False),
    Column("alerts", Integer, nullable=False),
    Column("new_alerts", Integer, nullable=False),
    Column("truncated_alerts", Integer, nullable=False),
)

# The hash-chained audit log (monitoriza.audit): append-only, one linear chain.
audit = Table(
    "audit", metadata,
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("ts", _string(40), nullable=False),
    Column("kind", _string(64), nullable=False),
    Column("data", Text, nullable=False),  # canonical JSON
    Column("prev", _string(64), nullable=False),
    Column("hash", _string(64), nullable=False),
)

# Audit entries written by alert processing on PostgreSQL, waiting for the sequencer
# (monitoriza.audit.log.AuditLog.integrate) to give them their place in the chain: processing
# at many sites at once then never waits for the chain, only the sequencer does, once per batch.
audit_pending = Table(
    "audit_pending", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("ts", _string(40), nullable=False),
    Column("kind", _string(64), nullable=False),
    Column("data", Text, nullable=False),  # canonical JSON
    Column("queued_at", Float, nullable=False),
)

# The schema version of the store: one row per migration applied (see MIGRATIONS).
schema_migrations = Table(
    "schema_migrations", metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("name", _string(128), nullable=False),
    Column("applied_at", Float, nullable=False),
)


# What was checkpointed, as the store remembers it: the checkpoint file is kept outside the
# store, and a file deleted or shortened behind the responder's back must not verify. Keyed
# by the file as configured (``audit.checkpoint_file``), so that replicas on separate hosts,
# each with its own file, are each held to what they wrote.
audit_checkpoints = Table(
    "audit_checkpoints", metadata,
    Column("checkpoint_file", _string(1024), primary_key=True),
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("hash", _string(64), nullable=False),
    Column("ts", _string(40), nullable=False),
    Column("key_fingerprint", _string(128), nullable=False),
)


# Incidents: alerts correlated over the dependency graph, with their root cause.
incidents = Table(
    "incidents", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("state", _string(16), nullable=False),  # open, healing, resolved
    Column("opened_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("resolved_at", Float),
    Column("root_service", _string(255)),
    Column("root_component", _string(255)),
    Column("root_kind", _string(16)),
    Column("reasoning", Text, nullable=False, server_default="[]"),
    Column("risk", _string(16), nullable=False),
    Column("signature", _string(512), nullable=False),
    # Stores of earlier releases kept every alert here as JSON; alerts are now rows of
    # ``incident_alerts`` (writing the whole list per alert made an alert storm quadratic).
    Column("alerts", Text, nullable=False, server_default="{}"),
    # The fire drill whose window was open, over some of its services, when it opened
    # (monitoriza.healing.drill_windows); nullable: added in place to earlier stores.
    Column("drill_id", _string(64)),
    # The site (condominium) it happened at (monitoriza.healing.sites); NULL in rows of
    # stores older than sites, which belong to the configured default site.
    Column("site", _string(255)),
)
Index("incidents_state", incidents.c.state)
Index("incidents_drill_id", incidents.c.drill_id, incidents.c.id)
# Incidents resolved within the recovery cool-down are read for every alert.
Index("incidents_state_resolved_at", incidents.c.state, incidents.c.resolved_at)

# Each alert of an incident: the latest event of one fingerprint, one row per alert. ``kind``
# is the SHA-256 of the alert's kind (service, alertname, component, severity; see
# monitoriza.healing.repository): label values may be 64 kB, more than a PostgreSQL btree
# entry holds, so the indexes name kinds by hash. They answer in one index probe what a
# kind's tally cannot keep: the earliest onset and the latest receipt left when its extreme
# alert resolves; and which open incident holds a fingerprint.
incident_alerts = Table(
    "incident_alerts", metadata,
    Column("incident_id", Integer, primary_key=True, autoincrement=False),
    Column("fingerprint", _string(64), primary_key=True),
    Column("service", _string(255)),
    Column("alertname", _string(255), nullable=False),
    Column("component", _string(255)),
    Column("severity", _string(16)),
    Column("kind", _string(64)),  # always written (nullable: added in place to 777f52c's table)
    Column("status", _string(16), nullable=False),
    Column("starts_at", Float, nullable=False),
    Column("received_at", Float, nullable=False),
    Column("event", Text, nullable=False),  # the AlertEvent as JSON
)
Index("incident_alerts_fingerprint", incident_alerts.c.fingerprint, incident_alerts.c.incident_id)
Index("incident_alerts_onset", incident_alerts.c.incident_id, incident_alerts.c.status,
      incident_alerts.c.kind, incident_alerts.c.starts_at)
Index("incident_alerts_receipt", incident_alerts.c.incident_id, incident_alerts.c.status,
      incident_alerts.c.kind, incident_alerts.c.received_at)

# What correlation decides on, per incident: a tally per kind of alert and status (count,
# earliest onset, latest receipt) as JSON, bounded by the kinds, whatever the alerts' number.
incident_summaries = Table(
    "incident_summaries", metadata,
    Column("incident_id", Integer, primary_key=True, autoincrement=False),
    Column("firing", Integer, nullable=False),
    Column("resolved", Integer, nullable=False),
    Column("tallies", Text, nullable=False),
)

# Healing actions: decided in the journal transaction, executed by the healer at most once.
actions = Table(
    "actions", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("incident_id", Integer, nullable=False),
    Column("service", _string(255), nullable=False),
    Column("playbook", _string(255), nullable=False),
    Column("alert", Text, nullable=False),  # JSON of the alert that triggered it
    Column("state", _string(16), nullable=False, server_default="pending"),
    Column("lease_owner", _string(128)),
    Column("lease_expires", Float),
    Column("created_at", Float, nullable=False),
    Column("started_at", Float),
    Column("finished_at", Float),
    Column("outcome", _string(16)),  # success, failure, dry_run, blocked, skipped
    Column("detail", Text),
    Column("site", _string(255)),  # the target's site; NULL: the default site (older rows)
)
Index("actions_state_id", actions.c.state, actions.c.id)

# Breaker and budget states, as JSON per key, shared by every worker of the store.
healing_state = Table(
    "healing_state", metadata,
    Column("key", _string(512), primary_key=True),
    Column("value", Text, nullable=False),
    Column("updated_at", Float, nullable=False),
)

# Operational memory: outcomes per (site, alert signature, service, action). A new table
# rather than a ``site`` column on ``memory``: the site belongs in the primary key, which
# adding a column in place cannot change. Rows of ``memory`` (stores older than sites) are
# read as the default site's and no longer written.
site_memory = Table(
    "site_memory", metadata,
    Column("site", _string(255), primary_key=True),
    Column("signature", _string(512), primary_key=True),
    Column("service", _string(255), primary_key=True),
    Column("action", _string(255), primary_key=True),
    Column("successes", Integer, nullable=False, server_default="0"),
    Column("failures", Integer, nullable=False, server_default="0"),
    Column("updated_at", Float, nullable=False),
)
# Pooled evidence is read across sites by (signature, service).
Index("site_memory_signature", site_memory.c.signature, site_memory.c.service)

# Operational memory of stores older than sites: outcomes per (alert signature, service,
# action), all of the default site. Read, never written.
memory = Table(
    "memory", metadata,
    Column("signature", _string(512), primary_key=True),
    Column("service", _string(255), primary_key=True),
    Column("action", _string(255), primary_key=True),
    Column("successes", Integer, nullable=False, server_default="0"),
    Column("failures", Integer, nullable=False, server_default="0"),
    Column("updated_at", Float, nullable=False),
)

# Fire-drill events as the drill reported them (``POST /api/v1/drills/events``), one row per
# client-chosen event id, so that a retried POST appends nothing and answers the same.
drill_events = Table(
    "drill_events", metadata,
    Column("event_id", _string(256), primary_key=True),
    Column("drill_id", _string(64), nullable=False),
    Column("event", _string(16), nullable=False),
    Column("received_at", Float, nullable=False),
    Column("audit_seq", Integer, nullable=False),
    Column("document", Text, nullable=False),  # the stored event as answered, JSON
)

# Drill windows: opened by a drill's ``start`` event (keyed by its event id), closed by its
# ``end`` or ``abort``, or by ``expires_at`` passing; incidents opened inside one over its
# services are the drill's.
drill_windows = Table(
    "drill_windows", metadata,
    Column("event_id", _string(256), primary_key=True),
    Column("drill_id", _string(64), nullable=False),
    Column("experiment", _string(200), nullable=False),
    Column("services", Text, nullable=False),  # JSON list of service names
    Column("started_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("ended_at", Float),
    Column("ended_by", _string(16)),  # end or abort
    # The site the drill runs at; NULL: every site (and windows of stores older than sites).
    Column("site", _string(255)),
)
Index("drill_windows_expires_at", drill_windows.c.expires_at)

settings = Table(
    "settings", metadata,
    Column("key", _string(128), primary_key=True),
    Column("value", Text, nullable=False),
    Column("updated_at", Float, nullable=False),
)


def _sqlite_pragmas(timeout: float) -> Any:
    def on_connect(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, decide when transactions begin (_begin_immediate).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout={_ms(timeout)}")
        _enable_wal(cursor, timeout)
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    return on_connect


def _enable_wal(cursor: sqlite3.Cursor, timeout: float) -> None:
    """Switch to WAL, retrying while another connection holds the lock: turning WAL on in
    a new database can answer "database is locked" at once, without the busy handler (seen
    with four replicas opening an empty store together)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _begin_immediate(connection: Any) -> None:
    # Readers (see ``reading``) must not queue behind writers: WAL lets them read at once.
    if connection.get_execution_options().get("readonly"):
        connection.exec_driver_sql("BEGIN")
    else:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


_WRITE_LOCKS: weakref.WeakKeyDictionary[Engine, threading.Lock] = weakref.WeakKeyDictionary()

# PostgreSQL's stand-in for BEGIN IMMEDIATE: one advisory lock key (a bigint) for every process
# of every version; it is the key audit appends have always locked.
WRITE_LOCK_KEY = int.from_bytes(hashlib.sha256(b"monitoriza.audit.append").digest()[:8],
                                "big", signed=True)


def site_lock_key(site: str) -> int:
    """The advisory lock key (a bigint) of one site's processing."""
    digest = hashlib.sha256(b"monitoriza.site:" + site.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class LockHolds:
    """How long, and how often, this process held each kind of store lock: ``cluster`` (every
    writer waits), ``site`` (writers of the same site wait), ``chain`` (the audit sequencer).
    It is what replicas pay for each other, exported as
    ``monitoriza_store_lock_hold_seconds_total``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: dict[str, tuple[int, float]] = {}

    def add(self, kind: str, seconds: float) -> None:
        with self._lock:
            count, total = self._held.get(kind, (0, 0.0))
            self._held[kind] = (count + 1, total + seconds)

    def snapshot(self) -> dict[str, tuple[int, float]]:
        """``kind -> (times held, seconds held)``."""
        with self._lock:
            return dict(self._held)


LOCK_HOLDS = LockHolds()


def serialize(conn: Connection) -> None:
    """Make ``conn``'s transaction wait for, then exclude, every other serialized writer until
    it ends; a no-op on SQLite, where ``BEGIN IMMEDIATE`` already did it. Taking it again in
    the same transaction is harmless."""
    if conn.dialect.name == "postgresql":
        conn.execute(select(func.pg_advisory_xact_lock(WRITE_LOCK_KEY)))


def lock_sites(conn: Connection, sites: Collection[str]) -> None:
    """Make ``conn``'s transaction exclude every other writer of ``sites``, and every
    serialized writer, but not writers of other sites; a no-op on SQLite.

    The cluster lock is taken shared, so a :func:`serialize` writer still excludes everyone;
    the sites' locks are taken in key order, in one round trip, so that two transactions
    locking overlapping sites cannot deadlock. Such a transaction must not :func:`serialize`
    (upgrading the shared lock could deadlock with another site's writer).
    """
    if conn.dialect.name != "postgresql":
        return
    keys = sorted({site_lock_key(site) for site in sites})
    conn.execute(text(
        "SELECT pg_advisory_xact_lock_shared(:cluster), "
        "(SELECT count(pg_advisory_xact_lock(key)) FROM unnest(CAST(:keys AS bigint[])) "
        "AS key)"), {"cluster": WRITE_LOCK_KEY, "keys": keys})


@contextmanager
def writing(engine: Engine, *, serialized: bool = True,
            sites: Collection[str] | None = None) -> Iterator[Connection]:
    """A write transaction; on SQLite, threads of this process take turns on a Python lock.

    SQLite's own busy handler makes a waiting writer sleep in growing steps (up to 100 ms)
    and retry, so with many threads contending a commit can wait hundreds of milliseconds
    after the lock was freed; a Python lock hands it over at once. Writers in other processes
    still meet SQLite's lock and its timeout.

    On PostgreSQL the transaction starts with :func:`serialize`, or with :func:`lock_sites`
    when ``sites`` are given (a writer that only reads and writes those sites' state), or with
    no lock when ``serialized`` is False: only for writes that stay correct when they
    interleave with any other.
    """
    lock = _WRITE_LOCKS.get(engine)
    if lock is None:
        kind = "site" if sites is not None else "cluster" if serialized else None
        held_from = None
        try:
            with engine.begin() as conn:
                if sites is not None:
                    lock_sites(conn, sites)
                elif serialized:
                    serialize(conn)
                held_from = time.perf_counter()
                yield conn
        finally:
            if kind is not None and held_from is not None:
                LOCK_HOLDS.add(kind, time.perf_counter() - held_from)
        return
    with lock:
        held_from = time.perf_counter()
        try:
            with engine.begin() as conn:
                yield conn
        finally:
            LOCK_HOLDS.add("cluster", time.perf_counter() - held_from)


@contextmanager
def reading(engine: Engine) -> Iterator[Connection]:
    """A connection for reads only: on SQLite it never waits for the write lock."""
    with engine.connect() as conn:
        yield conn.execution_options(readonly=True)


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


def create_store(url: str, timeout: float = 5.0) -> Engine:
    """An engine for ``url`` with the schema created; SQLite tuned for durability.

    ``timeout`` bounds how long a write waits for the lock held by another writer.
    """
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False,
                                                  "timeout": timeout})
        event.listen(engine, "connect", _sqlite_pragmas(timeout))
        event.listen(engine, "begin", _begin_immediate)
        _WRITE_LOCKS[engine] = threading.Lock()
    else:
        # psycopg 3 is the driver Monitoriza installs; SQLAlchemy's default is psycopg2.
        if url.startswith(("postgresql://", "postgres://")):
            url = "postgresql+psycopg://" + url.split("://", 1)[1]
        # lock_timeout is SQLite's busy_timeout: a write waiting longer for a lock fails
        # (the webhook answers 503) instead of hanging (the server's default is no limit).
        # Options the URL sets itself (?options=...) are kept, after ours.
        given = make_url(url).query.get("options", "")
        options = " ".join([f"-c lock_timeout={_ms(timeout)}",
                            *([given] if isinstance(given, str) else given)]).strip()
        engine = create_engine(url, pool_pre_ping=True,
                               connect_args={"connect_timeout": max(1, round(timeout)),
                                             "options": options})
    with engine.begin() as conn:
        serialize(conn)  # replicas starting together: one creates the tables, the rest see them
        migrate(conn)
    return engine


class StoreVersionError(MonitorizaError):
    """The store was written by a newer release, whose schema this one does not know."""


@dataclass(frozen=True, slots=True)
class Migration:
    """One step of the store's schema; ``apply`` runs inside the upgrade's transaction."""

    version: int
    name: str
    apply: Callable[[Connection], object]


def _earlier_releases(conn: Connection) -> None:
    add_missing_columns(conn)
    add_missing_indexes(conn)


def _nothing(_conn: Connection) -> None:
    """A step whose table ``create_all`` makes (a new table needs no change to old data)."""


# Append only: a released step is never edited, and a new column of an existing table
# needs a step of its own (tests/test_store_upgrade.py compares a migrated store with a
# new one, column by column and index by index).
MIGRATIONS = (
    Migration(1, "columns and indexes that stores of releases before versions lack",
              _earlier_releases),
    Migration(2, "audit entries wait in audit_pending for the sequencer", _nothing),
)
SCHEMA_VERSION = MIGRATIONS[-1].version


def migrate(conn: Connection) -> list[Migration]:
    """Bring the store on ``conn`` to :data:`SCHEMA_VERSION`; returns the steps applied.

    A new store gets the current schema from ``create_all`` and is recorded at the current
    version; a store of an earlier release (without ``schema_migrations``: version 0) gets
    the tables it lacks, then each step it has not had, in order, in this transaction.
    """
    tables = set(inspect(conn).get_table_names())
    fresh = "journal" not in tables
    metadata.create_all(conn)
    applied = {int(version) for (version,) in conn.execute(select(schema_migrations.c.version))}
    newest = max(applied, default=0)
    if newest > SCHEMA_VERSION:
        raise StoreVersionError(
            f"the store has schema version {newest}, newer than this release's "
            f"{SCHEMA_VERSION}: run the release that wrote it, or a newer one")
    steps = [step for step in MIGRATIONS if step.version not in applied]
    now = time.time()
    for step in steps:
        if not fresh:
            step.apply(conn)
        conn.execute(schema_migrations.insert().values(version=step.version, name=step.name,
                                                       applied_at=now))
    return [] if fresh else steps


def schema_version(conn: Connection) -> int:
    """The newest migration the store has had (0: a store of a release before versions)."""
    return int(conn.execute(select(func.coalesce(func.max(schema_migrations.c.version), 0)))
               .scalar_one())


def add_missing_columns(conn: Connection) -> list[str]:
    """Add the nullable columns that a store of an earlier release lacks; returns them as
    ``table.column``. ``create_all`` makes missing tables but never changes existing ones."""
    existing = {table: {column["name"] for column in inspect(conn).get_columns(table)}
                for table in inspect(conn).get_table_names()}
    added = []
    for table in metadata.sorted_tables:
        for column in table.columns:
            if table.name in existing and column.name not in existing[table.name]:
                if not column.nullable:
                    raise RuntimeError(f"store upgrade: {table.name}.{column.name} is "
                                       "required and cannot be added in place")
                kind = column.type.compile(dialect=conn.dialect)
                conn.exec_driver_sql(
                    f'ALTER TABLE {table.name} ADD COLUMN "{column.name}" {kind}')
                added.append(f"{table.name}.{column.name}")
    return added


def add_missing_indexes(conn: Connection) -> list[str]:
    """Create the indexes that tables of a store of an earlier release lack; returns their
    names (``create_all`` makes a new table's indexes, never an existing table's). An index
    meant for the other dialect (``ddl_if``) is skipped by SQLAlchemy and not reported."""

    def existing() -> dict[str, set[str]]:
        return {table: {str(index["name"]) for index in inspect(conn).get_indexes(table)}
                for table in inspect(conn).get_table_names()}

    before = existing()
    for table in metadata.sorted_tables:
        for index in table.indexes:
            if table.name in before and index.name not in before[table.name]:
                index.create(conn, checkfirst=True)
    after = existing()
    return sorted(name for table, names in after.items()
                  for name in names - before.get(table, names))
