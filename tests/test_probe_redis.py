"""The Redis probe, on literal INFO data and against a real ``redis-server``."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.exceptions import (
    AuthenticationError,
    BusyLoadingError,
    ResponseError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from monitoriza.config.schema import RedisProbe
from monitoriza.exporter.probes import create_runner
from monitoriza.exporter.probes.base import Deadline
from monitoriza.exporter.probes.common import redact
from monitoriza.exporter.probes.redis import classify_error, parse_info, run
from tests.support.binaries import wait_until
from tests.support.exposition import measurement_values
from tests.support.redis_server import RedisServer, RedisServerFactory

PROBE = (("probe", "cache"),)


def spec(url: str, password_file: Path | None = None) -> RedisProbe:
    return RedisProbe(
        kind="redis",
        name="cache",
        url=url,
        password_file=str(password_file) if password_file is not None else None,
    )


def client(url: str) -> redis.Redis:
    """A test's own client, to set the server up and look at it."""
    return redis.Redis.from_url(url, socket_timeout=5, decode_responses=True)


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts TCP connections (the kernel's backlog) but never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield listener.getsockname()[1]


class TestParseInfo:
    """Turning INFO clients/memory fields into measurements and utilization."""

    INFO: dict[str, object] = {  # noqa: RUF012 - read-only sample data
        "connected_clients": 3,
        "maxclients": 10000,
        "used_memory": 1_048_576,
        "used_memory_human": "1.00M",
        "maxmemory": 4_194_304,
        "maxmemory_policy": "noeviction",
    }

    def test_reports_clients_and_memory_with_the_probe_label(self) -> None:
        """Each of the three samples is reported, labelled with the probe's name."""
        measurements, _ = parse_info("cache", self.INFO)
        assert {(m.metric, m.labels, m.value) for m in measurements} == {
            ("monitoriza_redis_connected_clients", PROBE, 3.0),
            ("monitoriza_redis_memory_used_bytes", PROBE, 1_048_576.0),
            ("monitoriza_redis_memory_max_bytes", PROBE, 4_194_304.0),
        }

    def test_utilization_is_used_over_limit(self) -> None:
        """Memory is used/maxmemory and clients connected/maxclients."""
        _, utilization = parse_info("cache", self.INFO)
        assert utilization == {"memory": 0.25, "clients": 3 / 10000}

    def test_unlimited_memory_has_no_memory_utilization(self) -> None:
        """maxmemory 0 means no limit: the sample says 0 and there is no ratio."""
        measurements, utilization = parse_info("cache", {**self.INFO, "maxmemory": 0})
        assert "memory" not in utilization
        assert ("monitoriza_redis_memory_max_bytes", 0.0) in {
            (m.metric, m.value) for m in measurements
        }

    def test_no_maxclients_before_redis_7_skips_client_utilization(self) -> None:
        """Without maxclients in INFO (Redis < 7) there is no clients ratio."""
        info = {k: v for k, v in self.INFO.items() if k != "maxclients"}
        _, utilization = parse_info("cache", info)
        assert utilization == {"memory": 0.25}

    def test_missing_or_non_numeric_fields_are_skipped(self) -> None:
        """An odd field yields fewer samples, never a false zero."""
        measurements, utilization = parse_info(
            "cache", {"connected_clients": "many", "used_memory": 10}
        )
        assert [(m.metric, m.value) for m in measurements] == [
            ("monitoriza_redis_memory_used_bytes", 10.0)
        ]
        assert utilization == {}

    def test_numeric_text_is_accepted(self) -> None:
        """Fields given as text (an older client's parsing) still count."""
        _, utilization = parse_info("cache", {"used_memory": "50", "maxmemory": "100"})
        assert utilization == {"memory": 0.5}

    def test_utilization_is_capped_at_one(self) -> None:
        """Redis may exceed maxmemory briefly before evicting; the ratio stays at most 1."""
        _, utilization = parse_info("cache", {"used_memory": 150, "maxmemory": 100})
        assert utilization == {"memory": 1.0}


class TestClassifyError:
    """Mapping redis-py exceptions to failure reasons."""

    @pytest.mark.parametrize(
        ("exc", "reason"),
        [
            (AuthenticationError("invalid username-password pair"), "auth"),
            (ResponseError("NOAUTH Authentication required."), "auth"),
            (ResponseError("WRONGPASS invalid username-password pair"), "auth"),
            (RedisTimeoutError("Timeout reading from socket"), "timeout"),
            (RedisConnectionError("Error 111 connecting. Connection refused."), "connection"),
            (BusyLoadingError("Redis is loading the dataset in memory"), "unhealthy"),
            (ResponseError("ERR unknown command"), "error"),
        ],
    )
    def test_reason(self, exc: redis.RedisError, reason: str) -> None:
        """Each kind of error gets its own reason; anything unknown is ``error``."""
        assert classify_error(exc) == reason


class TestRedact:
    """Keeping passwords in URLs out of messages."""

    def test_password_is_masked(self) -> None:
        """A password in the URL is replaced, the rest is kept."""
        assert redact("redis://app:s3cret@db:6380/1") == "redis://app:***@db:6380/1"
        assert redact("redis://:s3cret@db/0") == "redis://:***@db/0"

    def test_url_without_password_is_unchanged(self) -> None:
        """Nothing to hide, nothing changed."""
        assert redact("redis://db:6379/0") == "redis://db:6379/0"


class TestAgainstServer:
    """Runs against a real redis-server."""

    def test_success_reports_clients_and_memory(self, redis_server: RedisServer) -> None:
        """PING answers: success, latency, and plausible INFO samples."""
        outcome = create_runner(spec(redis_server.url))(Deadline.after(5))
        assert outcome.success, outcome.message
        assert outcome.failure_reason is None
        assert outcome.latency_seconds is not None
        assert 0 < outcome.latency_seconds < 5
        found = measurement_values(outcome)
        assert found["monitoriza_redis_connected_clients"] >= 1  # the probe itself
        assert found["monitoriza_redis_memory_used_bytes"] > 0
        assert found["monitoriza_redis_memory_max_bytes"] == 0  # unlimited by default
        assert "memory" not in outcome.utilization

    def test_clients_utilization_uses_maxclients(self, redis_server: RedisServer) -> None:
        """Redis 7 reports maxclients in INFO: clients utilization is connected/maxclients."""
        with client(redis_server.url) as admin:
            max_clients = int(admin.config_get("maxclients")["maxclients"])
            outcome = run(spec(redis_server.url), Deadline.after(5))
        found = measurement_values(outcome)
        assert outcome.utilization["clients"] == pytest.approx(
            found["monitoriza_redis_connected_clients"] / max_clients
        )

    def test_maxmemory_gives_memory_utilization(self, redis_server: RedisServer) -> None:
        """With maxmemory set, memory utilization appears and is used/max."""
        with client(redis_server.url) as admin:
            admin.config_set("maxmemory", "100mb")
        outcome = run(spec(redis_server.url), Deadline.after(5))
        assert outcome.success, outcome.message
        found = measurement_values(outcome)
        assert found["monitoriza_redis_memory_max_bytes"] == 100 * 1024 * 1024
        assert outcome.utilization["memory"] == pytest.approx(
            found["monitoriza_redis_memory_used_bytes"] / (100 * 1024 * 1024)
        )
        assert 0 < outcome.utilization["memory"] < 1

    def test_probe_closes_its_connection(self, redis_server: RedisServer) -> None:
        """Repeated runs leave no client connected behind them."""
        for _ in range(5):
            assert run(spec(redis_server.url), Deadline.after(5)).success
        with client(redis_server.url) as admin:
            assert wait_until(lambda: admin.info("clients")["connected_clients"] == 1, 5)

    def test_killed_then_restarted(self, redis_server: RedisServer) -> None:
        """A killed server is a ``connection`` failure; once started again, a success."""
        probe = spec(redis_server.url)
        assert run(probe, Deadline.after(5)).success
        redis_server.kill()
        outcome = run(probe, Deadline.after(5))
        assert not outcome.success
        assert outcome.failure_reason == "connection", outcome.message
        redis_server.start()
        outcome = run(probe, Deadline.after(5))
        assert outcome.success, outcome.message

    def test_paused_server_times_out_within_the_deadline(self, redis_server: RedisServer) -> None:
        """A server that accepts connections but runs no command fails with ``timeout``."""
        with client(redis_server.url) as admin:
            admin.execute_command("CLIENT", "PAUSE", "3000", "ALL")
        started = time.monotonic()
        outcome = run(spec(redis_server.url), Deadline.after(0.5))
        elapsed = time.monotonic() - started
        assert outcome.failure_reason == "timeout", outcome.message
        assert elapsed < 0.5 + 1


class TestAuth:
    """A server started with --requirepass."""

    @pytest.fixture
    def secured(self, make_redis_server: RedisServerFactory) -> RedisServer:
        return make_redis_server("--requirepass", "s3cret")

    def test_right_password_from_file(self, secured: RedisServer, tmp_path: Path) -> None:
        """The password file's content, trailing newline stripped, is used."""
        password = tmp_path / "password"
        password.write_text("s3cret\n", encoding="utf-8")
        outcome = run(spec(secured.url, password), Deadline.after(5))
        assert outcome.success, outcome.message

    def test_wrong_password_is_auth(self, secured: RedisServer, tmp_path: Path) -> None:
        """A wrong password is an ``auth`` failure."""
        password = tmp_path / "password"
        password.write_text("wrong\n", encoding="utf-8")
        outcome = run(spec(secured.url, password), Deadline.after(5))
        assert outcome.failure_reason == "auth", outcome.message

    def test_missing_password_is_auth(self, secured: RedisServer) -> None:
        """No password at all (NOAUTH) is an ``auth`` failure too."""
        outcome = run(spec(secured.url), Deadline.after(5))
        assert outcome.failure_reason == "auth", outcome.message

    def test_unreadable_password_file_is_error(self, secured: RedisServer, tmp_path: Path) -> None:
        """A password file that cannot be read is an ``error`` naming the file."""
        missing = tmp_path / "no-such-file"
        outcome = run(spec(secured.url, missing), Deadline.after(5))
        assert outcome.failure_reason == "error"
        assert str(missing) in outcome.message


class TestRestrictedServer:
    """A server that hides INFO, as some managed Redis services do."""

    def test_refused_info_still_succeeds(self, make_redis_server: RedisServerFactory) -> None:
        """PING answered, so a refused INFO only costs the measurements."""
        server = make_redis_server("--rename-command", "INFO", "")
        outcome = run(spec(server.url), Deadline.after(5))
        assert outcome.success
        assert outcome.measurements == ()
        assert "INFO refused" in outcome.message


class TestUnreachable:
    """Targets that are not a working Redis."""

    def test_nothing_listening_is_connection(self) -> None:
        """A refused connection is a ``connection`` failure."""
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            closed_port = sock.getsockname()[1]  # bound, never listening: refuses
            outcome = run(spec(f"redis://127.0.0.1:{closed_port}/0"), Deadline.after(5))
        assert outcome.failure_reason == "connection", outcome.message

    def test_silent_target_times_out_within_the_deadline(self, silent_port: int) -> None:
        """A target that accepts TCP but never answers is a ``timeout``, on time."""
        started = time.monotonic()
        outcome = run(spec(f"redis://127.0.0.1:{silent_port}/0"), Deadline.after(0.5))
        elapsed = time.monotonic() - started
        assert outcome.failure_reason == "timeout", outcome.message
        assert elapsed < 0.5 + 1
