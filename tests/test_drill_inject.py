"""Drill faults against real parts: containers on a private dockerd, processes this test
starts, a ballast in ``tmp_path``; the restore journal, and a restore from it in a new process
after the injecting process was SIGKILLed.

The one fake is the disk usage handed to the ballast computation (a seam): a test cannot
make a real disk nearly full, so the write is tested at a size the fake usage asks for.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import psutil
import pytest

from monitoriza.config.loader import config_from_data
from monitoriza.config.schema import Config, ProcessProbe
from monitoriza.drill import host_faults
from monitoriza.drill.inject import (
    Injection,
    InjectionError,
    InjectionRefused,
    acted_on,
    crash_loop_kills,
    inject,
    prepare,
    release,
    restore,
)
from monitoriza.drill.model import Experiment, FaultKind
from monitoriza.drill.restore_journal import RestoreJournal, RestoreJournalError
from tests.support.binaries import wait_until
from tests.support.dockerd import DockerEngine

MAX_FILL = 1 << 30
# Exits on SIGTERM within 0.1 s, so a docker stop does not wait out its 10 s grace period.
QUICK_STOP = ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.1; done"]


def experiment(service: str, fault: FaultKind, target: str = "") -> Experiment:
    return Experiment(service=service, fault=fault, target=target or service,
                      root_cause=target if fault == "dependency_outage" else service,
                      alerts=(), heal=None, affected=(), notes=())


def estate(services: dict[str, Any], allowed_commands: list[str] | None = None,
           saturation_warn: float = 0.8) -> Config:
    return config_from_data({
        "services": services,
        "health": {"saturation_warn": saturation_warn},
        "responder": {"healing": {"allowed_commands": allowed_commands or []}},
    })


def docker_service(engine: DockerEngine, container: str) -> dict[str, Any]:
    return {"probes": [{"kind": "docker", "container": container, "docker_url": engine.url}]}


@pytest.fixture
def container(docker_engine: DockerEngine) -> Iterator[Any]:
    created = docker_engine.client.containers.run(
        docker_engine.image, QUICK_STOP, name=f"mz-drill-{uuid.uuid4().hex[:10]}",
        detach=True, network_mode="none")
    yield created
    created.remove(force=True)


def status(container: Any) -> str:
    container.reload()
    return str(container.status)


class TestWhatIsActedOn:
    """Which service a fault acts on, and what is done to it (pure)."""

    def test_dependency_outage_stops_a_container_else_kills_a_process(self) -> None:
        """A dependency with a docker probe is stopped; one with only a process probe killed."""
        config = estate({
            "api": {"depends_on": ["cache", "worker"]},
            "cache": {"probes": [{"kind": "docker", "container": "redis"}]},
            "worker": {"probes": [{"kind": "process", "process_name": "worker"}]},
        })
        assert acted_on(experiment("api", "dependency_outage", "cache"), config) == (
            "cache", "container_stop")
        assert acted_on(experiment("api", "dependency_outage", "worker"), config) == (
            "worker", "process_kill")
        assert acted_on(experiment("cache", "container_pause"), config) == (
            "cache", "container_pause")

    def test_dependency_without_docker_or_process_probe_is_refused(self) -> None:
        config = estate({"api": {"depends_on": ["db"]},
                         "db": {"probes": [{"kind": "tcp", "host": "db", "port": 5432}]}})
        with pytest.raises(InjectionRefused, match=r"^db has no docker or process probe: a "
                           r"drill cannot stop it$"):
            prepare(experiment("api", "dependency_outage", "db"), config, max_fill_bytes=1)


class TestProcessSafety:
    """Which processes a process_kill may touch."""

    def test_victims_match_name_and_command_line_and_spare_protected_pids(self) -> None:
        seen = [host_faults.SeenProcess(1, "worker", ("worker", "--queue=a")),
                host_faults.SeenProcess(40, "worker", ("worker", "--queue=a")),
                host_faults.SeenProcess(41, "worker", ("worker", "--queue=b")),
                host_faults.SeenProcess(42, "worker-2", ("worker-2", "--queue=a")),
                host_faults.SeenProcess(43, "worker", ("worker", "--queue=a")),
                host_faults.SeenProcess(44, "worker", ())]  # a zombie: no command line
        spec = ProcessProbe(kind="process", process_name="worker", cmdline_contains="queue=a")
        assert host_faults.victims(seen, spec, protected={1, 43}) == [40]

    def test_this_process_and_its_parent_are_never_victims(self) -> None:
        """This very process matches the probe, yet the live table never offers it."""
        me = psutil.Process()
        details = {"process_name": me.name(), "cmdline_contains": " ".join(me.cmdline())}
        assert host_faults.victims(
            [host_faults.SeenProcess(me.pid, me.name(), tuple(me.cmdline()))],
            host_faults.process_probe_of(details), protected=set()) == [me.pid]
        found = host_faults.running(details)
        assert me.pid not in found
        assert os.getppid() not in found
        assert 1 not in found

    def test_no_command_step_refuses_the_kill(self) -> None:
        """Only an http step to heal it: the drill will not kill what it cannot restart."""
        config = estate({"worker": {
            "probes": [{"kind": "process", "process_name": "worker"}],
            "healing": [{"name": "poke", "steps": [
                {"action": "http", "url": "http://127.0.0.1:1/{label.instance}"}]}]}})
        with pytest.raises(InjectionRefused, match=r"^worker has no playbook with a command "
                           r"step: a drill will not kill what it cannot restart$"):
            prepare(experiment("worker", "process_kill"), config, max_fill_bytes=1)

    def test_restart_step_skips_steps_that_need_alert_labels(self) -> None:
        config = estate({"worker": {
            "probes": [{"kind": "process", "process_name": "worker"}],
            "healing": [{"name": "one", "steps": [
                {"action": "command", "argv": ["/bin/restart", "{label.instance}"]},
                {"action": "command", "argv": ["/bin/restart", "{service}"], "timeout": "7s"}]}],
        }}, allowed_commands=["/bin/restart"])
        assert host_faults.restart_step("worker", config.services["worker"]) == (
            ["/bin/restart", "worker"], 7.0)


@pytest.fixture
def sleeper(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A daemon this test owns: ``sleep`` with a unique argument, started by a script that
    also serves as the playbook's restart command."""
    token = f"{random.randint(5000, 9000)}.{uuid.uuid4().int % 10**9}"
    script = tmp_path / "start-sleeper"
    script.write_text(f"#!/bin/sh\nsleep {token} >/dev/null 2>&1 &\n", encoding="utf-8")
    script.chmod(0o755)
    config = estate({"sleeper": {
        "probes": [{"kind": "process", "process_name": "sleep", "cmdline_contains": token}],
        "healing": [{"name": "restart", "steps": [
            {"action": "command", "argv": [str(script)], "timeout": "5s"}]}]}},
        allowed_commands=[str(script)])
    subprocess.run([str(script)], check=True, timeout=5)
    details = {"process_name": "sleep", "cmdline_contains": token}
    assert wait_until(lambda: bool(host_faults.running(details)), 5)
    yield {"config": config, "details": details}
    for pid in host_faults.running(details):
        psutil.Process(pid).kill()


