"""Each healing decision is made in one place: one test per duplicate that was removed.

The responder runs in-process on the real store (SQLite and PostgreSQL, the ``store_url``
fixture), with real HTTP targets and real commands. The healer runs on a fake clock where
the test says so: the fake only stands in for time (settle, backoff), never for a component.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Any

from flask import Flask
from sqlalchemy import select

from monitoriza.config import config_from_data
from monitoriza.config.schema import Config
from monitoriza.healing import repository
from monitoriza.healing.breaker import breaker_key
from monitoriza.healing.budget import budget_key
from monitoriza.healing.healer import ActionJob, Healer, HealOutcome
from monitoriza.healing.memory import Outcomes, demoted, rank
from monitoriza.healing.notify import Escalator
from monitoriza.healing.policy import judge_alert
from monitoriza.responder.app import create_app
from monitoriza.responder.state import responder_of
from monitoriza.store import actions, incidents, writing
from tests.support.alertmanager import CaptureServer
from tests.support.http_targets import HttpTarget
from tests.support.responder import TOKEN, closed_after_test, post

HEALING = Path(__file__).parent.parent / "monitoriza" / "healing"


class FakeClock:
    """Wall and monotonic time that only move when the code under test sleeps."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def alert_body(service: str, alertname: str, fingerprint: str, *, status: str = "firing",
               starts_at: str = "2026-12-01T10:00:00Z", **labels: str) -> str:
    alert = {"status": status,
             "labels": {"alertname": alertname, "service": service, "severity": "P3", **labels},
             "annotations": {}, "startsAt": starts_at, "endsAt": "0001-01-01T00:00:00Z",
             "generatorURL": "", "fingerprint": fingerprint}
    return json.dumps({"version": "4", "receiver": "responder", "status": status,
                       "alerts": [alert], "groupLabels": {}, "commonLabels": {},
                       "commonAnnotations": {}, "externalURL": "",
                       "groupKey": f"{{}}:{{service=\"{service}\"}}", "truncatedAlerts": 0})




def build(tmp_path: Path, store_url: str, services: dict[str, Any], clock: FakeClock,
          **healing: Any) -> tuple[Flask, Healer]:
    """An in-process responder (worker driven by the test) and a healer on ``clock``."""
    config: Config = config_from_data({"services": services, "responder": {
        "store_url": store_url, "token_file": str(tmp_path / "token"),
        "audit": {"signing_key_file": str(tmp_path / "signing.pem"),
                  "checkpoint_file": str(tmp_path / "checkpoints.jsonl")},
        "healing": {"kill_switch_file": str(tmp_path / "kill-switch"), **healing}}})
    app = create_app(config, token=TOKEN, start_worker=False)
    closed_after_test(app)
    state = responder_of(app)
    healer = Healer(state.journal.engine, config, state.audit, clock=clock.time,
                    monotonic=clock.time, sleep=clock.sleep)
    return app, healer


def journal_step(app: Flask) -> None:
    while responder_of(app).worker.run_once():
        pass


def heal(app: Flask, healer: Healer) -> None:
    journal_step(app)
    while healer.run_once():
        pass


def audit(app: Flask, kind: str) -> list[dict[str, Any]]:
    return [dict(e.data) for e in responder_of(app).audit.entries(limit=10000) if e.kind == kind]


def outcomes(app: Flask) -> list[str]:
    with responder_of(app).journal.engine.connect() as conn:
        return [str(row.outcome) for row in conn.execute(
            select(actions.c.outcome).order_by(actions.c.id))]


