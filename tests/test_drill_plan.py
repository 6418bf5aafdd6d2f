"""``monitoriza drill plan``: the fault matrix derived from the example estate, the shipped
rules/, alertmanager/ and prometheus/ files. The receivers are checked against the real
``amtool config routes test`` on the same file; nothing is faked."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from monitoriza.cli import main
from monitoriza.config.loader import config_from_data
from monitoriza.drill.commands import load_plan
from monitoriza.drill.model import Deadline, DrillPlan, ExpectedAlert, Experiment
from monitoriza.drill.plan import build_plan, read_timers
from monitoriza.drill.rules import parse_rule_files
from monitoriza.lint.run import read_rules
from tests.support.binaries import require_binary

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "conecta-plus.yml"
ALERTMANAGER = ROOT / "alertmanager" / "alertmanager.yml"
RULES = ROOT / "rules"
PROMETHEUS = ROOT / "prometheus" / "prometheus.yml"
CONTAINER_FAULTS = {"container_stop", "container_kill", "container_pause", "crash_loop"}


@pytest.fixture(scope="module")
def plan() -> DrillPlan:
    return load_plan(EXAMPLE, ALERTMANAGER, RULES, PROMETHEUS)


def experiment(plan: DrillPlan, key: str) -> Experiment:
    found = [e for e in plan.experiments if e.key == key]
    assert len(found) == 1, [e.key for e in plan.experiments]
    return found[0]


def by_severity(item: Experiment) -> dict[str, ExpectedAlert]:
    return {alert.severity: alert for alert in item.alerts}


def direct_receivers(alert: ExpectedAlert) -> list[str]:
    return [r.receiver for r in alert.reaches if r.via == "alertmanager"]


def amtool_receivers(config: Path, labels: dict[str, str]) -> list[str]:
    """What the real Alertmanager routing resolves ``labels`` to."""
    result = subprocess.run(
        [require_binary("amtool"), "config", "routes", "test", f"--config.file={config}",
         *(f"{name}={value}" for name, value in labels.items())],
        cwd=config.parent, capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.strip().split(",")


def deadlines(plan: DrillPlan) -> list[Deadline]:
    found: list[Deadline] = []
    for item in plan.experiments:
        for alert in item.alerts:
            found += [alert.detect, *(reach.deadline for reach in alert.reaches)]
        if item.heal:
            found.append(item.heal.deadline)
    return found


class TestRedisContainerStop:
    """Stopping Redis's container: the alerts, receivers, playbook and deadlines expected."""

    def test_service_down_escalates_p4_then_p3_and_p2_for_a_critical_service(
            self, plan: DrillPlan) -> None:
        """ServiceDown P4 after 1m, P3 and (critical tier) P2 after 5m, as rules/ says."""
        item = experiment(plan, "redis:container_stop")
        assert [(a.alertname, a.severity, a.for_seconds) for a in item.alerts] == [
            ("ServiceDown", "P4", 60.0), ("ServiceDown", "P3", 300.0),
            ("ServiceDown", "P2", 300.0)]
        assert [a.expectation for a in item.alerts] == ["first", "if_persisting",
                                                        "if_persisting"]
        assert dict(item.alerts[2].labels)["escalation"] == "critical-tier"
        assert item.target == "conecta-redis"
        assert item.root_cause == "redis"

    def test_a_standard_service_reaches_p2_only_when_down_for_30_minutes(
            self, plan: DrillPlan) -> None:
        """mongodb (standard tier) gets no critical-tier P2: its P2 is the persisted one."""
        alerts = by_severity(experiment(plan, "mongodb:container_stop"))
        assert (alerts["P3"].for_seconds, alerts["P2"].for_seconds) == (300.0, 1800.0)
        assert dict(alerts["P2"].labels)["escalation"] == "persisted"

    def test_receivers_are_those_amtool_computes(self, plan: DrillPlan) -> None:
        """Each notified alert's receivers equal ``amtool config routes test`` on its labels."""
        alerts = by_severity(experiment(plan, "redis:container_stop"))
        for severity in ("P4", "P2"):
            labels = dict(alerts[severity].labels)
            assert direct_receivers(alerts[severity]) == amtool_receivers(ALERTMANAGER, labels)
        assert direct_receivers(alerts["P4"]) == ["responder"]
        assert direct_receivers(alerts["P2"]) == ["oncall"]

    def test_the_team_hears_through_the_responders_incident_notice(
            self, plan: DrillPlan) -> None:
        """P3/P4 go to the responder only; the P2 (which inhibits the P3) pages on-call and
        the responder's MonitorizaIncident notices reach the team chat."""
        alerts = by_severity(experiment(plan, "redis:container_stop"))
        assert not alerts["P4"].reaches_person
        assert alerts["P3"].reaches == ()  # inhibited by the P2 firing at the same time
        notices = [(r.receiver, r.notice) for r in alerts["P2"].reaches if r.via == "notice"]
        assert notices == [("team-chat", "MonitorizaIncident P3"),
                           ("team-chat", "MonitorizaIncident P2")]
        assert alerts["P2"].reaches_person

    def test_restart_redis_heals_it_on_the_p4(self, plan: DrillPlan) -> None:
        """The playbook whose match accepts ServiceDown is chosen, on the first alert."""
        heal = experiment(plan, "redis:container_stop").heal
        assert heal is not None
        assert (heal.service, heal.playbook, heal.trigger) == ("redis", "restart-redis",
                                                               "ServiceDown P4")

    def test_deadlines_add_up_from_the_real_timers(self, plan: DrillPlan) -> None:
        """Detect = probe interval + timeout + scrape + evaluation + for; notify adds the
        route's group_wait; heal adds the playbook's timeouts; each with its margin."""
        item = experiment(plan, "redis:container_stop")
        p4 = item.alerts[0]
        assert [(t.name, t.seconds) for t in p4.detect.terms] == [
            ("probe interval (redis)", 15.0), ("probe timeout (redis)", 5.0),
            ("scrape interval", 15.0), ("evaluation interval", 15.0),
            ("for (ServiceDown P4)", 60.0)]
        assert p4.detect.seconds == 110.0 + 15.0 + 11.0  # one scrape + 10 %
        responder = p4.reaches[0]
        assert (responder.deadline.terms[-1].name, responder.deadline.terms[-1].seconds) == (
            "group_wait", 30.0)
        assert item.heal is not None
        assert [(t.name, t.seconds) for t in item.heal.deadline.terms[5:]] == [
            ("group_wait to the responder", 30.0), ("step 1 timeout (docker_restart)", 30.0),
            ("verify settle", 3.0), ("verify timeout", 60.0)]
        assert item.heal.deadline.expected_seconds == 110.0 + 30.0 + 93.0

    def test_every_deadline_is_the_sum_of_its_stated_terms(self, plan: DrillPlan) -> None:
        """No deadline carries a number its terms do not explain."""
        for found in deadlines(plan):
            assert found.terms
            assert found.seconds == pytest.approx(
                sum(t.seconds for t in (*found.terms, *found.margin)))
            assert found.explain().endswith(f"= {found.seconds:g}s")

    def test_a_later_severity_in_the_same_group_waits_for_group_interval(
            self, plan: DrillPlan) -> None:
        """mongodb's P3 joins the group its P4 opened on the responder route: 1m, not 30s."""
        alerts = by_severity(experiment(plan, "mongodb:container_stop"))
        last = alerts["P3"].reaches[0].deadline.terms[-1]
        assert (last.seconds, last.source) == (
            60.0, f"{ALERTMANAGER}: route.routes[5].group_interval")


