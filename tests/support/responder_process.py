"""``monitoriza responder`` as users run it: waitress, in its own process."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests
import yaml

from tests.support.binaries import free_port, wait_until
from tests.support.responder import TOKEN


class ResponderProcess:
    """A responder (one process, and any children it starts) on a free port; stopped by PID."""

    def __init__(self, directory: Path, *, port: int | None = None,
                 services: dict[str, Any] | None = None, **responder: Any) -> None:
        """``responder`` overrides settings, e.g. ``store_url="postgresql://..."``."""
        self.directory = directory
        self.port = free_port() if port is None else port
        self.url = f"http://127.0.0.1:{self.port}"
        (directory / "token").write_text(TOKEN + "\n")
        self.config_path = directory / "monitoriza.yml"
        self.config_path.write_text(yaml.safe_dump({"services": services or {}, "responder": {
            "listen": f"127.0.0.1:{self.port}",
            "store_url": f"sqlite:///{directory / 'responder.db'}",
            "token_file": str(directory / "token"),
            "audit": {"signing_key_file": str(directory / "signing.pem"),
                      "checkpoint_file": str(directory / "checkpoints.jsonl")},
            **responder,
        }}))
        self.log_path = directory / "responder.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "monitoriza.cli", "responder", "--config",
                 str(self.config_path)], stdout=log, stderr=subprocess.STDOUT)
        if not wait_until(self.ready, 30.0, interval=0.1):
            raise AssertionError(f"responder did not become ready:\n{self.log_path.read_text()}")

    def ready(self) -> bool:
        try:
            return requests.get(f"{self.url}/readyz", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    def pids(self) -> list[int]:
        """The process and every child it started (none today; kept for crash tests)."""
        if self.process is None or self.process.poll() is not None:
            return []
        try:
            master = psutil.Process(self.process.pid)
            return [master.pid, *(child.pid for child in master.children(recursive=True))]
        except psutil.NoSuchProcess:
            return []

    def kill9(self) -> None:
        """SIGKILL every process of this responder at once: a crash, no cleanup."""
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if self.process is not None:
            self.process.wait()
        for pid in self.pids():  # pragma: no cover - reaped above
            psutil.Process(pid).wait(10)

    def stop(self) -> None:
        if self.process is None:
            return
        children = self.pids()[1:]
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill9()
        for pid in children:
            with contextlib.suppress(psutil.NoSuchProcess):
                psutil.Process(pid).wait(10)


ResponderFactory = Callable[..., ResponderProcess]


@pytest.fixture
def responder_process(tmp_path: Path) -> Iterator[ResponderFactory]:
    started: list[ResponderProcess] = []

    def start(name: str = "responder", **responder: Any) -> ResponderProcess:
        """Start one in ``tmp_path / name``; replicas of one store get different names."""
        directory = tmp_path / name
        directory.mkdir(exist_ok=True)
        process = ResponderProcess(directory, **responder)
        started.append(process)
        process.start()
        return process

    yield start
    # Side by side: each waits for its server to shut down gracefully.
    with ThreadPoolExecutor(max_workers=max(1, len(started))) as pool:
        list(pool.map(ResponderProcess.stop, started))
