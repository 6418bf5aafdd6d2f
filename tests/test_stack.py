"""``monitoriza up`` before anything runs: the generated configurations are the project's own
routing and rules pointed at loopback (checked by amtool and promtool), and every problem a
user can hit first — a port in use, a missing binary, a bad configuration — is a clear message
with exit status 2 and nothing started."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from monitoriza.config import load_config
from monitoriza.stack import demo_plan
from monitoriza.stack.ports import busy_ports, ports_for
from monitoriza.stack.render import alertmanager_config, prometheus_config, scale_timer
from monitoriza.stack.up import user_config
from monitoriza.timescale import default_rules_dir, render_rules
from tests.support.binaries import require_binary, wait_until
from tests.support.stack import free_base_port

REPO = Path(__file__).resolve().parent.parent
CANONICAL = yaml.safe_load((REPO / "alertmanager" / "alertmanager.yml").read_text())
PRODUCTION_PROMETHEUS = yaml.safe_load((REPO / "prometheus" / "prometheus.yml").read_text())


def rendered_alertmanager(tmp_path: Path, scale: float = 1.0) -> dict[str, Any]:
    return alertmanager_config(
        CANONICAL, templates_dir=REPO / "alertmanager" / "templates",
        responder_url="http://127.0.0.1:19095/api/v1/alerts",
        token_file=tmp_path / "token", chat_url="http://127.0.0.1:28090", scale=scale)


class TestAlertmanagerConfig:
    """The stack's Alertmanager routes exactly as production does, to local receivers."""

    def test_same_tree_local_receivers(self, tmp_path: Path) -> None:
        """Routes and inhibition unchanged; the responder gets the token file; Slack
        receivers post to the chat inbox, named after the receiver."""
        config = rendered_alertmanager(tmp_path)
        assert config["route"] == CANONICAL["route"]
        assert config["inhibit_rules"] == CANONICAL["inhibit_rules"]
        receivers = {r["name"]: r for r in config["receivers"]}
        assert receivers["oncall"]["slack_configs"][0]["api_url"] == (
            "http://127.0.0.1:28090/chat/oncall")
        assert "api_url_file" not in receivers["oncall"]["slack_configs"][0]
        hook = receivers["responder"]["webhook_configs"][0]
        assert hook["url"] == "http://127.0.0.1:19095/api/v1/alerts"
        assert hook["http_config"]["authorization"]["credentials_file"] == str(
            tmp_path / "token")
        assert receivers["deadmans-switch"]["webhook_configs"][0]["url"] == (
            "http://127.0.0.1:28090/chat/deadmans-switch")

    def test_scaled_timers(self, tmp_path: Path) -> None:
        """At 0.05, group_wait 30s becomes 1.5s, repeat_interval 4h 12m; never below 1 s."""
        config = rendered_alertmanager(tmp_path, scale=0.05)
        assert config["route"]["group_wait"] == "1s500ms"
        assert config["route"]["repeat_interval"] == "12m"
        assert config["route"]["routes"][0]["group_wait"] == "1s"  # Watchdog: 0s stays >= 1s
        assert scale_timer("5m", 0.001) == "1s"

    def test_amtool_accepts_it(self, tmp_path: Path) -> None:
        """The rendered file passes amtool check-config (templates found, URLs valid)."""
        (tmp_path / "token").write_text("t\n")
        path = tmp_path / "alertmanager.yml"
        path.write_text(yaml.safe_dump(rendered_alertmanager(tmp_path, scale=0.05)))
        result = subprocess.run([require_binary("amtool"), "check-config", str(path)],
                                capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stdout + result.stderr


class TestPrometheusConfig:
    """Same job names as prometheus/prometheus.yml (the rules match on them), plus the demo."""

    def test_jobs_and_promtool(self, tmp_path: Path) -> None:
        ports = ports_for(21000, demo_services=5)
        rules = tmp_path / "rules"
        render_rules(default_rules_dir(), rules, 0.05)
        config = prometheus_config(ports, rules_dir=rules, interval=1.0)
        jobs = [job["job_name"] for job in config["scrape_configs"]]
        production = [job["job_name"] for job in PRODUCTION_PROMETHEUS["scrape_configs"]]
        assert jobs[:len(production)] == production
        assert jobs[-1] == "conecta-demo"
        assert config["scrape_configs"][-1]["static_configs"][0]["targets"] == [
            f"127.0.0.1:{port}" for port in ports.demo_http]
        path = tmp_path / "prometheus.yml"
        path.write_text(yaml.safe_dump(config))
        result = subprocess.run([require_binary("promtool"), "check", "config", str(path)],
                                capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stdout + result.stderr


class TestDemoConfig:
    """The demo's Monitoriza configuration is valid and heals only what the story needs."""

    def test_valid_with_and_without_docker(self, tmp_path: Path) -> None:
        ports = ports_for(21000, demo_services=5)
        paths = demo_plan.DemoPaths(tmp_path, "/usr/bin/redis-server")
        for docker_host in (None, "unix:///tmp/x.sock"):
            path = tmp_path / "demo.yml"
            path.write_text(yaml.safe_dump(demo_plan.demo_config(ports, paths,
                                                                 docker_host=docker_host)))
            config = load_config(path)
            assert config.services["backend"].depends_on == ["redis"]
            assert ("guardian-recorder" in config.services) == (docker_host is not None)
            redis_book = config.services["redis"].healing[0]
            assert redis_book.match.severity == ["P3"]
            assert config.responder.healing.allowed_commands == ["/usr/bin/redis-server"]
            assert config.responder.healing.budget.window == pytest.approx(45.0)

    def test_shows_the_example_estates_forecasts(self, tmp_path: Path) -> None:
        """The demo forecasts host memory and Redis memory as examples/conecta-plus.yml does
        (same expression, threshold, horizon), and its Redis has a maxmemory to forecast
        against."""
        example = load_config(REPO / "examples" / "conecta-plus.yml").forecasts
        ports = ports_for(21000, demo_services=5)
        paths = demo_plan.DemoPaths(tmp_path, "/usr/bin/redis-server")
        path = tmp_path / "demo.yml"
        path.write_text(yaml.safe_dump(demo_plan.demo_config(ports, paths, docker_host=None)))
        demo = load_config(path).forecasts
        for name in ("host-memory", "redis-memory"):
            assert " ".join(demo[name].expr.split()) == " ".join(example[name].expr.split())
            assert (demo[name].threshold, demo[name].direction, demo[name].horizon,
                    demo[name].service) == (example[name].threshold, example[name].direction,
                                            example[name].horizon, example[name].service)
        conf = demo_plan.redis_conf(ports.redis or 0, paths, "127.0.0.1").splitlines()
        assert "maxmemory 64mb" in conf and "maxmemory-policy noeviction" in conf

    def test_layout_matches_ports(self, tmp_path: Path) -> None:
        ports = ports_for(21000, demo_services=5)
        paths = demo_plan.DemoPaths(tmp_path, "/usr/bin/redis-server")
        layout = demo_plan.layout_document(ports, paths, docker_host=None)
        assert [entry["port"] for entry in layout["http"]] == list(ports.demo_http)
        backend = next(entry for entry in layout["http"] if entry["name"] == "backend")
        assert backend["redis_port"] == ports.redis
        assert layout["container"] is None


class TestUserConfig:
    def test_relative_paths_keep_meaning_beside_the_users_file(self, tmp_path: Path) -> None:
        """``monitoriza up --config FILE`` copies FILE into its run directory: the paths the
        user wrote relative to FILE still name the same files from the copy."""
        source = tmp_path / "etc" / "config.yml"
        source.parent.mkdir()
        source.write_text(yaml.safe_dump({
            "services": {"redis": {"probes": [{"type": "redis", "address": "127.0.0.1:6379",
                                               "password_file": "secrets/redis"}]}},
            "responder": {"store_url": "sqlite:///state/responder.db",
                          "audit": {"checkpoint_file": "/var/lib/checkpoints.jsonl"}}}))
        run_dir = tmp_path / "run"
        data = user_config(source, ports_for(free_base_port(), demo_services=0), run_dir)
        probe = data["services"]["redis"]["probes"][0]
        assert probe["password_file"] == str(source.parent / "secrets" / "redis")
        assert data["responder"]["store_url"] == f"sqlite:///{source.parent}/state/responder.db"
        assert data["responder"]["audit"]["checkpoint_file"] == "/var/lib/checkpoints.jsonl"
        assert data["responder"]["token_file"] == str(run_dir / "secrets" / "responder-token")


class TestPorts:
    def test_busy_port_named(self) -> None:
        """A port something listens on is reported with what the stack wanted it for."""
        with socket.socket() as holder:
            holder.bind(("127.0.0.1", 0))
            holder.listen()
            port = holder.getsockname()[1]
            assert busy_ports("127.0.0.1", {"prometheus": port}) == [
                f"port {port} (prometheus) on 127.0.0.1 is in use"]

    def test_base_out_of_range(self) -> None:
        with pytest.raises(ValueError, match=r"outside 1\.\.65535"):
            ports_for(60000, demo_services=5)


def monitoriza_up(*args: str, env: dict[str, str] | None = None,
                  cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "monitoriza", "up", *args],
                          capture_output=True, text=True, timeout=60, check=False, env=env,
                          cwd=cwd)


@pytest.fixture
def held_port() -> Iterator[int]:
    with socket.socket() as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


class TestUpRefuses:
    """Problems found before anything starts: exit 2, one clear line, no process left."""

    def test_port_in_use(self, tmp_path: Path, held_port: int) -> None:
        """Prometheus's port taken: the message names it and the way out (--base-port)."""
        require_binary("prometheus")
        require_binary("prometheus-alertmanager")
        result = monitoriza_up("--config", str(REPO / "examples" / "conecta-plus.yml"),
                               "--base-port", str(held_port), "--run-dir", str(tmp_path / "r"))
        assert result.returncode == 2, result.stderr
        assert f"port {held_port} (prometheus) on 127.0.0.1 is in use" in result.stderr
        assert "--base-port" in result.stderr

    def test_missing_binary(self, tmp_path: Path) -> None:
        """Without Prometheus on PATH: the apt command that installs it."""
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir()
        (bin_dir / "prometheus-alertmanager").symlink_to(shutil.which("true") or "/bin/true")
        env = os.environ | {"PATH": str(bin_dir)}
        result = monitoriza_up("--demo", "--run-dir", str(tmp_path / "r"), env=env)
        assert result.returncode == 2
        assert "prometheus, redis-server not found on PATH" in result.stderr
        assert "sudo apt-get install -y prometheus redis-server" in result.stderr

    def test_config_or_demo(self, tmp_path: Path) -> None:
        result = monitoriza_up("--run-dir", str(tmp_path / "r"))
        assert result.returncode == 2
        assert "give either --config FILE" in result.stderr

    def test_bad_config_names_the_path(self, tmp_path: Path) -> None:
        """A bad file: the loader's message with the user's file name, nothing started."""
        require_binary("prometheus")
        require_binary("prometheus-alertmanager")
        bad = tmp_path / "bad.yml"
        bad.write_text("services:\n  web:\n    probes:\n      - {kind: tcp, host: x, port: 0}\n")
        result = monitoriza_up("--config", str(bad), "--run-dir", str(tmp_path / "r"),
                               "--base-port", "23090")
        assert result.returncode == 2
        assert f"{bad}: services.web.probes[0]" in result.stderr

    def test_foreign_run_dir_untouched(self, tmp_path: Path) -> None:
        """A run directory with someone else's files is refused, not emptied."""
        require_binary("prometheus")
        require_binary("prometheus-alertmanager")
        mine = tmp_path / "mine"
        mine.mkdir()
        (mine / "thesis.tex").write_text("precious")
        result = monitoriza_up("--config", str(REPO / "examples" / "conecta-plus.yml"),
                               "--run-dir", str(mine), "--base-port", "23190")
        assert result.returncode == 2
        assert "was not made by monitoriza up" in result.stderr
        assert (mine / "thesis.tex").read_text() == "precious"


class TestMakeRun:
    """README's first command, from a fresh clone of the committed tree: ``make run`` brings
    the demo up and Ctrl-C (SIGINT to its process group) stops it cleanly.

    The clone reuses this checkout's virtualenv (VENV=...), with the clone's pyproject.toml
    dated back so that bootstrap does not reinstall the package from the clone: the test
    measures the Makefile, bootstrap and the stack, not a pip download, and the shared
    virtualenv keeps pointing at this checkout."""

    def test_fresh_clone(self, tmp_path: Path) -> None:
        for name in ("prometheus", "prometheus-alertmanager", "redis-server", "git", "make"):
            require_binary(name)
        clone = tmp_path / "clone"
        subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
        os.utime(clone / "pyproject.toml", (0, 0))
        base = free_base_port()
        log = tmp_path / "make-run.log"
        with log.open("w") as out:
            process = subprocess.Popen(
                ["make", "run", f"VENV={REPO / '.venv'}",
                 f"UP_ARGS=--base-port {base} --run-dir {tmp_path / 'run'} "
                 "--docker-host unix:///nonexistent.sock"],
                cwd=clone, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            assert wait_until(lambda: "monitoriza up: ready" in log.read_text()
                              or process.poll() is not None, 90, interval=0.2), log.read_text()
            assert process.poll() is None, log.read_text()
            assert "chat inbox" in log.read_text()
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGINT)
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        # Like a Ctrl-C in a terminal: make waits for monitoriza up to stop, then dies of the
        # same SIGINT.
        assert process.returncode in (0, -signal.SIGINT), log.read_text()
        assert "monitoriza up: stopped" in log.read_text()
        assert "could not stop" not in log.read_text()
        assert not busy_ports("127.0.0.1", ports_for(base, demo_services=5).named())
