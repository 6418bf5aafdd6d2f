"""The console's healing, forecasts, audit and drills pages, and the kill switch and "verify
now" forms, on an in-process responder (Flask's test client) over a real store.

The state each page shows is made by the real code: an alert goes through the webhook, the
worker and the healer (which opens a breaker and spends a budget), the audit chain is tampered
with in the store itself, Prometheus is a real server scraping a real HTTP target, and the
drill results are files written the way ``monitoriza drill run`` writes them. Logins go through
the console's own login form.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, update

from monitoriza.config import config_from_data
from monitoriza.console import views_ops
from monitoriza.console.forecast_chart import Estimates, Series, forecast_svg
from monitoriza.console.forecast_state import label_texts, published
from monitoriza.console.healing_state import memory_rows
from monitoriza.console.overview_data import parse_ttf
from monitoriza.healing import repository
from monitoriza.healing.breaker import BreakerState, breaker_key
from monitoriza.healing.healer import KILL_SWITCH_SETTING
from monitoriza.responder.app import create_app
from monitoriza.responder.state import responder_of
from monitoriza.store import actions, audit, reading
from tests.support.binaries import wait_until
from tests.support.http_targets import HttpTarget
from tests.support.prometheus import PrometheusFactory
from tests.support.responder import TOKEN, post, process
from tests.test_drill_matrix import load_data, run_data
from tests.test_healing_e2e import notification

VIEWER = "viewer-token-0123456789"
CLOSED_PORT_URL = "http://127.0.0.1:9"  # discard: nothing listens there


def ops_config(tmp_path: Path, store_url: str, *, fix_url: str | None = None,
               allowed: str | None = None, prometheus_url: str = CLOSED_PORT_URL,
               forecasts: dict[str, Any] | None = None,
               services: dict[str, Any] | None = None,
               console: dict[str, Any] | None = None, **healing: Any) -> Any:
    """A responder with a service ``web`` healed by an HTTP call to ``fix_url`` (and any
    other ``services``), a read-only token, and the exporter's Prometheus at
    ``prometheus_url``."""
    (tmp_path / "viewer-token").write_text(VIEWER)
    web: dict[str, Any] = {}
    if fix_url is not None:
        web["healing"] = [{"name": "fix", "steps": [{"action": "http", "url": fix_url}]}]
    return config_from_data({
        "services": {"web": web, **(services or {})}, "forecasts": forecasts or {},
        "exporter": {"prometheus_url": prometheus_url},
        "responder": {
            "store_url": store_url, "token_file": str(tmp_path / "token"),
            "audit": {"signing_key_file": str(tmp_path / "signing.pem"),
                      "checkpoint_file": str(tmp_path / "checkpoints.jsonl")},
            "healing": {"kill_switch_file": str(tmp_path / "kill-switch"),
                        "allowed_urls": [allowed] if allowed else [], **healing},
            "console": {"readonly_token_file": str(tmp_path / "viewer-token"),
                        "session_secret_file": str(tmp_path / "console.secret"),
                        **(console or {})}}})


AppMaker = Callable[..., Flask]


@pytest.fixture
def make_app(tmp_path: Path, store_url: str) -> Iterator[AppMaker]:
    """Responder apps on ``store_url`` (SQLite and PostgreSQL) whose worker and healer the
    test drives."""
    apps: list[Flask] = []

    def make(**options: Any) -> Flask:
        app = create_app(ops_config(tmp_path, store_url, **options), token=TOKEN,
                         start_worker=False)
        apps.append(app)
        return app

    yield make
    for app in apps:
        responder_of(app).journal.engine.dispose()


@pytest.fixture
def make_sqlite_app(tmp_path: Path) -> Iterator[AppMaker]:
    """Responder apps on an SQLite file, for pages whose store does not matter."""
    apps: list[Flask] = []

    def make(**options: Any) -> Flask:
        app = create_app(ops_config(tmp_path, f"sqlite:///{tmp_path / 'responder.db'}",
                                    **options), token=TOKEN, start_worker=False)
        apps.append(app)
        return app

    yield make
    for app in apps:
        responder_of(app).journal.engine.dispose()


def logged_in(app: Flask, token: str) -> FlaskClient:
    client = app.test_client()
    response = client.post("/console/login", data={"token": token})
    assert response.status_code == 302, response.data
    return client


def page(client: FlaskClient, path: str) -> str:
    response = client.get(path)
    assert response.status_code == 200, response.data[:500]
    return response.get_data(as_text=True)


def csrf(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found is not None, "the page has no form with a CSRF token"
    return found.group(1)



def outcomes(app: Flask) -> list[str]:
    with responder_of(app).journal.engine.connect() as conn:
        return [row.outcome for row in conn.execute(select(actions.c.outcome)
                                                    .order_by(actions.c.id))]


def api_kill_switch(app: Flask) -> bool:
    response = app.test_client().get("/api/v1/kill-switch",
                                     headers={"Authorization": f"Bearer {TOKEN}"})
    enabled: bool = response.get_json()["enabled"]
    return enabled


def audit_kinds(app: Flask) -> list[tuple[str, dict[str, Any]]]:
    return [(entry.kind, dict(entry.data))
            for entry in responder_of(app).audit.entries(limit=10000)]


class TestHealingPage:
    """Breakers, budgets and memory as the healer left them in the store."""

    def test_open_breaker_spent_budget_and_memory(self, make_app: AppMaker,
                                                  http_target: HttpTarget) -> None:
        """A failed heal opens the breaker (one failure is enough here), spends one restart
        of three, and is learned: the page shows each with the healer's own numbers."""
        fix = http_target.respond("/admin/fix", status=500)
        app = make_app(fix_url=fix, allowed=http_target.url("/admin/"),
                       breaker={"consecutive_failures": 1, "open_for": "5m"})
        post(app.test_client(), notification("web", "ServiceDown", fingerprint="w1"))
        process(app)
        assert outcomes(app) == ["failure"]
        with reading(responder_of(app).journal.engine) as conn:
            stored = repository.load_state(conn, breaker_key("web", "fix"))
        assert stored is not None
        breaker = BreakerState.from_dict(stored)
        assert breaker.state == "open" and breaker.opened_at is not None

        html = page(logged_in(app, VIEWER), "/console/healing")
        breakers = html[html.index('id="breakers"'):html.index('id="budgets"')]
        assert "<td>web</td><td>fix</td>" in breakers
        assert '<span class="pill bad">open</span>' in breakers
        assert views_ops.utc(breaker.opened_at + breaker.open_for) in breakers
        budgets = html[html.index('id="budgets"'):html.index('id="memory"')]
        assert "2 of 3" in budgets
        memory = html[html.index('id="memory"'):]
        assert "<td>fix</td>" in memory and '<td class="num">0</td><td class="num">1</td>' \
            in memory
        assert "Healing ON" in html
        assert 'id="kill-switch-form"' not in html  # a viewer has no control
        assert '<meta http-equiv="refresh" content="10">' in html

    def test_dry_run_and_maintenance_windows(self, make_app: AppMaker) -> None:
        """The operator's switches are listed, with whether a window is active now."""
        app = make_app(dry_run=True, maintenance=[
            {"services": ["web"], "start": "2020-01-01T00:00:00Z", "end": "2999-01-01T00:00:00Z"},
            {"start": "2020-01-01T00:00:00Z", "end": "2020-01-02T00:00:00Z"}])
        html = page(logged_in(app, VIEWER), "/console/healing")
        assert '<span class="pill warn">on</span> actions are recorded, not run' in html
        assert html.count("in maintenance</span>") == 1
        assert "every service" in html and "not active" in html


