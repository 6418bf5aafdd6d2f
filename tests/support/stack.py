"""``monitoriza up --demo`` as a user runs it, in a subprocess, for the end-to-end tests.

The stack gets a base port where every one of its ports is free, its own run directory, and
the tests' private Docker engine for the recorder container. It is stopped with SIGINT, as a
Ctrl-C would, and the fixture checks that nothing it started is left behind.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests

from monitoriza.stack.ports import CHAT_OFFSET, busy_ports, ports_for
from tests.support.binaries import FIXTURE_PORTS, require_binary, stop_process, wait_until
from tests.support.dockerd import DockerEngine

REPO = Path(__file__).resolve().parent.parent.parent
ARTIFACTS = REPO / "artifacts"
READY_LINE = "monitoriza up: ready"
START_TIMEOUT = 120.0


def free_base_port() -> int:
    """A base port whose every stack port is free on 127.0.0.1, all of them below the
    fixtures' ports and the kernel's ephemeral range (see binaries.FIXTURE_PORTS)."""
    for _ in range(50):
        base = random.randint(10000, FIXTURE_PORTS.start - 1 - CHAT_OFFSET)
        if not busy_ports("127.0.0.1", ports_for(base, demo_services=5).named()):
            return base
    raise AssertionError("no free range of ports for the stack")


@dataclass
class DemoStack:
    """A running ``monitoriza up --demo`` and what the tests talk to."""

    process: subprocess.Popen[str]
    run_dir: Path
    output: Path
    base: int

    @property
    def ports(self) -> Any:
        return ports_for(self.base, demo_services=5)

    @property
    def prometheus(self) -> str:
        return f"http://127.0.0.1:{self.ports.prometheus}"

    @property
    def responder(self) -> str:
        return f"http://127.0.0.1:{self.ports.responder}"

    @property
    def chat(self) -> str:
        return f"http://127.0.0.1:{self.ports.chat}"

    @property
    def config(self) -> Path:
        return self.run_dir / "monitoriza.yml"

    @property
    def token(self) -> str:
        return (self.run_dir / "secrets" / "responder-token").read_text().strip()

    def log(self) -> str:
        return self.output.read_text(errors="replace")

    def monitoriza(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "monitoriza", *args], capture_output=True,
                              text=True, timeout=60, check=False)

    def fault(self, service: str, kind: str) -> None:
        result = self.monitoriza("demo", "fault", service, kind, "--run-dir", str(self.run_dir))
        assert result.returncode == 0, result.stderr

    def query(self, promql: str) -> list[dict[str, Any]]:
        response = requests.get(f"{self.prometheus}/api/v1/query", params={"query": promql},
                                timeout=10)
        response.raise_for_status()
        result: list[dict[str, Any]] = response.json()["data"]["result"]
        return result

    def alerts(self) -> list[dict[str, Any]]:
        response = requests.get(f"{self.prometheus}/api/v1/alerts", timeout=10)
        response.raise_for_status()
        alerts: list[dict[str, Any]] = response.json()["data"]["alerts"]
        return alerts

    def firing(self, alertname: str, **labels: str) -> bool:
        return any(alert["state"] == "firing" and alert["labels"]["alertname"] == alertname
                   and all(alert["labels"].get(k) == v for k, v in labels.items())
                   for alert in self.alerts())

    def incidents(self) -> list[dict[str, Any]]:
        response = requests.get(f"{self.responder}/api/v1/incidents",
                                headers={"Authorization": f"Bearer {self.token}"}, timeout=10)
        response.raise_for_status()
        incidents: list[dict[str, Any]] = response.json()["incidents"]
        return incidents

    def incident(self, incident_id: int) -> dict[str, Any]:
        response = requests.get(f"{self.responder}/api/v1/incidents/{incident_id}",
                                headers={"Authorization": f"Bearer {self.token}"}, timeout=10)
        response.raise_for_status()
        incident: dict[str, Any] = response.json()
        return incident

    def chat_messages(self) -> list[dict[str, Any]]:
        response = requests.get(f"{self.chat}/chat", timeout=10)
        response.raise_for_status()
        messages: list[dict[str, Any]] = response.json()
        return messages


def record_artifact(name: str, data: object) -> Path:
    """Keep a measurement or a screenshot's metadata under artifacts/ (not committed)."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path


def _descendants(pid: int) -> list[int]:
    try:
        return [child.pid for child in psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


@pytest.fixture(scope="module")
def demo_stack(tmp_path_factory: pytest.TempPathFactory,
               docker_engine: DockerEngine) -> Iterator[DemoStack]:
    """``monitoriza up --demo`` with the tests' Docker engine; stopped by SIGINT."""
    for name in ("prometheus", "prometheus-alertmanager", "redis-server"):
        require_binary(name)
    directory = tmp_path_factory.mktemp("stack")
    base = free_base_port()
    output = directory / "up.log"
    with output.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "monitoriza", "up", "--demo", "--run-dir",
             str(directory / "run"), "--base-port", str(base), "--docker-host",
             docker_engine.url],
            stdout=log, stderr=subprocess.STDOUT, text=True, cwd=directory)
    stack = DemoStack(process, directory / "run", output, base)
    try:
        if not wait_until(lambda: READY_LINE in stack.log() or process.poll() is not None,
                          START_TIMEOUT, interval=0.2) or process.poll() is not None:
            raise AssertionError(f"monitoriza up did not become ready:\n{stack.log()}")
        yield stack
    finally:
        redis_pid = _read_pid(stack.run_dir / "redis" / "redis.pid")
        stop_up(process, output, also=[redis_pid] if redis_pid else [])


def stop_up(process: subprocess.Popen[str], output: Path, also: list[int] | None = None) -> None:
    """Stop ``monitoriza up`` with SIGINT, as a Ctrl-C would, and check that it stopped
    everything it started (its children, and ``also``: processes that are not its children,
    such as a daemonized redis-server); kill what it left, then fail naming it."""
    children = _descendants(process.pid)
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            stop_process(process)
    text = output.read_text(errors="replace")
    leftovers = [pid for pid in [*children, *(also or [])]
                 if psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie"]
    for pid in leftovers:
        psutil.Process(pid).kill()
    assert process.returncode == 0, text
    assert "monitoriza up: stopped" in text
    assert not leftovers, f"processes left behind: {leftovers}\n{text}"


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def wait_for(condition: Any, timeout: float, what: str, stack: DemoStack) -> float:
    """Wait for ``condition``; return the moment it held (time.time()); fail with the log."""
    if not wait_until(condition, timeout, interval=0.25):
        raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}\n"
                             f"{stack.log()[-3000:]}")
    return time.time()
