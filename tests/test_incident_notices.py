"""Incident notices: one thread per outage and receiver, from the responder through a real
Alertmanager running the production routes; and where the stack's chat receivers post."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from monitoriza.healing.chat import NullNotifier
from monitoriza.healing.correlation import AlertEvent, AlertSummary, Incident, Topology, explain
from monitoriza.healing.notices import (
    NOTICE_ALERTNAME,
    NOTICE_TTL,
    NoticeSender,
    levels_up_to,
    notice_alerts,
    notice_level,
)
from monitoriza.healing.notify import Escalator, IncidentNotifier
from monitoriza.responder.app import create_app, stop_app
from monitoriza.responder.state import responder_of
from monitoriza.stack.render import alertmanager_config, chat_channel
from tests.support.alertmanager import PRODUCTION_CONFIG, AlertmanagerFactory, CapturedPost
from tests.support.binaries import free_port, wait_until
from tests.support.responder import TOKEN, fixture_body, post, responder_config

T0 = 1_700_000_000.0
TOPOLOGY = Topology(depends_on={"api-gateway": ("guardian",), "guardian": ()},
                    tiers={"api-gateway": "critical", "guardian": "standard"})
TEAM_SLACK = "/slack/team"
ONCALL_SLACK = "/slack/oncall"


def event(alertname: str, service: str, severity: str, status: str = "firing") -> AlertEvent:
    return AlertEvent(fingerprint=f"{alertname}/{service}/{severity}", starts_at=T0,
                      status="firing" if status == "firing" else "resolved",
                      alertname=alertname, service=service, severity=severity,
                      labels={"alertname": alertname, "service": service, "severity": severity},
                      received_at=T0)


def incident(*alerts: AlertEvent, state: str = "open") -> Incident:
    summary = AlertSummary.of(alerts)
    found = Incident(7, "resolved" if state == "resolved" else "open", T0,
                     T0 + 60 if state == "resolved" else None, summary)
    found.root_cause = explain(summary, TOPOLOGY)
    return found


GUARDIAN_P4 = event("ServiceDown", "guardian", "P4")
GUARDIAN_P3 = event("ServiceDown", "guardian", "P3")
GUARDIAN_P2 = event("ServiceDown", "guardian", "P2")
GATEWAY_P3 = event("ServiceDegraded", "api-gateway", "P3")


class TestNoticeLevel:
    """People hear of an incident from P3 up; P1 pages like P2."""

    @pytest.mark.parametrize(("severities", "expected"), [
        ((), None), (("P4",), None), (("P4", "P3"), "P3"), (("P3", "P2"), "P2"),
        (("P1",), "P2"), (("none",), None)])
    def test_level(self, severities: tuple[str, ...], expected: str | None) -> None:
        """The highest firing severity decides; resolved alerts do not count."""
        alerts = [event(f"A{n}", "guardian", level) for n, level in enumerate(severities)]
        alerts.append(event("Gone", "guardian", "P2", status="resolved"))
        assert notice_level(incident(*alerts)) == expected

    def test_levels_up_to(self) -> None:
        """An incident at P2 keeps its P3 notice too: the team's thread stays whole."""
        assert (levels_up_to(None), levels_up_to("P3"), levels_up_to("P2")) == (
            (), ("P3",), ("P3", "P2"))


class TestNoticeAlerts:
    """A notice names the incident, its root cause and symptoms, and never a service."""

    def test_firing_notice(self) -> None:
        """Labels route it; annotations tell the story; it lives NOTICE_TTL unless re-posted."""
        (notice,) = notice_alerts(incident(GUARDIAN_P3, GATEWAY_P3), ["P3"], now=T0 + 5,
                                  ended=False, outcome="Healed: restart on guardian")
        assert notice["labels"] == {"alertname": NOTICE_ALERTNAME, "incident": "7",
                                    "severity": "P3", "root_cause": "guardian",
                                    "site": "default", "monitoriza_raised_by": "responder"}
        annotations: Any = notice["annotations"]
        assert annotations["summary"] == "Incident #7: guardian; symptoms: api-gateway"
        assert "Healed: restart on guardian" in annotations["description"]
        assert notice["endsAt"] == "2023-11-14T23:13:25+00:00"
        assert T0 + 5 + NOTICE_TTL == 1_700_003_605.0

    def test_ended_notice(self) -> None:
        """An ended notice ends now, for every level asked."""
        notices = notice_alerts(incident(GUARDIAN_P3), ["P3", "P2"], now=T0 + 60, ended=True)
        assert [n["endsAt"] for n in notices] == ["2023-11-14T22:14:20+00:00"] * 2

    def test_unsaved_incident_is_refused(self) -> None:
        """Without an id there is nothing to group a thread by."""
        unsaved = incident(GUARDIAN_P3)
        unsaved.id = None
        with pytest.raises(ValueError, match="needs its id"):
            notice_alerts(unsaved, ["P3"], now=T0, ended=False)


