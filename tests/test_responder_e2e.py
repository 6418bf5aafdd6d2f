"""The responder as deployed (`monitoriza responder` processes), a real Alertmanager posting
to it, crashes."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests
import yaml

from tests.support.alertmanager import Alertmanager, CaptureServer, alert
from tests.support.binaries import require_binary, wait_until
from tests.support.responder import TOKEN, fixture_json
from tests.support.responder_process import ResponderFactory, ResponderProcess


def store_rows(responder: ResponderProcess, query: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(responder.directory / "responder.db") as conn:
        return conn.execute(query).fetchall()


def drained(responder: ResponderProcess) -> bool:
    pending = store_rows(responder, "SELECT count(*) FROM journal WHERE state != 'done'")
    return bool(pending[0][0] == 0)


def received_fingerprints(responder: ResponderProcess) -> list[str]:
    rows = store_rows(responder, "SELECT data FROM audit WHERE kind = 'alert.received'")
    return [json.loads(data)["fingerprint"] for (data,) in rows]


def audit_verify(responder: ResponderProcess) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "monitoriza.cli", "audit", "verify",
                           "--config", str(responder.config_path)],
                          capture_output=True, text=True, timeout=60, check=False)


def start_alertmanager(tmp_path: Path, responder: ResponderProcess,
                       capture: CaptureServer) -> Alertmanager:
    """An Alertmanager whose only receiver is the real responder, token from a file."""
    directory = tmp_path / "alertmanager"
    directory.mkdir()
    token_file = directory / "responder-token"
    token_file.write_text(TOKEN)
    config = {
        "route": {"receiver": "responder", "group_by": ["service", "alertname"],
                  "group_wait": "1s", "group_interval": "1s", "repeat_interval": "1h"},
        "receivers": [{"name": "responder", "webhook_configs": [{
            "url": f"{responder.url}/api/v1/alerts", "send_resolved": True,
            "http_config": {"authorization": {"type": "Bearer",
                                              "credentials_file": str(token_file)}}}]}],
    }
    path = directory / "alertmanager.yml"
    path.write_text(yaml.safe_dump(config))
    alertmanager = Alertmanager(require_binary("prometheus-alertmanager"), directory=directory,
                                config_path=path, config=config, capture=capture,
                                responder_token=TOKEN)
    alertmanager.start()
    return alertmanager


class TestWithAlertmanager:
    """A real Alertmanager delivers to the real responder."""

    def test_firing_resolved_and_group(self, tmp_path: Path, capture_server: CaptureServer,
                                       responder_process: ResponderFactory) -> None:
        """A group of three firing alerts, then one resolved: each processed once."""
        responder = responder_process(lease="2s")
        alertmanager = start_alertmanager(tmp_path, responder, capture_server)
        try:
            group = [alert("DiskFull", "P3", service="backend", instance=f"backend-{i}")
                     for i in range(3)]
            alertmanager.post_alerts(group)
            assert wait_until(lambda: len(received_fingerprints(responder)) == 3, 20.0)
            resolved = alert("DiskFull", "P3", service="backend", instance="backend-1",
                             resolved=True)
            alertmanager.post_alerts([resolved])
            assert wait_until(lambda: store_rows(
                responder, "SELECT count(*) FROM journal WHERE status = 'resolved'")[0][0] == 1,
                20.0)
            assert wait_until(lambda: drained(responder), 10.0)
        finally:
            alertmanager.stop()
        fingerprints = received_fingerprints(responder)
        # Three firings and one resolution, each exactly once.
        assert len(fingerprints) == 4 and len(set(fingerprints)) == 3
        assert audit_verify(responder).returncode == 0

    def test_503_is_retried_and_processed_once(self, tmp_path: Path,
                                               capture_server: CaptureServer,
                                               responder_process: ResponderFactory) -> None:
        """While the store is locked the responder answers 503; Alertmanager retries; the
        notification is then processed exactly once."""
        responder = responder_process(lease="2s", store_timeout="100ms")
        locker = sqlite3.connect(responder.directory / "responder.db", isolation_level=None)
        locker.execute("BEGIN IMMEDIATE")  # another writer holds the lock: a real fault
        alertmanager = start_alertmanager(tmp_path, responder, capture_server)
        try:
            alertmanager.post_alerts([alert("QueueStuck", "P2", service="guardian")])

            def refused() -> bool:
                metrics = requests.get(f"{responder.url}/metrics", timeout=5).text
                return ('monitoriza_responder_requests_total{endpoint="/api/v1/alerts",'
                        'status="503"}') in metrics
            assert wait_until(refused, 20.0)
            locker.execute("ROLLBACK")
            assert wait_until(lambda: len(received_fingerprints(responder)) == 1, 30.0)
        finally:
            locker.close()
            alertmanager.stop()
        assert wait_until(lambda: drained(responder), 10.0)
        assert len(received_fingerprints(responder)) == 1
        assert store_rows(responder, "SELECT count(*) FROM journal")[0][0] == 1


class TestCrashSafety:
    """kill -9 while notifications arrive: every acknowledged one is processed exactly once."""

    def test_kill_9_during_intake(self, responder_process: ResponderFactory) -> None:
        """1,000 notifications from 8 clients; the responder is SIGKILLed three times (after
        ~250, ~500 and ~750 acks) and restarted each time; clients retry what was not
        acknowledged, as Alertmanager does."""
        responder = responder_process(lease="1s")
        template = fixture_json("firing_single.json")
        acked: set[str] = set()
        lock = threading.Lock()
        kill_after = (250, 500, 750)
        kill_due = [threading.Event() for _ in kill_after]
        retry_pause = threading.Event()  # never set: a 50 ms pause between a client's retries

        def notification(index: int) -> str:
            body = json.loads(json.dumps(template))
            body["alerts"][0]["fingerprint"] = f"{index:016x}"
            body["alerts"][0]["labels"]["instance"] = f"node-{index}"
            return json.dumps(body)

        def send(index: int) -> None:
            session = requests.Session()
            while True:
                try:
                    response = session.post(
                        f"{responder.url}/api/v1/alerts", data=notification(index),
                        headers={"Authorization": f"Bearer {TOKEN}",
                                 "Content-Type": "application/json"}, timeout=10)
                    if response.status_code == 200:
                        with lock:
                            acked.add(f"{index:016x}")
                            for threshold, due in zip(kill_after, kill_due, strict=True):
                                if len(acked) >= threshold:
                                    due.set()
                        session.close()
                        return
                except requests.RequestException:
                    pass
                retry_pause.wait(0.05)

        with ThreadPoolExecutor(max_workers=8) as pool:
            futures = [pool.submit(send, index) for index in range(1000)]
            for due in kill_due:
                assert due.wait(90)
                responder.kill9()
                assert responder.pids() == []
                responder.start()
            for future in futures:
                future.result(timeout=120)

        assert len(acked) == 1000
        assert wait_until(lambda: drained(responder), 60.0, interval=0.2)
        fingerprints = received_fingerprints(responder)
        assert sorted(fingerprints) == sorted(acked)  # none lost, none twice
        rows = store_rows(responder, "SELECT count(*), count(DISTINCT fingerprint) FROM journal")
        assert rows == [(1000, 1000)]
        result = audit_verify(responder)
        assert result.returncode == 0, result.stdout + result.stderr
