"""``monitoriza drill run`` and ``drill export`` before anything is injected: the selection,
the refusals (no --yes, a bad input, a part that cannot be reached), the pacing between
experiments, and the Chaos Toolkit documents the runner executes.

Nothing here breaks a service: every refusal is checked to inject nothing (no restore journal,
no results file). The drills on a running estate are in tests/test_drill_run_e2e.py."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
import yaml

from monitoriza.cli import main
from monitoriza.config.loader import config_from_data
from monitoriza.drill.commands import load_plan
from monitoriza.drill.drift import route_drift, rule_drift
from monitoriza.drill.export import DrillSettings, to_chaostoolkit, verdict_of
from monitoriza.drill.exporting import file_name
from monitoriza.drill.model import DrillPlan
from monitoriza.drill.pacing import Past, wait_before
from monitoriza.drill.rules import parse_rule_files
from monitoriza.drill.run import RunInputError, select, time_limit_of
from monitoriza.lint.run import read_rules

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "conecta-plus.yml"
ALERTMANAGER = ROOT / "alertmanager" / "alertmanager.yml"
RULES = ROOT / "rules"
PROMETHEUS = ROOT / "prometheus" / "prometheus.yml"


@pytest.fixture(scope="module")
def plan() -> DrillPlan:
    return load_plan(EXAMPLE, ALERTMANAGER, RULES, PROMETHEUS)


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def estate(tmp_path: Path) -> Path:
    """The example estate in a directory of its own, pointed at parts that are not running,
    with the token file the responder would read."""
    data = yaml.safe_load(EXAMPLE.read_text())
    port = closed_port()
    data["exporter"]["prometheus_url"] = f"http://127.0.0.1:{port}"
    data["responder"]["listen"] = f"127.0.0.1:{port}"
    data["responder"].setdefault("healing", {})["alertmanager_url"] = f"http://127.0.0.1:{port}"
    data["responder"]["token_file"] = str(tmp_path / "token")
    for service in data["services"].values():
        for probe in service.get("probes", []):
            for key in [k for k in probe if k.endswith("_file")]:
                probe[key] = str(tmp_path / "secret")
        for book in service.get("healing", []):
            for step in book.get("steps", []):
                for key in [k for k in step if k.endswith("_file")]:
                    step[key] = str(tmp_path / "secret")
    (tmp_path / "token").write_text("t0ken\n")
    (tmp_path / "secret").write_text("s3cret\n")
    path = tmp_path / "estate.yml"
    path.write_text(yaml.safe_dump(data))
    return path


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["drill", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def inputs(config: Path) -> list[str]:
    return ["--config", str(config), "--alertmanager", str(ALERTMANAGER), "--rules",
            str(RULES), "--prometheus-config", str(PROMETHEUS)]


def assert_nothing_injected(config: Path) -> None:
    drills = config.parent / "drills"
    assert not (drills / "restore-journal.json").exists()
    assert not list(drills.glob("drill-run-*.json")) if drills.exists() else True


class TestSelection:
    def test_a_service_selects_each_of_its_experiments(self, plan: DrillPlan) -> None:
        chosen = select(plan, ("redis",))
        assert {e.key for e in chosen} == {e.key for e in plan.for_service("redis")}

    def test_a_fault_and_a_dependency_target_narrow_it(self, plan: DrillPlan) -> None:
        assert [e.key for e in select(plan, ("redis:container_kill",))] == [
            "redis:container_kill"]
        outage = next(e for e in plan.experiments if e.fault == "dependency_outage")
        assert [e.key for e in select(plan, (outage.key,))] == [outage.key]

    def test_repeating_an_experiment_runs_it_once(self, plan: DrillPlan) -> None:
        assert len(select(plan, ("redis:container_kill", "redis:container_kill"))) == 1

    @pytest.mark.parametrize(("only", "named"), [
        ("nosuch", "the plan has: "), ("redis:explode", "fault kinds: container_stop"),
        ("redis:process_kill", "its experiments: redis:container_stop")])
    def test_a_selection_that_names_nothing_says_what_exists(
            self, plan: DrillPlan, only: str, named: str) -> None:
        with pytest.raises(RunInputError, match=named):
            select(plan, (only,))


class TestRefusals:
    """Every refusal exits 2 with one line per problem, and injects nothing."""

    def test_without_yes_the_plan_is_shown_and_nothing_is_injected(
            self, estate: Path, capsys: pytest.CaptureFixture[str]) -> None:
        code, out, err = run_cli(capsys, "run", *inputs(estate), "--only", "redis")
        assert code == 2
        assert "container_stop" in out
        assert "nothing injected" in err and "--yes" in err
        assert_nothing_injected(estate)

    def test_an_unknown_service_or_fault_is_one_line(
            self, estate: Path, capsys: pytest.CaptureFixture[str]) -> None:
        for only in ("nosuch", "redis:explode"):
            code, _, err = run_cli(capsys, "run", *inputs(estate), "--only", only, "--yes")
            assert code == 2
            assert len(err.strip().splitlines()) == 1, err
        assert_nothing_injected(estate)

    def test_a_flow_with_a_bad_json_path_is_named(
            self, estate: Path, capsys: pytest.CaptureFixture[str]) -> None:
        data = yaml.safe_load(estate.read_text())
        data["flows"] = {"checkin": {"services": ["backend"], "steps": [
            {"name": "s", "url": "http://127.0.0.1:1/x", "assert": {"$.a[": 1}}]}}
        estate.write_text(yaml.safe_dump(data))
        code, _, err = run_cli(capsys, "run", *inputs(estate), "--yes")
        assert code == 2
        assert "flows.checkin.steps[0]" in err
        assert len(err.strip().splitlines()) == 1, err
        assert_nothing_injected(estate)

    def test_an_unknown_flow_to_load_is_named(
            self, estate: Path, capsys: pytest.CaptureFixture[str]) -> None:
        code, _, err = run_cli(capsys, "run", *inputs(estate), "--only", "redis", "--yes",
                               "--under-load", "nosuch")
        assert code == 2
        assert "--under-load" in err and "no flow named 'nosuch'" in err
        assert_nothing_injected(estate)

    def test_no_prometheus_alertmanager_or_responder_reachable(
            self, estate: Path, capsys: pytest.CaptureFixture[str]) -> None:
        code, _, err = run_cli(capsys, "run", *inputs(estate), "--only", "redis", "--yes")
        assert code == 2
        assert err.startswith("nothing injected:")
        assert len(err.strip().splitlines()) == 1, err
        assert_nothing_injected(estate)

    def test_neither_config_nor_stack(self, capsys: pytest.CaptureFixture[str]) -> None:
        with pytest.raises(SystemExit) as exit_info:
            main(["drill", "run", "--yes"])
        assert exit_info.value.code == 2
        assert "--config FILE or --stack RUN_DIR" in capsys.readouterr().err


class TestPacing:
    """Experiments on one root cause wait for its recovery cooldown and restart budget."""

    @pytest.fixture
    def config(self) -> object:
        data = yaml.safe_load(EXAMPLE.read_text())
        healing = data["responder"].setdefault("healing", {})
        healing["recovery_cooldown"] = "3m"
        healing["budget"] = {"restarts": 2, "window": "10m"}
        return config_from_data(data, EXAMPLE.parent)

    def test_the_first_experiment_starts_at_once(self, plan: DrillPlan, config: object) -> None:
        redis = next(e for e in plan.for_service("redis") if e.heal)
        assert wait_before(redis, [], config, 1000.0) == (0.0, "")  # type: ignore[arg-type]

    def test_after_a_recovery_the_cooldown_of_that_root_cause(
            self, plan: DrillPlan, config: object) -> None:
        redis = next(e for e in plan.for_service("redis") if e.heal)
        other = next(e for e in plan.experiments if e.root_cause != "redis")
        history = [Past("redis", healed_at=None, recovered_at=1000.0)]
        seconds, reason = wait_before(redis, history, config, 1060.0)  # type: ignore[arg-type]
        assert seconds == 120.0 and "recovery cooldown of redis" in reason
        assert wait_before(other, history, config, 1060.0)[0] == 0.0  # type: ignore[arg-type]

    def test_a_spent_restart_budget_waits_for_the_oldest_restart_to_leave(
            self, plan: DrillPlan, config: object) -> None:
        redis = next(e for e in plan.for_service("redis") if e.heal)
        history = [Past("redis", 100.0, 110.0), Past("redis", 400.0, 410.0)]
        seconds, reason = wait_before(redis, history, config, 500.0)  # type: ignore[arg-type]
        assert seconds == 200.0 and "restart budget of redis (2 per 600s)" in reason


class TestDrift:
    """What runs against what was reviewed: Prometheus's rules API and the configuration
    Alertmanager reports back (its own canonical form)."""

    def test_a_for_that_differs_and_a_rule_not_loaded_are_named(self) -> None:
        planned = parse_rule_files(read_rules(RULES))
        running = [{"rules": [
            {"type": "alerting", "name": r.alertname, "labels": dict(r.labels),
             "duration": 1200.0 if (r.alertname, r.severity) == ("ServiceDown", "P4")
             else r.for_seconds}
            for r in planned if r.alertname != "Watchdog"]}]
        lines = rule_drift(planned, running)
        assert "ServiceDown P4 waits 1200s in the running Prometheus, 60s in " in "\n".join(
            lines)
        assert any(line.startswith("Watchdog") and "not loaded" in line for line in lines)
        assert len(lines) == 2, lines

    def test_alertmanagers_canonical_form_is_not_drift(self) -> None:
        """Alertmanager 0.25 reports the root's default timers left out, ``continue: false``
        added and matchers reordered (as seen from the real one): the same tree."""
        planned = yaml.safe_load(ALERTMANAGER.read_text())
        reported = json.loads(json.dumps(planned))
        for key in ("group_wait", "group_interval", "repeat_interval"):
            reported["route"].pop(key)
        for route in reported["route"]["routes"]:
            route["continue"] = False
            route["matchers"] = list(reversed(route.get("matchers", [])))
        assert route_drift(planned, reported, "am.yml") == []
        reported["route"]["routes"].insert(1, {"matchers": ['severity="P2"'],
                                               "receiver": "blackhole"})
        reported["inhibit_rules"] = []
        assert route_drift(planned, reported, "am.yml") == [
            "the running Alertmanager's route tree differs from am.yml's",
            "the running Alertmanager's inhibit rules differ from am.yml's"]


class TestChaosToolkitDocument:
    def settings(self, config: Path) -> DrillSettings:
        return DrillSettings(config, RULES, ALERTMANAGER, PROMETHEUS, "drill-x", 90.0, 1024)

    def test_chaostoolkit_accepts_it(self, plan: DrillPlan) -> None:
        """chaostoolkit-lib's own validation: the format, and every activity's module,
        function and arguments."""
        from chaoslib.experiment import ensure_experiment_is_valid  # noqa: PLC0415

        for experiment in plan.experiments[:5]:
            ensure_experiment_is_valid(to_chaostoolkit(experiment, self.settings(EXAMPLE)))

    def test_it_holds_the_blast_radius_rollback_and_judge(self, plan: DrillPlan) -> None:
        outage = next(e for e in plan.experiments if e.fault == "dependency_outage")
        document = to_chaostoolkit(outage, self.settings(EXAMPLE))
        assert [a["name"] for a in document["method"]][-1] == "judge"
        assert [a["name"] for a in document["rollbacks"]] == ["restore"]
        blast = document["extensions"][0]["blast_radius"]
        assert outage.root_cause in blast and set(outage.affected) <= set(blast)
        assert document["configuration"]["monitoriza_config"] == str(EXAMPLE)
        assert document["runtime"]["rollbacks"]["strategy"] == "always"

    def test_the_verdict_is_the_judge_output_or_none(self) -> None:
        journal = {"run": [
            {"activity": {"name": "observe-pipeline"}, "status": "succeeded", "output": {}},
            {"activity": {"name": "judge"}, "status": "succeeded",
             "output": {"verdict": "late"}}]}
        assert verdict_of(journal) == {"verdict": "late"}
        assert verdict_of({"run": journal["run"][:1]}) is None
        assert verdict_of({"status": "interrupted"}) is None

    def test_export_writes_one_file_per_experiment(
            self, estate: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        code, out, _ = run_cli(capsys, "export", *inputs(estate), "--only", "redis",
                               "--out-dir", str(tmp_path / "x"))
        assert code == 0
        files = sorted((tmp_path / "x").iterdir())
        plan = load_plan(estate, ALERTMANAGER, RULES, PROMETHEUS)
        assert [f.name for f in files] == sorted(file_name(e.key)
                                                 for e in plan.for_service("redis"))
        document = json.loads(files[0].read_text())
        assert document["title"].startswith("Monitoriza drill redis:")
        assert "chaos run --hypothesis-strategy continuously" in out

    def test_time_limit_is_twice_the_latest_deadline(self, plan: DrillPlan) -> None:
        redis = next(e for e in plan.for_service("redis") if e.heal)
        assert redis.heal is not None
        latest = max([redis.heal.deadline.seconds, *(a.detect.seconds for a in redis.alerts),
                      *(r.deadline.seconds for a in redis.alerts for r in a.reaches)])
        assert time_limit_of(redis, None) == max(60.0, 2 * latest)
        assert time_limit_of(redis, 42.0) == 42.0