class TestFaultKinds:
    """Which faults apply to which service."""

    def test_a_service_without_a_docker_probe_gets_no_container_fault(
            self, plan: DrillPlan) -> None:
        """host has only a host probe: disk filling, nothing else."""
        assert [e.fault for e in plan.for_service("host")] == ["disk_fill"]
        assert {e.fault for e in plan.for_service("redis")} == CONTAINER_FAULTS

    def test_disk_fill_expects_service_degraded_with_its_own_timers(
            self, plan: DrillPlan) -> None:
        """The host probe's 30s interval and the recording rule's evaluation are terms."""
        item = experiment(plan, "host:disk_fill")
        first = item.alerts[0]
        assert (first.alertname, first.severity, first.for_seconds) == (
            "ServiceDegraded", "P4", 300.0)
        assert first.detect.terms[0].seconds == 30.0
        assert item.heal is None

    def test_a_dependency_outage_blames_the_dependency_and_heals_it(
            self, plan: DrillPlan) -> None:
        """backend without Redis: root cause redis, healed by restart-redis, not the backend."""
        item = experiment(plan, "backend:dependency_outage:redis")
        assert item.root_cause == "redis"
        assert {a.service for a in item.alerts} == {"redis"}
        assert item.heal is not None and item.heal.playbook == "restart-redis"
        assert "backend" in item.affected

    def test_a_process_probe_gives_a_process_kill(self) -> None:
        """A service watched by a process probe can have its process killed; no containers."""
        config = config_from_data({"services": {"worker": {"probes": [
            {"kind": "process", "process_name": "celery"}]}}})
        rules = parse_rule_files(read_rules(RULES))
        timers = read_timers(yaml.safe_load(PROMETHEUS.read_text()), "prometheus.yml")
        alertmanager = yaml.safe_load(ALERTMANAGER.read_text())
        result = build_plan(config, alertmanager, rules, timers)
        assert [(e.fault, e.target) for e in result.experiments] == [("process_kill", "celery")]

    def test_a_disk_forecast_expects_failure_forecast_after_its_own_interval(self) -> None:
        """A forecast on a filesystem metric makes its service a disk-fill target; the
        forecast's interval, not a probe's, is the first term."""
        config = config_from_data({
            "forecasts": {"root-disk": {
                "service": "db", "threshold": 0.9, "interval": "2m",
                "expr": 'node_filesystem_avail_bytes{mountpoint="/"}'}},
            "services": {"db": {"tier": "critical", "probes": [
                {"kind": "tcp", "host": "127.0.0.1", "port": 5432}]}}})
        rules = parse_rule_files(read_rules(RULES))
        timers = read_timers(yaml.safe_load(PROMETHEUS.read_text()), "prometheus.yml")
        result = build_plan(config, yaml.safe_load(ALERTMANAGER.read_text()), rules, timers)
        (item,) = result.experiments
        assert (item.fault, item.target) == ("disk_fill", "forecast")
        assert [(a.alertname, a.severity, a.for_seconds) for a in item.alerts] == [
            ("FailureForecast", "P3", 600.0), ("FailureForecast", "P2", 600.0)]
        assert dict(item.alerts[0].labels)["forecast"] == "root-disk"
        assert direct_receivers(item.alerts[0]) == ["responder"]  # P2's stricter condition
        first = item.alerts[0].detect.terms[0]
        assert (first.seconds, first.source) == (120.0, "forecasts.root-disk.interval")

    def test_the_exporter_jobs_scrape_interval_wins_over_the_global_one(self) -> None:
        """A per-job scrape_interval of the exporter is the one that delays its metrics."""
        prometheus = {"global": {"scrape_interval": "15s", "evaluation_interval": "30s"},
                      "scrape_configs": [{"job_name": "monitoriza-exporter",
                                          "scrape_interval": "5s"}]}
        timers = read_timers(prometheus, "p.yml")
        assert (timers.scrape_interval.seconds, timers.scrape_interval.source) == (
            5.0, "p.yml: scrape_configs[0].scrape_interval")
        assert timers.evaluation_interval.seconds == 30.0


