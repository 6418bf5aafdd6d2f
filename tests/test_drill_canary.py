"""Persistence canaries against real stores: a Redis killed with and without AOF (by the
test, and by a drill's process_kill then restored by its playbook), a PostgreSQL killed
mid-run, a Redis behind a password file; nothing is faked."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import redis

from monitoriza.config.loader import config_from_data
from monitoriza.config.schema import PostgresProbe, RedisProbe, Service
from monitoriza.drill import host_faults
from monitoriza.drill.canary import (
    REDIS_PREFIX,
    TABLE,
    Canary,
    CanaryError,
    CanaryResult,
    postgres_loss_advice,
    read_canary,
    redis_loss_advice,
    stores_of,
    write_canary,
)
from monitoriza.drill.inject import inject, prepare, restore
from monitoriza.drill.model import Experiment
from tests.support.binaries import free_port, require_binary, wait_until
from tests.support.postgres_server import PostgresServer
from tests.support.redis_server import RedisServer, RedisServerFactory

NO_PERSISTENCE_ADVICE = ("Redis runs with appendonly no and no save points: a restart loses "
                         "every write; set appendonly yes (appendfsync everysec)")


def redis_probe(url: str, password_file: Path | None = None) -> RedisProbe:
    return RedisProbe(kind="redis", url=url,
                      password_file=str(password_file) if password_file else None)


def redis_keys(server: RedisServer) -> list[bytes]:
    with redis.Redis(port=server.port, socket_timeout=2) as client:
        return list(client.scan_iter(match=REDIS_PREFIX + "*"))


@pytest.mark.real_binary("redis-server")
class TestRedisCanary:
    """A Redis canary survives a kill only when the server persists its writes."""

    def test_survives_a_kill_with_append_only_file(
            self, make_redis_server: RedisServerFactory) -> None:
        server = make_redis_server("--appendonly", "yes", "--appendfsync", "everysec")
        probe = redis_probe(server.url)
        canary = write_canary("cache", probe)
        assert canary.store == "redis"
        assert canary.key.startswith(REDIS_PREFIX)
        server.kill()  # at once: the reply came after the write reached the file
        server.start()
        result = read_canary(probe, Canary.from_data(canary.as_data()))
        assert (result.outcome, result.advice) == ("survived", "")
        assert redis_keys(server) == []  # read removes it

    def test_lost_without_persistence_with_advice(self, redis_server: RedisServer) -> None:
        probe = redis_probe(redis_server.url)
        canary = write_canary("cache", probe)
        redis_server.kill()
        redis_server.start()
        result = read_canary(probe, canary)
        assert result.outcome == "lost"
        assert result.detail == f"key {canary.key} is gone"
        assert result.advice == NO_PERSISTENCE_ADVICE
        assert result.as_data()["advice"] == NO_PERSISTENCE_ADVICE

    def test_password_from_file_and_an_unreachable_store(
            self, make_redis_server: RedisServerFactory, tmp_path: Path) -> None:
        server = make_redis_server("--requirepass", "s3cret")
        secret = tmp_path / "redis.pass"
        secret.write_text("s3cret\n", encoding="utf-8")
        probe = redis_probe(server.url, secret)
        canary = write_canary("cache", probe)
        with pytest.raises(CanaryError, match=r"^cache: cannot write a canary to redis://"):
            write_canary("cache", redis_probe(server.url))  # no password: NOAUTH
        server.stop()
        result = read_canary(probe, canary)
        assert result.outcome == "unreadable"
        assert result.detail.startswith(f"cannot read the canary from {server.url}: ")
        server.start()  # persistence is off: the canary died with the server
        assert read_canary(probe, canary).outcome == "lost"


@pytest.mark.real_binary("postgres")
def test_postgres_canary_survives_a_kill(postgres_server: PostgresServer) -> None:
    """A committed row is still there after the postmaster is SIGKILLed and restarted."""
    with postgres_server.fresh_database("canary") as url:
        probe = PostgresProbe(kind="postgres", url=url)
        canary = write_canary("db", probe)
        assert canary.store == "postgres"
        postgres_server.kill()
        postgres_server.start()
        result = read_canary(probe, canary)
        assert (result.outcome, result.detail) == (
            "survived", f"row {canary.key} of {TABLE} read back intact")
        # Read removes it; reading again finds it gone, with the server's settings as advice.
        again = read_canary(probe, canary)
        assert again.outcome == "lost"
        with postgres_server.connect() as conn:
            settings = {name: str(conn.execute(f"SHOW {name}").fetchone()[0])  # type: ignore[index]
                        for name in ("fsync", "synchronous_commit")}
        assert again.advice == postgres_loss_advice(settings)


@pytest.fixture
def daemon_redis(tmp_path: Path) -> Iterator[Callable[[str], dict[str, Any]]]:
    """A daemonized redis-server started by a script, which is also the playbook's restart
    command; ``appendonly`` is ``yes`` or ``no``."""
    binary = require_binary("redis-server")
    started: list[dict[str, Any]] = []

    def make(appendonly: str) -> dict[str, Any]:
        port = free_port()
        directory = tmp_path / f"redis-{port}"
        directory.mkdir()
        script = directory / "start-redis"
        script.write_text(
            f"#!/bin/sh\nexec {binary} --port {port} --bind 127.0.0.1 --dir {directory} "
            f"--daemonize yes --save '' --appendonly {appendonly} --appendfsync everysec "
            f"--logfile {directory}/redis.log\n", encoding="utf-8")
        script.chmod(0o755)
        url = f"redis://127.0.0.1:{port}/0"
        config = config_from_data({
            "services": {"cache": {
                "probes": [{"kind": "redis", "url": url},
                           {"kind": "process", "process_name": "redis-server",
                            "cmdline_contains": f"127.0.0.1:{port}"}],
                "healing": [{"name": "restart", "steps": [
                    {"action": "command", "argv": [str(script)], "timeout": "10s"}]}]}},
            "responder": {"healing": {"allowed_commands": [str(script)]}}})
        details = {"process_name": "redis-server", "cmdline_contains": f"127.0.0.1:{port}"}
        made = {"config": config, "probe": config.services["cache"].probes[0],
                "details": details}
        started.append(made)
        subprocess.run([str(script)], check=True, timeout=10)
        assert wait_until(lambda: pong(url), 10)
        return made

    yield make
    for made in started:
        for pid in host_faults.running(made["details"]):
            psutil.Process(pid).kill()


def pong(url: str) -> bool:
    try:
        with redis.Redis.from_url(url, socket_timeout=1) as client:
            return bool(client.ping())
    except redis.ConnectionError:
        return False


@pytest.mark.real_binary("redis-server")
class TestDrillKillRestoreCanary:
    """A drill's process_kill of Redis, its restore by the playbook, then the canary."""

    @pytest.mark.parametrize(("appendonly", "outcome", "advice"), [
        ("yes", "survived", ""), ("no", "lost", NO_PERSISTENCE_ADVICE)])
    def test_canary_after_kill_and_restore(
            self, daemon_redis: Callable[[str], dict[str, Any]], appendonly: str,
            outcome: str, advice: str) -> None:
        redis_ = daemon_redis(appendonly)
        canary = write_canary("cache", redis_["probe"])
        done = inject(prepare(Experiment("cache", "process_kill", "redis-server", "cache", (),
                                         None, (), ()), redis_["config"], max_fill_bytes=1))
        assert host_faults.running(redis_["details"]) == []
        assert restore(done).startswith("process redis-server with ")
        assert wait_until(lambda: pong(redis_["probe"].url), 10)
        result = read_canary(redis_["probe"], canary)
        assert (result.outcome, result.advice) == (outcome, advice)