class TestProcessKill:
    """process_kill on a real process; restore runs the playbook's command step."""

    def test_kill_then_restore_runs_the_playbook_command(self, sleeper: dict[str, Any]) -> None:
        before = host_faults.running(sleeper["details"])
        prepared = prepare(experiment("sleeper", "process_kill"), sleeper["config"],
                           max_fill_bytes=1)
        assert prepared.target == "sleep"
        done = inject(prepared)
        assert done.details["killed_pids"] == before
        assert host_faults.running(sleeper["details"]) == []
        fresh = Injection.from_data(json.loads(json.dumps(done.as_data())))
        assert restore(fresh).startswith("process sleep with ")
        after = host_faults.running(sleeper["details"])
        assert after and after != before
        assert restore(fresh).endswith("is running: nothing to do")


class TestDiskFill:
    """The ballast: its size (pure), its write and its removal (real files in tmp_path)."""

    def test_ballast_size_reaches_the_warning_plus_two_percent(self) -> None:
        assert host_faults.ballast_bytes(used=700, free=300, saturation_warn=0.8) == 120
        assert host_faults.ballast_bytes(used=900, free=100, saturation_warn=0.8) <= 0

    def test_more_than_the_limit_is_refused(self, tmp_path: Path) -> None:
        config = estate({"box": {"probes": [{"kind": "host", "disk_paths": [str(tmp_path)]}]}})
        with pytest.raises(InjectionRefused, match=r"more than the limit of 1: raise the limit"):
            prepare(experiment("box", "disk_fill"), config, max_fill_bytes=1)

    def test_ballast_is_written_and_restore_deletes_it(self, tmp_path: Path) -> None:
        """With a fake usage (100 MB, 79 % used) the ballast is 3 MB, fsynced on disk."""
        config = estate({"box": {"probes": [{"kind": "host", "disk_paths": [str(tmp_path)]}]}})
        usage = SimpleNamespace(used=79_000_000, free=21_000_000)
        details = host_faults.disk_fill_details("box", config.services["box"], 0.8, MAX_FILL,
                                                disk_usage=lambda _path: usage)
        assert details["bytes"] == 3_000_000
        done = inject(Injection("box:disk_fill", "box", "disk_fill", str(tmp_path), details))
        ballast = tmp_path / host_faults.BALLAST_NAME
        assert done.details["bytes_written"] == ballast.stat().st_size == 3_000_000
        with pytest.raises(InjectionError, match="exists already"):
            inject(Injection("box:disk_fill", "box", "disk_fill", str(tmp_path), details))
        assert restore(done) == f"ballast {ballast} (3000000 bytes) deleted"
        assert not ballast.exists()
        assert restore(done) == f"no ballast at {ballast}: nothing to do"