def titles(posts: list[CapturedPost]) -> list[str]:
    return [post.body["attachments"][0]["title"] for post in posts
            if isinstance(post.body, dict) and post.body.get("attachments")]


class TestThroughAlertmanager:
    """The notifier's thread, through a real Alertmanager with the production routes."""

    def test_one_thread_per_outage(self, alertmanager_factory: AlertmanagerFactory) -> None:
        """Opened at P4 (silent), P3 (notice), repeats (silent), P2 (escalation), resolved:
        the team channel gets exactly three messages, on-call none (it is paged by the P2
        alert itself), and four posts reach Alertmanager (with one refresh). The clock is a fake, so
        that the re-post of notices about to expire can be tested without waiting."""
        am = alertmanager_factory()
        sender = NoticeSender(am.url)
        now = [time.time()]  # Alertmanager compares endsAt with its own clock
        notifier = IncidentNotifier(NullNotifier(), Escalator(None), sender,
                                    clock=lambda: now[0])
        notifier.incident("opened", incident(GUARDIAN_P4), "")
        notifier.incident("updated", incident(GUARDIAN_P4, GUARDIAN_P3), "")
        assert wait_until(lambda: bool(am.capture.posts(TEAM_SLACK)), 10)
        for _ in range(3):
            notifier.incident("updated", incident(GUARDIAN_P4, GUARDIAN_P3, GATEWAY_P3), "")
        notifier.incident("updated", incident(GUARDIAN_P3, GATEWAY_P3, GUARDIAN_P2), "")
        assert wait_until(lambda: len(am.capture.posts(TEAM_SLACK)) >= 2, 10)
        now[0] += NOTICE_TTL / 2  # a quiet hour: the refresh keeps the notices firing
        assert notifier.refresh() == 1
        now[0] = time.time()  # the end must be "now" for Alertmanager's clock too
        notifier.incident("resolved", incident(
            event("ServiceDown", "guardian", "P2", status="resolved"), state="resolved"), "")
        assert wait_until(lambda: len(am.capture.posts(TEAM_SLACK)) >= 3, 10)
        assert not wait_until(lambda: len(am.capture.posts(TEAM_SLACK)) > 3, 3.5)
        got = titles(am.capture.posts(TEAM_SLACK))
        assert [title.split("]")[0] for title in got] == ["[P3", "[P2", "[RESOLVED"], got
        assert "Incident #7: guardian" in got[0]
        assert not am.capture.posts(ONCALL_SLACK)
        stats = sender.stats()
        assert (stats.sent, stats.failed) == (4, 0)  # P3, P2, the refresh, the end


class TestStackChannels:
    """The stack posts each Slack receiver to the channel its secret URL file names."""

    def test_channel_by_secret_file(self) -> None:
        """team and team-chat share the team channel; a receiver without a file keeps its name."""
        assert chat_channel("team-chat", "/etc/alertmanager/secrets/team-slack-url") == "team"
        assert chat_channel("oncall", "/etc/alertmanager/secrets/oncall-slack-url") == "oncall"
        assert chat_channel("audit", None) == "audit"

    def test_rendered_config(self, tmp_path: Path) -> None:
        """Both team receivers post to /chat/team, both on-call ones to /chat/oncall."""
        canonical = yaml.safe_load(PRODUCTION_CONFIG.read_text())
        config = alertmanager_config(canonical, templates_dir=tmp_path,
                                     responder_url="http://127.0.0.1:1/api/v1/alerts",
                                     token_file=tmp_path / "token",
                                     chat_url="http://127.0.0.1:2")
        urls = {receiver["name"]: receiver["slack_configs"][0]["api_url"]
                for receiver in config["receivers"] if "slack_configs" in receiver}
        assert urls == {"team": "http://127.0.0.1:2/chat/team",
                        "team-chat": "http://127.0.0.1:2/chat/team",
                        "oncall": "http://127.0.0.1:2/chat/oncall",
                        "oncall-chat": "http://127.0.0.1:2/chat/oncall"}


def test_notices_alertmanager_cannot_take_are_counted(tmp_path: Path) -> None:
    """The responder's notice for a P3 incident, posted to an Alertmanager that is not
    there, shows as ``monitoriza_healing_notices_total{result="failed"}`` on /metrics: a
    notice the team never gets is visible, not only logged."""
    (tmp_path / "token").write_text(TOKEN)
    config = responder_config(tmp_path, healing={
        "kill_switch_file": str(tmp_path / "kill-switch"),
        "alertmanager_url": f"http://127.0.0.1:{free_port()}"})
    app = create_app(config, token=TOKEN, start_worker=False)
    client = app.test_client()
    try:
        assert post(client, fixture_body("firing_single.json")).status_code == 200
        while responder_of(app).worker.run_once():
            pass

        def failed() -> bool:
            return 'monitoriza_healing_notices_total{result="failed"} 1.0' in client.get(
                "/metrics").text
        assert wait_until(failed, 15.0)
        assert 'monitoriza_healing_notices_total{result="sent"} 0.0' in client.get(
            "/metrics").text
    finally:
        stop_app(app)
