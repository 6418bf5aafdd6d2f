"""``monitoriza drill run`` on the running demo (``monitoriza up --demo``): real faults on the
real Redis and the real recorder container, observed through the real Prometheus,
Alertmanager and responder; the command run as a user runs it.

The scenarios share one stack and run in file order: the full drill (every cell the demo can
break passes), then a Redis whose persistence is switched off at runtime (the canary is lost),
Ctrl-C in the middle of a fault, a drill killed with SIGKILL in the middle of a fault, and an
exported experiment under ``chaos run``. Nothing is faked.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import redis
import requests

from monitoriza.drill.export import verdict_of
from monitoriza.drill.restore_journal import RestoreJournal
from tests.support.binaries import wait_until
from tests.support.browser import screenshot
from tests.support.dockerd import DockerEngine
from tests.support.stack import ARTIFACTS, DemoStack, record_artifact

pytestmark = pytest.mark.usefixtures("demo_stack")

SCRAPE_INTERVAL = 1.0  # the demo's
RECOVERY_COOLDOWN = 180 * 0.05  # responder.healing.recovery_cooldown in the demo
RECORDER = "conecta-guardian-recorder"
#: Every experiment of the demo's plan that a drill can inject: the real Redis (a process
#: probe; its playbook restarts it) and the real recorder container, directly or as the
#: dependency of the services that use them.
RUNNABLE = {
    "redis:process_kill", "backend:dependency_outage:redis",
    "ai-orchestrator:dependency_outage:redis",
    "guardian:dependency_outage:guardian-recorder", "guardian-recorder:container_stop",
    "guardian-recorder:container_kill", "guardian-recorder:container_pause",
    "guardian-recorder:crash_loop"}
#: Why the rest cannot run on the demo (docs/drills.md, "On the demo").
NOT_RUN_REASONS = ("has no docker or process probe", "has no host probe with a disk path",
                   "more than the limit")


def drill(stack: DemoStack, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "monitoriza", "drill", *args, "--stack", str(stack.run_dir)],
        capture_output=True, text=True, timeout=timeout, check=False, cwd=stack.run_dir)


def start_drill(stack: DemoStack, log: Path, *args: str) -> subprocess.Popen[str]:
    with log.open("w") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "monitoriza", "drill", "run", "--stack", str(stack.run_dir),
             "--yes", *args], stdout=out, stderr=subprocess.STDOUT, text=True,
            cwd=stack.run_dir)


def latest_results(stack: DemoStack) -> dict[str, Any]:
    files = sorted((stack.run_dir / "drills").glob("drill-run-*.json"))
    assert files, "no results file"
    data: dict[str, Any] = json.loads(files[-1].read_text())
    return data


def cells(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {cell["key"]: cell for cell in results["cells"]}


def audit_entries(stack: DemoStack, since: int = 0) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    while True:
        response = requests.get(f"{stack.responder}/api/v1/audit",
                                params={"since": since, "limit": 1000},
                                headers={"Authorization": f"Bearer {stack.token}"}, timeout=10)
        response.raise_for_status()
        page = response.json()
        found += page["entries"]
        if not page["entries"]:
            return found
        since = page["next_since"]


def redis_pid(stack: DemoStack) -> int:
    return int((stack.run_dir / "redis" / "redis.pid").read_text().strip())


def recorder_status(engine: DockerEngine) -> str:
    return str(engine.client.containers.get(RECORDER).status)


def estate_healthy(stack: DemoStack) -> bool:
    """Every probe passes and no alert of the drilled services fires (the steady state a
    scenario must leave behind)."""
    failing = stack.query("min by (service) (monitoriza_probe_success) < 1")
    firing = [a for a in stack.alerts() if a["state"] == "firing"
              and a["labels"].get("service") in {"redis", "guardian-recorder"}]
    return not failing and not firing


def settle(stack: DemoStack) -> None:
    """Healthy again, and past the responder's recovery cooldown: a new fault on a service
    whose incident just resolved would be taken for an after-effect and not healed."""
    assert wait_until(lambda: estate_healthy(stack), 120, interval=1.0), stack.alerts()
    time.sleep(RECOVERY_COOLDOWN + 1)


def set_kill_switch(stack: DemoStack, enabled: bool) -> None:
    requests.post(f"{stack.responder}/api/v1/kill-switch", json={"enabled": enabled},
                  headers={"Authorization": f"Bearer {stack.token}"},
                  timeout=10).raise_for_status()


class TestFullDrill:
    def test_every_cell_the_demo_can_break_passes(self, demo_stack: DemoStack) -> None:
        """Detection within one scrape interval of Prometheus's own firing moment, receivers,
        root cause, heal and recovery for each cell; the matrix rendered; the audit chain holds
        each step and verifies; the drill's incidents are marked."""
        stack = demo_stack
        audit_head = len(audit_entries(stack))
        result = drill(stack, "run", "--yes", "--poll-interval", "0.25")
        assert result.returncode == 0, result.stdout + result.stderr
        results = latest_results(stack)
        record_artifact("drill-run-demo.json", results)
        found = cells(results)
        assert set(found) == RUNNABLE, result.stdout
        assert results["drift"] == []  # the stack runs the very files the plan read
        for key, cell in found.items():
            assert cell["verdict"] == "pass", (key, cell["reasons"])
            # Prometheus's own moment (activeAt + for) against the drill's: one scrape apart.
            assert 0 <= cell["detect_vs_prometheus"] <= SCRAPE_INTERVAL, (key, cell)
            assert cell["root_cause"]["named"] == cell["root_cause"]["expected"], key
            assert cell["heal"]["outcome"] == "healed", key
            assert cell["times"]["detect"] < cell["times"]["heal"] <= cell["times"]["recover"]
        redis_cell = found["redis:process_kill"]
        assert {"responder", "team-chat"} <= set(redis_cell["times"]["notify"])
        assert [c["outcome"] for c in redis_cell["canaries"]] == ["survived"]  # AOF on
        for missing in results["not_run"]:
            assert any(reason in missing["reason"] for reason in NOT_RUN_REASONS), missing
        assert set(results["plan"]) == RUNNABLE | {m["key"] for m in results["not_run"]}

        html = next((stack.run_dir / "drills").glob(f"drill-run-*{results['drill_id'][6:]}.html"))
        page = html.read_text()
        assert "guardian-recorder" in page and "crash_loop" in page
        shot = ARTIFACTS / "drill-matrix-demo.png"
        screenshot(html.as_uri(), shot)
        assert shot.read_bytes().startswith(b"\x89PNG")

        steps = [(e["kind"], e["data"].get("experiment")) for e in audit_entries(stack)[audit_head:]
                 if e["kind"].startswith("drill.")]
        for key in RUNNABLE:
            assert [kind for kind, experiment in steps if experiment == key] == [
                "drill.start", "drill.inject", "drill.restore", "drill.verdict", "drill.end"], key
        verify = stack.monitoriza("audit", "verify", "--config", str(stack.config))
        assert verify.returncode == 0, verify.stdout + verify.stderr
        marked = requests.get(f"{stack.responder}/api/v1/incidents",
                              params={"drill": results["drill_id"], "limit": 100},
                              headers={"Authorization": f"Bearer {stack.token}"},
                              timeout=10).json()["incidents"]
        assert {i["root_cause"]["service"] for i in marked} == {"redis", "guardian-recorder"}
        assert {i["id"] for c in found.values() for i in [{"id": n} for n in c["incidents"]]} \
            <= {i["id"] for i in marked}

        report = stack.monitoriza("report", "--config", str(stack.config), "--format", "json",
                                  "--out", "-")
        assert report.returncode in {0, 1}, report.stderr
        drills = json.loads(report.stdout)["drills"]
        assert drills["drill_id"] == results["drill_id"]


