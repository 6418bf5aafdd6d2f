"""The console's login, overview and incident pages, in-process (Flask's test client).

Everything behind the pages is real: the responder's store (SQLite and PostgreSQL, the
``store_url`` fixture), its journal worker and healer, a real Redis for a playbook's verify
probe, and a real Prometheus scraping a real HTTP target for the overview's scores.
"""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from markupsafe import escape

from monitoriza.config import config_from_data
from monitoriza.console.charts import sparkline
from monitoriza.console.incident_data import LastVerification, verification_of
from monitoriza.console.overview_data import (
    IncidentLink,
    Overview,
    PrometheusFacts,
    TimeToFailure,
    overview_rows,
    trend_start,
)
from monitoriza.console.views_main import render_overview, safe_next
from monitoriza.responder.app import create_app
from monitoriza.responder.state import responder_of
from tests.support.binaries import free_port, wait_until
from tests.support.http_targets import HttpTarget
from tests.support.prometheus import PrometheusFactory
from tests.support.redis_server import RedisServer
from tests.support.responder import TOKEN, closed_after_test, post, process

VIEWER_TOKEN = "viewer-token-9876543210"
SCRIPT = '<script>alert("x")</script>'
ESCAPED_SCRIPT = "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;"

TIMES, EN_DASH = "\u00d7", "\u2013"  # the overview's "P3 times 1" and "1 h to 2 h"



def console_app(tmp_path: Path, store_url: str, *, services: dict[str, Any] | None = None,
                prometheus_url: str | None = None, **healing: Any) -> Flask:
    """A responder with its console: the operator token is ``TOKEN``, the read-only one
    ``VIEWER_TOKEN``; Prometheus at ``prometheus_url`` (default: a port nothing listens on)."""
    (tmp_path / "viewer-token").write_text(VIEWER_TOKEN + "\n")
    config = config_from_data({
        "services": services or {},
        "exporter": {"prometheus_url": prometheus_url or f"http://127.0.0.1:{free_port()}"},
        "responder": {
            "store_url": store_url, "token_file": str(tmp_path / "token"),
            "audit": {"signing_key_file": str(tmp_path / "signing.pem"),
                      "checkpoint_file": str(tmp_path / "checkpoints.jsonl")},
            "healing": {"kill_switch_file": str(tmp_path / "kill-switch"), **healing},
            "console": {"session_secret_file": str(tmp_path / "console.secret"),
                        "readonly_token_file": str(tmp_path / "viewer-token")}}})
    app = create_app(config, token=TOKEN, start_worker=False)
    closed_after_test(app)
    return app


def logged_in(app: Flask, token: str = TOKEN) -> FlaskClient:
    client = app.test_client()
    response = client.post("/console/login", data={"token": token})
    assert response.status_code == 302, response.text
    return client


def logins(app: Flask, result: str) -> float:
    value = responder_of(app).metrics.registry.get_sample_value(
        "monitoriza_console_logins_total", {"result": result})
    return value or 0.0


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found is not None, "the page has no CSRF field"
    return found.group(1)


def notification(service: str, alertname: str, *, severity: str = "P4",
                 **labels: str) -> str:
    started = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    alert = {"status": "firing",
             "labels": {"alertname": alertname, "service": service, "severity": severity,
                        **labels},
             "annotations": {}, "startsAt": started, "endsAt": "0001-01-01T00:00:00Z",
             "generatorURL": "", "fingerprint": f"{service}-{alertname}"[:64]}
    return json.dumps({"version": "4", "receiver": "responder", "status": "firing",
                       "alerts": [alert], "groupLabels": {}, "commonLabels": {},
                       "commonAnnotations": {}, "externalURL": "",
                       "groupKey": f'{{}}:{{service="{service}"}}', "truncatedAlerts": 0})



