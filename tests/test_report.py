"""``monitoriza report`` against a real Prometheus holding a scripted week, and a real store.

The week is backfilled with ``promtool tsdb create-blocks-from openmetrics``: four services
probed every minute for seven days ending a minute ago. ``db`` is down for six known outages
(its availability is known to the minute), ``cache`` reports a component ``unknown`` for two
hours and forecasts a failure within an hour, ``queue`` has an incident still open, ``api``
is fine. The responder's SQLite store holds incidents, healing actions, a breaker opening and
an audit chain with known times, written through the responder's own repository functions.
"""

from __future__ import annotations

import io
import json
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from sqlalchemy import update

from monitoriza.audit.log import AuditLog
from monitoriza.config import load_config
from monitoriza.drill.matrix import build_matrix
from monitoriza.healing import repository
from monitoriza.healing.correlation import AlertEvent, AlertSummary, Incident, RootCause
from monitoriza.report.drills import collect_drills
from monitoriza.report.model import (
    DrillFacts,
    IncidentFact,
    ResponderFacts,
    ServiceAvailability,
    TimeToFailure,
    verdicts,
)
from monitoriza.report.run import report_command
from monitoriza.report.svg import Bar, Line, availability_bars, availability_lines, nice_ticks
from monitoriza.store import actions, create_store, writing
from tests.support.binaries import free_port, require_binary, stop_process, wait_until
from tests.test_drill_matrix import cell, load_data

ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"
WEEK = 7 * 86400
OUTAGE = 34 * 60  # each of db's six outages, in seconds
SERVICES = {"api": "critical", "db": "standard", "cache": "standard", "queue": "standard"}


@dataclass
class Week:
    """The scripted history and what the report must find in it."""

    end: float  # the last sample
    outages: list[tuple[float, float]]  # db down in [start, end)
    truth: dict[str, float]  # each service's availability
    prometheus: str
    config: Path
    directory: Path


def _openmetrics(path: Path, end: int, outages: list[tuple[float, float]]) -> dict[str, float]:
    """Write the week; return each service's true availability (share of up minutes)."""
    first = end - WEEK + 60
    minutes = range(first, end + 1, 60)
    up_minutes = {name: 0 for name in SERVICES}
    lines = ["# TYPE monitoriza_probe_success gauge"]
    last_success: dict[str, list[str]] = {name: [] for name in SERVICES}
    for name in SERVICES:
        latest = 0
        for t in minutes:
            up = not (name == "db" and any(a <= t < b for a, b in outages))
            up_minutes[name] += up
            latest = t if up else latest
            lines.append(f'monitoriza_probe_success{{service="{name}",probe="main"}} '
                         f"{int(up)} {t}")
            last_success[name].append(
                f'monitoriza_probe_last_success_timestamp_seconds{{service="{name}",'
                f'probe="main"}} {latest} {t}')
    lines.append("# TYPE monitoriza_probe_last_success_timestamp_seconds gauge")
    for name in SERVICES:
        lines.extend(last_success[name])
    sparse = range(first, end + 1, 600)
    lines.append("# TYPE monitoriza_service_info gauge")
    lines.extend(f'monitoriza_service_info{{service="{name}",tier="{tier}"}} 1 {t}'
                 for name, tier in SERVICES.items() for t in sparse)
    lines.append("# TYPE monitoriza_component_status gauge")
    unknown_from, unknown_to = end - 3 * 86400, end - 3 * 86400 + 7200
    for status in ("healthy", "unknown"):
        for t in sparse:
            unknown = unknown_from <= t < unknown_to
            value = int(unknown) if status == "unknown" else int(not unknown)
            lines.append(f'monitoriza_component_status{{service="cache",component="redis",'
                         f'status="{status}"}} {value} {t}')
    lines.append("# TYPE monitoriza_time_to_failure_seconds gauge")
    for estimate, seconds in (("lower", "1800"), ("median", "3600"), ("upper", "+Inf")):
        lines.extend(f'monitoriza_time_to_failure_seconds{{forecast="cache-memory",'
                     f'service="cache",estimate="{estimate}"}} {seconds} {t}' for t in sparse)
    # A forecast per filesystem: each series carries its own labels (and the exporter's
    # job and instance, which are not the series').
    for mountpoint, median in (("/data", "+Inf"), ("/logs", "+Inf")):
        lines.extend(f'monitoriza_time_to_failure_seconds{{forecast="cache-disk",'
                     f'service="cache",estimate="median",mountpoint="{mountpoint}",'
                     f'exported_instance="cache-1:9100",job="monitoriza",'
                     f'instance="127.0.0.1:9108"}} {median} {t}' for t in sparse)
    lines.append("# EOF")
    path.write_text("\n".join(lines) + "\n")
    total = len(minutes)
    return {name: up_minutes[name] / total for name in SERVICES}


