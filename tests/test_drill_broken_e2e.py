"""A drill catches and names a broken setup: ``monitoriza up --config`` runs a critical
service (a real busybox container) whose running rules and routes have drifted from the files
that were reviewed, and whose playbook does not heal.

The drill plans from the reviewed files and observes the running ones: the P4's ``for`` was
raised on the running Prometheus ("late"), a route sends P2 to a receiver with no integration
ahead of on-call ("never reached oncall"), and the playbook's command succeeds without
bringing the container back ("not healed", with its audit entries). Real Prometheus,
Alertmanager, exporter, responder and Docker engine; the drift is made by editing the running
stack's files and sending SIGHUP, as an operator's change would be.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from tests.support.binaries import require_binary, wait_until
from tests.support.dockerd import DockerEngine
from tests.support.stack import (
    READY_LINE,
    START_TIMEOUT,
    free_base_port,
    record_artifact,
    stop_up,
)

CONTAINER = "mz-drill-vault"
RUNNING_P4_FOR = "20s"  # the reviewed rule says 1m x 0.05 = 3s


@dataclass
class BrokenStack:
    process: subprocess.Popen[str]
    run_dir: Path
    reviewed: Path
    output: Path

    def log(self) -> str:
        return self.output.read_text(errors="replace")

    def pid_of(self, part: str) -> int:
        found = re.search(rf"  {part} ready \([0-9.]+ s, pid (\d+)\)", self.log())
        assert found, self.log()
        return int(found.group(1))

    @property
    def config(self) -> Any:
        return yaml.safe_load((self.run_dir / "monitoriza.yml").read_text())


def estate(engine: DockerEngine) -> dict[str, Any]:
    return {
        "services": {"vault": {
            "tier": "critical", "description": "Residents' documents (a busybox container)",
            "probes": [{"name": "docker", "kind": "docker", "container": CONTAINER,
                        "docker_url": engine.url, "interval": "2s", "timeout": "2s"}],
            # Succeeds and changes nothing: the verify sees the container still stopped.
            "healing": [{"name": "pretend-restart",
                         "steps": [{"action": "command", "argv": ["/bin/true"],
                                    "timeout": "5s"}],
                         "verify": {"probe": "docker", "timeout": "3s", "interval": "500ms"}}],
        }},
        "responder": {"healing": {"allowed_commands": ["/bin/true"]}},
    }


def drift(run_dir: Path) -> None:
    """What runs stops matching what was reviewed: the P4's ``for`` raised, and a route ahead
    of on-call that sends every P2 to a receiver with no integration."""
    rules_file = run_dir / "rules" / "service-alerts.yml"
    rules = yaml.safe_load(rules_file.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            if rule.get("alert") == "ServiceDown" and rule["labels"]["severity"] == "P4":
                rule["for"] = RUNNING_P4_FOR
    rules_file.write_text(yaml.safe_dump(rules, sort_keys=False))
    am_file = run_dir / "alertmanager" / "alertmanager.yml"
    am = yaml.safe_load(am_file.read_text())
    am["receivers"].append({"name": "blackhole"})
    am["route"]["routes"].insert(1, {"matchers": ['severity="P2"'], "receiver": "blackhole"})
    am_file.write_text(yaml.safe_dump(am, sort_keys=False))


def one_second_timers(run_dir: Path) -> None:
    """``monitoriza up --config`` scrapes every 15 s, as in production; the test's stack
    scrapes and evaluates every second so that the drill takes seconds, not minutes."""
    path = run_dir / "prometheus" / "prometheus.yml"
    config = yaml.safe_load(path.read_text())
    config["global"]["scrape_interval"] = config["global"]["evaluation_interval"] = "1s"
    for job in config.get("scrape_configs", []):
        job.pop("scrape_interval", None)
    path.write_text(yaml.safe_dump(config, sort_keys=False))


@pytest.fixture(scope="module")
def broken_stack(tmp_path_factory: pytest.TempPathFactory,
                 docker_engine: DockerEngine) -> Iterator[BrokenStack]:
    for name in ("prometheus", "prometheus-alertmanager"):
        require_binary(name)
    directory = tmp_path_factory.mktemp("broken")
    container = docker_engine.run_container(CONTAINER)
    config = directory / "estate.yml"
    config.write_text(yaml.safe_dump(estate(docker_engine)))
    output = directory / "up.log"
    run_dir = directory / "run"
    with output.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "monitoriza", "up", "--config", str(config), "--run-dir",
             str(run_dir), "--base-port", str(free_base_port()), "--time-scale", "0.05"],
            stdout=log, stderr=subprocess.STDOUT, text=True, cwd=directory)
    stack = BrokenStack(process, run_dir, directory / "reviewed", output)
    try:
        assert wait_until(lambda: READY_LINE in stack.log() or process.poll() is not None,
                          START_TIMEOUT, interval=0.2) and process.poll() is None, stack.log()
        one_second_timers(run_dir)
        stack.reviewed.mkdir()
        shutil.copytree(run_dir / "rules", stack.reviewed / "rules")
        shutil.copy(run_dir / "alertmanager" / "alertmanager.yml", stack.reviewed)
        drift(run_dir)
        for part in ("prometheus", "alertmanager"):
            # Both reread their configuration on SIGHUP.
            os.kill(stack.pid_of(part), signal.SIGHUP)
        yield stack
    finally:
        try:
            stop_up(process, output)
        finally:
            container.remove(force=True)


def prometheus_url(stack: BrokenStack) -> str:
    return str(stack.config["exporter"]["prometheus_url"])


def running_p4_for(stack: BrokenStack) -> float | None:
    groups = requests.get(f"{prometheus_url(stack)}/api/v1/rules", timeout=5).json()
    for group in groups["data"]["groups"]:
        for rule in group["rules"]:
            if rule.get("name") == "ServiceDown" and rule["labels"].get("severity") == "P4":
                return float(rule["duration"])
    return None


def test_late_rule_dropped_page_and_a_playbook_that_does_not_heal_are_named(
        broken_stack: BrokenStack, docker_engine: DockerEngine) -> None:
    stack = broken_stack
    assert wait_until(lambda: running_p4_for(stack) == 20.0, 30), "Prometheus reloaded"
    assert wait_until(lambda: bool(requests.get(
        f"{prometheus_url(stack)}/api/v1/query",
        params={"query": 'monitoriza_probe_success{service="vault"} == 1'},
        timeout=5).json()["data"]["result"]), 60), "the vault probe passes"
    run = stack.run_dir
    result = subprocess.run(
        [sys.executable, "-m", "monitoriza", "drill", "run", "--config",
         str(run / "monitoriza.yml"), "--rules", str(stack.reviewed / "rules"),
         "--alertmanager", str(stack.reviewed / "alertmanager.yml"), "--prometheus-config",
         str(run / "prometheus" / "prometheus.yml"), "--only", "vault:container_stop",
         "--yes", "--poll-interval", "0.25"],
        capture_output=True, text=True, timeout=600, check=False, cwd=run)
    assert result.returncode == 1, result.stdout + result.stderr
    results = json.loads(sorted((run / "drills").glob("drill-run-*.json"))[-1].read_text())
    record_artifact("drill-run-broken.json", results)
    # Said before the first fault: what runs differs from what was reviewed, and where.
    assert any(line.startswith("ServiceDown P4 waits 20s in the running Prometheus, 3s in ")
               for line in results["drift"]), results["drift"]
    assert any("route tree differs" in line for line in results["drift"]), results["drift"]
    assert "warning: ServiceDown P4 waits 20s" in result.stderr
    cell = results["cells"][0]
    assert cell["verdict"] == "missed", cell["reasons"]
    reasons = "\n".join(cell["reasons"])
    assert re.search(r"ServiceDown P4 of vault fired [0-9.]+ s after the fault, deadline "
                     r"[0-9.]+ s \(late\)", reasons), reasons
    assert "ServiceDown P2 of vault never reached oncall" in reasons, reasons
    assert "not healed" in reasons, reasons
    heal = cell["heal"]
    assert heal["outcome"] == "not_healed"
    assert heal["audit"] and all(entry["audit"] for entry in heal["audit"]), heal
    # The drill restored what the playbook did not.
    assert docker_engine.client.containers.get(CONTAINER).status == "running"
