"""A real PostgreSQL server for the whole test session, which a test can kill and start again.

``initdb`` takes a second or more, so one cluster serves every test; tests that kill it must
start it again (:meth:`PostgresServer.start` is a no-op when it is running). PostgreSQL refuses
to run as root, so when the suite runs as root both ``initdb`` and ``postgres`` run as the
``postgres`` user, through ``Popen(user=...)`` rather than ``runuser``: runuser forks, and the
PID we signal must be the postmaster's own.

The cluster trusts every local connection, except roles in the ``password_users`` group, which
must authenticate with a password over TCP: :meth:`PostgresServer.create_password_role` makes
one, so that a test can check what a wrong password does.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import psycopg
import pytest
from psycopg import sql
from psycopg.rows import TupleRow

from tests.support.binaries import (
    ServerProcess,
    free_port,
    require_binary,
    stop_process,
    wait_until,
)

READY_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 15.0
PASSWORD_GROUP = "password_users"

# Members of PASSWORD_GROUP need a password over TCP; everyone else is trusted. The first
# matching line wins, so the group's line comes first.
_PG_HBA = f"""\
local all all                         trust
host  all +{PASSWORD_GROUP} 127.0.0.1/32 scram-sha-256
host  all all               127.0.0.1/32 trust
"""


class PostgresServer(ServerProcess):
    """One PostgreSQL cluster on 127.0.0.1, restartable on the same port."""

    def __init__(self, root: Path, log_path: Path, port: int, initdb: str, postgres: str) -> None:
        self.root = root
        self.data_dir = root / "data"
        self.socket_dir = root / "sockets"
        self.log_path = log_path
        self.port = port
        self.url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
        self._initdb = initdb
        self._postgres = postgres
        # PostgreSQL will not run as root; as any other user it runs as that user.
        self._user = "postgres" if os.geteuid() == 0 else None
        self._process: subprocess.Popen[bytes] | None = None

    def init(self) -> None:
        """Create the cluster (``initdb``) and install the pg_hba.conf described above."""
        self.socket_dir.mkdir()
        if self._user is not None:
            for path in (self.root, self.socket_dir):
                shutil.chown(path, user=self._user, group=self._user)
        command = [
            self._initdb,
            "-D", str(self.data_dir),
            "-A", "trust",
            "-U", "postgres",
            "-E", "UTF8",
            "--locale=C",
            "--no-sync",
        ]  # fmt: skip
        result = self._run(command)
        if result.returncode != 0:
            pytest.fail(f"initdb failed:\n{result.stdout.decode(errors='replace')}")
        hba = self.data_dir / "pg_hba.conf"
        hba.write_text(_PG_HBA, encoding="utf-8")
        if self._user is not None:
            shutil.chown(hba, user=self._user, group=self._user)

    def start(self) -> None:
        """Start the server (again, after :meth:`kill`) and return once ``SELECT 1`` works."""
        if self.running:
            return
        command = [
            self._postgres,
            "-D", str(self.data_dir),
            "-p", str(self.port),
            "-h", "127.0.0.1",
            "-k", str(self.socket_dir),
            "-c", "fsync=off",
            "-c", "max_connections=100",
        ]  # fmt: skip
        # The child keeps its own copy of the log descriptor; ours is closed right away.
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.root,
                user=self._user,
                group=self._user,
                extra_groups=[] if self._user is not None else None,
            )
        if not wait_until(self._ready, READY_TIMEOUT_SECONDS, interval=0.1):
            self.kill()
            pytest.fail(f"postgres on port {self.port} did not start:\n{self.log()}")

    def kill(self) -> None:
        """SIGKILL the postmaster and its backends, as a crash would, and wait for all of them.

        Backends outliving a killed postmaster would keep the shared memory busy and stop the
        next :meth:`start`, so they are killed too (by PID, from the postmaster's children).
        """
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            children = self._children(process.pid)
            os.kill(process.pid, signal.SIGKILL)
            for child in children:
                with contextlib.suppress(psutil.NoSuchProcess):
                    child.kill()
            psutil.wait_procs(children, timeout=STOP_TIMEOUT_SECONDS)
        process.wait()

    def stop(self) -> None:
        """Fast shutdown (SIGINT); SIGKILL everything if it does not finish in time."""
        stop_process(self._process, signal.SIGINT, timeout=STOP_TIMEOUT_SECONDS,
                     on_timeout=self.kill)

    def connect(self) -> psycopg.Connection[TupleRow]:
        """An autocommit connection as the superuser, for a test's own setup and checks."""
        return psycopg.connect(self.url, autocommit=True, connect_timeout=5)

    def create_password_role(self, name: str, password: str) -> str:
        """Create (or reset) a login role that must give ``password``; return its URL.

        The URL carries no password: the probe's ``password_file`` has to supply it.
        """
        with self.connect() as conn:
            exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone()
            verb = sql.SQL("ALTER" if exists else "CREATE")
            conn.execute(
                sql.SQL("{} ROLE {} LOGIN PASSWORD {}").format(
                    verb, sql.Identifier(name), sql.Literal(password)
                )
            )
            conn.execute(
                sql.SQL("GRANT {} TO {}").format(
                    sql.Identifier(PASSWORD_GROUP), sql.Identifier(name)
                )
            )
        return f"postgresql://{name}@127.0.0.1:{self.port}/postgres"

    def database_url(self, name: str) -> str:
        """The superuser's URL of database ``name`` on this server."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    def create_database(self, prefix: str = "test", template: str | None = None) -> str:
        """Create a database with a fresh name (a copy of ``template`` if given); its name."""
        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template is not None:
            statement = sql.SQL("{} TEMPLATE {}").format(statement, sql.Identifier(template))
        with self.connect() as conn:
            conn.execute(statement)
        return name

    def drop_database(self, name: str) -> None:
        """Drop database ``name``, first ending every session still connected to it.

        A test that killed the server must have started it again; if it did not, the
        server is started here so that the database does not outlive the test.
        """
        self.start()
        with self.connect() as conn:
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                         "WHERE datname = %s AND pid <> pg_backend_pid()", (name,))
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
                         .format(sql.Identifier(name)))

    @contextlib.contextmanager
    def fresh_database(self, prefix: str = "test",
                       template: str | None = None) -> Iterator[str]:
        """A new database for the ``with`` block, dropped after it; yields its URL."""
        name = self.create_database(prefix, template)
        try:
            yield self.database_url(name)
        finally:
            self.drop_database(name)

    def log(self) -> str:
        """What the server wrote, to explain a failed start."""
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def _ready(self) -> bool:
        if self._process is None or self._process.poll() is not None:
            # Died during start-up: fail now with its log rather than after the timeout.
            pytest.fail(f"postgres on port {self.port} exited:\n{self.log()}")
        try:
            with psycopg.connect(self.url, connect_timeout=2) as conn:
                conn.execute("SELECT 1").fetchone()
        except psycopg.Error:
            return False
        return True

    def _run(self, command: list[str]) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=self.root,
            user=self._user,
            group=self._user,
            extra_groups=[] if self._user is not None else None,
            check=False,
        )

    @staticmethod
    def _children(pid: int) -> list[psutil.Process]:
        try:
            return psutil.Process(pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    """A running PostgreSQL 15 cluster: ``.port``, ``.url``, ``.kill()``, ``.start()``, ...

    The data directory lives under the system temp directory, not under ``tmp_path_factory``:
    pytest makes its base directory readable by its owner only, so the ``postgres`` user could
    not reach a cluster there. The server's log does go there, to be kept for a failed run.
    """
    initdb = require_binary("initdb")
    postgres = require_binary("postgres")
    log_path = tmp_path_factory.mktemp("postgres") / "postgres.log"
    root = Path(tempfile.mkdtemp(prefix="monitoriza-postgres-"))
    server = PostgresServer(root, log_path, free_port(), initdb, postgres)
    try:
        server.init()
        server.start()
        with server.connect() as conn:
            conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(PASSWORD_GROUP)))
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
