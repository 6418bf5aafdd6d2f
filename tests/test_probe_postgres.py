"""The PostgreSQL probe, on literal data and against a real PostgreSQL server."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import psycopg
import pytest
from psycopg import errors as pg_errors

from monitoriza.config.schema import PostgresProbe
from monitoriza.exporter.probes import create_runner
from monitoriza.exporter.probes import postgres as postgres_probe
from monitoriza.exporter.probes.base import Deadline
from monitoriza.exporter.probes.common import redact
from monitoriza.exporter.probes.postgres import classify_error, parse_stats, run
from tests.support.binaries import wait_until
from tests.support.exposition import measurement_values
from tests.support.postgres_server import PostgresServer

PROBE = (("probe", "db"),)
# libpq (and psycopg) never wait less than 2 s for a connection.
LIBPQ_MIN_CONNECT_TIMEOUT = 2.0


def spec(url: str, password_file: Path | None = None) -> PostgresProbe:
    return PostgresProbe(
        kind="postgres",
        name="db",
        url=url,
        password_file=str(password_file) if password_file is not None else None,
    )


def client_connections(server: PostgresServer) -> int:
    """Client sessions open on the server, not counting the one asking."""
    with server.connect() as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
        ).fetchone()
    assert row is not None
    return int(row[0])


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts TCP connections (the kernel's backlog) but never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield listener.getsockname()[1]


class TestParseStats:
    """Turning the statistics row into measurements and utilization."""

    def test_reports_connections_and_limit(self) -> None:
        """Both samples are reported with the probe label; max_connections arrives as text."""
        measurements, utilization = parse_stats("db", 25, "100")
        assert {(m.metric, m.labels, m.value) for m in measurements} == {
            ("monitoriza_postgres_connections", PROBE, 25.0),
            ("monitoriza_postgres_max_connections", PROBE, 100.0),
        }
        assert utilization == {"connections": 0.25}

    def test_bad_limit_skips_it_and_the_ratio(self) -> None:
        """A limit that is missing, zero or not a number gives no ratio, never a false one."""
        for limit in (None, "0", "lots"):
            measurements, utilization = parse_stats("db", 5, limit)
            assert "monitoriza_postgres_connections" in {m.metric for m in measurements}
            assert utilization == {}

    def test_utilization_is_capped_at_one(self) -> None:
        """The ratio stays within 0..1 whatever the server says."""
        _, utilization = parse_stats("db", 120, "100")
        assert utilization == {"connections": 1.0}


class TestClassifyError:
    """Mapping psycopg exceptions (mostly libpq message text) to failure reasons."""

    @pytest.mark.parametrize(
        ("exc", "reason"),
        [
            (
                psycopg.OperationalError(
                    'connection failed: connection to server at "127.0.0.1", port 5432 failed:'
                    ' FATAL:  password authentication failed for user "app"'
                ),
                "auth",
            ),
            (
                psycopg.OperationalError("connection failed: fe_sendauth: no password supplied"),
                "auth",
            ),
            (
                psycopg.OperationalError('FATAL:  role "nobody" does not exist'),
                "auth",
            ),
            (
                psycopg.OperationalError(
                    'connection failed: connection to server at "127.0.0.1", port 1 failed:'
                    " Connection refused\n\tIs the server running on that host?"
                ),
                "connection",
            ),
            (
                psycopg.OperationalError('could not translate host name "db" to address'),
                "connection",
            ),
            (
                psycopg.OperationalError(
                    "failed to resolve host 'db.invalid': [Errno -2] Name or service not known"
                ),
                "connection",
            ),
            (psycopg.OperationalError("FATAL:  sorry, too many clients already"), "connection"),
            (pg_errors.ConnectionTimeout("connection timeout expired"), "timeout"),
            (
                pg_errors.QueryCanceled("canceling statement due to statement timeout"),
                "timeout",
            ),
            (
                psycopg.OperationalError("FATAL:  the database system is starting up"),
                "unhealthy",
            ),
            (psycopg.OperationalError('FATAL:  database "nope" does not exist'), "error"),
            (pg_errors.UndefinedTable('relation "x" does not exist'), "error"),
        ],
    )
    def test_reason(self, exc: psycopg.Error, reason: str) -> None:
        """Each kind of error gets its own reason; anything unknown is ``error``."""
        assert classify_error(exc) == reason


class TestRedact:
    """Keeping passwords in URLs out of messages."""

    def test_password_is_masked(self) -> None:
        """A password in the URL is replaced, the rest is kept."""
        assert redact("postgresql://app:s3cret@db:5433/x") == "postgresql://app:***@db:5433/x"

    def test_url_without_password_is_unchanged(self) -> None:
        """Nothing to hide, nothing changed."""
        assert redact("postgresql://app@db/x") == "postgresql://app@db/x"


class TestAgainstServer:
    """Runs against a real PostgreSQL server."""

    def test_success_reports_connections_and_limit(self, postgres_server: PostgresServer) -> None:
        """SELECT 1 answers: success, latency, and plausible connection samples."""
        outcome = create_runner(spec(postgres_server.url))(Deadline.after(5))
        assert outcome.success, outcome.message
        assert outcome.latency_seconds is not None
        assert 0 < outcome.latency_seconds < 5
        found = measurement_values(outcome)
        assert found["monitoriza_postgres_connections"] >= 1  # the probe itself
        with postgres_server.connect() as conn:
            row = conn.execute("SHOW max_connections").fetchone()
        assert row is not None
        assert found["monitoriza_postgres_max_connections"] == int(row[0]) == 100
        assert outcome.utilization["connections"] == pytest.approx(
            found["monitoriza_postgres_connections"] / 100
        )

    def test_count_grows_with_open_connections(self, postgres_server: PostgresServer) -> None:
        """Connections a client opens show up in the next run's count."""
        before = measurement_values(run(spec(postgres_server.url), Deadline.after(5)))
        with ExitStack() as stack:
            for _ in range(3):
                stack.enter_context(postgres_server.connect())
            during = measurement_values(run(spec(postgres_server.url), Deadline.after(5)))
        key = "monitoriza_postgres_connections"
        assert during[key] >= before[key] + 3

    def test_probe_closes_its_connection(self, postgres_server: PostgresServer) -> None:
        """Repeated runs leave no session open behind them."""
        baseline = client_connections(postgres_server)
        for _ in range(5):
            assert run(spec(postgres_server.url), Deadline.after(5)).success
        assert wait_until(lambda: client_connections(postgres_server) <= baseline, 5)

    def test_stuck_query_is_cut_by_statement_timeout(
        self, postgres_server: PostgresServer, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A query that hangs on the server is cancelled near the deadline: ``timeout``."""
        monkeypatch.setattr(postgres_probe, "STATS_QUERY", "SELECT pg_sleep(30), 1")
        started = time.monotonic()
        outcome = run(spec(postgres_server.url), Deadline.after(1))
        elapsed = time.monotonic() - started
        assert outcome.failure_reason == "timeout", outcome.message
        assert elapsed < 1 + 1

    def test_refused_statistics_still_succeed(
        self, postgres_server: PostgresServer, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """SELECT 1 answered, so a failing statistics query only costs the measurements."""
        monkeypatch.setattr(postgres_probe, "STATS_QUERY", "SELECT * FROM no_such_table")
        outcome = run(spec(postgres_server.url), Deadline.after(5))
        assert outcome.success
        assert outcome.measurements == ()
        assert "no_such_table" in outcome.message

    def test_killed_then_restarted(self, postgres_server: PostgresServer) -> None:
        """A killed server is a ``connection`` failure; once started again, a success."""
        probe = spec(postgres_server.url)
        assert run(probe, Deadline.after(5)).success
        try:
            postgres_server.kill()
            outcome = run(probe, Deadline.after(5))
            assert not outcome.success
            assert outcome.failure_reason == "connection", outcome.message
        finally:
            postgres_server.start()  # the server is shared by the whole session
        outcome = run(probe, Deadline.after(5))
        assert outcome.success, outcome.message


class TestAuth:
    """A role that must authenticate with a password (scram-sha-256 over TCP)."""

    @pytest.fixture
    def url(self, postgres_server: PostgresServer) -> str:
        return postgres_server.create_password_role("probe_auth", "s3cret")

    def test_right_password_from_file(self, url: str, tmp_path: Path) -> None:
        """The password file's content, trailing newline stripped, is used."""
        password = tmp_path / "password"
        password.write_text("s3cret\n", encoding="utf-8")
        outcome = run(spec(url, password), Deadline.after(5))
        assert outcome.success, outcome.message

    def test_wrong_password_is_auth(self, url: str, tmp_path: Path) -> None:
        """A wrong password is an ``auth`` failure."""
        password = tmp_path / "password"
        password.write_text("wrong\n", encoding="utf-8")
        outcome = run(spec(url, password), Deadline.after(5))
        assert outcome.failure_reason == "auth", outcome.message

    def test_missing_password_is_auth(self, url: str, monkeypatch: pytest.MonkeyPatch) -> None:
        """No password at all is an ``auth`` failure too."""
        monkeypatch.delenv("PGPASSWORD", raising=False)
        monkeypatch.setenv("PGPASSFILE", "/nonexistent")
        outcome = run(spec(url), Deadline.after(5))
        assert outcome.failure_reason == "auth", outcome.message

    def test_unreadable_password_file_is_error(self, url: str, tmp_path: Path) -> None:
        """A password file that cannot be read is an ``error`` naming the file."""
        missing = tmp_path / "no-such-file"
        outcome = run(spec(url, missing), Deadline.after(5))
        assert outcome.failure_reason == "error"
        assert str(missing) in outcome.message


class TestUnreachable:
    """Targets that are not a working PostgreSQL."""

    def test_nothing_listening_is_connection(self) -> None:
        """A refused connection is a ``connection`` failure."""
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            closed_port = sock.getsockname()[1]  # bound, never listening: refuses
            outcome = run(
                spec(f"postgresql://postgres@127.0.0.1:{closed_port}/x"), Deadline.after(5)
            )
        assert outcome.failure_reason == "connection", outcome.message

    def test_silent_target_times_out(self, silent_port: int) -> None:
        """A target that accepts TCP but never answers is a ``timeout``, after libpq's 2 s."""
        timeout = 0.5
        started = time.monotonic()
        outcome = run(
            spec(f"postgresql://postgres@127.0.0.1:{silent_port}/x"), Deadline.after(timeout)
        )
        elapsed = time.monotonic() - started
        assert outcome.failure_reason == "timeout", outcome.message
        assert elapsed < max(timeout, LIBPQ_MIN_CONNECT_TIMEOUT) + 1