def dropping_p2(tmp_path: Path) -> Path:
    """A copy of alertmanager.yml whose P2 routes go to a receiver with no integration."""
    document: dict[str, Any] = yaml.safe_load(ALERTMANAGER.read_text())
    for route in document["route"]["routes"]:
        if 'severity="P2"' in route.get("matchers", []):
            route["receiver"] = "blackhole"
    document["receivers"].append({"name": "blackhole"})
    copy = tmp_path / "alertmanager.yml"
    copy.write_text(yaml.safe_dump(document), encoding="utf-8")
    (tmp_path / "templates").symlink_to(ALERTMANAGER.parent / "templates")
    return copy


class TestBrokenRouting:
    """A broken route tree shows in the plan before any fault is injected."""

    def test_a_route_that_drops_p2_makes_the_p2_reach_no_person(self, tmp_path: Path) -> None:
        """The P2 reaches only the blackhole (as amtool agrees), and the plan says so."""
        config = dropping_p2(tmp_path)
        item = experiment(load_plan(EXAMPLE, config, RULES, PROMETHEUS), "redis:container_stop")
        p2 = by_severity(item)["P2"]
        assert direct_receivers(p2) == ["blackhole"] == amtool_receivers(config,
                                                                         dict(p2.labels))
        assert not p2.reaches_person
        assert "ServiceDown P2 of redis reaches no person (only blackhole)" in item.notes