class TestSettleOnce:
    """The settle time is waited once, by verify, not again by the healer."""

    def test_a_5s_settle_waits_5s_not_10(self, tmp_path: Path, store_url: str,
                                          http_target: HttpTarget) -> None:
        """A healed service with ``settle: 5s`` and a passing probe: 5 s of sleep in all.

        Fake clock: the healer's sleep is recorded and advances the time; the action (a real
        HTTP call) and the verify probe (a real TCP connect) are real.
        """
        clock = FakeClock()
        url = http_target.respond("/heal/web", status=200)
        host, port = url.split("/")[2].split(":")
        app, healer = build(tmp_path, store_url, {"web": {
            "probes": [{"name": "port", "kind": "tcp", "host": host, "port": int(port)}],
            "healing": [{"name": "fix", "steps": [{"action": "http", "url": url}],
                         "verify": {"probe": "port", "settle": "5s", "timeout": "10s"}}]}},
            clock, allowed_urls=[http_target.url("/heal/")])
        post(app.test_client(), alert_body("web", "ServiceDown", "w1"))
        heal(app, healer)
        assert outcomes(app) == ["success"]
        assert sum(clock.sleeps) == 5.0, clock.sleeps


class TestPolicyIsTheJudge:
    """Resolved and symptom are the policy's answers; the healer only gathers the facts."""

    def test_resolved_before_the_action_ran(self, tmp_path: Path, store_url: str,
                                            http_target: HttpTarget) -> None:
        """The incident resolves between queueing and running: skipped with the policy's
        own reason, and the target is never called."""
        clock = FakeClock()
        url = http_target.respond("/heal/web", status=200)
        app, healer = build(tmp_path, store_url, {"web": {"healing": [
            {"name": "fix", "steps": [{"action": "http", "url": url}]}]}},
            clock, allowed_urls=[http_target.url("/heal/")])
        client = app.test_client()
        post(client, alert_body("web", "ServiceDown", "w1"))
        journal_step(app)
        post(client, alert_body("web", "ServiceDown", "w1", status="resolved"))
        heal(app, healer)
        assert outcomes(app) == ["skipped"]
        expected = judge_alert(False, False)
        assert expected is not None
        [skipped] = audit(app, "action.skipped")
        assert (skipped["check"], skipped["reason"]) == (expected.check, expected.reason)
        assert http_target.hits("/heal/web") == 0

    def test_root_cause_moved_before_the_action_ran(self, tmp_path: Path, store_url: str,
                                                    http_target: HttpTarget) -> None:
        """backend's action is queued; then redis, which backend depends on, fails too: the
        backend alert is now a symptom of redis, and the policy skips the queued action."""
        clock = FakeClock()
        url = http_target.respond("/heal/backend", status=200)
        app, healer = build(tmp_path, store_url, {
            "redis": {},
            "backend": {"depends_on": ["redis"], "healing": [
                {"name": "restart-backend", "steps": [{"action": "http", "url": url}]}]}},
            clock, allowed_urls=[http_target.url("/heal/")])
        client = app.test_client()
        post(client, alert_body("backend", "ServiceDown", "b1"))
        journal_step(app)
        post(client, alert_body("redis", "ServiceDown", "r1", starts_at="2026-12-01T09:59:00Z"))
        heal(app, healer)
        assert outcomes(app) == ["skipped"]
        [skipped] = audit(app, "action.skipped")
        assert skipped["check"] == "symptom"
        assert "symptom of redis" in skipped["reason"]
        assert http_target.hits("/heal/backend") == 0


