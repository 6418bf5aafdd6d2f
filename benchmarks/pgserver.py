"""A private, throw-away PostgreSQL server for benchmarks: initdb + postgres on 127.0.0.1.

The recipe is the one of ``tests/support/postgres_server.py``, without pytest (a benchmark is
not a test session). PostgreSQL refuses to run as root, so as root both ``initdb`` and
``postgres`` run as the ``postgres`` user through ``Popen(user=...)`` rather than ``runuser``:
runuser forks, and the PID we signal must be the postmaster's own.

Unlike the test cluster, durability is left at PostgreSQL's defaults (``fsync=on``,
``synchronous_commit=on``): a benchmark that compares it with SQLite at ``synchronous=FULL``
must make both pay for their commits.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

import psutil
import psycopg

# Debian installs the server binaries outside PATH.
_EXTRA_DIRS = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
READY_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 15.0


def find_binary(name: str) -> str:
    found = shutil.which(name)
    if found is not None:
        return found
    for directory in _EXTRA_DIRS:
        if (directory / name).exists():
            return str(directory / name)
    raise RuntimeError(f"{name} is not installed (make test installs postgresql)")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class PostgresServer:
    """One PostgreSQL cluster in a temporary directory; a context manager that always stops it.

    ``max_connections`` must cover every replica's pool plus the benchmark's own connections.
    """

    def __init__(self, max_connections: int = 200) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="mz-bench-postgres-"))
        self.data_dir = self.root / "data"
        self.socket_dir = self.root / "sockets"
        self.log_path = self.root / "postgres.log"
        self.port = free_port()
        self.max_connections = max_connections
        # PostgreSQL will not run as root; as any other user it runs as that user.
        self._user = "postgres" if os.geteuid() == 0 else None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        """The postmaster's PID while it runs."""
        process = self._process
        return process.pid if process is not None and process.poll() is None else None

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def __enter__(self) -> PostgresServer:
        try:
            self._init()
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()

    def create_database(self, name: str) -> str:
        """A fresh database (so that each measured configuration starts with empty tables)."""
        with psycopg.connect(self.url(), autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')  # name comes from the benchmark itself
        return self.url(name)

    def connections(self, database: str) -> int:
        """Client connections open to ``database`` now (sizing: replicas times pool)."""
        with psycopg.connect(self.url(), autocommit=True, connect_timeout=5) as conn:
            row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s",
                               (database,)).fetchone()
        return int(row[0]) if row else 0

    def _init(self) -> None:
        self.socket_dir.mkdir()
        if self._user is not None:
            for path in (self.root, self.socket_dir):
                shutil.chown(path, user=self._user, group=self._user)
        result = subprocess.run(
            [find_binary("initdb"), "-D", str(self.data_dir), "-A", "trust", "-U", "postgres",
             "-E", "UTF8", "--locale=C", "--no-sync"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            cwd=self.root, user=self._user, group=self._user,
            extra_groups=[] if self._user is not None else None, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"initdb failed:\n{result.stdout.decode(errors='replace')}")

    def _start(self) -> None:
        command = [find_binary("postgres"), "-D", str(self.data_dir), "-p", str(self.port),
                   "-h", "127.0.0.1", "-k", str(self.socket_dir),
                   "-c", f"max_connections={self.max_connections}"]
        log = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:  # the child keeps its own copy of the log descriptor
            self._process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                cwd=self.root, user=self._user, group=self._user,
                extra_groups=[] if self._user is not None else None)
        finally:
            os.close(log)
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"postgres exited:\n{self.log_path.read_text()}")
            try:
                with psycopg.connect(self.url(), connect_timeout=2) as conn:
                    conn.execute("SELECT 1").fetchone()
                return
            except psycopg.Error:
                time.sleep(0.1)
        raise RuntimeError(f"postgres did not start:\n{self.log_path.read_text()}")

    def stop(self) -> None:
        """Fast shutdown (SIGINT) by PID; SIGKILL the postmaster and its backends if it hangs."""
        process = self._process
        if process is not None and process.poll() is None:
            os.kill(process.pid, signal.SIGINT)
            try:
                process.wait(timeout=STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                # Backends outliving the postmaster would hold its shared memory: kill them too.
                try:
                    children = psutil.Process(process.pid).children(recursive=True)
                except psutil.NoSuchProcess:
                    children = []
                os.kill(process.pid, signal.SIGKILL)
                for child in children:
                    with contextlib.suppress(psutil.NoSuchProcess):
                        child.kill()
                psutil.wait_procs(children, timeout=STOP_TIMEOUT_SECONDS)
        if process is not None:
            process.wait()
        shutil.rmtree(self.root, ignore_errors=True)
