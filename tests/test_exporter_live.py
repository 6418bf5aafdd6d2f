"""The exporter against real targets, scraped over HTTP like Prometheus does.

Every target here is real: local HTTP servers, a redis-server, a PostgreSQL server, a Docker
engine with a busybox container, this machine's host and a child process.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from monitoriza.config import config_from_data
from monitoriza.exporter.app import Exporter
from tests.support.binaries import wait_until
from tests.support.dockerd import DockerEngine
from tests.support.exposition import promtool_check_metrics, scrape, value
from tests.support.http_targets import HttpTarget, HungTcpTarget

CONECTA_BODY = {"status": "degraded",
                "components": {"api": "healthy", "database": "healthy", "redis": "unknown"}}

StartExporter = Callable[[dict[str, Any]], tuple[Exporter, str]]


@pytest.fixture
def start_exporter() -> Iterator[StartExporter]:
    started: list[Exporter] = []

    def start(services: dict[str, Any]) -> tuple[Exporter, str]:
        config = config_from_data({"exporter": {"listen": "127.0.0.1:0"}, "services": services})
        exporter = Exporter(config)
        exporter.start()
        started.append(exporter)
        return exporter, "http://{}:{}/metrics".format(*exporter.address)

    yield start
    for exporter in started:
        exporter.stop()


def probed(url: str, service: str, probe: str) -> Callable[[], bool]:
    return lambda: value(scrape(url), "monitoriza_probe_success",
                         {"service": service, "probe": probe}) is not None


class TestExposition:
    """A scrape with every probe kind is valid Prometheus exposition."""

    def test_promtool_check_metrics_is_clean(
            self, start_exporter: StartExporter, http_target: HttpTarget, redis_server: Any,
            postgres_server: Any, docker_engine: DockerEngine) -> None:
        """promtool check metrics finds nothing to complain about in the live /metrics."""
        docker_engine.run_container("mz-lint-web")
        sleeper = subprocess.Popen(["sleep", "296.123"])
        try:
            _, url = start_exporter({
                "backend": {
                    "tier": "critical", "depends_on": ["redis", "postgres"],
                    "probes": [
                        {"kind": "http", "name": "health", "health_body": True,
                         "url": http_target.respond("/health", json_body=CONECTA_BODY),
                         "interval": "1s"},
                        {"kind": "docker", "container": "mz-lint-web",
                         "docker_url": docker_engine.url, "interval": "1s"},
                        {"kind": "process", "process_name": "sleep",
                         "cmdline_contains": "296.123", "interval": "1s"},
                    ]},
                "redis": {"probes": [{"kind": "redis", "url": redis_server.url,
                                      "interval": "1s"}]},
                "postgres": {"probes": [{"kind": "postgres", "url": postgres_server.url,
                                         "interval": "1s"}]},
                "host": {"probes": [{"kind": "host", "interval": "1s"},
                                    {"kind": "tcp", "host": "127.0.0.1",
                                     "port": http_target.port, "interval": "1s"}]},
            })
            assert wait_until(lambda: all(probed(url, s, p)() for s, p in [
                ("backend", "health"), ("backend", "docker"), ("backend", "process"),
                ("redis", "redis"), ("postgres", "postgres"), ("host", "host"),
                ("host", "tcp")]), 10.0)
            text = scrape(url)
        finally:
            sleeper.kill()
            sleeper.wait()
        result = promtool_check_metrics(text)
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout.strip() == "" and result.stderr.strip() == ""
        # The text contains every family the design names for these probes.
        for name in ["monitoriza_probe_success", "monitoriza_component_status",
                     "monitoriza_container_state", "monitoriza_container_restarts_total",
                     "monitoriza_health_dimension_score", "monitoriza_health_score",
                     "monitoriza_redis_memory_used_bytes", "monitoriza_postgres_connections",
                     "monitoriza_host_cpu_utilization_ratio", "monitoriza_process_instances",
                     "monitoriza_collector_success", "monitoriza_build_info"]:
            assert f"\n{name}" in text, name


class TestRealTargets:
    """Failures and recoveries of real servers show up in the metrics."""

    def test_redis_killed_and_restarted(self, start_exporter: StartExporter,
                                        redis_server: Any) -> None:
        """Killing Redis turns its probe to 0 within one interval; a restart brings back 1."""
        _, url = start_exporter({"redis": {"probes": [
            {"kind": "redis", "url": redis_server.url, "interval": "1s", "timeout": "500ms"}]}})
        labels = {"service": "redis", "probe": "redis"}
        assert wait_until(lambda: value(scrape(url), "monitoriza_probe_success", labels) == 1.0,
                          5.0)
        redis_server.kill()
        killed_at = time.monotonic()
        assert wait_until(lambda: value(scrape(url), "monitoriza_probe_success", labels) == 0.0,
                          3.0)
        # One interval (1 s), plus the time the failing run itself may take (its timeout).
        assert time.monotonic() - killed_at <= 1.0 + 0.5 + 0.3
        text = scrape(url)
        assert value(text, "monitoriza_probe_failure_reason",
                     {**labels, "reason": "connection"}) == 1.0
        assert value(text, "monitoriza_health_score", {"service": "redis"}) == 0.0
        redis_server.start()
        assert wait_until(lambda: value(scrape(url), "monitoriza_probe_success", labels) == 1.0,
                          3.0)

    def test_postgres_connections(self, start_exporter: StartExporter,
                                  postgres_server: Any) -> None:
        """PostgreSQL answers SELECT 1 and its connection use becomes saturation."""
        _, url = start_exporter({"postgres": {"probes": [
            {"kind": "postgres", "url": postgres_server.url, "interval": "1s"}]}})
        assert wait_until(probed(url, "postgres", "postgres"), 5.0)
        text = scrape(url)
        labels = {"service": "postgres", "probe": "postgres"}
        assert value(text, "monitoriza_probe_success", labels) == 1.0
        assert value(text, "monitoriza_postgres_max_connections", labels) == 100.0
        assert value(text, "monitoriza_health_dimension_score",
                     {"service": "postgres", "dimension": "saturation"}) == 1.0

    def test_docker_container_stop_and_restart(self, start_exporter: StartExporter,
                                               docker_engine: DockerEngine) -> None:
        """A stopped container shows as exited; each docker restart grows the restart count."""
        container = docker_engine.run_container("mz-exporter-web")
        _, url = start_exporter({"web": {"probes": [
            {"kind": "docker", "container": "mz-exporter-web", "docker_url": docker_engine.url,
             "interval": "1s"}]}})
        state = {"service": "web", "container": "mz-exporter-web"}
        restarts = {"service": "web", "container": "mz-exporter-web"}
        assert wait_until(lambda: value(scrape(url), "monitoriza_container_state",
                                        {**state, "state": "running"}) == 1.0, 5.0)
        before = value(scrape(url), "monitoriza_container_restarts_total", restarts)
        assert before == 0.0

        container.restart(timeout=0)  # sleep as PID 1 ignores SIGTERM: kill at once
        assert wait_until(lambda: value(scrape(url), "monitoriza_container_restarts_total",
                                        restarts) == 1.0, 5.0)

        container.stop(timeout=0)
        assert wait_until(lambda: value(scrape(url), "monitoriza_container_state",
                                        {**state, "state": "exited"}) == 1.0, 5.0)
        text = scrape(url)
        assert value(text, "monitoriza_container_state", {**state, "state": "running"}) == 0.0
        assert value(text, "monitoriza_probe_success",
                     {"service": "web", "probe": "docker"}) == 0.0

    def test_http_health_bodies(self, start_exporter: StartExporter,
                                http_target: HttpTarget) -> None:
        """Healthy JSON, the Conecta "redis: unknown" case, a slow, a garbage and a 50 MB body."""
        _, url = start_exporter({
            "healthy": {"probes": [{"kind": "http", "name": "health", "health_body": True,
                                    "interval": "1s", "url": http_target.respond(
                                        "/ok", json_body={"status": "healthy", "components": {
                                            "database": "healthy"}})}]},
            "backend": {"probes": [{"kind": "http", "name": "health", "health_body": True,
                                    "interval": "1s", "url": http_target.respond(
                                        "/conecta", json_body=CONECTA_BODY)}]},
            "slow": {"probes": [{"kind": "http", "name": "health", "interval": "2s",
                                 "timeout": "500ms",
                                 "url": http_target.respond("/slow", delay=3.0)}]},
            "garbage": {"probes": [{"kind": "http", "name": "health", "health_body": True,
                                    "interval": "1s", "url": http_target.respond(
                                        "/garbage", body=b"\x00<html>not json")}]},
            "huge": {"probes": [{"kind": "http", "name": "health", "interval": "2s",
                                 "url": http_target.huge("/huge")}]},
        })
        assert wait_until(lambda: all(probed(url, s, "health")() for s in
                                      ["healthy", "backend", "slow", "garbage", "huge"]), 10.0)
        text = scrape(url)

        def reason(service: str, why: str) -> float | None:
            return value(text, "monitoriza_probe_failure_reason",
                         {"service": service, "probe": "health", "reason": why})

        assert value(text, "monitoriza_probe_success",
                     {"service": "healthy", "probe": "health"}) == 1.0
        component = {"service": "backend", "component": "redis"}
        assert value(text, "monitoriza_component_status", {**component, "status": "unknown"}) == 1
        assert value(text, "monitoriza_component_status", {**component, "status": "healthy"}) == 0
        assert value(text, "monitoriza_health_dimension_score",
                     {"service": "backend", "dimension": "dependencies"}) == 0.5
        assert reason("slow", "timeout") == 1.0
        assert reason("garbage", "body") == 1.0
        assert reason("huge", "body") == 1.0
        # The 50 MB body is abandoned early rather than read whole.
        huge_duration = value(text, "monitoriza_probe_duration_seconds",
                              {"service": "huge", "probe": "health"})
        assert huge_duration is not None and huge_duration < 2.0


class TestScrapesNeverWait:
    """A target that never answers does not slow scrapes down."""

    def scrape_times(self, url: str, count: int = 40) -> list[float]:
        times = []
        with requests.Session() as session:
            for _ in range(count):
                began = time.perf_counter()
                session.get(url, timeout=10).raise_for_status()
                times.append(time.perf_counter() - began)
                time.sleep(0.05)
        return times

    def test_hung_target(self, start_exporter: StartExporter, http_target: HttpTarget,
                         hung_tcp_target: HungTcpTarget) -> None:
        """With a hung target scrapes take as long as without it, and never its timeout."""
        fast = [{"kind": "http", "name": f"p{i}", "interval": "1s",
                 "url": http_target.respond(f"/p{i}", json_body={"status": "ok"})}
                for i in range(4)]
        _, without_url = start_exporter({"web": {"probes": fast}})
        hung = {"kind": "http", "name": "hung", "url": hung_tcp_target.url,
                "interval": "5s", "timeout": "5s"}
        _, with_url = start_exporter({"web": {"probes": [*fast, hung]}})
        assert wait_until(probed(with_url, "web", "p3"), 5.0)
        assert wait_until(lambda: hung_tcp_target.accepted > 0, 5.0)

        without = self.scrape_times(without_url)
        with_hung = self.scrape_times(with_url)
        # While the hung probe is in flight, every scrape still returns at once.
        assert max(with_hung) < 1.0, max(with_hung)
        assert statistics.median(with_hung) < 3 * statistics.median(without) + 0.02
        # ... and once its 5 s deadline passes, the hung probe is reported as a timeout.
        assert wait_until(lambda: value(scrape(with_url), "monitoriza_probe_failure_reason", {
            "service": "web", "probe": "hung", "reason": "timeout"}) == 1.0, 12.0)


def test_module_runs_as_script() -> None:
    """``python -m monitoriza.cli --version`` works, as the console script does."""
    result = subprocess.run([sys.executable, "-m", "monitoriza.cli", "--version"],
                            capture_output=True, text=True, check=True, timeout=30)
    assert result.stdout.startswith("monitoriza ")
