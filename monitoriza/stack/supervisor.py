"""Start the stack's processes in order, wait for each to be ready, stop them all.

Children run in their own session, so a Ctrl-C in the terminal reaches ``monitoriza up``
alone, which then stops them in the reverse order they started (Prometheus before the
exporter it scrapes, the responder after Alertmanager has stopped posting to it). Every child
logs to its own file in the run directory; when one fails, the end of that log is shown.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import requests

from monitoriza.exceptions import MonitorizaError

STOP_TIMEOUT = 15.0
LOG_TAIL_LINES = 15


class StackError(MonitorizaError):
    """The stack cannot start or a part of it died; the message says which and why."""


@dataclass(frozen=True)
class ChildSpec:
    """One process of the stack."""

    name: str
    argv: list[str]
    ready: Callable[[], bool]
    log: Path
    timeout: float = 30.0
    env: dict[str, str] | None = None


@dataclass
class _Child:
    spec: ChildSpec
    process: subprocess.Popen[bytes]


def http_ready(url: str, *, expect: int = 200) -> Callable[[], bool]:
    """A readiness check: ``url`` answers ``expect``."""

    def check() -> bool:
        try:
            return requests.get(url, timeout=1).status_code == expect
        except requests.RequestException:
            return False

    return check


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last lines of a log, indented, for an error message."""
    try:
        text = path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return "    (no log)"
    return "\n".join(f"    {line}" for line in text) or "    (empty log)"


@dataclass
class Supervisor:
    """The running children and the clean-ups to run when the stack stops."""

    out: TextIO
    children: list[_Child] = field(default_factory=list)
    cleanups: list[tuple[str, Callable[[], None]]] = field(default_factory=list)

    def say(self, line: str) -> None:
        print(line, file=self.out, flush=True)

    def start(self, spec: ChildSpec) -> None:
        """Start ``spec`` and return once it is ready; StackError if it exits or times out."""
        started = time.monotonic()
        self.say(f"  starting {spec.name} ...")
        spec.log.parent.mkdir(parents=True, exist_ok=True)
        with spec.log.open("ab") as log:
            process = subprocess.Popen(spec.argv, stdin=subprocess.DEVNULL, stdout=log,
                                       stderr=subprocess.STDOUT, start_new_session=True,
                                       env=None if spec.env is None else os.environ | spec.env)
        self.children.append(_Child(spec, process))
        deadline = started + spec.timeout
        while not spec.ready():
            if process.poll() is not None:
                raise StackError(f"{spec.name} exited with status {process.returncode} while "
                                 f"starting; the end of {spec.log}:\n{log_tail(spec.log)}")
            if time.monotonic() > deadline:
                raise StackError(f"{spec.name} was not ready after {spec.timeout:.0f} s; the "
                                 f"end of {spec.log}:\n{log_tail(spec.log)}")
            time.sleep(0.1)
        self.say(f"  {spec.name} ready ({time.monotonic() - started:.1f} s, pid "
                 f"{process.pid})")

    def on_stop(self, name: str, cleanup: Callable[[], None]) -> None:
        """Run ``cleanup`` when the stack stops (in reverse order, with the children)."""
        self.cleanups.append((name, cleanup))

    def dead(self) -> list[str]:
        """A message per child that has exited."""
        return [f"{child.spec.name} exited with status {child.process.returncode}; the end "
                f"of {child.spec.log}:\n{log_tail(child.spec.log)}"
                for child in self.children if child.process.poll() is not None]

    def stop_all(self) -> None:
        """Stop every child (SIGTERM, then SIGKILL after STOP_TIMEOUT) and run the clean-ups,
        newest first; never raises."""
        for child in reversed(self.children):
            self._stop(child)
        self.children.clear()
        for name, cleanup in reversed(self.cleanups):
            try:
                cleanup()
            except Exception as exc:  # one failed clean-up must not stop the rest
                self.say(f"  could not stop {name}: {exc}")
            else:
                self.say(f"  stopped {name}")
        self.cleanups.clear()

    def _stop(self, child: _Child) -> None:
        process = child.process
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                process.wait()
        self.say(f"  stopped {child.spec.name}")