class TestLogin:
    """Who gets in, how the session cookie is set, and where a login leads."""

    def test_no_session_redirects_to_login(self, tmp_path: Path, store_url: str) -> None:
        """Every page without a session sends the browser to the login page, coming back
        to where it was asked to go."""
        client = console_app(tmp_path, store_url).test_client()
        for path in ("/console/", "/console/incidents/1"):
            response = client.get(path)
            assert response.status_code == 302
            assert response.headers["Location"].startswith("/console/login?next=")
            assert path in response.headers["Location"].replace("%2F", "/")

    def test_operator_login_and_cookie_flags(self, tmp_path: Path, store_url: str) -> None:
        """The responder's token logs in as operator; the cookie is HttpOnly,
        SameSite=Strict, scoped to /console; the login is counted as a success."""
        app = console_app(tmp_path, store_url)
        client = app.test_client()
        response = client.post("/console/login", data={"token": TOKEN})
        assert response.status_code == 302
        assert response.headers["Location"] == "/console/"
        cookie = response.headers["Set-Cookie"]
        assert cookie.startswith("monitoriza_console=")
        assert "HttpOnly" in cookie
        assert "SameSite=Strict" in cookie
        assert "Path=/console" in cookie
        page = client.get("/console/")
        assert page.status_code == 200
        assert 'class="pill warn">operator<' in page.text
        assert logins(app, "success") == 1

    def test_wrong_token_is_a_counted_401(self, tmp_path: Path, store_url: str) -> None:
        """A wrong token: the login page again with 401, no session, one failure counted
        (and exposed at /metrics)."""
        app = console_app(tmp_path, store_url)
        client = app.test_client()
        response = client.post("/console/login", data={"token": "not-the-token"})
        assert response.status_code == 401
        assert response.mimetype == "text/html"
        assert "not valid" in response.text
        assert "Set-Cookie" not in response.headers
        assert client.get("/console/").status_code == 302
        assert client.post("/console/login", data={"token": ""}).status_code == 401
        assert logins(app, "failure") == 2
        assert logins(app, "success") == 0
        metrics = client.get("/metrics").text
        assert 'monitoriza_console_logins_total{result="failure"} 2.0' in metrics

    def test_viewer_token_logs_in_read_only(self, tmp_path: Path, store_url: str) -> None:
        """The read-only token's session is a viewer's, named as such on every page."""
        app = console_app(tmp_path, store_url)
        page = logged_in(app, VIEWER_TOKEN).get("/console/")
        assert page.status_code == 200
        assert 'class="pill info">viewer<' in page.text
        assert ">operator<" not in page.text

    def test_viewer_changes_nothing(self, tmp_path: Path, store_url: str) -> None:
        """Every state-changing form of the console refuses a viewer, even with the right
        CSRF token: a 403 page saying the session is read-only."""
        app = console_app(tmp_path, store_url)
        client = logged_in(app, VIEWER_TOKEN)
        token = csrf_of(client.get("/console/").text)
        changes = [rule.rule for rule in app.url_map.iter_rules()
                   if rule.endpoint.startswith("console.") and "POST" in (rule.methods or ())
                   and rule.endpoint not in {"console.login_submit", "console.logout"}]
        assert changes, "the console has no state-changing form to refuse"
        for path in changes:
            response = client.post(path, data={"csrf_token": token, "state": "off"})
            assert response.status_code == 403, path
            assert response.mimetype == "text/html"
            assert "change nothing" in response.text

    @pytest.mark.parametrize(("target", "expected"), [
        ("/console/incidents/3", "/console/incidents/3"),
        ("/console/?", "/console/"),
        ("https://evil.example/console/", "/console/"),
        ("//evil.example/console/", "/console/"),
        ("/metrics", "/console/"),
        ("/consolex", "/console/"),
        ("/console\\..\\x", "/console/"),
    ])
    def test_next_only_within_the_console(self, tmp_path: Path, target: str,
                                          expected: str) -> None:
        """After a login the browser goes to ``next`` only when it is a /console path of
        this host."""
        app = console_app(tmp_path, f"sqlite:///{tmp_path / 'responder.db'}")
        response = app.test_client().post("/console/login",
                                          data={"token": TOKEN, "next": target})
        assert response.headers["Location"] == expected
        assert (safe_next(target) is not None) == (expected == target.rstrip("?"))

    def test_logout_needs_the_csrf_token(self, tmp_path: Path, store_url: str) -> None:
        """A logout without the session's CSRF token is refused (400, an HTML page) and
        the session lives on; with it, the session ends."""
        client = logged_in(console_app(tmp_path, store_url))
        refused = client.post("/console/logout", data={"csrf_token": "forged"})
        assert refused.status_code == 400
        assert refused.mimetype == "text/html"
        assert "CSRF" in refused.text
        page = client.get("/console/")
        assert page.status_code == 200
        done = client.post("/console/logout", data={"csrf_token": csrf_of(page.text)})
        assert done.status_code == 302
        assert done.headers["Location"] == "/console/login"
        assert client.get("/console/").status_code == 302

    def test_errors_are_pages(self, tmp_path: Path, store_url: str) -> None:
        """The console's own 404s are HTML pages; the API's stay JSON."""
        client = logged_in(console_app(tmp_path, store_url))
        for path in ("/console/no-such-page", "/console/incidents/999"):
            response = client.get(path)
            assert response.status_code == 404
            assert response.mimetype == "text/html"
            assert "Back to the overview" in response.text
        assert client.get("/api/v1/no-such").mimetype == "application/json"