class TestRefusedBeforeAnythingRan:
    """A step the allow-lists refuse spends no restart budget and is no breaker failure."""

    def test_three_refusals_then_two_legitimate_alerts_run(self, tmp_path: Path,
                                                          store_url: str) -> None:
        """Instances ``a;b``, ``$(x)``, ``../x`` are refused (blocked, nothing ran); the
        next two alerts, with a budget of 3 restarts, both run and succeed.

        Fake clock: the budget's backoff (10 s) passes between alerts without waiting.
        """
        clock = FakeClock()
        app, healer = build(tmp_path, store_url, {"worker": {"healing": [
            {"name": "restart-worker",
             "steps": [{"action": "command", "argv": ["/bin/true", "{label.instance}"]}]}]}},
            clock, allowed_commands=["/bin/true"],
            budget={"restarts": 3, "window": "15m", "backoff_initial": "10s",
                    "backoff_max": "10s"})
        client = app.test_client()
        for number, instance in enumerate(["a;b", "$(x)", "../x", "worker-1", "worker-2"]):
            post(client, alert_body("worker", "ServiceDown", f"f{number}", instance=instance))
            heal(app, healer)
            clock.now += 60
        assert outcomes(app) == ["blocked", "blocked", "blocked", "success", "success"]
        assert [entry["check"] for entry in audit(app, "action.blocked")] == ["refused"] * 3
        assert all("cannot fill a placeholder" in entry["reason"]
                   for entry in audit(app, "action.blocked"))
        with writing(responder_of(app).journal.engine) as conn:
            budget = repository.load_budget(conn, budget_key("worker"))
            breaker = repository.load_breaker(conn, breaker_key("worker", "restart-worker"),
                                              healer.settings.breaker)
        assert len(budget.attempts) == 2
        assert breaker.state == "closed"
        assert False not in breaker.recent


class TestOneBudgetKey:
    """The budget a restart spends is the one a recovery resets: one key, one spelling."""

    def test_recovery_starts_the_healthy_streak_of_the_spent_budget(
            self, tmp_path: Path, store_url: str, http_target: HttpTarget) -> None:
        """Heal, then resolve: the stored budget of the target has its healthy streak set."""
        clock = FakeClock()
        url = http_target.respond("/heal/web", status=200)
        app, healer = build(tmp_path, store_url, {"web": {"healing": [
            {"name": "fix", "steps": [{"action": "http", "url": url}]}]}},
            clock, allowed_urls=[http_target.url("/heal/")])
        client = app.test_client()
        post(client, alert_body("web", "ServiceDown", "w1"))
        heal(app, healer)
        assert outcomes(app) == ["success"]
        post(client, alert_body("web", "ServiceDown", "w1", status="resolved"))
        journal_step(app)
        with writing(responder_of(app).journal.engine) as conn:
            budget = repository.load_budget(conn, budget_key("web"))
        assert len(budget.attempts) == 1
        assert budget.healthy_since is not None


class TestOneRanking:
    """The playbook queued is memory.rank's first, and the audit says so."""

    def test_demoted_playbook_is_not_queued_and_the_ranking_is_true(
            self, tmp_path: Path, store_url: str, http_target: HttpTarget) -> None:
        """``a-first`` failed 5 times (demoted): ``b-second`` is queued and ranked first."""
        clock = FakeClock()
        url = http_target.respond("/heal/web", status=200)
        app, _ = build(tmp_path, store_url, {"web": {"healing": [
            {"name": "a-first", "steps": [{"action": "http", "url": url}]},
            {"name": "b-second", "steps": [{"action": "http", "url": url}]}]}},
            clock, allowed_urls=[http_target.url("/heal/")])
        client = app.test_client()
        post(client, alert_body("web", "ServiceDown", "w1"))
        journal_step(app)
        with writing(responder_of(app).journal.engine) as conn:
            signature = conn.execute(select(incidents.c.signature)).scalar_one()
            conn.execute(actions.delete())  # forget the first decision; keep the incident
            for _ in range(5):
                repository.record_outcome(conn, signature, "web", "a-first", False)
        assert demoted(Outcomes(0, 5))
        post(client, alert_body("web", "ServiceDown", "w2"))
        journal_step(app)
        queued = audit(app, "decision.queued")[-1]
        assert queued["playbook"] == "b-second"
        assert queued["ranking"] == rank({"a-first": Outcomes(0, 5), "b-second": Outcomes()})
        assert queued["ranking"][0] == queued["playbook"]


