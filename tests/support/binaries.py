"""Finding the real server binaries the tests run, and free loopback ports for them.

A missing binary fails the test, with the command that installs it, everywhere: a test that
silently did not run proves nothing, and ``make test`` installs every binary the tests use.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import pytest

# Debian installs some server binaries outside PATH.
_EXTRA_DIRS = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)


def require_binary(name: str) -> str:
    """Return the path of ``name``; fail the test when it is not installed."""
    found = shutil.which(name)
    if found is None:
        for directory in _EXTRA_DIRS:
            candidate = directory / name
            if candidate.exists():
                found = str(candidate)
                break
    if found is not None:
        return found
    unavailable(f"{name} is not installed (make test installs it: see scripts/bootstrap.sh)")


def unavailable(message: str) -> NoReturn:
    """A test cannot run here: it fails, never skips, so a missing part is never mistaken
    for a passing one."""
    pytest.fail(message)


def stop_process(process: subprocess.Popen[Any] | None, sig: int = signal.SIGTERM, *,
                 timeout: float = 10.0, on_timeout: Callable[[], None] | None = None) -> None:
    """Signal a child by its PID, wait, then escalate (SIGKILL by default); always reap it."""
    if process is None:
        return
    if process.poll() is None:
        os.kill(process.pid, sig)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            if on_timeout is not None:
                on_timeout()
            elif process.poll() is None:
                os.kill(process.pid, signal.SIGKILL)
    process.wait()


class ServerProcess:
    """The child process of a server a fixture runs: its PID while it runs, and stopping it."""

    _process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        """PID of the running server, or None when it is not running."""
        process = self._process
        return process.pid if process is not None and process.poll() is None else None

    @property
    def running(self) -> bool:
        return self.pid is not None


# Ports handed out come from below the kernel's ephemeral range (Linux: 32768-60999), from
# which every outgoing connection takes its local port: a port picked there (as bind(0) does)
# can be taken by some client's connection before the server binds it. FIXTURE_PORTS is
# for fixtures; the stacks of tests/support/stack.py take their ports below it.
FIXTURE_PORTS = range(24000, 32768)
_handed_out: set[int] = set()


def port_is_free(port: int) -> bool:
    """Nothing holds ``port`` on 127.0.0.1, for TCP or UDP (Alertmanager's gossip uses both)."""
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        with socket.socket(socket.AF_INET, kind) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def free_port() -> int:
    """A port on 127.0.0.1 that nothing holds now, never handed out before in this session,
    and outside the range outgoing connections draw from."""
    for _ in range(1000):
        port = random.choice(FIXTURE_PORTS)
        if port not in _handed_out and port_is_free(port):
            _handed_out.add(port)
            return port
    raise RuntimeError(f"no free port in {FIXTURE_PORTS}")


def wait_until(condition: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    """Poll ``condition`` until it is true or ``timeout`` seconds pass; return the last value."""
    end = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() >= end:
            return False
        time.sleep(interval)