class TestPureParts:
    """Advice and data, without a server."""

    def test_redis_advice_follows_the_settings(self) -> None:
        assert redis_loss_advice({"appendonly": "no", "save": ""}) == NO_PERSISTENCE_ADVICE
        assert "since the last snapshot" in redis_loss_advice(
            {"appendonly": "no", "save": "3600 1 300 100"})
        assert "set appendfsync everysec" in redis_loss_advice(
            {"appendonly": "yes", "appendfsync": "no"})

    def test_postgres_advice_follows_the_settings(self) -> None:
        assert postgres_loss_advice({"fsync": "off", "synchronous_commit": "on"}).startswith(
            "PostgreSQL runs with fsync off")
        assert postgres_loss_advice({"fsync": "on", "synchronous_commit": "off"}).startswith(
            "PostgreSQL runs with synchronous_commit off")

    def test_stores_of_a_service_are_its_redis_and_postgres_probes(self) -> None:
        service = Service.model_validate({"probes": [
            {"kind": "tcp", "host": "h", "port": 1},
            {"kind": "redis", "url": "redis://h:6379/0"},
            {"kind": "postgres", "url": "postgresql://u@h/db"}]})
        assert [p.kind for p in stores_of(service)] == ["redis", "postgres"]

    def test_canary_data_round_trip_and_bad_data(self) -> None:
        canary = Canary("redis", "cache", REDIS_PREFIX + "x", "cache:x", 12.5)
        assert Canary.from_data(canary.as_data()) == canary
        result = CanaryResult(canary, "survived", "ok")
        assert result.as_data()["canary"] == canary.as_data()
        with pytest.raises(ValueError, match="canary store must be redis or postgres"):
            Canary.from_data({**canary.as_data(), "store": "mongo"})