class TestKillSwitch:
    """The console's switch is the API's switch: one function, one setting, one audit kind."""

    def test_console_switch_blocks_healing_and_is_audited(self, make_app: AppMaker,
                                                          http_target: HttpTarget) -> None:
        """Turned on from the console: the API reads it on, the next heal is blocked and
        never calls the target, the audit names console:operator; turned off again: off."""
        fix = http_target.respond("/admin/fix", status=200)
        app = make_app(fix_url=fix, allowed=http_target.url("/admin/"))
        operator = logged_in(app, TOKEN)
        html = page(operator, "/console/healing")
        assert "Healing ON" in html and 'id="kill-switch-form"' in html
        response = operator.post("/console/healing/kill-switch", data={
            "csrf_token": csrf(html), "enabled": "on", "reason": "deploy <window>"})
        assert response.status_code == 302
        assert api_kill_switch(app) is True
        html = page(operator, "/console/healing")
        assert "Healing OFF" in html and "by <b>console:operator</b>" in html
        assert "(deploy &lt;window&gt;)" in html

        post(app.test_client(), notification("web", "ServiceDown", fingerprint="k1"))
        process(app)
        assert outcomes(app) == ["blocked"]
        assert http_target.hits("/admin/fix") == 0
        entries = audit_kinds(app)
        assert ("kill_switch", {"enabled": True, "by": "console:operator",
                                "reason": "deploy <window>"}) in entries
        assert any(kind == "action.blocked" and data["check"] == "kill_switch"
                   for kind, data in entries)

        operator.post("/console/healing/kill-switch", data={"csrf_token": csrf(html),
                                                            "enabled": "off"})
        assert api_kill_switch(app) is False
        assert "Healing ON" in page(operator, "/console/healing")

    def test_api_uses_the_same_function(self, make_app: AppMaker) -> None:
        """The API's change shows on the page, named "api"."""
        app = make_app()
        app.test_client().post("/api/v1/kill-switch", json={"enabled": True, "reason": "r"},
                               headers={"Authorization": f"Bearer {TOKEN}"})
        assert ("kill_switch", {"enabled": True, "by": "api", "reason": "r"}) \
            in audit_kinds(app)
        html = page(logged_in(app, VIEWER), "/console/healing")
        assert "Healing OFF" in html and "by <b>api</b>" in html

    def test_the_file_keeps_healing_off(self, make_app: AppMaker, tmp_path: Path) -> None:
        """With the kill-switch file present, the page says healing is off, and why."""
        app = make_app()
        (tmp_path / "kill-switch").touch()
        html = page(logged_in(app, VIEWER), "/console/healing")
        assert "Healing OFF" in html and "present — it stops all healing" in html

    def test_viewer_post_is_403_and_changes_nothing(self, make_app: AppMaker) -> None:
        app = make_app()
        viewer = logged_in(app, VIEWER)
        token = csrf(page(viewer, "/console/healing"))  # the logout form's token
        response = viewer.post("/console/healing/kill-switch",
                               data={"csrf_token": token, "enabled": "on"})
        assert response.status_code == 403
        assert api_kill_switch(app) is False
        assert not any(kind == "kill_switch" for kind, _ in audit_kinds(app))

    @pytest.mark.parametrize("form", [{"enabled": "on"},
                                      {"enabled": "on", "csrf_token": "forged"}])
    def test_post_without_csrf_is_400_and_changes_nothing(self, make_app: AppMaker,
                                                          form: dict[str, str]) -> None:
        app = make_app()
        response = logged_in(app, TOKEN).post("/console/healing/kill-switch", data=form)
        assert response.status_code == 400
        with reading(responder_of(app).journal.engine) as conn:
            assert repository.get_setting(conn, KILL_SWITCH_SETTING) is None
        assert audit_kinds(app) == []

    def test_a_bad_value_is_400(self, make_app: AppMaker) -> None:
        app = make_app()
        operator = logged_in(app, TOKEN)
        token = csrf(page(operator, "/console/healing"))
        response = operator.post("/console/healing/kill-switch",
                                 data={"csrf_token": token, "enabled": "maybe"})
        assert response.status_code == 400
        assert api_kill_switch(app) is False