REDIS_PLAYBOOK = [{"name": "ping-redis", "match": {"alertname": ["ServiceDown"]},
                   "steps": [{"action": "command", "argv": ["/bin/true"], "timeout": "5s"}],
                   "verify": {"probe": "redis", "timeout": "5s", "interval": "200ms"}}]


def redis_services(redis_server: RedisServer) -> dict[str, Any]:
    return {"redis": {"tier": "critical", "probes": [
        {"kind": "redis", "url": redis_server.url, "timeout": "1s"}],
        "healing": REDIS_PLAYBOOK},
        "backend": {"depends_on": ["redis"]}}


class TestIncidentPage:
    """An incident healed for real, as its page tells it."""

    def test_timeline_of_a_healed_incident(self, tmp_path: Path, store_url: str,
                                           redis_server: RedisServer) -> None:
        """Alerts with status and severity, the root cause and its reasoning, the action
        with its step, verify result, duration and outcome, and the audit seqs recording it
        (verified and checkpointed); a label holding <script> is shown as text."""
        app = console_app(tmp_path, store_url, services=redis_services(redis_server),
                          allowed_commands=["/bin/true"])
        api = app.test_client()
        assert post(api, notification("redis", "ServiceDown", severity="P3")).status_code == 200
        assert post(api, notification("redis", SCRIPT, component=SCRIPT)).status_code == 200
        process(app)
        state = responder_of(app)
        assert state.verifier.verify()
        state.audit.checkpoint()
        document = api.get("/api/v1/incidents/1",
                           headers={"Authorization": f"Bearer {TOKEN}"}).get_json()
        assert document["actions"][0]["outcome"] == "success"

        page = logged_in(app, VIEWER_TOKEN).get("/console/incidents/1")
        assert page.status_code == 200
        text = page.text
        assert "<script>" not in text
        assert ESCAPED_SCRIPT in text
        root = text[text.index('id="root-cause"'):text.index('id="alerts"')]
        assert "<strong>redis</strong>" in root
        for sentence in document["reasoning"]:
            assert str(escape(sentence)) in root
        alerts = text[text.index('id="alerts"'):text.index("<h2>Actions")]
        assert "ServiceDown" in alerts
        assert ">P3<" in alerts
        assert ">firing<" in alerts
        action = text[text.index('id="action-1"'):text.index("<h2>Decisions")]
        assert "<strong>ping-redis</strong> on <strong>redis</strong>" in action
        assert 'class="pill ok">success<' in action
        assert "/bin/true" in action
        assert "took " in action
        assert "<strong>Verify:</strong> " in action
        assert "not reached" not in action and "none recorded" not in action
        seqs = {entry.kind: entry.seq for entry in state.audit.entries()
                if entry.data.get("action") == 1}
        for kind in ("action.started", "action.success"):
            assert f"{kind} <span class=\"mono\">#{seqs[kind]}</span>" in action \
                or f"{kind} <a class=\"mono\"" in action
        assert action.count(">verified<") == 2
        assert action.count(">checkpointed<") == 2
        decisions = text[text.index('id="decisions"'):]
        assert "decision.queued" in decisions
        assert "incident.opened" in decisions

    def test_drill_caused_incident_is_marked(self, tmp_path: Path, store_url: str,
                                             redis_server: RedisServer) -> None:
        """An incident opened inside a fire drill's window says so, with the drill's id."""
        app = console_app(tmp_path, store_url, services=redis_services(redis_server),
                          allowed_commands=["/bin/true"], dry_run=True)
        api = app.test_client()
        drill = {"event_id": "d7-start", "drill_id": "d7", "event": "start",
                 "experiment": "redis:down", "services": ["redis"],
                 "expires_at": time.time() + 600, "detail": {}}
        assert api.post("/api/v1/drills/events", data=json.dumps(drill),
                        content_type="application/json",
                        headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 201
        assert post(api, notification("redis", "ServiceDown")).status_code == 200
        process(app)
        client = logged_in(app)
        page = client.get("/console/incidents/1").text
        assert "Caused by fire drill" in page
        assert "<code>d7</code>" in page
        assert 'class="pill info">dry_run<' in page
        assert ">would run<" in page
        overview = client.get("/console/").text
        assert 'href="/console/incidents/1"' in overview
        assert "drill d7" in overview
        assert '<span class="latest-action">ping-redis</span>' in overview
        assert 'class="pill info">dry_run<' in overview


class TestOverview:
    """Every service, worst first, from Prometheus, or the store when Prometheus is away."""

    def test_prometheus_unreachable(self, tmp_path: Path, store_url: str,
                                    redis_server: RedisServer) -> None:
        """The page still renders every service, says Prometheus is unreachable, and takes
        firing alerts from the open incidents, saying so; it refreshes itself."""
        app = console_app(tmp_path, store_url, services=redis_services(redis_server),
                          allowed_commands=["/bin/true"], dry_run=True)
        assert post(app.test_client(), notification("redis", "ServiceDown",
                                                     severity="P3")).status_code == 200
        process(app)
        page = logged_in(app).get("/console/")
        assert page.status_code == 200
        text = page.text
        assert "Prometheus unreachable" in text
        assert "the responder's open incidents" in text
        assert '<meta http-equiv="refresh" content="10">' in text
        assert text.index('data-service="redis"') < text.index('data-service="backend"')
        redis_row = text[text.index('data-service="redis"'):text.index('data-service="backend"')]
        assert f"P3 {TIMES} 1" in redis_row
        assert 'href="/console/incidents/1"' in redis_row

    def test_scores_dimensions_alerts_and_forecasts(
            self, tmp_path: Path, http_target: HttpTarget,
            prometheus_factory: PrometheusFactory) -> None:
        """Scores, dimensions, the score's trend, ALERTS and the soonest finite time to
        failure, from a real Prometheus; a forecast named <script> is shown as text. (On
        SQLite only: the store plays no part here.)"""
        store_url = f"sqlite:///{tmp_path / 'responder.db'}"
        dims = {"availability": 0.5, "latency": 0.9, "saturation": 1, "errors": 0.25,
                "dependencies": 1}
        lines = ['monitoriza_health_score{service="web"} 42',
                 'monitoriza_health_score{service="db"} 97',
                 *(f'monitoriza_health_dimension_score{{service="web",dimension="{name}"}} {value}'
                   for name, value in dims.items()),
                 'monitoriza_time_to_failure_seconds{forecast="<script>alert(\\"x\\")</script>",'
                 'service="db",estimate="median"} 7200',
                 'monitoriza_time_to_failure_seconds{forecast="<script>alert(\\"x\\")</script>",'
                 'service="db",estimate="lower"} 3600',
                 'monitoriza_time_to_failure_seconds{forecast="<script>alert(\\"x\\")</script>",'
                 'service="db",estimate="upper"} +Inf',
                 'monitoriza_time_to_failure_seconds{forecast="disk",service="web",'
                 'estimate="median"} +Inf']
        http_target.respond("/metrics", body=("\n".join(lines) + "\n").encode(),
                            content_type="text/plain; version=0.0.4")
        rules = tmp_path / "rules.yml"
        rules.write_text(json.dumps({"groups": [{"name": "t", "rules": [{
            "alert": "HealthLow", "expr": 'monitoriza_health_score{service="web"} < 50',
            "labels": {"severity": "P3"}}]}]}))
        prometheus = prometheus_factory({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(rules)],
            "scrape_configs": [{"job_name": "exporter", "static_configs": [
                {"targets": [f"127.0.0.1:{http_target.port}"]}]}]})
        assert wait_until(lambda: any(
            alert["state"] == "firing" for alert in prometheus.alerts()), 30.0, interval=0.3)
        app = console_app(tmp_path, store_url, prometheus_url=prometheus.url,
                          services={"web": {}, "db": {}, "api": {}})
        client = logged_in(app)

        def page_with_trend() -> str:
            """The overview, once its range query had the score's young history (under a
            loaded CI the first one can come back empty or late: the page then shows no
            line, and its next refresh does)."""
            text: str = client.get("/console/").text
            web_row = text[text.index('data-service="web"'):text.index('data-service="db"')]
            return text if "<polyline" in web_row or "<circle" in web_row else ""

        found: list[str] = []

        def shown() -> bool:
            found.append(page_with_trend())
            return bool(found[-1])

        assert wait_until(shown, 20.0, interval=0.5), "the overview never showed the trend"
        text = found[-1]
        assert "unreachable" not in text
        assert "Prometheus's <code>ALERTS</code>" in text
        order = [text.index(f'data-service="{name}"') for name in ("api", "web", "db")]
        assert order == sorted(order), "no data first, then the lowest score"
        web = text[order[1]:order[2]]
        assert 'class="pill bad">42<' in web
        assert 'class="pill bad">0.50<' in web and 'class="pill bad">0.25<' in web
        assert "<polyline" in web or "<circle" in web
        assert f"P3 {TIMES} 1" in web
        assert "none forecast" in web
        db = text[order[2]:]
        assert 'class="pill ok">97<' in db
        assert 'class="pill bad">2 h<' in db
        assert f"1 h{EN_DASH}\u221e" in db
        assert "<script>" not in text
        assert ESCAPED_SCRIPT in text
        api = text[order[0]:order[1]]
        assert "no data" in api


