"""The configuration file is loaded strictly and every error names its path."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from monitoriza.config import load_config
from monitoriza.config.schema import DockerProbe, HttpProbe
from monitoriza.exceptions import ConfigError
from monitoriza.exporter.metrics import MEASUREMENT_HELP
from tests.support.binaries import require_binary

FIXTURES = Path(__file__).parent / "fixtures" / "config"
EXAMPLE = Path(__file__).parent.parent / "examples" / "conecta-plus.yml"

# Each invalid fixture and the exact messages a user sees for it (blackbox_exporter style).
INVALID = {
    "invalid-unknown-key.yml": ["services.backend.probes[0].helth_body: unknown key"],
    "invalid-wrong-type.yml": ["services.redis.probes[0].port: expected an integer, got a string"],
    "invalid-negative-timeout.yml": ["services.backend.probes[0].timeout: must be > 0"],
    "invalid-zero-interval.yml": ["services.backend.probes[0].interval: must be > 0"],
    "invalid-timeout-over-interval.yml": [
        "services.backend.probes[0].timeout: must not exceed the interval (10s > 5s)"],
    "invalid-unknown-dependency.yml": ["services.backend.depends_on[1]: unknown service 'redis'"],
    "invalid-self-dependency.yml": [
        "services.backend.depends_on[0]: a service cannot depend on itself"],
    "invalid-dependency-cycle.yml": [
        "services: dependency cycle: api-gateway -> backend -> redis -> api-gateway"],
    "invalid-duplicate-service.yml": [
        "services.backend: duplicate key (first on line 2, again on line 4)"],
    "invalid-duplicate-probe.yml": [
        "services.backend.probes[1].name: duplicate probe name 'http' in this service"],
    "invalid-bad-url.yml": [
        "services.backend.probes[0].url: '127.0.0.1:8000/health' is not a valid URL "
        "(expected http or https://HOST…)"],
    "invalid-empty.yml": ["(root): the configuration is empty"],
    "invalid-not-yaml.yml": [
        "(root): not valid YAML: line 3 column 8: expected ',' or '}', but got ':'"],
    "invalid-not-a-mapping.yml": ["(root): expected a mapping, got a list"],
    "invalid-unknown-probe-kind.yml": [
        "services.mongodb.probes[0].kind: must be one of: http, tcp, redis, postgres, docker, "
        "host, process"],
    "invalid-bad-tier.yml": ["services.backend.tier: must be one of: critical, standard"],
    "invalid-bad-duration.yml": [
        "exporter.default_interval: expected a duration like 90s, 5m or 1h30m, "
        "got '15 seconds'"],
    "invalid-bad-service-name.yml": [
        "services.Backend API: 'Backend API' is not a valid name (lower-case letters, digits, "
        "'_' and '-', starting with a letter)"],
    "invalid-missing-services.yml": ["services: required key is missing"],
    "invalid-missing-required.yml": ["services.backend.probes[0].url: required key is missing"],
    "invalid-bad-listen.yml": ["exporter.listen: 'localhost' is not a HOST:PORT address"],
    "invalid-weight-negative.yml": ["health.weights.availability: must be >= 0"],
    "invalid-port-range.yml": ["services.mongodb.probes[0].port: must be <= 65535"],
    "invalid-playbook-command.yml": [
        "services.redis.healing[0].steps[0].argv[0]: '/bin/sh' is not in "
        "responder.healing.allowed_commands"],
    "invalid-playbook-verify.yml": ["services.redis.healing[0].verify.probe: redis has no "
                                    "probe 'tcp'"],
}


class TestInvalidConfigs:
    """Each invalid fixture is rejected with its exact, path-naming message."""

    def test_every_fixture_is_in_the_table(self) -> None:
        """No invalid fixture is left without an expected message."""
        assert sorted(p.name for p in FIXTURES.glob("invalid-*.yml")) == sorted(INVALID)

    @pytest.mark.parametrize("name", sorted(INVALID))
    def test_message(self, name: str) -> None:
        """The loader reports exactly the expected messages."""
        with pytest.raises(ConfigError) as caught:
            load_config(FIXTURES / name)
        assert caught.value.messages == INVALID[name]

    def test_all_errors_reported_at_once(self, tmp_path: Path) -> None:
        """Several mistakes in one file are all reported, so one edit fixes them all."""
        path = tmp_path / "many.yml"
        path.write_text(
            "services:\n"
            "  backend:\n"
            "    tier: gold\n"
            "    probes: [{kind: tcp, host: x, port: 0, colour: red}]\n")
        with pytest.raises(ConfigError) as caught:
            load_config(path)
        assert set(caught.value.messages) == {
            "services.backend.tier: must be one of: critical, standard",
            "services.backend.probes[0].port: must be >= 1",
            "services.backend.probes[0].colour: unknown key",
        }

    def test_missing_file(self, tmp_path: Path) -> None:
        """A missing file is reported by name rather than as a traceback."""
        with pytest.raises(ConfigError) as caught:
            load_config(tmp_path / "nope.yml")
        assert caught.value.messages == [f"(root): file not found: {tmp_path / 'nope.yml'}"]


class TestDefaults:
    """Defaults are applied before validation, from the exporter section."""

    def test_probe_defaults(self, tmp_path: Path) -> None:
        """Probe name, interval and timeout default from the kind and the exporter section."""
        path = tmp_path / "c.yml"
        path.write_text(
            "exporter: {default_interval: 30s, default_timeout: 4s,"
            " docker_url: 'unix:///tmp/d.sock'}\n"
            "services:\n"
            "  web:\n"
            "    probes:\n"
            "      - {kind: http, url: 'http://127.0.0.1:1/'}\n"
            "      - {kind: http, name: fast, url: 'http://127.0.0.1:1/x', interval: 2s}\n"
            "      - {kind: docker, container: web}\n")
        probes = load_config(path).services["web"].probes
        first, second, docker = probes
        assert isinstance(first, HttpProbe) and isinstance(docker, DockerProbe)
        assert (first.name, first.interval, first.timeout) == ("http", 30.0, 4.0)
        # A default timeout longer than the probe's own interval is cut down to the interval.
        assert (second.name, second.interval, second.timeout) == ("fast", 2.0, 2.0)
        assert docker.docker_url == "unix:///tmp/d.sock"

    def test_example_is_valid(self) -> None:
        """The shipped Conecta Plus example models its nine services and the host."""
        config = load_config(EXAMPLE)
        assert set(config.services) == {
            "nginx", "frontend", "api-gateway", "backend", "ai-orchestrator", "guardian",
            "postgres", "redis", "mongodb", "host"}
        assert config.services["backend"].depends_on == ["postgres", "redis", "mongodb"]
        assert config.services["backend"].tier == "critical"


class TestCheckConfigCommand:
    """``monitoriza check-config`` exits 0 for a good file and 1 with messages for a bad one."""

    def run(self, path: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "monitoriza.cli", "check-config", str(path)],
                              capture_output=True, text=True, check=False)

    def test_valid(self) -> None:
        """A valid file is confirmed with a summary."""
        result = self.run(EXAMPLE)
        assert result.returncode == 0
        assert "OK (10 services, 20 probes)" in result.stdout

    def test_invalid(self) -> None:
        """An invalid file exits 1 and prints each message prefixed by the file name."""
        path = FIXTURES / "invalid-unknown-dependency.yml"
        result = self.run(path)
        assert result.returncode == 1
        assert result.stderr.strip() == (
            f"{path}: services.backend.depends_on[1]: unknown service 'redis'")


class TestExampleForecasts:
    """examples/conecta-plus.yml forecasts what runs out in a condominium's stack."""

    def test_disk_memory_redis_and_postgres(self, tmp_path: Path) -> None:
        """Host disk (per path) and memory, Redis memory against maxmemory and PostgreSQL
        connections against max_connections; each expression is PromQL that promtool
        parses, over metrics the exporter publishes, with the service label it sets."""
        config = load_config(EXAMPLE)
        forecasts = config.forecasts
        assert {(name, spec.service) for name, spec in forecasts.items()} == {
            ("host-disk", "host"), ("host-memory", "host"), ("redis-memory", "redis"),
            ("postgres-connections", "postgres")}
        assert forecasts["host-disk"].by == ["path"]
        assert "monitoriza_redis_memory_max_bytes" in forecasts["redis-memory"].expr
        assert "monitoriza_postgres_max_connections" in forecasts[
            "postgres-connections"].expr
        for spec in forecasts.values():
            named = set(re.findall(r"monitoriza_[a-z_]+", spec.expr))
            assert named and named <= set(MEASUREMENT_HELP), spec.expr
            assert spec.window < spec.horizon
        rules = tmp_path / "forecasts.yml"
        rules.write_text(yaml.safe_dump({"groups": [{"name": "example-forecasts", "rules": [
            {"record": f"example:{name.replace('-', '_')}", "expr": spec.expr}
            for name, spec in forecasts.items()]}]}))
        checked = subprocess.run([require_binary("promtool"), "check", "rules", str(rules)],
                                 capture_output=True, text=True, timeout=60, check=False)
        assert checked.returncode == 0, checked.stdout + checked.stderr
