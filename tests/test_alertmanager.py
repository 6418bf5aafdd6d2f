"""The Alertmanager configuration: validity, the routing table, templates, and a live run.

``amtool`` checks the files and the routing tree offline. The live tests start the real
``prometheus-alertmanager`` on a test copy of the configuration (see
``tests/support/alertmanager.py``: only URLs, file paths and the grouping timers differ) and
watch what it actually sends: which receivers are notified, that inhibition silences lower
severities only for alerts that carry a ``service``, and what the chat messages say.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.alertmanager import (
    ALERTMANAGER_DIR,
    PRODUCTION_CONFIG,
    TELEGRAM_CONFIG,
    TEST_GROUP_SECONDS,
    Alertmanager,
    AlertmanagerFactory,
    CapturedPost,
    alert,
)
from tests.support.binaries import require_binary, wait_until

CONFIGS = {"alertmanager.yml": PRODUCTION_CONFIG, "examples/telegram.yml": TELEGRAM_CONFIG}
TEMPLATE_FILE = ALERTMANAGER_DIR / "templates" / "monitoriza.tmpl"
RECEIVERS = {"oncall", "team", "oncall-chat", "team-chat", "responder", "deadmans-switch"}
RESPONDER_WEBHOOK = {
    "url": "http://127.0.0.1:9095/api/v1/alerts",
    "send_resolved": True,
    "max_alerts": 0,
    "http_config": {
        "authorization": {
            "type": "Bearer",
            "credentials_file": "/etc/alertmanager/secrets/responder-token",
        }
    },
}

# Paths on the capture server (see tests/support/alertmanager.py).
RESPONDER = "/api/v1/alerts"
DEADMANS = "/ping"
ONCALL_SLACK = "/slack/oncall"
TEAM_SLACK = "/slack/team"

# First notification: group_wait (1 s in the test copy) plus a generous margin for a busy CI.
DELIVERY_TIMEOUT = 10.0
# How long "never arrives" is watched: three group intervals after a comparable alert arrived.
QUIET_PERIOD = 3 * TEST_GROUP_SECONDS + 0.5


def load(path: Path) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    return document


def amtool(*args: str, cwd: Path = ALERTMANAGER_DIR) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require_binary("amtool"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def receiver(config: dict[str, Any], name: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = [r for r in config["receivers"] if r["name"] == name]
    assert len(found) == 1, f"receiver {name!r} defined {len(found)} times"
    return found[0]


# --- what the capture server received ---------------------------------------------------------


def alerts_in(post: CapturedPost) -> list[dict[str, Any]]:
    """The alerts of a webhook (responder or dead-man's switch) notification."""
    body = post.body
    if not isinstance(body, dict):
        return []
    alerts: list[dict[str, Any]] = body.get("alerts", [])
    return alerts


def carries(post: CapturedPost, status: str = "firing", **labels: str) -> bool:
    """Whether a webhook notification contains an alert in ``status`` with these labels."""
    return any(
        a["status"] == status and all(a["labels"].get(k) == v for k, v in labels.items())
        for a in alerts_in(post)
    )


def to_responder(status: str = "firing", **labels: str) -> Callable[[CapturedPost], bool]:
    return lambda post: post.path == RESPONDER and carries(post, status, **labels)


def slack_title(post: CapturedPost) -> str:
    body = post.body
    if not isinstance(body, dict) or not body.get("attachments"):
        return ""
    title: str = body["attachments"][0].get("title", "")
    return title


def slack_about(path: str, *words: str) -> Callable[[CapturedPost], bool]:
    return lambda post: post.path == path and all(w in slack_title(post) for w in words)


def api_alert(alertmanager: Alertmanager, **labels: str) -> dict[str, Any]:
    """The one alert that GET /api/v2/alerts lists with exactly these labels."""
    matching = [a for a in alertmanager.alerts() if a["labels"] == labels]
    assert len(matching) == 1, f"{labels}: {alertmanager.alerts()}"
    return matching[0]


# --- static checks --------------------------------------------------------------------------


class TestConfigFiles:
    """Both configurations are valid for Alertmanager 0.25 and follow the label contract."""

    @pytest.mark.parametrize("name", sorted(CONFIGS))
    def test_amtool_check_config_passes_with_templates(self, name: str) -> None:
        """amtool accepts the file, parses its templates, and the template glob finds files."""
        config = CONFIGS[name]
        result = amtool("check-config", config.name, cwd=config.parent)
        output = result.stdout + result.stderr
        assert result.returncode == 0, output
        assert "FAILED" not in output
        assert " - 1 templates" in output
        assert output.rstrip().endswith("SUCCESS"), output
        # amtool ignores a glob that matches nothing, so check that this one does match.
        patterns = load(config)["templates"]
        matched = [path for pattern in patterns for path in config.parent.glob(pattern)]
        assert TEMPLATE_FILE.resolve() in [path.resolve() for path in matched]

    def test_receivers_are_named_per_contract(self) -> None:
        """The six receivers exist with exactly the names routes and runbooks use."""
        for config in CONFIGS.values():
            assert {r["name"] for r in load(config)["receivers"]} == RECEIVERS

    @pytest.mark.parametrize("name", ["oncall", "team", "responder"])
    def test_every_human_receiver_also_reaches_the_responder(self, name: str) -> None:
        """oncall, team and responder carry the same authenticated responder webhook."""
        for config in CONFIGS.values():
            assert receiver(load(config), name)["webhook_configs"] == [RESPONDER_WEBHOOK]

    @pytest.mark.parametrize("name", ["oncall-chat", "team-chat"])
    def test_chat_only_receivers_never_reach_the_responder(self, name: str) -> None:
        """The responder's own notices and refusals go to chat, never back to the responder."""
        for config in CONFIGS.values():
            assert "webhook_configs" not in receiver(load(config), name)

    def test_chat_receivers_use_the_monitoriza_templates(self) -> None:
        """Slack titles and texts come from monitoriza.tmpl and resolved messages are sent."""
        config = load(PRODUCTION_CONFIG)
        for name, secret in (("oncall", "oncall-slack-url"), ("team", "team-slack-url"),
                             ("oncall-chat", "oncall-slack-url"),
                             ("team-chat", "team-slack-url")):
            (slack,) = receiver(config, name)["slack_configs"]
            assert slack["api_url_file"] == f"/etc/alertmanager/secrets/{secret}"
            assert slack["send_resolved"] is True
            assert slack["title"] == '{{ template "monitoriza.slack.title" . }}'
            assert slack["text"] == '{{ template "monitoriza.slack.text" . }}'
        assert set(receiver(config, "responder")) == {"name", "webhook_configs"}

    def test_deadmans_switch_only_pings(self) -> None:
        """The dead-man's switch has one webhook and nothing else."""
        deadmans = receiver(load(PRODUCTION_CONFIG), "deadmans-switch")
        assert set(deadmans) == {"name", "webhook_configs"}
        assert [w["url"] for w in deadmans["webhook_configs"]] == ["http://127.0.0.1:9096/ping"]

    def test_telegram_example_differs_only_in_the_oncall_chat(self) -> None:
        """telegram.yml is alertmanager.yml with on-call on Telegram (HTML, negative chat id)."""
        production, telegram = load(PRODUCTION_CONFIG), load(TELEGRAM_CONFIG)
        for key in ("global", "route", "inhibit_rules"):
            assert telegram[key] == production[key], key
        for name in ("team", "team-chat", "responder", "deadmans-switch"):
            assert receiver(telegram, name) == receiver(production, name)
        oncall = receiver(telegram, "oncall")
        assert set(oncall) == {"name", "telegram_configs", "webhook_configs"}
        oncall_chat = receiver(telegram, "oncall-chat")
        assert set(oncall_chat) == {"name", "telegram_configs"}
        assert oncall_chat["telegram_configs"] == oncall["telegram_configs"]
        (bot,) = oncall["telegram_configs"]
        assert bot["bot_token"] == "REPLACE_WITH_BOT_TOKEN"
        assert isinstance(bot["chat_id"], int)
        assert bot["chat_id"] < 0
        assert bot["parse_mode"] == "HTML"
        assert bot["message"] == '{{ template "monitoriza.telegram.message" . }}'

    def test_inhibition_never_involves_alerts_without_service(self) -> None:
        """Each inhibit rule requires a non-empty service on both sides."""
        for rule in load(PRODUCTION_CONFIG)["inhibit_rules"]:
            assert 'service=~".+"' in rule["source_matchers"]
            assert 'service=~".+"' in rule["target_matchers"]
            assert rule["equal"] == ["service", "alertname", "component", "forecast", "probe"]


# --- routing table --------------------------------------------------------------------------

# (case id, labels besides service/tier, the one receiver expected)
SEVERITY_CASES = [
    ("P2", {"severity": "P2", "alertname": "X"}, "oncall"),
    # Service alerts below P2 reach people as the responder's incident notices.
    ("P3", {"severity": "P3", "alertname": "X"}, "responder"),
    ("P4", {"severity": "P4", "alertname": "X"}, "responder"),
    ("Watchdog", {"severity": "none", "alertname": "Watchdog"}, "deadmans-switch"),
    # No or an unknown severity: `team` is the team chat *and* the responder webhook.
    ("missing", {"alertname": "X"}, "team"),
    ("P9", {"severity": "P9", "alertname": "X"}, "team"),
]


def routes_test(config: Path, labels: dict[str, str], expected: str) -> list[str]:
    """The receivers amtool resolves ``labels`` to, asserting amtool's own verification."""
    result = amtool(
        "config",
        "routes",
        "test",
        f"--config.file={config}",
        f"--verify.receivers={expected}",
        *(f"{name}={value}" for name, value in labels.items()),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.strip().split(",")


class TestRouting:
    """Every severity and tier reaches exactly the receiver the contract names."""

    @pytest.mark.parametrize("config_name", sorted(CONFIGS))
    @pytest.mark.parametrize("tier", ["critical", "standard"])
    @pytest.mark.parametrize(
        ("labels", "expected"),
        [pytest.param(labels, expected, id=case) for case, labels, expected in SEVERITY_CASES],
    )
    def test_severity_routes_to_exactly_one_receiver(
        self, config_name: str, tier: str, labels: dict[str, str], expected: str
    ) -> None:
        """A backend alert of this severity and tier resolves to exactly the expected receiver."""
        full = {"service": "backend", "tier": tier, **labels}
        assert routes_test(CONFIGS[config_name], full, expected) == [expected]

    @pytest.mark.parametrize("severity", ["none", "P2", "P3", "P4", None])
    @pytest.mark.parametrize("service", ["backend", None])
    def test_watchdog_only_reaches_the_deadmans_switch(
        self, severity: str | None, service: str | None
    ) -> None:
        """Watchdog goes to deadmans-switch alone, whatever its severity and service."""
        labels = {"alertname": "Watchdog"}
        if severity is not None:
            labels["severity"] = severity
        if service is not None:
            labels["service"] = service
        assert routes_test(PRODUCTION_CONFIG, labels, "deadmans-switch") == ["deadmans-switch"]

    @pytest.mark.parametrize(
        ("severity", "expected"), [("P2", "oncall"), ("P3", "team"), ("P4", "responder")]
    )
    def test_alerts_without_service_route_by_severity(self, severity: str, expected: str) -> None:
        """MonitorizaExporterDown-style alerts (no service, no tier) route like the others."""
        labels = {"alertname": "MonitorizaExporterDown", "severity": severity}
        assert routes_test(PRODUCTION_CONFIG, labels, expected) == [expected]

    @pytest.mark.parametrize("config_name", sorted(CONFIGS))
    @pytest.mark.parametrize(
        ("labels", "expected"),
        [
            ({"alertname": "MonitorizaIncident", "incident": "7", "severity": "P3",
              "root_cause": "guardian"}, "team-chat"),
            ({"alertname": "MonitorizaIncident", "incident": "7", "severity": "P2",
              "root_cause": "guardian"}, "team-chat"),
            ({"alertname": "MonitorizaHealingRefused", "severity": "P2", "service": "redis",
              "monitoriza_raised_by": "responder"}, "oncall-chat"),
        ],
        ids=["notice-P3", "notice-P2", "refusal"],
    )
    def test_the_responders_own_alerts_reach_chat_only(
        self, config_name: str, labels: dict[str, str], expected: str
    ) -> None:
        """Incident notices go to the team chat (escalation included: pages come straight
        from the P2 alerts), refusals to the on-call chat; neither back to the responder."""
        assert routes_test(CONFIGS[config_name], labels, expected) == [expected]


# --- templates ------------------------------------------------------------------------------


def template_data(status: str = "firing", **common: str) -> dict[str, Any]:
    """Notification data as Alertmanager builds it, for two alerts of one group."""
    labels = {"alertname": "BackendDown", "severity": "P2", **common}
    alerts = [
        {
            "status": status,
            "labels": {**labels, "instance": f"backend-{n}"},
            "annotations": {
                "summary": f"Backend <{n}> is down & out",
                "description": "HTTP probe failed 3 times > threshold",
                "runbook_url": "https://runbooks.example/backend-down",
            },
            "startsAt": "2024-01-01T00:00:00Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://127.0.0.1:9090/graph",
            "fingerprint": f"{n:016x}",
        }
        for n in (1, 2)
    ]
    return {
        "receiver": "oncall",
        "status": status,
        "alerts": alerts,
        "groupLabels": {k: v for k, v in labels.items() if k in {"service", "alertname"}},
        "commonLabels": labels,
        "commonAnnotations": {},
        "externalURL": "http://127.0.0.1:9093",
    }


def render(tmp_path: Path, template: str, data: dict[str, Any]) -> str:
    """Render ``{{ template "<template>" . }}`` from monitoriza.tmpl with amtool."""
    data_file = tmp_path / "data.json"
    data_file.write_text(json.dumps(data), encoding="utf-8")
    result = amtool(
        "template",
        "render",
        f"--template.glob={TEMPLATE_FILE}",
        f'--template.text={{{{ template "{template}" . }}}}',
        f"--template.data={data_file}",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


class TestTemplates:
    """The chat messages show status, severity, service, tier, annotations and links."""

    def test_every_template_the_configs_use_renders(self, tmp_path: Path) -> None:
        """Each template named in either config is defined and renders without error."""
        used = set()
        for config in CONFIGS.values():
            used |= set(re.findall(r'template "([^"]+)"', config.read_text(encoding="utf-8")))
        assert used >= {"monitoriza.slack.title", "monitoriza.slack.text"}
        data = template_data(service="backend", tier="critical")
        for name in sorted(used):
            assert render(tmp_path, name, data).strip(), name

    def test_slack_title_names_status_count_severity_and_service(self, tmp_path: Path) -> None:
        """The title reads like "[FIRING:2] P2 backend (critical): BackendDown"."""
        data = template_data(service="backend", tier="critical")
        title = render(tmp_path, "monitoriza.slack.title", data)
        assert title == "[FIRING:2] P2 backend (critical): BackendDown"
        resolved = template_data("resolved", service="backend", tier="critical")
        assert render(tmp_path, "monitoriza.slack.title", resolved).startswith("[RESOLVED:2] ")

    def test_slack_text_has_annotations_and_links(self, tmp_path: Path) -> None:
        """The text carries summary, description, runbook and the responder incident link."""
        text = render(
            tmp_path, "monitoriza.slack.text", template_data(service="backend", tier="standard")
        )
        assert "*FIRING:2*" in text
        assert "severity *P2*, service *backend*, tier *standard*" in text
        assert "<http://127.0.0.1:9095/api/v1/incidents?service=backend|" in text
        assert "Backend &lt;1&gt; is down &amp; out" in text  # Slack's three escapes
        assert "HTTP probe failed 3 times &gt; threshold" in text
        assert "Runbook: <https://runbooks.example/backend-down|" in text

    def test_alert_without_service_links_all_incidents(self, tmp_path: Path) -> None:
        """Without a service the link has no service filter and the text says so."""
        text = render(tmp_path, "monitoriza.slack.text", template_data())
        assert "<http://127.0.0.1:9095/api/v1/incidents|" in text
        assert "service *none*" in text

    def test_telegram_message_is_escaped_html(self, tmp_path: Path) -> None:
        """The Telegram message is HTML with every annotation escaped."""
        message = render(
            tmp_path,
            "monitoriza.telegram.message",
            template_data(service="backend", tier="critical"),
        )
        assert message.startswith("<b>[FIRING:2] P2 backend (critical): BackendDown</b>")
        assert '<a href="http://127.0.0.1:9095/api/v1/incidents?service=backend">' in message
        assert "Backend &lt;2&gt; is down &amp; out" in message
        assert '<a href="https://runbooks.example/backend-down">Runbook</a>' in message


# --- a real Alertmanager --------------------------------------------------------------------


class TestLiveAlertmanager:
    """A real Alertmanager with the production routes delivers and inhibits as designed."""

    def test_p2_pages_oncall_and_inhibits_the_p4(
        self, alertmanager_factory: AlertmanagerFactory
    ) -> None:
        """P2 reaches on-call chat and responder; the same service's P4 stays silenced."""
        am = alertmanager_factory()
        labels = {"alertname": "BackendDown", "service": "backend", "tier": "critical"}
        am.post_alerts(
            [
                alert("BackendDown", "P2", service="backend", tier="critical"),
                alert("BackendDown", "P4", service="backend", tier="critical"),
                # Same route and service, another alertname: not inhibited, so its arrival
                # proves the P4 route has flushed.
                alert("BackendSlow", "P4", service="backend", tier="critical"),
            ]
        )
        (slack, *_) = am.capture.wait_for(
            slack_about(ONCALL_SLACK, "BackendDown"), DELIVERY_TIMEOUT, "on-call Slack message"
        )
        assert slack_title(slack).startswith("[FIRING:1] P2 backend (critical)")
        (page, *_) = am.capture.wait_for(
            to_responder(severity="P2", **labels), DELIVERY_TIMEOUT, "P2 at the responder"
        )
        assert page.body["receiver"] == "oncall"
        am.capture.wait_for(
            to_responder(alertname="BackendSlow", severity="P4"), DELIVERY_TIMEOUT, "control P4"
        )

        inhibited = to_responder(severity="P4", **labels)
        assert not wait_until(lambda: am.capture.has(inhibited), QUIET_PERIOD), (
            "the inhibited P4 reached the responder"
        )

        p2 = api_alert(am, severity="P2", **labels)
        p4 = api_alert(am, severity="P4", **labels)
        assert p4["status"]["state"] == "suppressed"
        assert p4["status"]["inhibitedBy"] == [p2["fingerprint"]]
        assert p2["status"]["inhibitedBy"] == []
        assert not am.capture.posts(TEAM_SLACK)

    def test_responder_gets_the_bearer_token_from_the_file(
        self, alertmanager_factory: AlertmanagerFactory
    ) -> None:
        """Every POST to the responder carries Authorization: Bearer <token file content>."""
        am = alertmanager_factory()
        am.post_alerts([alert("QueueBacklog", "P4", service="worker", tier="standard")])
        am.capture.wait_for(to_responder(alertname="QueueBacklog"), DELIVERY_TIMEOUT)
        for post in am.capture.posts(RESPONDER):
            assert post.header("Authorization") == f"Bearer {am.responder_token}"
            assert post.body["receiver"] == "responder"

    def test_service_p3_goes_to_the_responder_only(
        self, alertmanager_factory: AlertmanagerFactory
    ) -> None:
        """A service's P3 reaches the responder alone: people hear of it as an incident."""
        am = alertmanager_factory()
        am.post_alerts([alert("RedisMemoryHigh", "P3", service="redis", tier="standard")])
        (post, *_) = am.capture.wait_for(
            to_responder(alertname="RedisMemoryHigh", severity="P3"), DELIVERY_TIMEOUT
        )
        assert post.body["receiver"] == "responder"
        assert not wait_until(lambda: am.capture.paths() != {RESPONDER}, QUIET_PERIOD)

    def test_p3_without_service_goes_to_team_chat_and_responder(
        self, alertmanager_factory: AlertmanagerFactory
    ) -> None:
        """A P3 about the monitoring itself (no service) still posts to the team chat."""
        am = alertmanager_factory()
        am.post_alerts([alert("MonitorizaResponderDown", "P3")])
        am.capture.wait_for(slack_about(TEAM_SLACK, "MonitorizaResponderDown"), DELIVERY_TIMEOUT)
        (post, *_) = am.capture.wait_for(
            to_responder(alertname="MonitorizaResponderDown"), DELIVERY_TIMEOUT
        )
        assert post.body["receiver"] == "team"
        assert not wait_until(lambda: bool(am.capture.posts(ONCALL_SLACK)), QUIET_PERIOD)
        assert am.capture.paths() == {TEAM_SLACK, RESPONDER}

    def test_incident_notices_make_one_team_thread(
        self, alertmanager_factory: AlertmanagerFactory
    ) -> None:
        """The responder's notices of one incident: the P3 notice, then the P2 escalation
        joining its group, then both ending, are three team messages: opened, escalated,
        resolved. Nothing reaches on-call or the responder."""
        am = alertmanager_factory()

        def notice(severity: str, resolved: bool = False) -> dict[str, Any]:
            document = alert("MonitorizaIncident", severity, incident="7",
                             root_cause="guardian", monitoriza_raised_by="responder",
                             resolved=resolved)
            document["annotations"]["summary"] = "Incident #7: guardian; symptoms: api-gateway"
            return document

        am.post_alerts([notice("P3")])
        am.capture.wait_for(slack_about(TEAM_SLACK, "[P3] Incident #7: guardian"),
                            DELIVERY_TIMEOUT, "the opened notice")
        am.post_alerts([notice("P3"), notice("P2")])
        am.capture.wait_for(slack_about(TEAM_SLACK, "[P2] Incident #7: guardian"),
                            DELIVERY_TIMEOUT, "the escalation")
        am.post_alerts([notice("P3", resolved=True), notice("P2", resolved=True)])
        am.capture.wait_for(slack_about(TEAM_SLACK, "[RESOLVED] Incident #7"),
                            DELIVERY_TIMEOUT, "the resolution")
        assert not wait_until(lambda: len(am.capture.posts(TEAM_SLACK)) > 3, QUIET_PERIOD)
        assert [slack_title(post).split("]")[0] for post in am.capture.posts(TEAM_SLACK)] == [
            "[P3", "[P2", "[RESOLVED"]
        assert am.capture.paths() == {TEAM_SLACK}

    def test_watchdog_only_pings_the_deadmans_switch(
        self, alertmanager_factory: AlertmanagerFactory
    ) -> None:
        """Watchdog reaches the dead-man's switch and no chat or responder."""
        am = alertmanager_factory()
        am.post_alerts([alert("Watchdog", "none")])
        (ping, *_) = am.capture.wait_for(
            lambda post: post.path == DEADMANS and carries(post, alertname="Watchdog"),
            DELIVERY_TIMEOUT,
            "dead-man's-switch ping",
        )
        assert ping.body["receiver"] == "deadmans-switch"
        assert not wait_until(lambda: am.capture.paths() != {DEADMANS}, QUIET_PERIOD)

    def test_alerts_without_service_are_never_inhibited(
        self, alertmanager_factory: AlertmanagerFactory
    ) -> None:
        """Service-less P2, P3 and P4 of one alertname are all delivered (the equal pitfall)."""
        am = alertmanager_factory()
        name = "PrometheusRuleFailures"
        am.post_alerts([alert(name, severity) for severity in ("P2", "P3", "P4")])
        for severity, via in (("P2", "oncall"), ("P3", "team"), ("P4", "responder")):
            (post, *_) = am.capture.wait_for(
                to_responder(alertname=name, severity=severity),
                DELIVERY_TIMEOUT,
                f"service-less {severity} at the responder",
            )
            assert post.body["receiver"] == via
        for severity in ("P3", "P4"):
            status = api_alert(am, alertname=name, severity=severity)["status"]
            assert status["inhibitedBy"] == []
            assert status["state"] == "active"

    def test_unknown_or_missing_severity_reaches_team_chat_and_responder_once(
        self, alertmanager_factory: AlertmanagerFactory
    ) -> None:
        """No severity, or one outside the contract, is never dropped nor duplicated."""
        am = alertmanager_factory()
        am.post_alerts(
            [
                alert("ForgotSeverity", service="backend", tier="standard"),
                alert("OddSeverity", "P9", service="backend", tier="standard"),
            ]
        )
        for name in ("ForgotSeverity", "OddSeverity"):
            am.capture.wait_for(slack_about(TEAM_SLACK, name), DELIVERY_TIMEOUT)
            am.capture.wait_for(to_responder(alertname=name), DELIVERY_TIMEOUT)
        assert not wait_until(lambda: bool(am.capture.posts(ONCALL_SLACK)), QUIET_PERIOD)
        for name in ("ForgotSeverity", "OddSeverity"):
            deliveries = [p for p in am.capture.posts(RESPONDER) if carries(p, alertname=name)]
            assert len(deliveries) == 1, deliveries
            assert deliveries[0].body["receiver"] == "team"

    def test_resolving_the_p2_sends_resolved_and_releases_the_p4(
        self, alertmanager_factory: AlertmanagerFactory
    ) -> None:
        """Once the P2 resolves, chat and responder hear so and the P4 is delivered firing."""
        am = alertmanager_factory()
        labels = {"service": "backend", "tier": "critical"}
        am.post_alerts(
            [
                alert("BackendDown", "P2", service="backend", tier="critical"),
                alert("BackendDown", "P4", service="backend", tier="critical"),
            ]
        )
        am.capture.wait_for(to_responder(alertname="BackendDown", severity="P2"), 10.0)
        p4 = api_alert(am, alertname="BackendDown", severity="P4", **labels)
        assert p4["status"]["inhibitedBy"]

        am.post_alerts(
            [alert("BackendDown", "P2", service="backend", tier="critical", resolved=True)]
        )
        am.capture.wait_for(
            slack_about(ONCALL_SLACK, "[RESOLVED:1]", "BackendDown"),
            DELIVERY_TIMEOUT,
            "resolved on-call Slack message",
        )
        am.capture.wait_for(
            to_responder("resolved", alertname="BackendDown", severity="P2"), DELIVERY_TIMEOUT
        )
        (released, *_) = am.capture.wait_for(
            to_responder(alertname="BackendDown", severity="P4"),
            DELIVERY_TIMEOUT,
            "the released P4 at the responder",
        )
        assert released.body["receiver"] == "responder"

    def test_a_p4_resolving_while_inhibited_is_never_reported_resolved(
        self, alertmanager_factory: AlertmanagerFactory
    ) -> None:
        """Pins Alertmanager 0.25: a notified P4 that resolves under inhibition stays "open".

        The inhibited, resolved P4 is muted at each flush of its group, and a flush that muted
        everything counts as delivered, so the group forgets it: the responder heard the P4
        fire and never hears it resolve, not even after the P2 resolves. The responder must
        close such incidents itself (see alertmanager/README.md).
        """
        am = alertmanager_factory()
        labels = {"alertname": "BackendDown", "service": "backend", "tier": "critical"}
        p4 = alert("BackendDown", "P4", service="backend", tier="critical")
        p2 = alert("BackendDown", "P2", service="backend", tier="critical")
        am.post_alerts([p4])
        am.capture.wait_for(to_responder(severity="P4", **labels), DELIVERY_TIMEOUT)
        am.post_alerts([p2])
        am.capture.wait_for(to_responder(severity="P2", **labels), DELIVERY_TIMEOUT)

        am.post_alerts(
            [alert("BackendDown", "P4", service="backend", tier="critical", resolved=True)]
        )
        p4_resolved = to_responder("resolved", severity="P4", **labels)
        assert not wait_until(lambda: am.capture.has(p4_resolved), QUIET_PERIOD)

        am.post_alerts(
            [alert("BackendDown", "P2", service="backend", tier="critical", resolved=True)]
        )
        am.capture.wait_for(to_responder("resolved", severity="P2", **labels), DELIVERY_TIMEOUT)
        assert not wait_until(lambda: am.capture.has(p4_resolved), QUIET_PERIOD)
        assert am.alerts() == []

    def test_telegram_example_pages_oncall_through_the_bot_api(
        self, alertmanager_factory: AlertmanagerFactory
    ) -> None:
        """With telegram.yml a P2 becomes an HTML sendMessage plus the responder webhook."""
        am = alertmanager_factory(TELEGRAM_CONFIG)
        bot = receiver(am.config, "oncall")["telegram_configs"][0]
        am.post_alerts([alert("BackendDown", "P2", service="backend", tier="critical")])
        (message, *_) = am.capture.wait_for(
            lambda post: post.path.endswith("/sendMessage"), DELIVERY_TIMEOUT, "sendMessage"
        )
        assert message.path == f"/telegram/oncall/bot{bot['bot_token']}/sendMessage"
        assert int(message.body["chat_id"]) == bot["chat_id"]  # telebot sends it as a string
        assert message.body["parse_mode"] == "HTML"
        assert message.body["text"].startswith(
            "<b>[FIRING:1] P2 backend (critical): BackendDown</b>"
        )
        am.capture.wait_for(to_responder(alertname="BackendDown", severity="P2"), 10.0)
        assert not am.capture.posts(prefix="/slack/")