class TestAuditPage:
    """Chain head, last verification, checkpoints, and verify now."""

    def test_verify_now_then_tampering_shows_failed(self, make_app: AppMaker) -> None:
        """Verify now runs the verifier (its metrics move), audits who asked; after an
        entry is rewritten in the store the next verify now shows the failure."""
        app = make_app()
        state = responder_of(app)
        app.test_client().post("/api/v1/kill-switch", json={"enabled": True},
                               headers={"Authorization": f"Bearer {TOKEN}"})
        state.audit.checkpoint()
        operator = logged_in(app, TOKEN)
        html = page(operator, "/console/audit")
        assert "not yet run" in html and "#1</b>" in html
        assert "1 signed checkpoint" in html and "the store records 1" in html

        response = operator.post("/console/audit/verify", data={"csrf_token": csrf(html)})
        assert response.status_code == 302
        html = page(operator, "/console/audit")
        assert "The audit chain verified: entries 1 to 1" in html
        assert '<span class="pill ok" id="verify-state">verified</span>' in html
        assert "#2</b>" in html  # the request itself is entry 2
        assert ("audit.verify_requested", {"by": "console:operator", "ok": True,
                                           "head_seq": 1}) in audit_kinds(app)
        assert state.metrics.registry.get_sample_value(
            "monitoriza_audit_last_verify_success") == 1.0

        with state.journal.engine.begin() as conn:
            conn.execute(update(audit).where(audit.c.seq == 1).values(
                data=json.dumps({"enabled": False, "by": "api", "reason": ""})))
        operator.post("/console/audit/verify", data={"csrf_token": csrf(html)})
        html = page(operator, "/console/audit")
        assert "The audit chain did NOT verify" in html
        assert '<span class="pill bad" id="verify-state">FAILED</span>' in html
        # Why, and from which entry: the rewritten entry 1, one click from the evidence.
        assert 'href="/console/audit?seq=1">#1</a>' in html
        assert state.verifier.last is not None
        assert state.verifier.last.reason.replace("'", "&#39;") in html

    def test_an_entry_is_shown_by_its_seq(self, make_app: AppMaker) -> None:
        app = make_app()
        app.test_client().post("/api/v1/kill-switch", json={"enabled": True,
                                                            "reason": "<b>why</b>"},
                               headers={"Authorization": f"Bearer {TOKEN}"})
        viewer = logged_in(app, VIEWER)
        html = page(viewer, "/console/audit?seq=1")
        assert "Entry #1: kill_switch" in html and "&lt;b&gt;why&lt;/b&gt;" in html
        assert 'id="verify-form"' not in html  # a viewer has no control
        assert "No audit entry #7." in page(viewer, "/console/audit?seq=7")
        assert "No audit entry" in page(viewer, f"/console/audit?seq={2**70}")

    def test_viewer_cannot_verify(self, make_app: AppMaker) -> None:
        app = make_app()
        viewer = logged_in(app, VIEWER)
        token = csrf(page(viewer, "/console/audit"))
        assert viewer.post("/console/audit/verify", data={"csrf_token": token}).status_code \
            == 403
        assert audit_kinds(app) == []


