"""A real ``redis-server`` per test, which a test can kill and start again.

Tests run against the real binary rather than a fake, because what the Redis probe must get
right (refused connections, NOAUTH, timeouts, INFO's fields) is the server's behaviour. Each
server gets its own port and directory, persistence off, so that tests never share state and
nothing is written outside ``tmp_path``. Processes are only ever signalled by their own PID.
"""

from __future__ import annotations

import signal
import socket
import subprocess
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from tests.support.binaries import (
    ServerProcess,
    free_port,
    require_binary,
    stop_process,
    wait_until,
)

READY_TIMEOUT_SECONDS = 10.0
STOP_TIMEOUT_SECONDS = 10.0
# Replies to an unauthenticated PING that still prove the server is up and serving commands.
_READY_REPLIES = (b"+PONG", b"-NOAUTH")


class RedisServer(ServerProcess):
    """One ``redis-server`` process on 127.0.0.1, restartable on the same port."""

    def __init__(
        self, binary: str, directory: Path, port: int, extra_args: Sequence[str] = ()
    ) -> None:
        self.binary = binary
        self.directory = directory
        self.port = port
        self.extra_args = tuple(extra_args)
        self.url = f"redis://127.0.0.1:{port}/0"
        self.log_path = directory / "redis.log"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the server (again, after :meth:`kill`) and return once it answers PING."""
        if self.running:
            return
        command = [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.directory),
            "--daemonize", "no",
            "--logfile", "",
            *self.extra_args,
        ]  # fmt: skip
        # The child keeps its own copy of the log descriptor; ours is closed right away.
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        if not wait_until(self._ready, READY_TIMEOUT_SECONDS):
            self.kill()
            pytest.fail(f"redis-server on port {self.port} did not start:\n{self.log()}")

    def kill(self) -> None:
        """SIGKILL the server, as a crash would, and wait until the process is gone."""
        stop_process(self._process, signal.SIGKILL)

    def stop(self) -> None:
        """Shut the server down cleanly (SIGTERM), falling back to SIGKILL if it hangs."""
        stop_process(self._process, timeout=STOP_TIMEOUT_SECONDS)

    def log(self) -> str:
        """What the server wrote, to explain a failed start."""
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def _ready(self) -> bool:
        if self._process is None or self._process.poll() is not None:
            # Died during start-up (port taken, bad argument): fail now, not after the timeout.
            pytest.fail(f"redis-server on port {self.port} exited:\n{self.log()}")
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1.0) as sock:
                sock.sendall(b"PING\r\n")
                reply = sock.recv(64)
        except OSError:
            return False
        return reply.startswith(_READY_REPLIES)


RedisServerFactory = Callable[..., RedisServer]


@pytest.fixture
def make_redis_server(tmp_path: Path) -> Iterator[RedisServerFactory]:
    """Start extra servers, e.g. ``make_redis_server("--requirepass", "s3cret")``.

    Every server started through the factory is stopped at the end of the test.
    """
    binary = require_binary("redis-server")
    servers: list[RedisServer] = []

    def make(*extra_args: str) -> RedisServer:
        directory = tmp_path / f"redis-{len(servers)}"
        directory.mkdir()
        server = RedisServer(binary, directory, free_port(), extra_args)
        servers.append(server)
        server.start()
        return server

    try:
        yield make
    finally:
        for server in servers:
            server.stop()


@pytest.fixture
def redis_server(make_redis_server: RedisServerFactory) -> RedisServer:
    """A running ``redis-server`` without a password (``.port``, ``.url``, ``.kill()``...)."""
    return make_redis_server()
