"""``monitoriza drill run`` on the running demo (``monitoriza up --demo``): real faults on the
real Redis and the real recorder container, observed through the real Prometheus,
Alertmanager and responder; the command run as a user runs it.

The full drill (every cell the demo can break passes), then one of its experiments exported
and run by ``chaos run``, which must give the same verdict. The drills that break on purpose
or are interrupted are in tests/test_drill_faults_e2e.py (a stack of their own, so that the
two files run side by side). Nothing is faked.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from monitoriza.drill.export import verdict_of
from tests.support.browser import screenshot
from tests.support.drill_stack import (
    NOT_RUN_REASONS,
    RUNNABLE,
    SCRAPE_INTERVAL,
    audit_entries,
    cells,
    drill,
    latest_results,
    latest_results_with,
    settle,
)
from tests.support.stack import ARTIFACTS, DemoStack, record_artifact

pytestmark = pytest.mark.usefixtures("demo_stack")


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