def metrics_text(values: dict[str, float], ttf: dict[str, str]) -> bytes:
    lines = ["# TYPE disk_used_ratio gauge"]
    lines += [f'disk_used_ratio{{path="{path}"}} {value}' for path, value in values.items()]
    lines.append("# TYPE monitoriza_time_to_failure_seconds gauge")
    for forecast, (lower, median, upper) in (("disk", ("3600", "7200", "+Inf")),
                                             ("other", ("60", "120", "180"))):
        for estimate, value in (("lower", lower), ("median", median), ("upper", upper)):
            lines.append(f'monitoriza_time_to_failure_seconds{{forecast="{forecast}",'
                         f'service="web",estimate="{estimate}"}} {ttf.get(estimate, value)}')
    return ("\n".join(lines) + "\n").encode()


def scraped_prometheus(prometheus_factory: PrometheusFactory, http_target: HttpTarget,
                       points: int = 3) -> str:
    """A real Prometheus scraping ``/metrics`` of ``http_target`` every second, once it has
    ``points`` samples of the disk series: a rising one, and one whose label is HTML."""
    http_target.respond("/metrics", body=metrics_text(
        {"/data": 0.5, "<script>alert(1)</script>": 0.3}, {}), content_type="text/plain")
    server = prometheus_factory({"global": {"scrape_interval": "1s"}, "scrape_configs": [
        {"job_name": "target", "static_configs": [
            {"targets": [f"127.0.0.1:{http_target.port}"]}]}]})
    for step in range(points * 2):
        http_target.respond("/metrics", body=metrics_text(
            {"/data": 0.5 + 0.02 * step, "<script>alert(1)</script>": 0.3}, {}),
            content_type="text/plain")

        def enough(step: int = step) -> bool:
            found = server.api("query", query="count_over_time(disk_used_ratio[1m])")["result"]
            return bool(found) and min(int(r["value"][1]) for r in found) > step // 2
        assert wait_until(enough, 10.0, interval=0.2)
    return server.url


FORECASTS = {"disk": {"service": "web", "expr": "disk_used_ratio", "threshold": 0.9,
                      "window": "1m", "step": "1s", "horizon": "4h"}}