class TestBrokenSetups:
    def test_redis_without_persistence_loses_the_canary(self, demo_stack: DemoStack) -> None:
        """Persistence switched off at runtime (``CONFIG SET appendonly no``), as a Redis
        started without AOF would be: the kill loses the canary, and the cell says so with
        the fix."""
        stack = demo_stack
        settle(stack)
        client = redis.Redis(host="127.0.0.1", port=stack.ports.redis)
        try:
            client.config_set("appendonly", "no")
            result = drill(stack, "run", "--yes", "--only", "redis:process_kill")
        finally:
            client.close()
        assert result.returncode == 1, result.stdout + result.stderr
        cell = cells(latest_results(stack))["redis:process_kill"]
        assert cell["verdict"] == "wrong"
        assert cell["canary"]["outcome"] == "lost"
        assert "appendonly yes" in cell["canary"]["advice"]
        assert any("canary lost" in reason for reason in cell["reasons"]), cell["reasons"]
        # The restart read redis.conf again: persistence is back for what follows.
        restarted = redis.Redis(host="127.0.0.1", port=stack.ports.redis)
        try:
            assert restarted.config_get("appendonly") == {"appendonly": "yes"}
        finally:
            restarted.close()


class TestInterruptions:
    def test_ctrl_c_restores_at_once_and_touches_nothing_else(
            self, demo_stack: DemoStack, docker_engine: DockerEngine, tmp_path: Path) -> None:
        stack = demo_stack
        settle(stack)
        pid = redis_pid(stack)
        log = tmp_path / "drill.log"
        process = start_drill(stack, log, "--only", "guardian-recorder:container_pause",
                              "--under-load", "resident-checkin", "--load-rate", "4")
        try:
            assert wait_until(lambda: recorder_status(docker_engine) == "paused", 60,
                              interval=0.1), log.read_text()
            process.send_signal(signal.SIGINT)
            process.wait(30)
            restored_in = time.monotonic()
            assert process.returncode == 130, log.read_text()
        finally:
            if process.poll() is None:
                process.kill()
        assert recorder_status(docker_engine) == "running"
        assert time.monotonic() - restored_in < 2
        assert redis_pid(stack) == pid, "Redis is outside the blast radius"
        results = latest_results(stack)
        cell = cells(results)["guardian-recorder:container_pause"]
        assert cell["verdict"] == "aborted"
        # The flow was under load meanwhile; stopping the drill stopped it and kept its
        # results (a second or two of runs: Ctrl-C came as soon as the container paused).
        load = json.loads(Path(results["under_load"]["results"]).read_text())
        assert load["flow"] == "resident-checkin" and load["target_rate"] == 4
        assert RestoreJournal(stack.run_dir / "drills" / "restore-journal.json").pending() == []

    def test_a_killed_drill_is_restored_by_the_next_run(
            self, demo_stack: DemoStack, docker_engine: DockerEngine, tmp_path: Path) -> None:
        """SIGKILL in the middle of a fault; healing switched off at once so that only the
        next ``drill run`` can bring the container back (it does, before anything else, even
        without --yes)."""
        stack = demo_stack
        settle(stack)
        log = tmp_path / "drill.log"
        process = start_drill(stack, log, "--only", "guardian-recorder:container_stop")
        try:
            assert wait_until(lambda: recorder_status(docker_engine) == "exited", 60,
                              interval=0.1), log.read_text()
            process.kill()
            process.wait(10)
            set_kill_switch(stack, True)
            time.sleep(2)
            assert recorder_status(docker_engine) == "exited"
            result = drill(stack, "run", "--only", "guardian-recorder:container_stop")
            assert result.returncode == 2  # no --yes: the plan is shown, nothing injected
            assert "restored a fault an interrupted drill left: " \
                   "guardian-recorder:container_stop" in result.stderr
            assert recorder_status(docker_engine) == "running"
        finally:
            if process.poll() is None:
                process.kill()
            set_kill_switch(stack, False)


