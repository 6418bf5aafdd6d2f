"""Healing for real: a Docker engine, a redis-server, the responder's worker and healer.

The responder runs in-process (Flask test client) so the test can drive its worker and healer
step by step; everything they touch is real.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import docker.errors
import pytest
import redis
from flask import Flask
from sqlalchemy import select

from monitoriza.config import config_from_data
from monitoriza.responder.app import create_app
from monitoriza.responder.state import responder_of
from monitoriza.store import actions
from tests.support.alertmanager import CaptureServer
from tests.support.binaries import free_port, require_binary, wait_until
from tests.support.dockerd import DockerEngine
from tests.support.responder import TOKEN, post, process


def notification(service: str, alertname: str, *, status: str = "firing",
                 severity: str = "P4", starts_at: datetime | None = None,
                 fingerprint: str | None = None, **labels: str) -> str:
    started = (starts_at or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    alert = {"status": status,
             "labels": {"alertname": alertname, "service": service, "severity": severity,
                        **labels},
             "annotations": {"summary": f"{alertname} on {service}"},
             "startsAt": started, "endsAt": "0001-01-01T00:00:00Z",
             "generatorURL": "", "fingerprint": fingerprint or f"{service}-{started}"}
    return json.dumps({"version": "4", "receiver": "responder", "status": status,
                       "alerts": [alert], "groupLabels": {}, "commonLabels": {},
                       "commonAnnotations": {}, "externalURL": "",
                       "groupKey": f"{{}}:{{service=\"{service}\"}}", "truncatedAlerts": 0})


def responder(tmp_path: Path, store_url: str, services: dict[str, Any],
              **healing: Any) -> Flask:
    """An in-process responder on ``store_url`` (the ``store_url`` fixture: each test runs on
    SQLite and on PostgreSQL), keeping its files under ``tmp_path``."""
    config = config_from_data({"services": services, "responder": {
        "store_url": store_url,
        "token_file": str(tmp_path / "token"),
        "audit": {"signing_key_file": str(tmp_path / "signing.pem"),
                  "checkpoint_file": str(tmp_path / "checkpoints.jsonl")},
        "healing": {"kill_switch_file": str(tmp_path / "kill-switch"), **healing}}})
    app = create_app(config, token=TOKEN, start_worker=False)
    _APPS.append(app)
    return app


_APPS: list[Flask] = []


@pytest.fixture
def removed_after(docker_engine: DockerEngine) -> Iterator[list[str]]:
    """Names of containers to remove after the test (each backend's run reuses the names)."""
    names: list[str] = []
    yield names
    for name in names:
        with contextlib.suppress(docker.errors.NotFound):
            docker_engine.client.containers.get(name).remove(force=True)


@pytest.fixture(autouse=True)
def _close_stores() -> Iterator[None]:
    """Close the pools of the responders a test built, before its database is dropped."""
    yield
    while _APPS:
        responder_of(_APPS.pop()).journal.engine.dispose()



def outcomes(app: Flask) -> list[str]:
    with responder_of(app).journal.engine.connect() as conn:
        return [row.outcome for row in conn.execute(select(actions.c.outcome)
                                                    .order_by(actions.c.id))]


def kinds(app: Flask) -> list[str]:
    return [entry.kind for entry in responder_of(app).audit.entries(limit=10000)]


class TestRealHealing:
    """A stopped container and a killed Redis come back through their playbooks."""

    def test_docker_restart(self, tmp_path: Path, store_url: str, docker_engine: DockerEngine,
                            removed_after: list[str]) -> None:
        """Container stopped -> docker_restart -> verify passes -> memory and audit updated."""
        removed_after.append("mz-heal-web")
        container = docker_engine.run_container("mz-heal-web")
        container.stop(timeout=1)
        app = responder(tmp_path, store_url, {"web": {"probes": [
            {"kind": "docker", "container": "mz-heal-web", "docker_url": docker_engine.url}],
            "healing": [{"name": "restart-web", "match": {"alertname": ["ServiceDown"]},
                         "steps": [{"action": "docker_restart", "container": "mz-heal-web",
                                    "docker_url": docker_engine.url, "timeout": "10s"}],
                         "verify": {"probe": "docker", "timeout": "10s",
                                    "interval": "500ms"}}]}})
        response = post(app.test_client(), notification("web", "ServiceDown"))
        assert response.status_code == 200
        process(app)
        container.reload()
        assert container.status == "running"
        assert outcomes(app) == ["success"]
        memory = app.test_client().get("/api/v1/memory",
                                       headers={"Authorization": f"Bearer {TOKEN}"}).get_json()
        assert memory["memory"][0]["successes"] == 1
        assert {"incident.opened", "decision.queued", "action.started",
                "action.success"} <= set(kinds(app))
        assert responder_of(app).audit.verify().ok
        incident = app.test_client().get("/api/v1/incidents/1", headers={
            "Authorization": f"Bearer {TOKEN}"}).get_json()
        assert incident["root_cause"]["service"] == "web"
        assert incident["actions"][0]["outcome"] == "success"

    def test_command_restarts_redis(self, tmp_path: Path, store_url: str,
                                    redis_server: Any) -> None:
        """redis-server killed -> a command playbook starts it again -> the probe passes."""
        binary = require_binary("redis-server")
        pidfile = tmp_path / "healed-redis.pid"
        argv = [binary, "--port", str(redis_server.port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--daemonize", "yes",
                "--pidfile", str(pidfile), "--dir", str(tmp_path)]
        app = responder(tmp_path, store_url, {"redis": {
            "probes": [{"kind": "redis", "url": redis_server.url, "timeout": "1s"}],
            "healing": [{"name": "start-redis", "steps": [
                {"action": "command", "argv": argv, "timeout": "10s"}],
                "verify": {"probe": "redis", "timeout": "10s", "interval": "200ms"}}]}},
            allowed_commands=[binary])
        redis_server.kill()
        try:
            post(app.test_client(), notification("redis", "ServiceDown"))
            process(app)
            assert outcomes(app) == ["success"]
            client = redis.Redis(port=redis_server.port, socket_timeout=2)
            try:
                assert client.ping()
            finally:
                client.close()
        finally:
            if pidfile.exists():
                subprocess.run(["kill", pidfile.read_text().strip()], check=False)
                wait_until(lambda: not pidfile.exists(), 5.0)


class TestNoRestartLoop:
    """A container that dies a second after every start is not restarted forever."""

    def test_budget_then_breaker_then_page(self, tmp_path: Path, docker_engine: DockerEngine,
                                           capture_server: CaptureServer,
                                           removed_after: list[str]) -> None:
        """At most 3 restarts; the breaker opens; the refusal pages on-call (a P2).

        SQLite only: its seconds are real restarts and a real settle (the container must have
        time to fall over again), and the budget and breaker states on PostgreSQL are covered
        by tests/test_cluster.py, with several replicas. ``recovery_cooldown`` is 10 ms because
        here every re-fire is a new failure to heal, not an after-effect of a recovery.
        """
        removed_after.append("mz-crashloop")
        store_url = f"sqlite:///{tmp_path / 'responder.db'}"
        docker_engine.client.containers.run(
            docker_engine.image, ["sh", "-c", "sleep 1; exit 1"], name="mz-crashloop",
            detach=True, network_mode="none")
        app = responder(tmp_path, store_url, {"flaky": {
            "probes": [{"kind": "docker", "container": "mz-crashloop",
                        "docker_url": docker_engine.url}],
            "healing": [{"name": "restart-flaky", "steps": [
                {"action": "docker_restart", "container": "mz-crashloop",
                 "docker_url": docker_engine.url, "timeout": "1s"}],
                "verify": {"probe": "docker", "settle": "1500ms", "timeout": "500ms",
                           "interval": "250ms"}}]}},
            budget={"restarts": 3, "window": "15m", "backoff_initial": "10ms",
                    "backoff_max": "40ms"}, recovery_cooldown="10ms",
            alertmanager_url=capture_server.url)
        client = app.test_client()
        # Alertmanager sees the probe flap: every cycle resolves and fires again.
        for cycle in range(6):
            fired = datetime.fromtimestamp(time.time() + cycle, UTC)
            post(client, notification("flaky", "ServiceDown", starts_at=fired,
                                      fingerprint=f"flaky{cycle}"))
            process(app)
            post(client, notification("flaky", "ServiceDown", status="resolved",
                                      starts_at=fired, fingerprint=f"flaky{cycle}"))
            process(app)
            time.sleep(0.1)
        done = outcomes(app)
        assert done.count("failure") == 3  # the budget: three restarts, each falling over
        assert done[3:] == ["blocked"] * 3
        breaker = client.get("/metrics").text
        assert ('monitoriza_healing_breaker_state{action="restart-flaky",service="flaky",'
                'site="default",state="open"} 1.0') in breaker
        assert capture_server.wait_for(
            lambda post: "MonitorizaHealingRefused" in post.raw.decode(), 10.0,
            "a P2 escalation to Alertmanager")
        # The budget refused first: its page links to the budget's runbook section.
        escalated = [alert for post in capture_server.posts()
                     if "MonitorizaHealingRefused" in post.raw.decode()
                     for alert in json.loads(post.raw)]
        assert escalated[0]["annotations"]["runbook_url"] == (
            "docs/runbooks.md#refused-restart-budget")
        assert wait_until(lambda: 'monitoriza_healing_escalations_total{result="sent"} 3.0'
                          in client.get("/metrics").text, 10.0)


class TestConectaCase:
    """backend reports redis unknown while Redis is healthy: Redis is not restarted."""

    def test_component_root_cause(self, tmp_path: Path, store_url: str,
                                  http_target: Any) -> None:
        """The backend's playbook runs; the Redis playbook never does."""
        url = http_target.respond("/admin/reconnect", status=200)
        app = responder(tmp_path, store_url, {
            "redis": {"healing": [{"name": "restart-redis", "steps": [
                {"action": "http", "url": http_target.url("/admin/restart-redis")}]}]},
            "backend": {"depends_on": ["redis"], "healing": [{
                "name": "reconnect-redis", "match": {"alertname": ["ComponentUnknown"]},
                "steps": [{"action": "http", "url": url, "method": "POST"}]}]}},
            allowed_urls=[http_target.url("/admin/")])
        post(app.test_client(), notification("backend", "ComponentUnknown",
                                             component="redis"))
        process(app)
        assert outcomes(app) == ["success"]
        assert http_target.hits("/admin/reconnect") == 1
        assert http_target.hits("/admin/restart-redis") == 0
        incident = app.test_client().get("/api/v1/incidents/1", headers={
            "Authorization": f"Bearer {TOKEN}"}).get_json()
        assert incident["root_cause"] == {"service": "backend", "component": "redis",
                                          "kind": "component"}


class TestKillSwitch:
    """The kill switch stops healing at once, through a file or the API."""

    def test_file_and_api(self, tmp_path: Path, store_url: str, http_target: Any) -> None:
        """With the switch on, the action is blocked and audited; nothing is called."""
        url = http_target.respond("/admin/fix", status=200)
        app = responder(tmp_path, store_url, {"web": {"healing": [{"name": "fix", "steps": [
            {"action": "http", "url": url}]}]}}, allowed_urls=[http_target.url("/admin/")])
        client = app.test_client()
        headers = {"Authorization": f"Bearer {TOKEN}"}
        assert client.post("/api/v1/kill-switch", json={"enabled": True},
                           headers=headers).get_json() == {"enabled": True}
        post(client, notification("web", "ServiceDown", fingerprint="a"))
        process(app)
        assert outcomes(app) == ["blocked"]
        assert http_target.hits("/admin/fix") == 0
        client.post("/api/v1/kill-switch", json={"enabled": False}, headers=headers)
        (tmp_path / "kill-switch").touch()
        assert client.get("/api/v1/kill-switch", headers=headers).get_json()["enabled"]
        (tmp_path / "kill-switch").unlink()
        assert not client.get("/api/v1/kill-switch", headers=headers).get_json()["enabled"]
        assert "kill_switch" in kinds(app)


class TestChat:
    """Incidents and healing are posted to chat; a chat outage never stops healing."""

    def heal_once(self, tmp_path: Path, store_url: str, http_target: Any,
                  chat_url: str) -> Flask:
        (tmp_path / "chat-url").write_text(chat_url)
        url = http_target.respond("/admin/fix", status=200)
        app = responder(tmp_path, store_url, {"web": {"healing": [{"name": "fix", "steps": [
            {"action": "http", "url": url}]}]}}, allowed_urls=[http_target.url("/admin/")],
            chat={"webhook_url_file": str(tmp_path / "chat-url"), "retries": 1,
                  "timeout": "1s"})
        post(app.test_client(), notification("web", "ServiceDown", fingerprint="w1"))
        process(app)
        return app

    def test_posts_arrive(self, tmp_path: Path, store_url: str, http_target: Any,
                          capture_server: CaptureServer) -> None:
        """The real receiver gets "incident opened" and "healed", in Slack's format."""
        app = self.heal_once(tmp_path, store_url, http_target, f"{capture_server.url}/chat")
        assert outcomes(app) == ["success"]
        capture_server.wait_for(lambda p: "Healed" in p.raw.decode(), 10.0, "a healed post")
        titles = [p.body["attachments"][0]["title"] for p in capture_server.posts("/chat")]
        assert any(title.startswith("Incident opened #1: web") for title in titles)

    def test_chat_down(self, tmp_path: Path, store_url: str, http_target: Any) -> None:
        """With nothing listening at the chat URL, healing completes and failures are counted."""
        app = self.heal_once(tmp_path, store_url, http_target,
                             f"http://127.0.0.1:{free_port()}/chat")
        assert outcomes(app) == ["success"]
        assert http_target.hits("/admin/fix") == 1

        def failures_counted() -> bool:
            text = app.test_client().get("/metrics").text
            return 'monitoriza_chat_messages_total{result="failed"} 0.0' not in text and \
                'monitoriza_chat_messages_total{result="failed"}' in text
        assert wait_until(failures_counted, 15.0)
