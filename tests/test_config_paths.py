"""Relative paths in the configuration resolve against the file's directory, not the process's
working directory (as Prometheus and Alertmanager do)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import requests
import yaml
from pydantic import BaseModel

from monitoriza.config import config_from_data, load_config
from tests.support.binaries import free_port, stop_process, wait_until
from tests.support.responder import TOKEN


def _write(path: Path, data: dict[str, object]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


class TestResolution:
    """load_config makes every file path absolute, beside the file."""

    def test_relative_paths_and_defaults_land_beside_the_file(self, tmp_path: Path) -> None:
        path = _write(tmp_path / "etc" / "monitoriza.yml", {
            "responder": {"store_url": "sqlite:///state/responder.db", "token_file": "token",
                          "audit": {"hmac_key_file": "keys/hmac"},
                          "healing": {"chat": {"webhook_url_file": "secrets/chat"}}},
            "services": {"cache": {"probes": [{"kind": "redis", "url": "redis://127.0.0.1:1",
                                               "password_file": "secrets/redis"}]}}})
        config = load_config(path)
        here = tmp_path / "etc"
        responder = config.responder
        assert responder.store_url == f"sqlite:///{here / 'state' / 'responder.db'}"
        assert responder.token_file == str(here / "token")
        assert responder.audit.hmac_key_file == str(here / "keys" / "hmac")
        assert responder.audit.signing_key_file == str(here / "monitoriza-audit-signing.pem")
        assert responder.audit.checkpoint_file == str(
            here / "monitoriza-audit-checkpoints.jsonl")
        assert responder.healing.kill_switch_file == str(here / "monitoriza-kill-switch")
        assert responder.healing.chat is not None
        assert responder.healing.chat.webhook_url_file == str(here / "secrets" / "chat")
        probe = config.services["cache"].probes[0]
        assert getattr(probe, "password_file", None) == str(here / "secrets" / "redis")

    def test_no_relative_path_is_left_anywhere(self, tmp_path: Path) -> None:
        """Walking the loaded configuration, no ``*_file``/``*_files`` value at any depth is
        relative: the resolver follows the naming rule, not a list of known fields."""
        path = _write(tmp_path / "etc" / "monitoriza.yml", {
            "responder": {"token_file": "token", "audit": {"hmac_key_file": "keys/hmac"},
                          "healing": {"chat": {"webhook_url_file": "secrets/chat"}}},
            "services": {"cache": {"probes": [{"kind": "redis", "url": "redis://127.0.0.1:1",
                                               "password_file": "secrets/redis"}]}}})
        found: list[tuple[str, str]] = []

        def walk(value: object, where: str) -> None:
            if isinstance(value, BaseModel):
                for name in type(value).model_fields:
                    item = getattr(value, name)
                    if name.endswith("_file") and isinstance(item, str):
                        found.append((f"{where}.{name}", item))
                    elif name.endswith("_files") and isinstance(item, dict):
                        found.extend((f"{where}.{name}.{k}", v) for k, v in item.items())
                    else:
                        walk(item, f"{where}.{name}")
            elif isinstance(value, dict | list):
                items = value.items() if isinstance(value, dict) else enumerate(value)
                for key, item in items:
                    walk(item, f"{where}[{key}]")

        walk(load_config(path), "config")
        assert len(found) >= 7
        assert [(where, file) for where, file in found if not Path(file).is_absolute()] == []

    def test_absolute_paths_and_non_file_urls_are_kept(self, tmp_path: Path) -> None:
        path = _write(tmp_path / "monitoriza.yml", {
            "responder": {"store_url": "sqlite:////var/lib/monitoriza/r.db",
                          "token_file": "/run/secrets/token"},
            "services": {"a": {}}})
        config = load_config(path)
        assert config.responder.store_url == "sqlite:////var/lib/monitoriza/r.db"
        assert config.responder.token_file == "/run/secrets/token"
        for url in ("sqlite://", "sqlite:///:memory:", "postgresql://u@db/monitoriza"):
            kept = load_config(_write(tmp_path / "m.yml", {"responder": {"store_url": url},
                                                          "services": {"a": {}}}))
            assert kept.responder.store_url == url

    def test_data_without_a_file_keeps_paths_as_written(self) -> None:
        config = config_from_data({"responder": {"token_file": "token"}, "services": {"a": {}}})
        assert config.responder.token_file == "token"


def test_a_responder_started_elsewhere_writes_its_files_beside_the_config(
        tmp_path: Path) -> None:
    """The reported fault: started from another directory, with no audit paths configured,
    the responder wrote its signing key and checkpoints into that directory."""
    port = free_port()
    config_dir = tmp_path / "etc"
    (config_dir).mkdir()
    (config_dir / "token").write_text(TOKEN + "\n")
    config = _write(config_dir / "monitoriza.yml", {
        "responder": {"listen": f"127.0.0.1:{port}", "store_url": "sqlite:///responder.db",
                      "token_file": "token"},
        "services": {"a": {}}})
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    log = tmp_path / "responder.log"
    with log.open("w") as output:
        process = subprocess.Popen([sys.executable, "-m", "monitoriza.cli", "responder",
                                    "--config", str(config)], cwd=elsewhere, stdout=output,
                                   stderr=subprocess.STDOUT)

    def ready() -> bool:
        try:
            return requests.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    try:
        assert wait_until(ready, 30, interval=0.1), log.read_text()
    finally:
        stop_process(process, timeout=20)  # a graceful stop writes a checkpoint
    assert process.returncode == 0, log.read_text()
    assert list(elsewhere.iterdir()) == []
    beside = {p.name for p in config_dir.iterdir()}
    assert {"responder.db", "monitoriza-audit-signing.pem",
            "monitoriza-audit-checkpoints.jsonl"} <= beside, beside