def _event(fingerprint: str, service: str, alertname: str, starts_at: float,
           received_at: float) -> AlertEvent:
    return AlertEvent(fingerprint=fingerprint, starts_at=starts_at, status="firing",
                      alertname=alertname, service=service, severity="P3",
                      labels={"alertname": alertname, "service": service},
                      received_at=received_at)


@dataclass
class Injected:
    """An incident the test wrote, with the times the report must give back."""

    id: int
    service: str
    time_to_detect: float
    time_to_recover: float | None


def _fill_store(config_path: Path, week: Week) -> list[Injected]:
    config = load_config(config_path)
    engine = create_store(config.responder.store_url)
    log = AuditLog.from_config(engine, config.responder.audit)
    injected: list[Injected] = []
    end = week.end
    cases = [  # service, onset, detect after, recover after (None: still open)
        ("db", week.outages[0][0], 90.0, OUTAGE - 60.0),
        ("api", end - 2 * 86400, 45.0, 300.0),
        ("queue", end - 3600, 30.0, None),
        ("api", end - WEEK - 86400, 20.0, 60.0),  # before the period: not listed
    ]
    with writing(engine) as conn:
        for number, (service, onset, detect, recover) in enumerate(cases):
            opened = onset + detect
            resolved = None if recover is None else opened + recover
            alert = _event(f"fp{number}", service, "ServiceDown", onset, onset + detect - 5)
            incident = Incident(None, "resolved" if resolved else "open", opened, resolved,
                                AlertSummary.of([alert]),
                                RootCause(service, None, "service", ("it failed",)),
                                "low", f"ServiceDown:{service}")
            new_id = repository.save_incident(conn, incident, opened)
            repository.save_alert(conn, new_id, alert)
            if onset > end - WEEK:
                injected.append(Injected(new_id, service, detect, recover))
        db_incident, api_incident = injected[0].id, injected[1].id
        outcomes = [("db", db_incident, "failure"), ("db", db_incident, "failure"),
                    ("db", db_incident, "blocked"), ("db", db_incident, "success"),
                    ("api", api_incident, "success")]
        for index, (service, incident_id, outcome) in enumerate(outcomes):
            created = week.outages[0][0] + 100 + index * 60 if service == "db" else end - 2 * 86400
            action_id = repository.enqueue_action(conn, incident_id, service, f"restart-{service}",
                                                  alert={}, now=created)
            conn.execute(update(actions).where(actions.c.id == action_id).values(
                state="done", outcome=outcome, finished_at=created + 10))
        until = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(week.outages[0][0] + 400))
        for action_id in (3, 3):
            log.append(conn, "action.blocked", {
                "action": action_id, "incident": db_incident, "service": "db",
                "playbook": "restart-db", "check": "breaker",
                "reason": f"breaker open until {until} (1m left)"})
        repository.save_state(conn, "breaker:db:restart-db", {
            "state": "closed", "consecutive_failures": 0, "recent": [], "opened_at": None,
            "open_for": 60.0, "trial_in_flight": False, "half_open_successes": 0})
    log.maybe_checkpoint()
    engine.dispose()
    return injected


