"""A real Prometheus server for tests, on a free loopback port, stopped by PID."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from tests.support.binaries import free_port, require_binary, stop_process, wait_until


class PrometheusServer:
    """One ``prometheus`` process with its own data directory."""

    def __init__(self, config: dict[str, Any], directory: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config_path = directory / "prometheus.yml"
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        self.log_path = directory / "prometheus.log"
        self._log = self.log_path.open("w")
        self.process = subprocess.Popen(
            [require_binary("prometheus"), f"--config.file={self.config_path}",
             f"--storage.tsdb.path={directory / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=self._log, stderr=subprocess.STDOUT)

    def ready(self) -> bool:
        try:
            return requests.get(f"{self.url}/-/ready", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    def api(self, path: str, **params: str) -> Any:
        response = requests.get(f"{self.url}/api/v1/{path}", params=params, timeout=5)
        response.raise_for_status()
        return response.json()["data"]

    def targets_up(self) -> bool:
        active = self.api("targets")["activeTargets"]
        return bool(active) and all(target["health"] == "up" for target in active)

    def alerts(self) -> list[dict[str, Any]]:
        alerts: list[dict[str, Any]] = self.api("alerts")["alerts"]
        return alerts

    def stop(self) -> None:
        stop_process(self.process, timeout=20)
        self._log.close()


PrometheusFactory = Callable[[dict[str, Any]], PrometheusServer]


@pytest.fixture
def prometheus_factory(tmp_path: Path) -> Iterator[PrometheusFactory]:
    """Start Prometheus with a given configuration; wait until it is ready."""
    started: list[PrometheusServer] = []

    def start(config: dict[str, Any]) -> PrometheusServer:
        directory = tmp_path / f"prometheus-{len(started)}"
        directory.mkdir()
        server = PrometheusServer(config, directory)
        started.append(server)
        if not wait_until(server.ready, 30.0, interval=0.2):
            raise AssertionError(f"Prometheus did not become ready:\n{server.log_path.read_text()}")
        return server

    yield start
    for server in started:
        server.stop()