class TestSelfRaisedAlerts:
    """A refusal the responder escalated comes back through Alertmanager and is not healed."""

    def test_the_escalated_refusal_is_never_healed(
            self, tmp_path: Path, store_url: str, http_target: HttpTarget,
            capture_server: CaptureServer) -> None:
        """The Escalator's real P2, posted back as a webhook alert: no incident, no action,
        although the service has a playbook that matches every alert."""
        escalator = Escalator(capture_server.url)
        job = ActionJob(1, 1, "web", "fix", {})
        escalator.escalate(HealOutcome(job, "blocked", "budget spent"))
        assert capture_server.wait_for(
            lambda captured: "MonitorizaHealingRefused" in captured.raw.decode(), 10.0,
            "the escalation")
        [raised] = json.loads(capture_server.posts("/api/v2/alerts")[0].raw)
        clock = FakeClock()
        url = http_target.respond("/heal/web", status=200)
        app, healer = build(tmp_path, store_url, {"web": {"healing": [
            {"name": "fix", "steps": [{"action": "http", "url": url}]}]}},
            clock, allowed_urls=[http_target.url("/heal/")])
        labels = dict(raised["labels"])
        alertname, service = labels.pop("alertname"), labels.pop("service")
        post(app.test_client(), alert_body(service, alertname, "refusal", **labels))
        heal(app, healer)
        assert outcomes(app) == []
        assert audit(app, "incident.opened") == []
        assert [entry["check"] for entry in audit(app, "decision.skipped")] == ["self_raised"]
        assert http_target.hits("/heal/web") == 0


#: The console's login page and its HTML 404 for unknown console paths need no session.
CONSOLE_OPEN = frozenset({"console.login", "console.login_submit", "console.not_found"})


class TestOneAuthGuard:
    """Every endpoint but the operational ones needs the bearer token, through one guard."""

    OPEN = frozenset({"/healthz", "/readyz", "/metrics", "/api/v1/openapi.yaml",
                      "/static/<path:filename>"})

    def test_every_api_endpoint_refuses_without_a_token(self, tmp_path: Path,
                                                        store_url: str) -> None:
        """Walk the app's routes: each one not in OPEN answers 401 to every method it has;
        the console's pages (a login of their own, tests/test_console.py) send a caller
        without a session to the login page instead."""
        app, _ = build(tmp_path, store_url, {"web": {}}, FakeClock())
        client = app.test_client()
        guarded = 0
        for rule in app.url_map.iter_rules():
            path = re.sub(r"<[^>]+>", "1", rule.rule)  # every converter takes "1"
            for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
                response = client.open(path, method=method)
                if rule.rule.startswith("/console") and rule.endpoint not in CONSOLE_OPEN:
                    assert response.status_code == 302, (method, rule.rule)
                    assert response.location.startswith("/console/login"), rule.rule
                elif rule.endpoint in CONSOLE_OPEN:  # a page, even a refused login's
                    assert response.mimetype == "text/html", (method, rule.rule)
                elif rule.rule in self.OPEN:
                    assert response.status_code != 401, (method, rule.rule)
                else:
                    assert response.status_code == 401, (method, rule.rule)
                    assert response.get_json()["error"] == "unauthorized"
                    guarded += 1
        assert guarded >= 8  # alerts, audit, incidents, memory, kill switch, dead letters


class TestLayering:
    """healing/ never imports responder/: the arrow runs one way."""

    def test_no_healing_module_imports_the_responder(self) -> None:
        """Every import of every module under monitoriza/healing, read with ast."""
        offenders = []
        modules = sorted(HEALING.glob("*.py"))
        assert len(modules) > 10
        for module in modules:
            for node in ast.walk(ast.parse(module.read_text(), str(module))):
                names: list[str] = []
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module:
                    names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
                offenders += [f"{module.name}: {name}" for name in names
                              if name == "monitoriza.responder"
                              or name.startswith("monitoriza.responder.")]
        assert offenders == []
