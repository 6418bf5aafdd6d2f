"""The demo's real Redis (``monitoriza up --demo``): it keeps every acknowledged write across a
kill (AOF, fsync always), and its process probe finds it and no other redis-server, so a drill
can plan and run ``redis:process_kill`` and restore it with the restart-redis playbook's own
command."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import redis

from monitoriza.config import config_from_data
from monitoriza.config.schema import CommandAction, Config, ProcessProbe
from monitoriza.exporter.probes.base import Deadline, ProbeOutcome
from monitoriza.exporter.probes.process import run as run_process_probe
from monitoriza.stack import demo_plan
from monitoriza.stack.ports import ports_for
from tests.support.binaries import free_port, require_binary, wait_until
from tests.support.redis_server import RedisServer

HOST = "127.0.0.1"


def answers(port: int) -> bool:
    try:
        return bool(redis.Redis(host=HOST, port=port, socket_timeout=0.5).ping())
    except redis.RedisError:
        return False


def closed(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((HOST, port)) != 0


def instances(outcome: ProbeOutcome) -> float | None:
    return next((m.value for m in outcome.measurements
                 if m.metric == "monitoriza_process_instances"), None)


class DemoRedis:
    """The demo's redis-server, started as ``monitoriza up`` starts it, and its config."""

    def __init__(self, run_dir: Path) -> None:
        self.port = free_port()
        self.paths = demo_plan.DemoPaths(run_dir, require_binary("redis-server"))
        ports = replace(ports_for(21000, demo_services=5), redis=self.port)
        self.config: Config = config_from_data(
            demo_plan.demo_config(ports, self.paths, docker_host=None))
        self.paths.redis_dir.mkdir(parents=True)
        self.paths.redis_conf.write_text(demo_plan.redis_conf(self.port, self.paths, HOST))

    def probe(self) -> ProcessProbe:
        found = [p for p in self.config.services["redis"].probes if isinstance(p, ProcessProbe)]
        assert len(found) == 1
        return found[0]

    def restart_argv(self) -> list[str]:
        """The command step of the restart-redis playbook, which heals and restores Redis."""
        book = next(b for b in self.config.services["redis"].healing
                    if b.name == "restart-redis")
        step = book.steps[0]
        assert isinstance(step, CommandAction)
        return list(step.argv)

    def start(self) -> None:
        subprocess.run(self.restart_argv(), check=True, timeout=10)
        assert wait_until(lambda: answers(self.port), 10), "demo redis did not start"

    def pid(self) -> int:
        return int(self.paths.redis_pidfile.read_text().strip())

    def kill(self) -> None:
        os.kill(self.pid(), signal.SIGKILL)
        # A daemonized Redis is not our child: wait for its socket, not its process state.
        assert wait_until(lambda: closed(self.port), 10)

    def stop(self) -> None:
        try:
            pid = self.pid()
            with open(f"/proc/{pid}/comm", encoding="ascii") as comm:
                if "redis" in comm.read():
                    os.kill(pid, signal.SIGKILL)
        except (OSError, ValueError):
            pass


@pytest.fixture
def demo_redis(tmp_path: Path) -> Iterator[DemoRedis]:
    server = DemoRedis(tmp_path / "run")
    server.start()
    try:
        yield server
    finally:
        server.stop()


class TestDemoRedis:
    """The demo Redis as a drill meets it."""

    def test_redis_conf_persists_every_write(self, tmp_path: Path) -> None:
        """appendonly yes with appendfsync always; RDB snapshots stay off."""
        conf = demo_plan.redis_conf(6390, demo_plan.DemoPaths(tmp_path, "redis-server"), HOST)
        lines = conf.splitlines()
        assert {"appendonly yes", "appendfsync always", 'save ""'} <= set(lines)
        assert "appendonly no" not in lines

    def test_kill_loses_no_acknowledged_write(self, demo_redis: DemoRedis) -> None:
        """A canary written just before SIGKILL is read back after the playbook's restart."""
        client = redis.Redis(host=HOST, port=demo_redis.port, socket_timeout=2)
        client.set("drill:canary", "alive")
        demo_redis.kill()
        demo_redis.start()
        assert client.get("drill:canary") == b"alive"

    def test_process_probe_finds_only_the_demo_redis(self, demo_redis: DemoRedis,
                                                     redis_server: RedisServer) -> None:
        """With another redis-server running, the probe counts one process, the demo's; once
        it is killed the probe fails (not_found), and after the restart it passes again."""
        spec = demo_redis.probe()
        assert spec.process_name == "redis-server"
        outcome = run_process_probe(spec, Deadline.after(2.0))
        assert outcome.success, outcome.message
        assert instances(outcome) == 1.0
        # Without the title's config file, the name alone matches the bystander too.
        by_name: Any = spec.model_copy(update={"cmdline_contains": None})
        assert (instances(run_process_probe(by_name, Deadline.after(2.0))) or 0) >= 2
        demo_redis.kill()
        outcome = run_process_probe(spec, Deadline.after(2.0))
        assert not outcome.success
        assert outcome.failure_reason == "not_found"
        assert answers(redis_server.port)
        demo_redis.start()
        assert run_process_probe(spec, Deadline.after(2.0)).success

    def test_playbook_still_matches_and_verifies_the_redis_probe(
            self, demo_redis: DemoRedis) -> None:
        """restart-redis heals ServiceDown P3 (what a killed process raises: every probe of
        Redis fails) and verifies with the redis probe; its command is allowed."""
        redis_service = demo_redis.config.services["redis"]
        book = next(b for b in redis_service.healing if b.name == "restart-redis")
        assert (book.match.alertname, book.match.severity) == (["ServiceDown"], ["P3"])
        assert book.verify is not None and book.verify.probe == "redis"
        assert {p.name for p in redis_service.probes} == {"redis", "process"}
        allowed = demo_redis.config.responder.healing.allowed_commands
        assert demo_redis.restart_argv()[0] in allowed