@pytest.mark.real_binary("dockerd")
class TestContainerFaults:
    """Container faults on a private real Docker engine."""

    @pytest.mark.parametrize(("fault", "faulted"), [
        ("container_stop", "exited"), ("container_kill", "exited"),
        ("container_pause", "paused")])
    def test_fault_then_restore_is_running_and_restore_is_idempotent(
            self, docker_engine: DockerEngine, container: Any, fault: FaultKind,
            faulted: str) -> None:
        config = estate({"cache": docker_service(docker_engine, container.name)})
        prepared = prepare(experiment("cache", fault), config, max_fill_bytes=1)
        assert prepared.injected_at == 0
        assert prepared.details["container_id"] == container.id
        before = time.time()
        done = inject(prepared)
        assert done.injected_at >= before
        assert status(container) == faulted
        assert restore(Injection.from_data(done.as_data())).startswith(
            f"container {container.name} ")
        assert status(container) == "running"
        assert restore(done) == f"container {container.name} is running: nothing to do"

    def test_crash_loop_kills_every_restart_until_released(
            self, docker_engine: DockerEngine, container: Any) -> None:
        config = estate({"cache": docker_service(docker_engine, container.name)})
        done = inject(prepare(experiment("cache", "crash_loop"), config, max_fill_bytes=1))
        try:
            assert status(container) == "exited"
            container.start()  # as healing would
            assert wait_until(lambda: crash_loop_kills(done.key) == 1, 5)
            assert status(container) == "exited"
            release(done)
            assert crash_loop_kills(done.key) is None
            container.start()
            time.sleep(1.2)  # more than two rounds of the loop
            assert status(container) == "running"
        finally:
            release(done)
        assert restore(done) == f"container {container.name} is running: nothing to do"

    def test_missing_container_and_stopped_container_are_refused(
            self, docker_engine: DockerEngine, container: Any) -> None:
        config = estate({"cache": docker_service(docker_engine, "mz-no-such")})
        with pytest.raises(InjectionRefused, match=f"^cache: container mz-no-such does not "
                           f"exist on {docker_engine.url}$"):
            prepare(experiment("cache", "container_stop"), config, max_fill_bytes=1)
        container.kill()
        config = estate({"cache": docker_service(docker_engine, container.name)})
        with pytest.raises(InjectionRefused, match="is exited, not running; start it first"):
            prepare(experiment("cache", "container_kill"), config, max_fill_bytes=1)