def _write_config(path: Path, directory: Path, prometheus: str, store: Path) -> None:
    path.write_text(yaml.safe_dump({
        "exporter": {"prometheus_url": prometheus},
        "responder": {"store_url": f"sqlite:///{store}",
                      "token_file": str(directory / "token"),
                      "audit": {"signing_key_file": str(directory / "signing.pem"),
                                "checkpoint_file": str(directory / "checkpoints.jsonl")}},
        "forecasts": {"cache-memory": {"service": "cache", "expr": "redis_memory_ratio",
                                       "threshold": 0.9}},
        "services": {name: {"tier": tier} for name, tier in SERVICES.items()},
    }, sort_keys=False))


@pytest.fixture(scope="module")
def week(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Week]:
    """Prometheus serving the backfilled week, and the configuration pointing at it."""
    directory = tmp_path_factory.mktemp("report")
    end = int(time.time()) // 60 * 60 - 60
    day = 86400
    outages = [(float(end - WEEK + k * day + 9 * 3600), float(end - WEEK + k * day + 9 * 3600
                                                            + OUTAGE)) for k in range(1, 7)]
    source = directory / "week.om"
    truth = _openmetrics(source, end, outages)
    data = directory / "data"
    subprocess.run([require_binary("promtool"), "tsdb", "create-blocks-from", "openmetrics",
                    "-q", str(source), str(data)], check=True, capture_output=True, timeout=120)
    port = free_port()
    (directory / "prometheus.yml").write_text("global: {}\n")
    log = (directory / "prometheus.log").open("w")
    process = subprocess.Popen(
        [require_binary("prometheus"), f"--config.file={directory / 'prometheus.yml'}",
         f"--storage.tsdb.path={data}", "--storage.tsdb.retention.time=30d",
         f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            return requests.get(f"{url}/-/ready", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    try:
        assert wait_until(ready, 30, interval=0.2), (directory / "prometheus.log").read_text()
        config = directory / "monitoriza.yml"
        _write_config(config, directory, url, directory / "responder.db")
        yield Week(float(end), outages, truth, url, config, directory)
    finally:
        stop_process(process, timeout=20)
        log.close()


@dataclass
class Reports:
    week: Week
    injected: list[Injected]
    html: str
    html_path: Path
    data: dict[str, Any]
    progress: str


def drill_run(plan: list[str], cells: list[dict[str, Any]],
              not_run: list[dict[str, Any]] | None = None, *,
              blind_spots: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A ``drills/drill-run-*.json`` document as ``monitoriza drill run`` writes it."""
    return {"kind": "drill-run", "version": 1, "drill_id": "drill-7", "started_at": 1.0e9,
            "finished_at": 1.0e9 + 600, "config": "monitoriza.yml", "cells": cells,
            "not_run": not_run or [], "plan": plan, "blind_spots": blind_spots or []}


def _write_drills(directory: Path) -> None:
    """An older run that passed everything, then the latest: api passes its two planned
    experiments, db's stop missed its page, cache's pause was never tested, queue's process
    kill was refused; and the check-in flow's load drill missed its SLO."""
    directory.mkdir()
    plan = ["api:container_stop", "api:container_kill", "db:container_stop",
            "cache:container_pause", "queue:process_kill"]
    (directory / "drill-run-20200101T000000Z.json").write_text(json.dumps(drill_run(
        plan, [cell(key, "pass") for key in plan])))
    (directory / "drill-run-20261201T093000Z.json").write_text(json.dumps(drill_run(
        plan, [cell("api:container_stop", "pass"), cell("api:container_kill", "pass"),
               cell("db:container_stop", "missed", reasons=("never reached oncall",))],
        [{"key": "queue:process_kill", "service": "queue", "fault": "process_kill",
          "reason": "queue has no playbook with a command step"}])))
    (directory / "drill-run-20261201T093000Z.html").write_text("<html></html>")
    (directory / "load-check-in-20261201T100000Z.json").write_text(json.dumps(
        load_data("check-in", met=False)))


@pytest.fixture(scope="module")
def reports(week: Week) -> Reports:
    """The report of the week, as HTML and as JSON."""
    injected = _fill_store(week.config, week)
    _write_drills(week.directory / "drills")
    html_path = week.directory / "report.html"
    progress = io.StringIO()
    assert report_command(week.config, WEEK, out=html_path, output_format="html",
                          prometheus_url=None, progress=progress) == 0, progress.getvalue()
    json_path = week.directory / "report.json"
    assert report_command(week.config, WEEK, out=json_path, output_format="json",
                          prometheus_url=week.prometheus, progress=io.StringIO()) == 0
    return Reports(week, injected, html_path.read_text(), html_path,
                   json.loads(json_path.read_text()), progress.getvalue())


def _by_service(data: dict[str, Any], key: str) -> dict[str, Any]:
    return {item["service"]: item for item in data[key]}


def test_availability_matches_the_scripted_week(reports: Reports) -> None:
    truth = reports.week.truth
    assert truth["db"] == pytest.approx(1 - 6 * 34 / 10080, abs=1e-9)  # 97.98 %
    found = _by_service(reports.data, "availability")
    assert set(found) == set(SERVICES)
    for name, expected in truth.items():
        assert abs(found[name]["availability"] - expected) * 100 < 0.5, (name, found[name])
        assert found[name]["target"] == (0.999 if SERVICES[name] == "critical" else 0.995)
    assert found["db"]["series"], "the chart has points"
    assert f"{found['db']['availability'] * 100:.3f} %" in reports.html


def test_every_injected_incident_is_listed_with_its_times(reports: Reports) -> None:
    listed = {item["id"]: item for item in reports.data["responder"]["incidents"]}
    assert set(listed) == {incident.id for incident in reports.injected}
    for incident in reports.injected:
        fact = listed[incident.id]
        assert fact["time_to_detect"] == pytest.approx(incident.time_to_detect)
        assert fact["time_to_recover"] == (None if incident.time_to_recover is None
                                           else pytest.approx(incident.time_to_recover))
    assert "33m 00s" in reports.html  # db's recovery: 34 minutes minus one
    assert "5m 00s" in reports.html  # api's


def test_healing_breakers_and_audit(reports: Reports) -> None:
    responder = reports.data["responder"]
    healing = {(h["service"], h["playbook"]): h for h in responder["healing"]}
    assert healing[("db", "restart-db")]["ran"] == 3
    assert healing[("db", "restart-db")]["success_ratio"] == pytest.approx(1 / 3)
    assert healing[("db", "restart-db")]["outcomes"]["blocked"] == 1
    assert healing[("api", "restart-api")]["success_ratio"] == 1.0
    openings = responder["breaker_openings"]
    assert [(o["service"], o["refusals"]) for o in openings] == [("db", 2)]
    assert responder["breakers_now"] == []
    assert responder["audit"]["ok"] is True
    assert responder["audit"]["entries"] == 2


def test_silent_failures_and_forecasts(reports: Reports) -> None:
    unknown = reports.data["unknown_components"]
    assert [(u["service"], u["component"]) for u in unknown] == [("cache", "redis")]
    assert unknown[0]["fraction"] == pytest.approx(7200 / WEEK, rel=0.1)
    stale = {s["service"]: s["max_staleness"] for s in reports.data["stale_probes"]}
    assert stale["db"] == pytest.approx(OUTAGE, abs=120)
    assert stale["api"] <= 300
    ttf = reports.data["time_to_failure"]
    assert [(t["service"], t["forecast"], t["series"], t["seconds"], t["horizon"])
            for t in ttf] == [
        ("cache", "cache-disk", "exported_instance=cache-1:9100, mountpoint=/data", None,
         86400.0),
        ("cache", "cache-disk", "exported_instance=cache-1:9100, mountpoint=/logs", None,
         86400.0),
        ("cache", "cache-memory", "", 3600.0, 86400.0)]
    assert "mountpoint=/logs" in reports.html


def test_verdicts(reports: Reports) -> None:
    found = {v["service"]: v for v in reports.data["verdicts"]}
    assert found["api"]["verdict"] == "ready"
    assert found["db"]["verdict"] == "not ready"
    assert "below the 99.5 % target" in found["db"]["reasons"][0]
    assert any("succeeded 33 % of 3 runs" in reason for reason in found["db"]["reasons"])
    assert found["queue"]["verdict"] == "not ready"
    assert "not healed" in found["queue"]["reasons"][0]
    assert found["cache"]["verdict"] == "at risk"
    assert any("redis reported unknown" in r for r in found["cache"]["reasons"])
    assert any("failure in 1h 00m" in r for r in found["cache"]["reasons"])


def test_drill_cells_count_in_the_verdicts(reports: Reports) -> None:
    """The latest run judges: a missed cell blocks, a cell not proven is named."""
    found = {v["service"]: v for v in reports.data["verdicts"]}
    assert found["api"]["reasons"] == []
    assert "drill db:container_stop missed: never reached oncall" in found["db"]["reasons"]
    assert ("drill experiments without a pass: cache:container_pause never tested"
            in found["cache"]["reasons"])
    assert ("drill experiments without a pass: queue:process_kill not run: queue has no "
            "playbook with a command step" in found["queue"]["reasons"])


def test_drill_matrix_and_loads_are_reported(reports: Reports) -> None:
    drills = reports.data["drills"]
    assert drills["run_file"].endswith("drill-run-20261201T093000Z.json"), "the latest run"
    assert drills["page_file"] == drills["run_file"].removesuffix(".json") + ".html"
    assert escape(f"(each experiment's stages: {drills['page_file']})") in reports.html
    assert drills["matrix"]["counts"] == {"missed": 1, "not run": 1, "never tested": 1,
                                          "pass": 2}
    rows = {row["service"]: {c["fault"]: c["state"] for c in row["cells"]}
            for row in drills["matrix"]["rows"]}
    assert rows["db"]["container_stop"] == "missed"
    assert rows["db"]["container_kill"] == "n/a"
    assert rows["api"]["container_stop"] == "pass"
    [load] = drills["loads"]
    assert (load["flow"], load["slo_met"], load["achieved_rate"]) == ("check-in", False, 9.95)
    assert [step["p95_ms"] for step in load["steps"]] == [95.0, 340.0]
    html = reports.html
    assert "<h2>Fire drills</h2>" in html
    assert "5 experiments: 1 missed, 1 not run, 1 never tested, 2 pass" in html
    assert '<td class="cell st-missed"><div class="entry"><span class="state">missed</span>' \
        in html
    assert "MISSED (p95=300ms,errors=1%)" in html
    assert "report: drills: db:container_stop missed" in reports.progress
    assert "report: load check-in: SLO MISSED (p95=300ms,errors=1%), 9.95/s of 10/s" \
        in reports.progress


def test_progress_is_shown_per_section(reports: Reports) -> None:
    lines = reports.progress.splitlines()
    for section in ("availability", "time to failure", "silent failures", "responder store"):
        assert any(line.startswith(f"report: {section} fetched in ") for line in lines), lines
    assert "1 ready, 1 at risk, 2 not ready" in reports.progress


def test_html_is_self_contained_and_renders(reports: Reports) -> None:
    html = reports.html
    assert html.count("<svg ") == 2, "the availability bars and the timeline"
    assert "<img" not in html
    assert "http://" not in html.replace(reports.week.prometheus, "")
    assert "<script" not in html
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "report.png"
    shot.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [require_binary("chromium"), "--headless", "--no-sandbox", "--disable-gpu",
             "--disable-quic", "--no-first-run", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", f"--user-data-dir={profile}",
             "--window-size=1300,2400", f"--screenshot={shot}",
             reports.html_path.as_uri()], capture_output=True, timeout=90, check=True)
    assert shot.read_bytes().startswith(b"\x89PNG")


def test_missing_store_says_no_responder_data(week: Week, tmp_path: Path) -> None:
    config = tmp_path / "monitoriza.yml"
    _write_config(config, tmp_path, week.prometheus, tmp_path / "absent.db")
    out = tmp_path / "report.html"
    assert report_command(config, 86400, out=out, output_format="html", prometheus_url=None,
                          progress=io.StringIO()) == 0
    assert "no responder data" in out.read_text()
    assert not (tmp_path / "absent.db").exists()
    assert f"no drill run to judge by: no drill run in {tmp_path / 'drills'}" in \
        out.read_text()


def test_unreachable_prometheus_is_an_error(week: Week, tmp_path: Path) -> None:
    progress = io.StringIO()
    started = time.monotonic()
    code = report_command(week.config, WEEK, out=tmp_path / "r.html", output_format="html",
                          prometheus_url=f"http://127.0.0.1:{free_port()}", progress=progress)
    assert code == 1
    assert "cannot reach Prometheus at http://127.0.0.1:" in progress.getvalue()
    assert time.monotonic() - started < 15
    assert not (tmp_path / "r.html").exists()


DRILLED = DrillFacts("drills", matrix=build_matrix(drill_run(
    ["s:container_stop"], [cell("s:container_stop", "pass")])))


def test_verdict_rules_are_pure() -> None:
    def service(value: float | None) -> ServiceAvailability:
        return ServiceAvailability("s", "critical", 0.999, value)

    def verdict(value: float | None, ttf: list[TimeToFailure] | None = None) -> str:
        return verdicts([service(value)], ResponderFacts(), ttf or [], [], [],
                        drills=DRILLED)[0].verdict

    assert verdict(0.9995) == "ready"
    assert verdict(0.998) == "not ready"
    assert verdict(None) == "at risk"
    assert verdict(1.0, [TimeToFailure("f", "s", 2 * 86400, 86400)]) == "ready"
    assert verdict(1.0, [TimeToFailure("f", "s", 600, 86400)]) == "at risk"


class TestDrillVerdicts:
    """'Not tested' is not 'ready': the latest drill run's cells in the verdict."""

    @staticmethod
    def judge(drills: DrillFacts, service: str = "s") -> tuple[str, list[str]]:
        found = verdicts([ServiceAvailability(service, "critical", 0.999, 1.0)],
                         ResponderFacts(), [], [], [], drills=drills)[0]
        return found.verdict, found.reasons

    def test_no_drill_run_means_never_drilled(self) -> None:
        assert self.judge(DrillFacts("d", missing="no drill run in d")) == (
            "at risk", ["never drilled: no drill run in d"])

    def test_every_planned_cell_must_pass(self) -> None:
        run = drill_run(["s:container_stop", "s:container_kill", "s:disk_fill",
                         "s:dependency_outage:db"],
                        [cell("s:container_stop", "pass"),
                         cell("s:container_kill", "late", reasons=("detect 61s > 45s",))],
                        [{"key": "s:disk_fill", "service": "s", "fault": "disk_fill",
                          "reason": "needs more than --max-fill"}])
        assert self.judge(DrillFacts("d", matrix=build_matrix(run))) == ("at risk", [
            "drill experiments without a pass: s:container_kill late: detect 61s > 45s; "
            "s:dependency_outage:db never tested; "
            "s:disk_fill not run: needs more than --max-fill"])

    def test_a_missed_or_wrong_cell_blocks(self) -> None:
        run = drill_run(["s:container_stop", "s:container_kill"],
                        [cell("s:container_stop", "missed", reasons=("not healed",)),
                         cell("s:container_kill", "wrong", reasons=("canary lost",))])
        assert self.judge(DrillFacts("d", matrix=build_matrix(run))) == ("not ready", [
            "drill s:container_stop missed: not healed",
            "drill s:container_kill wrong: canary lost"])

    def test_a_blind_spot_warns_the_services_it_touches(self) -> None:
        run = drill_run(["s:container_stop"], [cell("s:container_stop", "pass")],
                        blind_spots=[{"flow": "check-in", "key": "s:container_stop",
                                      "failed_at": "login", "services": ["s"]}])
        drills = DrillFacts("d", matrix=build_matrix(run), blind_spots=run["blind_spots"])
        assert self.judge(drills)[1] == [
            "blind spot: flow check-in failed at login during s:container_stop and no alert "
            "fired"]

    def test_an_open_incident_a_drill_caused_is_left_to_its_cell(self) -> None:
        def incident(drill_id: str | None) -> IncidentFact:
            return IncidentFact(9, "open", "s", ["s"], ["ServiceDown"], 100.0, None, 90.0,
                                10.0, None, drill_id=drill_id)

        def judge(drill_id: str | None) -> str:
            return verdicts([ServiceAvailability("s", "critical", 0.999, 1.0)],
                            ResponderFacts(incidents=[incident(drill_id)]), [], [], [],
                            drills=DRILLED)[0].verdict

        assert judge(None) == "not ready"
        assert judge("drill-7") == "ready"

    def test_a_service_with_no_planned_experiment_is_not_held_back(self) -> None:
        assert self.judge(DRILLED, service="other") == ("ready", [])


class TestCollectDrills:
    """Reading drills/: an unreadable run is reported, never silently dropped."""

    def test_a_corrupt_run_is_named_and_counts_as_never_drilled(self, tmp_path: Path) -> None:
        bad = tmp_path / "drill-run-20261201T000000Z.json"
        bad.write_text('{"kind": "drill-run", "version": 9}')
        (tmp_path / "load-x-20261201T000000Z.json").write_text("[]")
        drills = collect_drills(tmp_path)
        assert drills.matrix is None
        assert drills.missing == f"{bad}: drill run version 9 is not supported (this " \
            "Monitoriza reads version 1)"
        assert drills.load_errors == [f"{tmp_path / 'load-x-20261201T000000Z.json'}: not a "
                                      "load drill result (expected an object)"]
        assert TestDrillVerdicts.judge(drills)[1] == [f"never drilled: {drills.missing}"]


class TestCharts:
    """The inline SVG charts, drawn without a plotting library."""

    def test_bars_are_red_below_target_green_at_it_and_labels_escaped(self) -> None:
        svg = availability_bars([Bar("<db>", 0.97, 0.995), Bar("api", 0.9995, 0.999)])
        assert svg.startswith("<svg ") and svg.endswith("</svg>")
        assert "&lt;db&gt;" in svg and "<db>" not in svg
        fills = [part.split('"')[0] for part in svg.split('fill="')[1:]]
        assert fills == ["#d92d20", "#12b76a"]
        assert "97.000 % (target 99.5 %)" in svg

    def test_bar_axis_starts_on_a_tick_below_the_lowest_value(self) -> None:
        svg = availability_bars([Bar("db", 0.9798, 0.995)])
        assert ">96</text>" in svg and ">100</text>" in svg

    def test_lines_one_polyline_per_service_with_points(self) -> None:
        svg = availability_lines([Line("a", [(0.0, 1.0), (3600.0, 0.5)]), Line("b", [])])
        assert svg.count("<polyline") == 1
        assert svg.count(",") >= 2

    def test_nothing_to_draw_gives_no_chart(self) -> None:
        assert availability_bars([]) == ""
        assert availability_lines([Line("a", [])]) == ""

    def test_ticks_are_round_and_cover_the_range(self) -> None:
        assert nice_ticks(96.9, 100.0) == [96.0, 97.0, 98.0, 99.0, 100.0]
        assert nice_ticks(99.85, 100.0) == [99.85, 99.9, 99.95, 100.0]
        assert nice_ticks(0.0, 100.0) == [0, 20, 40, 60, 80, 100]
