"""A responder cluster as deployed at scale: replicas on one PostgreSQL database, fed by a
clustered Alertmanager HA pair.

* :func:`fresh_database`: a new database on the session PostgreSQL server, dropped (with its
  connections) on exit; its URL is what the replicas' ``store_url`` says.
* :class:`ClusteredAlertmanager`: ``prometheus-alertmanager`` with gossip on 127.0.0.1, its
  peers given by ``--cluster.peer``, the timers short enough for a test; stopped by PID.
* :func:`append_entries`: what each audit-append process of the concurrency test runs.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from psycopg import sql

from tests.support.alertmanager import alertmanager_argv
from tests.support.binaries import free_port, stop_process, wait_until
from tests.support.postgres_server import PostgresServer
from tests.support.responder import TOKEN

READY_TIMEOUT_SECONDS = 30.0
_ROOT = Path(__file__).resolve().parent.parent.parent  # the checkout: ``tests`` imports from it
# No proxy: every request of these tests stays on 127.0.0.1.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@contextlib.contextmanager
def fresh_database(postgres_server: PostgresServer) -> Iterator[str]:
    """A new, empty database, dropped (with its connections) on exit; its URL."""
    name = f"cluster_{secrets.token_hex(6)}"
    with postgres_server.connect() as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield f"postgresql://postgres@127.0.0.1:{postgres_server.port}/{name}"
    finally:
        with postgres_server.connect() as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
                         .format(sql.Identifier(name)))


def query(url: str, statement: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Rows of one read on the cluster's database (a short autocommit connection)."""
    with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
        return conn.execute(statement, params or None).fetchall()


def rfc3339(moment: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(moment))


def firing(alertname: str, service: str, severity: str, starts_at: float) -> dict[str, Any]:
    """An alert as Prometheus posts it to every Alertmanager: the same labels and startsAt."""
    return {"labels": {"alertname": alertname, "service": service, "severity": severity},
            "annotations": {"summary": f"{alertname} on {service}"},
            "startsAt": rfc3339(starts_at),
            "generatorURL": "http://127.0.0.1:9090/graph"}


def alertmanager_config(directory: Path, responder_urls: list[str]) -> Path:
    """One receiver with a webhook per replica, each sending the bearer token from a file."""
    token_file = directory / "responder-token"
    token_file.write_text(TOKEN + "\n")
    webhooks = [{"url": f"{url}/api/v1/alerts", "send_resolved": True,
                 "http_config": {"authorization": {"type": "Bearer",
                                                   "credentials_file": str(token_file)}}}
                for url in responder_urls]
    config = {
        "route": {"receiver": "responders", "group_by": ["service"],
                  "group_wait": "1s", "group_interval": "1s", "repeat_interval": "1h"},
        "receivers": [{"name": "responders", "webhook_configs": webhooks}],
    }
    path = directory / "alertmanager.yml"
    path.write_text(yaml.safe_dump(config))
    return path


class ClusteredAlertmanager:
    """One member of an Alertmanager HA cluster on 127.0.0.1, data in its own directory."""

    def __init__(self, binary: str, directory: Path, config_path: Path, *,
                 cluster_port: int, peers: list[int]) -> None:
        self.binary = binary
        self.directory = directory
        self.config_path = config_path
        self.port = free_port()
        self.cluster_port = cluster_port
        self.peers = peers
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = directory / "alertmanager.log"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        command = alertmanager_argv(self.binary, self.config_path, self.directory, self.port, [
            f"--cluster.listen-address=127.0.0.1:{self.cluster_port}",
            f"--cluster.advertise-address=127.0.0.1:{self.cluster_port}",
            *(f"--cluster.peer=127.0.0.1:{peer}" for peer in self.peers),
            "--cluster.settle-timeout=2s",
            "--cluster.gossip-interval=50ms",
            "--cluster.pushpull-interval=1s",
            "--cluster.peer-timeout=2s",
        ])
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log,
                                             stderr=subprocess.STDOUT)
        if not wait_until(self._ready, READY_TIMEOUT_SECONDS, interval=0.1):
            self.stop()
            pytest.fail(f"alertmanager on port {self.port} did not become ready:\n{self.log()}")

    def stop(self) -> None:
        """SIGTERM by PID, SIGKILL if it lingers; always reaped."""
        stop_process(self._process, timeout=10.0)

    def log(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def cluster_peers(self) -> int:
        """How many members (itself included) this Alertmanager's gossip knows."""
        status = self._get("/api/v2/status")
        return len(status.get("cluster", {}).get("peers") or [])

    def post_alerts(self, alerts: list[dict[str, Any]]) -> None:
        request = urllib.request.Request(f"{self.url}/api/v2/alerts", method="POST",
                                         data=json.dumps(alerts).encode(),
                                         headers={"Content-Type": "application/json"})
        with _DIRECT.open(request, timeout=5) as response:
            assert response.status == 200, f"POST /api/v2/alerts answered {response.status}"

    def _get(self, path: str) -> dict[str, Any]:
        with _DIRECT.open(self.url + path, timeout=5) as response:
            document: dict[str, Any] = json.loads(response.read())
            return document

    def _ready(self) -> bool:
        if self._process is None or self._process.poll() is not None:
            pytest.fail(f"alertmanager on port {self.port} exited:\n{self.log()}")
        try:
            with _DIRECT.open(self.url + "/-/ready", timeout=1) as response:
                return bool(response.status == 200)
        except OSError:
            return False


def append_entries(url: str, count: int, worker: int) -> None:
    """Append ``count`` audit entries, one transaction each, as a replica would."""
    from monitoriza.audit.log import AuditLog  # noqa: PLC0415 - runs in the child process
    from monitoriza.store import create_store, writing  # noqa: PLC0415

    engine = create_store(url)
    log = AuditLog(engine, hmac_key=None, checkpoints=None)
    try:
        for index in range(count):
            with writing(engine) as conn:
                log.append(conn, "test.append", {"worker": worker, "index": index})
    finally:
        engine.dispose()


def start_appenders(url: str, processes: int, count: int,
                    log_dir: Path) -> list[subprocess.Popen[bytes]]:
    """``processes`` OS processes, each running :func:`append_entries` on ``url``."""
    started = []
    for worker in range(processes):
        code = ("import sys; from tests.support.cluster import append_entries; "
                "append_entries(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))")
        with (log_dir / f"appender-{worker}.log").open("wb") as log:
            started.append(subprocess.Popen(
                [sys.executable, "-c", code, url, str(count), str(worker)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=_ROOT))
    return started


def stop_all(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        with contextlib.suppress(ProcessLookupError):
            stop_process(process, timeout=5.0)