class TestForecastsPage:
    """Times to failure as Prometheus has them, and the chart of each configured forecast."""

    def test_times_and_chart_from_a_real_prometheus(
            self, make_sqlite_app: AppMaker, prometheus_factory: PrometheusFactory,
            http_target: HttpTarget) -> None:
        url = scraped_prometheus(prometheus_factory, http_target)
        app = make_sqlite_app(prometheus_url=url, forecasts=FORECASTS)
        html = page(logged_in(app, VIEWER), "/console/forecasts")
        assert "Prometheus unreachable" not in html
        disk = html[html.index("<h2 style=\"margin-top:0\">disk"):]
        disk = disk[:disk.index("</svg>")]
        assert ">1h</td>" in disk and ">2h</td>" in disk and ">none in horizon</td>" in disk
        assert "· coverage 80 %" in disk  # the level lower and upper are calibrated to
        assert "<polygon" in disk and "<polyline" in disk
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in disk
        assert "<script>" not in html
        # Published by Prometheus, not configured: listed without a chart.
        assert "other <span class=\"muted\">· web" in html
        assert "not in this configuration" in html
        assert html.index("other <span") < html.index("disk <span")  # most urgent first
        assert '<meta http-equiv="refresh" content="10">' in html

    def test_unreachable_prometheus_is_a_notice(self, make_sqlite_app: AppMaker) -> None:
        app = make_sqlite_app(forecasts=FORECASTS)
        html = page(logged_in(app, VIEWER), "/console/forecasts")
        assert 'id="prometheus-notice">Prometheus unreachable: Prometheus at ' \
               f"{CLOSED_PORT_URL}" in html
        assert "no history: Prometheus is unreachable" in html


class TestForecastChart:
    """The SVG itself: pure, escaped, the band drawn to the threshold."""

    def series(self) -> list[Series]:
        return [Series('{path="<b>"}', ((0.0, 0.5), (30.0, 0.55), (60.0, 0.6)))]

    def test_band_and_escaping(self) -> None:
        svg = str(forecast_svg(self.series(), now=60.0, window=60.0, horizon=3600.0,
                               threshold=0.9, direction="above",
                               estimates=Estimates(100.0, 200.0, math.inf), title="a<b"))
        assert svg.startswith("<svg") and svg.endswith("</svg>")
        assert "<polygon" in svg and "median projection" in svg
        assert "&lt;b&gt;" in svg and "a&lt;b" in svg and '"<b>"' not in svg
        assert "threshold 0.9 (above)" in svg

    def test_no_estimates_draws_history_alone(self) -> None:
        svg = str(forecast_svg(self.series(), now=60.0, window=60.0, horizon=3600.0,
                               threshold=0.9, direction="above", estimates=None, title="t"))
        assert "<polyline" in svg and "<polygon" not in svg

    def test_never_beyond_the_horizon(self) -> None:
        """An upper time past the horizon is clipped: the chart ends at now + horizon."""
        svg = str(forecast_svg(self.series(), now=60.0, window=60.0, horizon=120.0,
                               threshold=0.9, direction="above",
                               estimates=Estimates(50.0, 100.0, 1e9), title="t"))
        assert ">+2m</text>" in svg


def write_drill_results(directory: Path) -> None:
    """A drill run and a load result, as ``monitoriza drill run``/``load`` write them."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "drill-run-20261205T080000Z.json").write_text(json.dumps(run_data()))
    (directory / "load-check-in-20261205T080000Z.json").write_text(
        json.dumps(load_data("check-in")))


class TestForecastState:
    """Reading Prometheus's answers: complete sets only, legends without shared labels."""

    def test_a_forecast_needs_all_three_estimates(self) -> None:
        def sample(forecast: str, estimate: str, value: str) -> dict[str, Any]:
            return {"metric": {"forecast": forecast, "service": "web", "estimate": estimate},
                    "value": [0, value]}

        found = published([sample("a", "lower", "1"), sample("a", "median", "2"),
                           sample("a", "upper", "+Inf"), sample("b", "median", "5"),
                           sample("c", "other", "1")])
        assert found == {"a": ("web", Estimates(1.0, 2.0, math.inf))}

    def test_a_forecast_over_many_series_shows_its_soonest_whole(self) -> None:
        """Two filesystems of one forecast: the one with the soonest median is shown, with
        its own lower and upper (never one series' lower beside another's median)."""
        def sample(mount: str, estimate: str, value: str) -> dict[str, Any]:
            return {"metric": {"forecast": "disks", "service": "host", "estimate": estimate,
                               "mountpoint": mount}, "value": [0, value]}

        samples = [sample("/a", "lower", "50"), sample("/a", "median", "100"),
                   sample("/a", "upper", "300"), sample("/b", "lower", "10"),
                   sample("/b", "median", "200"), sample("/b", "upper", "250")]
        assert published(samples) == {"disks": ("host", Estimates(50.0, 100.0, 300.0))}
        soonest = parse_ttf(samples)["host"]
        assert (soonest.lower, soonest.median, soonest.upper) == (50.0, 100.0, 300.0)

    def test_labels_every_series_shares_are_left_out(self) -> None:
        assert label_texts([{"job": "x", "path": "/"}, {"job": "x", "path": "/data"}]) == [
            '{path="/"}', '{path="/data"}']
        assert label_texts([{"__name__": "m", "job": "x"}]) == ['{job="x"}']


