"""PostgreSQL probe: ``SELECT 1`` for liveness, then client connections against ``max_connections``.

Like the Redis probe, it opens a fresh connection on every run, so that a restart, a full
server or a changed password shows up on the next run rather than being hidden by a pool.

A run is a success as soon as ``SELECT 1`` answers. The statistics query only adds
measurements: if it is refused (a restricted role, a proxy that does not expose the catalog)
the run stays a success and says so in its message. Turning the answer into measurements is a
pure function (:func:`parse_stats`), tested without a server.

Time limits: libpq's ``connect_timeout`` is in whole seconds and libpq (and psycopg, which
enforces it itself) raises anything below 2 to 2 seconds. A probe with a sub-second timeout
against a target that accepts TCP but never answers therefore gives up after about 2 seconds,
not at its deadline; the scheduler's watchdog still reports such a run as timed out on time.
The timeout also applies per address: a host name resolving to several addresses (``localhost``
to ``::1`` and ``127.0.0.1``) that all hang can take that long for each of them.
Once connected, each statement is bounded on the server side by ``statement_timeout`` (set at
connection time to the whole time left); a server frozen altogether after accepting the
connection is beyond it, and only the scheduler's watchdog catches that run.
"""

from __future__ import annotations

import functools
import math
import re
import time

import psycopg
from psycopg import errors as pg_errors
from psycopg.conninfo import conninfo_to_dict

from monitoriza.config.schema import PostgresProbe
from monitoriza.exporter.probes.base import Deadline, Measurement, ProbeOutcome, ProbeRunner
from monitoriza.exporter.probes.common import (
    as_number,
    password_file_failure,
    read_password,
    redact,
)

# Only sessions of clients use connection slots; pg_stat_activity also lists the checkpointer,
# WAL writer, autovacuum launcher and other background processes, which do not.
# current_setting('max_connections') is SHOW max_connections, in the same round trip.
STATS_QUERY = (
    "SELECT (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'),"
    " current_setting('max_connections')"
)

# How errors map to failure reasons: the first rule whose exception types or message patterns
# match wins. Failures to connect carry no SQLSTATE (libpq reports them as text), so for those
# the message is all there is to go on.
_RULES: tuple[tuple[str, tuple[type[psycopg.Error], ...], re.Pattern[str] | None], ...] = (
    (
        "timeout",
        (pg_errors.ConnectionTimeout, pg_errors.QueryCanceled),
        None,  # by type only, and before the message rules
    ),
    (
        "auth",
        (pg_errors.InvalidPassword, pg_errors.InvalidAuthorizationSpecification),
        re.compile(
            r"authentication failed"  # password, scram-sha-256, peer, ident, ...
            r"|no password supplied"
            r"|no pg_hba\.conf entry"
            r"|pg_hba\.conf rejects"
            r"|permission denied for database"
            r'|role ".*" does not exist',
            re.IGNORECASE,
        ),
    ),
    (
        # The server answered: it is up but not ready, which a restart would not fix.
        "unhealthy",
        (pg_errors.CannotConnectNow,),
        re.compile(
            r"the database system is (starting up|shutting down|in recovery mode"
            r"|not yet accepting connections|not accepting connections)",
            re.IGNORECASE,
        ),
    ),
    (
        "timeout",
        (),
        re.compile(r"timeout expired|connection timed out", re.IGNORECASE),
    ),
    (
        "connection",
        (pg_errors.ConnectionException, pg_errors.TooManyConnections),
        re.compile(
            r"connection refused|could not connect"
            r"|could not translate host name|failed to resolve host"
            r"|connection reset|server closed the connection|no route to host"
            r"|network is unreachable|could not receive data|could not send data"
            r"|connection is lost|ssl syscall error"
            r"|too many clients|remaining connection slots are reserved",
            re.IGNORECASE,
        ),
    ),
)


def create(spec: PostgresProbe) -> ProbeRunner:
    """Return the runner for ``spec``; the probe keeps no state between runs."""
    return functools.partial(run, spec)