class TestSparkline:
    """The overview's trend, drawn on the server."""

    def test_gaps_latest_point_and_escaped_title(self) -> None:
        """A scrape gap splits the line; the latest value is a dot; the title is text."""
        points = [(0.0, 100.0), (60.0, 50.0), (2000.0, 0.0), (2060.0, 0.0)]
        svg = str(sparkline(points, start=0.0, end=3600.0, title=SCRIPT, band="bad"))
        assert svg.count("<polyline") == 2
        assert svg.count("<circle") == 1
        assert 'points="2.0,2.0 4.3,14.0"' in svg  # 100 at the top, 50 half way down
        assert f"<title>{ESCAPED_SCRIPT}</title>" in svg
        assert "<script>" not in svg
        grid = [(step * 300.0, 90.0) for step in range(12)]  # a range query's 5-min step
        assert str(sparkline(grid, start=0.0, end=3600.0, title="t")).count("<polyline") == 1
        assert "no data" in str(sparkline([], start=0.0, end=1.0, title="t"))
        with pytest.raises(ValueError, match="empty range"):
            sparkline(points, start=5.0, end=5.0, title="t")


class TestOverviewRows:
    """The overview's rows from fixed data, as a benchmark builds them."""

    def test_worst_first_and_escaped(self, tmp_path: Path) -> None:
        """Sorted by score (none first), ties broken by the most severe alert; label values
        from Prometheus (a severity, a forecast) render as text."""
        facts = PrometheusFacts(
            scores={"a": 80.0, "b": 80.0, "c": 99.0},
            trends={"a": [(1000.0, 80.0), (1060.0, 81.0)]},
            alerts={"b": {"P2": 1}, "a": {SCRIPT: 2}},
            ttf={"c": TimeToFailure(SCRIPT, 600.0, 300.0, None)})
        incident = IncidentLink(4, "open", "c", 1000.0, firing={"c": {"P4": 1}})
        rows, source = overview_rows({"a": "standard", "b": "standard", "c": "critical",
                                      "d": "standard"}, facts, [incident])
        assert [row.service for row in rows] == ["d", "b", "a", "c"]
        assert source == "prometheus"
        assert rows[3].incident == incident
        app = console_app(tmp_path, f"sqlite:///{tmp_path / 'responder.db'}")
        with app.test_request_context("/console/"):
            html = render_overview(Overview(rows, 0.0, 3600.0, "prometheus", [SCRIPT]))
        assert "<script>" not in html
        assert html.count(ESCAPED_SCRIPT) >= 3  # the notice, the severity, the forecast

    def test_trend_axis_starts_with_the_history(self) -> None:
        """The sparklines share one time axis: the window, or the history Prometheus has
        when it is shorter (at least a minute of it)."""
        facts = PrometheusFacts(trends={"a": [(9000.0, 90.0), (9900.0, 95.0)],
                                        "b": [(9500.0, 50.0)]})
        rows, _ = overview_rows({"a": "standard", "b": "standard", "c": "standard"}, facts, [])
        assert trend_start(rows, 0.0, 10000.0) == 9000.0
        assert trend_start(rows, 9200.0, 10000.0) == 9200.0
        assert trend_start(rows, 0.0, 9030.0) == 8970.0
        assert trend_start([], 0.0, 10000.0) == 0.0

    def test_verification_states(self) -> None:
        """An entry is verified when the last verification covered it and found it good."""
        assert verification_of(5, None) == "never_verified"
        assert verification_of(5, LastVerification(1.0, True, 5)) == "verified"
        assert verification_of(6, LastVerification(1.0, True, 5)) == "not_verified_yet"
        failed = LastVerification(1.0, False, 3, first_bad_seq=4)
        assert [verification_of(seq, failed) for seq in (3, 4, 9)] == [
            "verified", "verification_failed", "verification_failed"]
        assert verification_of(1, LastVerification(1.0, False, 9, None)) == \
            "verification_failed"