class TestDrillsPage:
    """The latest drill run's matrix and load results, from drills/ beside the config."""

    def test_matrix_and_loads(self, make_sqlite_app: AppMaker, tmp_path: Path) -> None:
        write_drill_results(tmp_path / "etc" / "drills")
        app = make_sqlite_app()
        app.config[views_ops.CONFIG_FILE_KEY] = str(tmp_path / "etc" / "monitoriza.yml")
        html = page(logged_in(app, VIEWER), "/console/drills")
        assert "Latest run <b>d-1</b>" in html
        assert '<table class="matrix">' in html and "<th>redis</th>" in html
        assert 'href="#cell-redis-container_stop"' in html and 'id="cell-redis-container_stop"' \
            in html
        assert "POST /visits" in html  # the blind spot
        assert "<td>check-in</td>" in html and "p95=300ms" in html

    def test_without_a_config_file_beside_the_token_file(self, make_sqlite_app: AppMaker,
                                                         tmp_path: Path) -> None:
        """The responder is not told its configuration file: drills/ beside its token file."""
        write_drill_results(tmp_path / "drills")
        app = make_sqlite_app()
        assert views_ops.drills_dir(app) == tmp_path / "drills"
        assert "Latest run <b>d-1</b>" in page(logged_in(app, VIEWER), "/console/drills")

    def test_no_run_is_a_notice(self, make_sqlite_app: AppMaker, tmp_path: Path) -> None:
        app = make_sqlite_app()
        app.config[views_ops.DRILLS_DIR_KEY] = str(tmp_path / "nothing")
        html = page(logged_in(app, VIEWER), "/console/drills")
        assert 'id="no-run">No drill run to show: no drill run in' in html
        assert "no load drill results" in html


def test_every_page_needs_a_login(make_app: AppMaker) -> None:
    app = make_app()
    client = app.test_client()
    for path in ("/console/healing", "/console/forecasts", "/console/audit",
                 "/console/drills"):
        response = client.get(path)
        assert response.status_code == 302 and "/console/login" in response.headers["Location"]
    assert client.post("/console/healing/kill-switch", data={"enabled": "on"}).status_code \
        == 302
    assert api_kill_switch(app) is False


def test_pages_render_quickly(make_app: AppMaker) -> None:
    """A page is a few store reads: well under the refresh interval."""
    app = make_app()
    viewer = logged_in(app, VIEWER)
    started = time.perf_counter()
    for _ in range(5):
        page(viewer, "/console/healing")
        page(viewer, "/console/audit")
    assert (time.perf_counter() - started) / 10 < 0.5


def test_memory_is_ranked_per_site_with_the_other_sites_pooled() -> None:
    """Two condominiums, one signature: each site's own outcomes rank first; what healed at
    the other site is shown beside them and counts at the pooled weight."""
    learned = [
        {"site": "aurora", "signature": "redis:service:ServiceDown", "service": "redis",
         "action": "restart", "successes": 3, "failures": 0},
        {"site": "aurora", "signature": "redis:service:ServiceDown", "service": "redis",
         "action": "flush", "successes": 0, "failures": 2},
        {"site": "bosque", "signature": "redis:service:ServiceDown", "service": "redis",
         "action": "flush", "successes": 4, "failures": 0},
    ]
    rows = memory_rows(learned, 0.5)
    aurora = [(r.action, r.rank, r.pooled_successes) for r in rows if r.site == "aurora"]
    assert aurora == [("restart", 1, 0), ("flush", 2, 4)]
    bosque = [(r.action, r.rank, r.successes) for r in rows if r.site == "bosque"]
    assert bosque == [("flush", 1, 4)]
