"""The whole stack as ``make run`` starts it (``monitoriza up --demo``), driven by
``monitoriza demo fault``: real Prometheus and Alertmanager running the project's own rules
(time-scaled by 0.05) and routing, the exporter, the responder, a real redis-server and a real
busybox container in the tests' Docker engine.

The scenarios share one stack and run in file order, each ending with the demo healthy again:
Redis killed and healed; a backend that reports Redis ``unknown`` while Redis is fine; a
container that keeps dying; a disk filling; a check-in flow broken behind green probes; then
every dashboard query and a screenshot of the alerts page.
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from tests.support.binaries import require_binary, wait_until
from tests.support.dashboards import expand_variables, panel_queries
from tests.support.stack import ARTIFACTS, DemoStack, record_artifact, wait_for

pytestmark = pytest.mark.usefixtures("demo_stack")

RULES_SCALE = 0.05
SCRAPE = EVALUATION = 1.0
GROUP_WAIT = 1.5  # 30s x 0.05
FOR_P4 = 60 * RULES_SCALE  # ServiceDown P4: for 1m
FOR_P3 = 300 * RULES_SCALE  # ServiceDown P3: for 5m


RECOVERY_COOLDOWN = 180 * RULES_SCALE  # responder.healing.recovery_cooldown in the demo
QUIET = 5.0  # longer than the notices' group interval (1m x 0.05) and the P2 route's


def chat_titles(stack: DemoStack, since: int) -> dict[str, list[str]]:
    """The titles posted to the team and on-call channels of the demo chat inbox, after the
    first ``since`` messages of the inbox (whatever the channel)."""
    found: dict[str, list[str]] = {"team": [], "oncall": []}
    for message in stack.chat_messages()[since:]:
        if message["receiver"] in found:
            payload = message["payload"]
            attachments = payload.get("attachments") or [{}]
            found[message["receiver"]].append(attachments[0].get("title") or payload["text"])
    return found


def resolutions(titles: list[str]) -> list[str]:
    return [title for title in titles if title.startswith("[RESOLVED")]


def opened_since(stack: DemoStack, moment: float) -> list[dict[str, Any]]:
    return [incident for incident in stack.incidents() if incident["opened_at"] >= moment]


def redis_incident(stack: DemoStack) -> dict[str, Any] | None:
    for incident in stack.incidents():
        if (incident["root_cause"] or {}).get("service") == "redis" and \
                "ServiceDown" in incident["signature"]:
            return stack.incident(incident["id"])
    return None


def screenshot(url: str, path: Path) -> None:
    """Headless Chromium's picture of ``url``. Debian's Prometheus ships the classic UI only
    (the React one needs npm at build time), hence /classic/alerts."""
    chromium = require_binary("chromium")
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", f"--user-data-dir={profile}", "--window-size=1400,1100",
             "--virtual-time-budget=10000", f"--screenshot={path}", url],
            capture_output=True, timeout=90, check=True)


class TestRedisKilledAndHealed:
    """Redis killed → probe fails → P4 → P3 → one incident rooted at Redis, the backend's and
    the orchestrator's ``redis`` components its symptoms → the ``command`` playbook restarts
    redis-server → verified → alerts resolve → incident resolved → the audit chain verifies."""

    def test_detect_escalate_heal_resolve(self, demo_stack: DemoStack) -> None:
        stack = demo_stack
        first_message = len(stack.chat_messages())
        started = time.time()
        stack.fault("redis", "down")
        detected = wait_for(lambda: stack.firing("ServiceDown", service="redis", severity="P4"),
                            30, "ServiceDown P4 for redis", stack)
        ARTIFACTS.mkdir(exist_ok=True)
        page = requests.get(f"{stack.prometheus}/classic/alerts", timeout=10).text
        assert "ServiceDown" in page
        shot = ARTIFACTS / "prometheus-alerts-demo.png"
        screenshot(f"{stack.prometheus}/classic/alerts", shot)
        assert shot.read_bytes().startswith(b"\x89PNG")
        wait_for(lambda: any(a["outcome"] == "success"
                             for a in (redis_incident(stack) or {"actions": []})["actions"]),
                 60, "the restart-redis action to succeed", stack)
        incident = redis_incident(stack)
        assert incident is not None
        action = next(a for a in incident["actions"] if a["outcome"] == "success")
        assert action["playbook"] == "restart-redis"
        assert action["alert"]["severity"] == "P3"  # healed on the escalation, not the P4
        assert incident["root_cause"] == {"service": "redis", "component": None,
                                          "kind": "service"}
        symptoms = {(a["labels"]["service"], a["labels"].get("component"))
                    for a in incident["alerts"] if a["labels"]["alertname"].startswith(
                        "Component")}
        assert ("backend", "redis") in symptoms
        assert any("backend reports its redis component" in line
                   for line in incident["reasoning"])
        healed = float(action["finished_at"])
        wait_for(lambda: not any(a["labels"].get("service") == "redis"
                                 and a["state"] == "firing"
                                 and a["labels"]["alertname"] == "ServiceDown"
                                 for a in stack.alerts()),
                 60, "ServiceDown for redis to resolve", stack)
        resolved_at = wait_for(lambda: stack.incident(incident["id"])["state"] == "resolved",
                               90, "the incident to be resolved", stack)
        verify = stack.monitoriza("audit", "verify", "--config", str(stack.config))
        assert verify.returncode == 0, verify.stdout + verify.stderr
        assert "audit chain OK" in verify.stdout
        # The recovery's after-effects stay in the healed incident: no second one, no
        # second heal, during the cool-down and after it.
        wait_for(lambda: len(resolutions(chat_titles(stack, first_message)["team"])) >= 1,
                 30, "the team's resolution message", stack)
        time.sleep(RECOVERY_COOLDOWN + QUIET)
        redis_incidents = [found for found in opened_since(stack, started)
                           if "redis" in found["services"]]
        assert [found["id"] for found in redis_incidents] == [incident["id"]], redis_incidents
        incident = stack.incident(incident["id"])
        # Only one restart: the other alerts of the incident did not trigger more.
        assert [a["playbook"] for a in incident["actions"]] == ["restart-redis"]
        titles = chat_titles(stack, first_message)
        record_artifact("e2e-redis-chat.json", titles)
        assert len(titles["team"]) <= 3, titles  # opened, escalated at most, resolved
        assert len(resolutions(titles["team"])) == 1, titles
        assert titles["team"][-1].startswith("[RESOLVED]"), titles
        assert titles["oncall"] == [], titles  # Redis is standard tier: no page
        timings = {
            "time_to_detect_s": round(detected - started, 1),
            "detect_pipeline_minimum_s": SCRAPE + EVALUATION + FOR_P4,
            "time_to_heal_s": round(healed - started, 1),
            "heal_pipeline_minimum_s": SCRAPE + EVALUATION + FOR_P3 + GROUP_WAIT,
            "time_to_resolve_incident_s": round(resolved_at - started, 1),
            "rules_time_scale": RULES_SCALE,
        }
        record_artifact("e2e-redis-timings.json", timings)
        print(timings)
        assert timings["time_to_detect_s"] >= FOR_P4
        assert timings["time_to_heal_s"] >= FOR_P3


def disagreement(stack: DemoStack, service: str, component: str) -> float | None:
    """service_component:monitoriza_component_disagrees for the pair, None while absent."""
    result = stack.query(f'service_component:monitoriza_component_disagrees'
                         f'{{service="{service}",component="{component}"}}')
    return float(result[0]["value"][1]) if result else None


class TestUnknownComponent:
    """The backend says ``redis: unknown`` while Redis is healthy: the disagreement is
    recorded at once, ComponentUnknown (P4) and then ComponentDisagrees (P3) fire, the
    incident names the backend's Redis connection, the backend's ``reconnect-redis``
    playbook (matching ComponentDisagrees) cures it, and Redis is not restarted."""

    def test_disagreement_then_reconnect_not_restart(self, demo_stack: DemoStack) -> None:
        stack = demo_stack
        first_message = len(stack.chat_messages())
        restarts_before = restart_count(stack, "restart-redis")
        assert disagreement(stack, "backend", "redis") == 0.0
        stack.fault("backend", "unknown-component")
        try:
            wait_for(lambda: disagreement(stack, "backend", "redis") == 1.0, 20,
                     "the recorded disagreement between the backend and Redis", stack)
            wait_for(lambda: stack.firing("ComponentUnknown", service="backend",
                                          component="redis"),
                     60, "ComponentUnknown for the backend's redis", stack)
            wait_for(lambda: stack.firing("ComponentDisagrees", service="backend",
                                          component="redis", severity="P3"),
                     60, "ComponentDisagrees for the backend's redis", stack)
            # Redis itself is healthy: every one of its probes passes.
            assert [sample["value"][1] for sample in stack.query(
                'monitoriza_probe_success{service="redis"}')] == ["1", "1"]
            wait_for(lambda: "success" in action_outcomes(stack, "reconnect-redis"), 30,
                     "the backend's reconnect-redis playbook to succeed", stack)
            incident = component_incident(stack)
            assert incident is not None
            assert incident["root_cause"] == {"service": "backend", "component": "redis",
                                              "kind": "component"}
            assert restart_count(stack, "restart-redis") == restarts_before
            wait_for(lambda: not stack.firing("ComponentUnknown", service="backend")
                     and not stack.firing("ComponentDisagrees", service="backend"), 60,
                     "ComponentUnknown and ComponentDisagrees to resolve after the reconnect",
                     stack)
        finally:
            stack.fault("backend", "clear")
        # ComponentDisagrees is a P3: the team heard of the incident, and hears it resolve
        # before the next scenario counts its own messages.
        wait_for(lambda: stack.incident(incident["id"])["state"] == "resolved", 60,
                 "the backend's redis-connection incident to resolve", stack)
        wait_for(lambda: len(resolutions(chat_titles(stack, first_message)["team"])) >= 1, 30,
                 "the team's resolution message", stack)


class TestOneOutageOneThread:
    """Guardian down until its P2 pages: one incident (its root cause Guardian, the API
    gateway's alerts its symptoms); while it fires the team channel gets at most two
    messages (the incident notice, its escalation) and on-call at most two (the page), then
    each one resolution."""

    def test_guardian_down_until_the_page(self, demo_stack: DemoStack) -> None:
        stack = demo_stack
        first_message = len(stack.chat_messages())
        started = time.time()
        stack.fault("guardian", "down")
        try:
            paged = wait_for(lambda: stack.firing("ServiceDown", service="guardian",
                                                  severity="P2"),
                             150, "the P2 ServiceDown for guardian", stack)
            wait_for(lambda: bool(chat_titles(stack, first_message)["oncall"]), 30,
                     "the on-call page", stack)
            wait_for(lambda: any(title.startswith("[P2] Incident") for title in
                                 chat_titles(stack, first_message)["team"]),
                     30, "the team's escalation notice", stack)
            time.sleep(QUIET)
            firing = chat_titles(stack, first_message)
        finally:
            stack.fault("guardian", "clear")
        cleared = time.time()
        wait_for(lambda: all(len(resolutions(chat_titles(stack, first_message)[channel])) >= 1
                             for channel in ("team", "oncall")),
                 90, "a resolution in the team and on-call channels", stack)
        time.sleep(QUIET)
        final = chat_titles(stack, first_message)
        outage = [found for found in opened_since(stack, started)
                  if {"guardian", "api-gateway"} & set(found["services"])]
        timings = {"p2_after_s": round(paged - started, 1),
                   "resolved_after_clear_s": round(time.time() - cleared, 1),
                   "incidents": [(found["id"], found["state"], found["services"])
                                 for found in opened_since(stack, started)],
                   "firing": firing, "final": final}
        record_artifact("e2e-guardian-chat.json", timings)
        print(timings)
        assert len(outage) == 1, outage
        assert (outage[0]["root_cause"] or {}).get("service") == "guardian"
        wait_for(lambda: stack.incident(outage[0]["id"])["state"] == "resolved", 60,
                 "the guardian incident to resolve", stack)
        for channel in ("team", "oncall"):
            assert 1 <= len(firing[channel]) <= 2, (channel, firing)
            assert not resolutions(firing[channel]), (channel, firing)
            later = final[channel][len(firing[channel]):]
            assert len(later) == 1 and later[0].startswith("[RESOLVED"), (channel, final)
        # Guardian is critical: its P3 and P2 come due together (both `for: 5m`), so the
        # team's first notice may already be the P2 one.
        assert firing["team"][0].startswith(("[P3] Incident", "[P2] Incident")), firing
        assert "guardian" in firing["team"][0]


def component_incident(stack: DemoStack) -> dict[str, Any] | None:
    for incident in stack.incidents():
        if incident["root_cause"] == {"service": "backend", "component": "redis",
                                      "kind": "component"}:
            return incident
    return None


def action_outcomes(stack: DemoStack, playbook: str) -> list[str]:
    """The outcome of every action of ``playbook`` (executed or refused), oldest first."""
    return [action["outcome"] for incident in reversed(stack.incidents())
            for action in stack.incident(incident["id"])["actions"]
            if action["playbook"] == playbook]


def restart_count(stack: DemoStack, playbook: str) -> int:
    """Actions of ``playbook`` that really ran."""
    return sum(1 for outcome in action_outcomes(stack, playbook)
               if outcome in {"success", "failure"})


class TestContainerKeepsDying:
    """The recorder container dies after every restart: the budget is spent, the breaker
    opens, and the refusal reaches the on-call chat as a P2."""

    def test_budget_breaker_page(self, demo_stack: DemoStack) -> None:
        stack = demo_stack
        stack.fault("guardian-recorder", "down")
        try:
            wait_for(lambda: any(
                "MonitorizaHealingRefused" in str(message["payload"])
                for message in stack.chat_messages() if message["receiver"] == "oncall"),
                150, "the P2 refusal in the on-call chat", stack)
            # The first refusal may be the backoff's (0.5 s, doubling) rather than the
            # breaker's: the container keeps dying, so wait for the third failure to open it.
            # It opens for 3 s (60 s x 0.05), so look at the last minute.
            opened = wait_until(lambda: bool(stack.query(
                'max_over_time(monitoriza_healing_breaker_state{'
                'service="guardian-recorder",state="open"}[1m]) == 1')), 60, interval=0.5)
            outcomes = action_outcomes(stack, "restart-recorder")
            details = [action["detail"] for incident in stack.incidents()
                       for action in stack.incident(incident["id"])["actions"]]
            assert opened, f"the breaker opened; outcomes {outcomes}, details {details}"
            restarts = sum(1 for outcome in outcomes if outcome in {"success", "failure"})
            assert 1 <= restarts <= 3 + 1, outcomes  # the budget, at most one half-open trial
            assert "blocked" in outcomes, outcomes
        finally:
            stack.fault("guardian-recorder", "clear")


def finite_ttf(stack: DemoStack, forecast: str, estimate: str = "median") -> float | None:
    """The published time to failure of ``forecast`` (its ``estimate``: median, lower or
    upper), None while +Inf or absent."""
    result = stack.query(f'monitoriza_time_to_failure_seconds{{forecast="{forecast}",'
                         f'estimate="{estimate}"}} < +Inf')
    return float(result[0]["value"][1]) if result else None


class TestExampleForecasts:
    """The demo forecasts what examples/conecta-plus.yml does besides disks: host memory and
    Redis memory against its maxmemory, each with its three estimates, its headroom and the
    level its bounds are calibrated to."""

    def test_published(self, demo_stack: DemoStack) -> None:
        stack = demo_stack
        for forecast in ("host-memory", "redis-memory"):
            estimates = f'monitoriza_time_to_failure_seconds{{forecast="{forecast}"}}'
            wait_for(lambda query=estimates: len(stack.query(query)) == 3, 60,
                     f"the three estimates of {forecast}", stack)
            level = stack.query(
                f'monitoriza_forecast_bounds_coverage_ratio{{forecast="{forecast}"}}')
            assert float(level[0]["value"][1]) == 0.8
        # A few MB in a 64 MB Redis: almost all of the way to 95 % still to go.
        room = stack.query('monitoriza_forecast_headroom_ratio{forecast="redis-memory"}')
        assert float(room[0]["value"][1]) > 0.9


class TestDiskFilling:
    """``fill-disk``: the backend's disk fills at 0.5 %/s towards its 95 % threshold; the
    forecast turns finite and the FailureForecast alert fires before the disk is full."""

    def test_forecast_and_alert(self, demo_stack: DemoStack) -> None:
        stack = demo_stack
        assert finite_ttf(stack, "disk-backend") is None  # a flat disk: +Inf
        stack.fault("backend", "fill-disk")
        try:
            wait_for(lambda: finite_ttf(stack, "disk-backend") is not None, 60,
                     "a finite time to failure for disk-backend", stack)
            wait_for(lambda: stack.firing("FailureForecast", service="backend"), 90,
                     "FailureForecast for the backend", stack)
            level = float(stack.query(
                'conecta_demo_disk_used_ratio{service="backend"}')[0]["value"][1])
            assert level < 0.95, "the alert came before the disk crossed its threshold"
        finally:
            stack.fault("backend", "clear")


def blind_spot(stack: DemoStack, flow: str) -> float | None:
    """flow:monitoriza_flow_blind_spot for ``flow``, None while absent."""
    result = stack.query(f'flow:monitoriza_flow_blind_spot{{flow="{flow}"}}')
    return float(result[0]["value"][1]) if result else None


class TestFlowBlindSpot:
    """``break-checkins`` on the backend: the resident-checkin flow's confirm step fails with
    a 500 while every probe of the API gateway and the backend stays green; the blind spot is
    recorded and FlowBlindSpot (P3) fires; after ``clear`` both go quiet and the flow's
    services are healthy again."""

    def test_flow_fails_behind_green_probes(self, demo_stack: DemoStack) -> None:
        stack = demo_stack
        flow = "resident-checkin"
        wait_for(lambda: blind_spot(stack, flow) == 0.0, 30,
                 "the check-in flow to pass with its probes", stack)
        started = time.time()
        stack.fault("backend", "break-checkins")
        try:
            fired = wait_for(lambda: stack.firing("FlowBlindSpot", flow=flow, severity="P3"),
                             60, "FlowBlindSpot for resident-checkin", stack)
            assert blind_spot(stack, flow) == 1.0
            assert stack.query(f'monitoriza_flow_failure_reason{{flow="{flow}",'
                               'step="confirm",reason="status"} == 1')
            probes = stack.query('monitoriza_probe_success{service=~"api-gateway|backend"}')
            assert probes and all(sample["value"][1] == "1" for sample in probes), probes
            # The flow counts in its services' health like a probe: availability 1 of 2.
            assert float(stack.query('monitoriza_health_dimension_score{service="backend",'
                                     'dimension="availability"}')[0]["value"][1]) == 0.5
        finally:
            stack.fault("backend", "clear")
        wait_for(lambda: blind_spot(stack, flow) == 0.0
                 and not stack.firing("FlowBlindSpot"), 30,
                 "the blind spot to close after clear", stack)
        # FailureForecast is left out: the previous scenario's disk forecast may still be
        # settling, and it is not about the flow.
        wait_for(lambda: not any(alert["labels"].get("service") in {"api-gateway", "backend",
                                                                     "frontend"}
                                 and alert["labels"]["alertname"] != "FailureForecast"
                                 for alert in stack.alerts()), 90,
                 "the flow's services and their dependants to be healthy again", stack)
        wait_for(lambda: all(found["state"] == "resolved"
                             for found in opened_since(stack, started)), 60,
                 "the incidents of the broken flow to resolve", stack)
        timings = {"blind_spot_alert_after_s": round(fired - started, 1),
                   "blind_spot_pipeline_minimum_s": SCRAPE + EVALUATION + 300 * RULES_SCALE}
        record_artifact("e2e-flow-blind-spot.json", timings)
        print(timings)
        assert timings["blind_spot_alert_after_s"] >= 300 * RULES_SCALE


class TestDashboards:
    """Every PromQL expression of every Grafana panel returns data from this Prometheus,
    once the scenarios above have run, while a disk fills and a service is too slow for its
    probe (the time-to-failure panel shows finite forecasts only, the failing-probes table
    failing probes only)."""

    def test_every_panel_has_data(self, demo_stack: DemoStack) -> None:
        queries = panel_queries(Path(__file__).resolve().parent.parent / "grafana" /
                                "dashboards")
        assert len(queries) >= 12
        demo_stack.fault("frontend", "fill-disk")
        demo_stack.fault("api-gateway", "slow")
        try:
            # The panel shows the upper estimate, which turns finite after the median does
            # (its bound is wider): wait for that one, or the panel can be empty by a race.
            wait_for(lambda: finite_ttf(demo_stack, "disk-frontend", "upper") is not None, 90,
                     "a finite upper time to failure for disk-frontend", demo_stack)
            wait_for(lambda: bool(demo_stack.query(
                'monitoriza_probe_failure_reason{service="api-gateway",reason="timeout"} == 1')),
                30, "the slow api-gateway's probe to time out", demo_stack)
            empty = [f"{q.dashboard} / {q.panel}: {q.expr}" for q in queries
                     if not demo_stack.query(expand_variables(q.expr))]
        finally:
            demo_stack.fault("frontend", "clear")
            demo_stack.fault("api-gateway", "clear")
        assert not empty, "panels without data:\n" + "\n".join(empty)


class TestStackFiles:
    """What ``monitoriza up`` wrote is what it runs: the rules are the project's, scaled."""

    def test_scaled_rules_in_run_dir(self, demo_stack: DemoStack) -> None:
        rules = yaml.safe_load((demo_stack.run_dir / "rules" / "service-alerts.yml")
                               .read_text())
        fors = {rule.get("for") for group in rules["groups"] for rule in group["rules"]
                if rule.get("alert") == "ServiceDown"}
        assert "3s" in fors and "15s" in fors
        assert wait_until(lambda: demo_stack.firing("Watchdog"), 10)
