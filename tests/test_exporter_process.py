"""The exporter as users run it: ``monitoriza exporter`` in its own process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from tests.support.binaries import free_port, wait_until
from tests.support.exposition import scrape, value

EXAMPLE = Path(__file__).parent.parent / "examples" / "conecta-plus.yml"
StartExporter = Callable[[Path], "ExporterProcess"]


class ExporterProcess:
    """A ``monitoriza exporter`` child process, stopped by PID at teardown."""

    def __init__(self, config: Path, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/metrics"
        self._log = log.open("w")
        env = {**os.environ, "DOCKER_HOST": f"unix://{log.parent}/no-docker.sock"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "monitoriza.cli", "exporter", "--config", str(config),
             "--listen", f"127.0.0.1:{self.port}"],
            stdout=self._log, stderr=subprocess.STDOUT, env=env)

    def ready(self) -> bool:
        try:
            return "monitoriza_build_info" in scrape(self.url, timeout=1.0)
        except requests.RequestException:
            return False

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=15)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
            self._log.close()


@pytest.fixture
def start_exporter(tmp_path: Path) -> Iterator[StartExporter]:
    started: list[ExporterProcess] = []

    def start(config: Path) -> ExporterProcess:
        exporter = ExporterProcess(config, tmp_path / f"exporter-{len(started)}.log")
        started.append(exporter)
        assert wait_until(exporter.ready, 20.0), (tmp_path / "exporter-0.log").read_text()
        return exporter

    yield start
    for exporter in started:
        if exporter.process.poll() is None:
            exporter.stop()


class TestNothingReachable:
    """With no target reachable the exporter still serves metrics: failures are metrics."""

    def test_example_config_serves_failures(self, start_exporter: StartExporter) -> None:
        """Every probe of the example shows up, and failing ones say why."""
        exporter = start_exporter(EXAMPLE)

        def all_probed() -> bool:
            text = scrape(exporter.url)
            return value(text, "monitoriza_probe_success",
                         {"service": "guardian", "probe": "docker"}) is not None
        # The first runs are spread over up to five seconds.
        assert wait_until(all_probed, 15.0)
        text = scrape(exporter.url)
        assert value(text, "monitoriza_probe_success",
                     {"service": "guardian", "probe": "docker"}) == 0.0
        assert value(text, "monitoriza_probe_failure_reason",
                     {"service": "guardian", "probe": "docker", "reason": "connection"}) == 1.0
        assert value(text, "monitoriza_collector_success", {"collector": "probes"}) == 1.0
        assert value(text, "monitoriza_collector_success", {"collector": "health"}) == 1.0
        assert value(text, "monitoriza_config_last_reload_successful", {}) == 1.0
        # The topology alert rules join on: tiers and the dependency graph.
        assert value(text, "monitoriza_service_info", {"service": "backend",
                                                       "tier": "critical"}) == 1.0
        assert value(text, "monitoriza_service_dependency", {"service": "backend",
                                                             "depends_on": "postgres"}) == 1.0
        assert exporter.stop() == 0


class TestReload:
    """SIGHUP reloads the configuration; a bad file keeps the old one."""

    def test_sighup(self, tmp_path: Path, start_exporter: StartExporter) -> None:
        """A good edit adds a probe; a broken edit is refused and flagged by a metric."""
        config = tmp_path / "c.yml"
        port = free_port()
        config.write_text(
            "services:\n  web:\n    probes:\n"
            f"      - {{kind: tcp, name: one, host: 127.0.0.1, port: {port}, interval: 1s}}\n")
        exporter = start_exporter(config)
        one = {"service": "web", "probe": "one"}
        two = {"service": "web", "probe": "two"}
        assert wait_until(lambda: value(scrape(exporter.url), "monitoriza_probe_success",
                                        one) is not None, 10.0)

        config.write_text(config.read_text() + f"      - {{kind: tcp, name: two, host: 127.0.0.1,"
                                               f" port: {port}, interval: 1s}}\n")
        exporter.process.send_signal(signal.SIGHUP)
        assert wait_until(lambda: value(scrape(exporter.url), "monitoriza_probe_success",
                                        two) is not None, 10.0)

        config.write_text("services:\n  web:\n    tier: gold\n")
        exporter.process.send_signal(signal.SIGHUP)
        assert wait_until(lambda: value(scrape(exporter.url),
                                        "monitoriza_config_last_reload_successful", {}) == 0.0,
                          10.0)
        text = scrape(exporter.url)
        # The running configuration is kept: both probes still run.
        assert value(text, "monitoriza_probe_success", two) is not None
        assert exporter.stop() == 0


class TestCommandErrors:
    """Bad configuration or a busy port give a clear message and exit status 2."""

    def test_bad_config(self, tmp_path: Path) -> None:
        """The exporter refuses to start on an invalid file and names the problem."""
        config = tmp_path / "bad.yml"
        config.write_text("services:\n  web: {tier: gold}\n")
        result = subprocess.run(
            [sys.executable, "-m", "monitoriza.cli", "exporter", "--config", str(config)],
            capture_output=True, text=True, timeout=30, check=False)
        assert result.returncode == 2
        assert f"{config}: services.web.tier: must be one of: critical, standard" in result.stderr

    def test_port_in_use(self, tmp_path: Path, start_exporter: StartExporter) -> None:
        """A second exporter on the same port exits 2 instead of a traceback."""
        config = tmp_path / "c.yml"
        config.write_text("services: {}\n")
        first = start_exporter(config)
        result = subprocess.run(
            [sys.executable, "-m", "monitoriza.cli", "exporter", "--config", str(config),
             "--listen", f"127.0.0.1:{first.port}"],
            capture_output=True, text=True, timeout=30, check=False)
        assert result.returncode == 2
        assert "cannot listen" in result.stderr
        assert "Traceback" not in result.stderr