class TestChaosToolkit:
    def test_an_exported_drill_gives_the_same_verdict_under_chaos_run(
            self, demo_stack: DemoStack, tmp_path: Path) -> None:
        stack = demo_stack
        settle(stack)
        key = "guardian-recorder:container_stop"
        exported = drill(stack, "export", "--only", key, "--out-dir", str(tmp_path))
        assert exported.returncode == 0, exported.stderr
        document = tmp_path / "guardian-recorder_container_stop.json"
        journal = tmp_path / "journal.json"
        chaos = Path(sys.executable).parent / "chaos"
        result = subprocess.run(
            [str(chaos), "run", "--hypothesis-strategy", "continuously",
             "--hypothesis-frequency", "2", "--fail-fast", "--journal-path", str(journal),
             str(document)], capture_output=True, text=True, timeout=300, check=False,
            cwd=tmp_path)
        assert result.returncode == 0, result.stdout + result.stderr
        verdict = verdict_of(json.loads(journal.read_text()))
        assert verdict is not None
        drilled = cells(latest_results_with(stack, key))[key]
        assert verdict["verdict"] == drilled["verdict"] == "pass"
        assert [(s["stage"], s["what"], s["outcome"]) for s in verdict["stages"]] == [
            (s["stage"], s["what"], s["outcome"]) for s in drilled["stages"]]


def latest_results_with(stack: DemoStack, key: str) -> dict[str, Any]:
    """The newest results file that judged ``key`` (later runs may have been interrupted)."""
    for path in sorted((stack.run_dir / "drills").glob("drill-run-*.json"), reverse=True):
        data: dict[str, Any] = json.loads(path.read_text())
        if any(c["key"] == key and c["verdict"] != "aborted" for c in data["cells"]):
            return data
    raise AssertionError(f"no drill judged {key}")
