"""Fire drills on the running demo: what tests/test_drill_run_e2e.py and
tests/test_drill_faults_e2e.py share (running the command as a user does, reading its
results, the state of Redis and the recorder container)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests

from tests.support.binaries import wait_until
from tests.support.dockerd import DockerEngine
from tests.support.stack import DemoStack

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


def latest_results_with(stack: DemoStack, key: str) -> dict[str, Any]:
    """The newest results file that judged ``key`` (later runs may have been interrupted)."""
    for path in sorted((stack.run_dir / "drills").glob("drill-run-*.json"), reverse=True):
        data: dict[str, Any] = json.loads(path.read_text())
        if any(c["key"] == key and c["verdict"] != "aborted" for c in data["cells"]):
            return data
    raise AssertionError(f"no drill judged {key}")