def run(spec: PostgresProbe, deadline: Deadline) -> ProbeOutcome:
    """Connect, ``SELECT 1``, then count connections; never raises for the target's fault."""
    name = spec.name or spec.kind  # the loader always fills ``name``; this keeps mypy honest
    try:
        password = read_password(spec.password_file)
    except (OSError, UnicodeDecodeError) as exc:
        return password_file_failure(spec.password_file, exc)

    try:
        return _probe(spec, name, password, deadline)
    except psycopg.Error as exc:
        return ProbeOutcome.failed(classify_error(exc), f"{redact(spec.url)}: {describe(exc)}")


def _probe(
    spec: PostgresProbe, name: str, password: str | None, deadline: Deadline
) -> ProbeOutcome:
    """The I/O of one run; psycopg errors propagate to :func:`run`, which classifies them."""
    remaining = deadline.remaining()
    started = time.monotonic()
    # See the module docstring: whole seconds, rounded up so we never give up early; libpq
    # makes anything below 2 s into 2 s.
    connect_timeout = max(1, math.ceil(remaining))
    statement_ms = max(1, int(remaining * 1000))
    existing_options = str(conninfo_to_dict(spec.url).get("options") or "")
    options = f"{existing_options} -c statement_timeout={statement_ms}".strip()
    # ``None`` keyword values are dropped by psycopg, so the URL's own password stays in force
    # when there is no password_file.
    with psycopg.connect(
        spec.url,
        autocommit=True,  # no transaction left "idle in transaction" by a monitoring query
        connect_timeout=connect_timeout,
        options=options,
        password=password,
    ) as conn:
        conn.execute("SELECT 1").fetchone()
        latency = time.monotonic() - started
        if deadline.expired():
            return ProbeOutcome.failed(
                "timeout", "SELECT 1 answered after the deadline", latency_seconds=latency
            )
        try:
            row = conn.execute(STATS_QUERY).fetchone()
        except (pg_errors.ProgrammingError, pg_errors.InsufficientPrivilege) as exc:
            return ProbeOutcome(
                success=True,
                message=f"SELECT 1 answered; statistics refused: {describe(exc)}",
                latency_seconds=latency,
            )
    connections, max_connections = row if row is not None else (None, None)
    measurements, utilization = parse_stats(name, connections, max_connections)
    return ProbeOutcome(
        success=True,
        latency_seconds=latency,
        utilization=utilization,
        measurements=measurements,
    )




def classify_error(exc: psycopg.Error) -> str:
    """Map a psycopg exception to a failure reason from ``FAILURE_REASONS``."""
    message = str(exc)
    for reason, types, pattern in _RULES:
        if isinstance(exc, types) or (pattern is not None and pattern.search(message)):
            return reason
    return "error"


def describe(exc: psycopg.Error) -> str:
    """The exception's message on one line (libpq adds hints on indented extra lines)."""
    return " ".join(str(exc).split()) or type(exc).__name__




def parse_stats(
    probe: str, connections: object, max_connections: object
) -> tuple[tuple[Measurement, ...], dict[str, float]]:
    """Turn the statistics row into measurements and the ``connections`` utilization ratio.

    ``max_connections`` comes back as text (``current_setting`` and ``SHOW`` both return
    text). A value that is missing or not a number is skipped rather than reported as zero.
    """
    labels = (("probe", probe),)
    used = as_number(connections)
    limit = as_number(max_connections)
    measurements: list[Measurement] = []
    if used is not None:
        measurements.append(Measurement("monitoriza_postgres_connections", labels, used))
    if limit is not None:
        measurements.append(Measurement("monitoriza_postgres_max_connections", labels, limit))
    utilization: dict[str, float] = {}
    if used is not None and limit is not None and limit > 0:
        # Client backends cannot exceed max_connections; the cap only guards odd servers.
        utilization["connections"] = min(used / limit, 1.0)
    return tuple(measurements), utilization
