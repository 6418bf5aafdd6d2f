"""Drills on the running demo that go wrong on purpose: a Redis whose persistence is switched
off at runtime (the canary is lost), Ctrl-C in the middle of a fault (restored at once), and a
drill killed with SIGKILL in the middle of a fault (restored by the next run, before anything
else). Real Redis, recorder container, Prometheus, Alertmanager and responder; nothing is
faked.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest
import redis

from monitoriza.drill.restore_journal import RestoreJournal
from tests.support.binaries import wait_until
from tests.support.dockerd import DockerEngine
from tests.support.drill_stack import (
    cells,
    drill,
    latest_results,
    recorder_status,
    redis_pid,
    set_kill_switch,
    settle,
    start_drill,
)
from tests.support.stack import DemoStack

pytestmark = pytest.mark.usefixtures("demo_stack")


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