class TestRestoreJournal:
    """The restore journal on disk."""

    def injection(self, key: str) -> Injection:
        return Injection(key, "cache", "container_stop", "redis",
                         {"docker_url": "unix:///x.sock", "container": "redis"})

    def test_add_update_remove_round_trip_through_the_file(self, tmp_path: Path) -> None:
        path = tmp_path / "drills" / "restore-journal.json"
        journal = RestoreJournal(path)
        assert journal.pending() == []
        first, second = self.injection("cache:container_stop"), self.injection("b:crash_loop")
        journal.add(first)
        journal.add(second)
        journal.update(first.with_effect(123.5))
        assert [(i.key, i.injected_at) for i in RestoreJournal(path).pending()] == [
            ("cache:container_stop", 123.5), ("b:crash_loop", 0.0)]
        journal.remove("cache:container_stop")
        journal.remove("cache:container_stop")  # idempotent
        assert RestoreJournal(path).pending() == [second]
        assert [p.name for p in path.parent.iterdir()] == ["restore-journal.json"]

    def test_misuse_is_an_error(self, tmp_path: Path) -> None:
        journal = RestoreJournal(tmp_path / "j.json")
        journal.add(self.injection("k"))
        with pytest.raises(RestoreJournalError, match="k is already pending"):
            journal.add(self.injection("k"))
        with pytest.raises(RestoreJournalError, match="other is not pending"):
            journal.update(self.injection("other"))

    @pytest.mark.parametrize(("text", "reason"), [
        ("{not json", "Expecting property name"),
        ('{"kind": "drill-restore-journal", "version": 1, "pending": [{"key": "k"}]}',
         "pending[0]: injection field 'service' must be a non-empty string"),
        ('{"kind": "drill-restore-journal", "version": 1, "pending": [{"key": "k", '
         '"service": "s", "target": "t", "fault": "dependency_outage", "details": {}}]}',
         "pending[0]: injection field 'fault' must be one of"),
    ])
    def test_corrupt_file_is_an_error_naming_it(self, tmp_path: Path, text: str,
                                                reason: str) -> None:
        path = tmp_path / "j.json"
        path.write_text(text, encoding="utf-8")
        with pytest.raises(RestoreJournalError) as caught:
            RestoreJournal(path).pending()
        assert str(caught.value).startswith(f"{path}: corrupt restore journal (")
        assert reason in str(caught.value)


INJECTOR = """
import sys, time
from monitoriza.config.loader import config_from_data
from monitoriza.drill.inject import inject, prepare
from monitoriza.drill.model import Experiment
from monitoriza.drill.restore_journal import RestoreJournal
url, name, path = sys.argv[1:]
config = config_from_data({"services": {"cache": {"probes": [
    {"kind": "docker", "container": name, "docker_url": url}]}}})
journal = RestoreJournal(path)
prepared = prepare(Experiment("cache", "crash_loop", name, "cache", (), None, (), ()), config,
                   max_fill_bytes=1)
journal.add(prepared)
journal.update(inject(prepared))
print("injected", flush=True)
time.sleep(60)
"""

RESTORER = """
import sys
from monitoriza.drill.inject import restore
from monitoriza.drill.restore_journal import RestoreJournal
journal = RestoreJournal(sys.argv[1])
for injection in journal.pending():
    print(injection.key, "->", restore(injection))
    journal.remove(injection.key)
"""


@pytest.mark.real_binary("dockerd")
def test_a_new_process_restores_what_a_killed_drill_left(
        docker_engine: DockerEngine, container: Any, tmp_path: Path) -> None:
    """The injecting process dies by SIGKILL mid crash loop; a new one restores from the
    journal alone."""
    path = tmp_path / "restore-journal.json"
    injector = subprocess.Popen([sys.executable, "-c", INJECTOR, docker_engine.url,
                                 container.name, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert injector.stdout is not None
        assert injector.stdout.readline().strip() == "injected"
    finally:
        injector.send_signal(signal.SIGKILL)
        injector.wait(10)
        if injector.stdout is not None:
            injector.stdout.close()
    assert status(container) == "exited"
    restorer = subprocess.run([sys.executable, "-c", RESTORER, str(path)], capture_output=True,
                              text=True, timeout=60, check=True)
    assert restorer.stdout.strip() == (
        f"cache:crash_loop -> container {container.name} started (was exited)")
    assert status(container) == "running"
    assert RestoreJournal(path).pending() == []