class TestCommandLine:
    """``monitoriza drill plan`` prints the matrix, or one line per bad input and exit 2."""

    def test_text_shows_a_table_per_service_with_its_derivations(
            self, capsys: pytest.CaptureFixture[str]) -> None:
        assert main(["drill", "plan", "--config", str(EXAMPLE)]) == 0
        out = capsys.readouterr().out
        redis = out[out.index("\nredis\n"):out.index("\nmongodb\n")]
        assert "container_stop" in redis and "restart-redis 271.3s" in redis
        assert "healed by restart-redis by: 15s probe interval (redis)" in redis

    def test_json_is_the_whole_matrix(self, capsys: pytest.CaptureFixture[str]) -> None:
        assert main(["drill", "plan", "--config", str(EXAMPLE), "--json"]) == 0
        data = json.loads(capsys.readouterr().out)
        keys = [e["key"] for e in data["experiments"]]
        assert "redis:container_stop" in keys and "backend:dependency_outage:redis" in keys
        redis = data["experiments"][keys.index("redis:container_stop")]
        assert redis["heal"]["deadline"]["seconds"] == 271.3

    @pytest.mark.parametrize(("option", "value", "expected"), [
        ("--config", "missing.yml", "missing.yml: (root): file not found"),
        ("--alertmanager", "missing.yml", "missing.yml: cannot read"),
        ("--rules", "missing-dir", "missing-dir: not a directory of rule files"),
        ("--prometheus-config", "missing.yml", "missing.yml: cannot read"),
    ])
    def test_an_unreadable_input_is_one_line_and_exit_2(
            self, option: str, value: str, expected: str, tmp_path: Path,
            capsys: pytest.CaptureFixture[str]) -> None:
        args = {"--config": str(EXAMPLE), option: str(tmp_path / value)}
        assert main(["drill", "plan", *(x for pair in args.items() for x in pair)]) == 2
        captured = capsys.readouterr()
        assert captured.out == ""
        lines = captured.err.splitlines()
        assert len(lines) == 1 and lines[0].startswith(str(tmp_path))
        assert expected in lines[0]

    def test_a_config_error_names_its_path_and_exits_2(
            self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        bad = tmp_path / "bad.yml"
        bad.write_text("services:\n  redis: {tier: gold}\n", encoding="utf-8")
        assert main(["drill", "plan", "--config", str(bad)]) == 2
        lines = capsys.readouterr().err.splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"{bad}: services.redis.tier")

    def test_a_rules_directory_without_alerts_exits_2(
            self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        assert main(["drill", "plan", "--config", str(EXAMPLE), "--rules", str(tmp_path)]) == 2
        assert capsys.readouterr().err == f"{tmp_path}: no alerting rules found\n"

    def test_a_rule_with_a_bad_for_names_the_file_and_rule_and_exits_2(
            self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        rules = tmp_path / "bad.yml"
        rules.write_text("groups:\n  - name: g\n    rules:\n      - alert: ServiceDown\n"
                         "        expr: vector(1)\n        for: 5 minutes\n", encoding="utf-8")
        assert main(["drill", "plan", "--config", str(EXAMPLE), "--rules", str(tmp_path)]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"{rules}: group g, rule 0: expected a duration") and \
            err.count("\n") == 1
