"""What users install is what is tested: the wheel, in a fresh virtualenv, without extras.

The wheel is built from the same files the Dockerfile copies (pyproject.toml, README.md,
monitoriza/) in a scratch directory, so a stale ``build/`` of the work tree cannot leak into
it. A fresh virtualenv (no ``--system-site-packages``) gets it with ``pip install``: pip
resolves the runtime dependencies from its index and cache as scripts/bootstrap.sh does, and
none of the dev extras. Every subcommand then runs through that virtualenv's ``monitoriza``
entry point from a directory outside the source tree, against real servers: Prometheus
(backfilled by promtool) for ``report``, the installed responder and exporter themselves.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
import yaml

from monitoriza.cli import build_parser
from tests.support.binaries import free_port, require_binary, stop_process, wait_until

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "conecta-plus.yml"
TOKEN = "wheel-test-token"
# Imported only by dev tools or the benchmarks: a production install must work without them.
# (pytest is not among them: Locust, a runtime dependency for `drill load`, requires it.)
DEV_ONLY = ("matplotlib", "hypothesis", "mypy", "schemathesis", "ruff", "chaostoolkit")


# Runs ``monitoriza CMD --help`` for each command given (JSON) and prints {cmd: [exit, stdout]}.
HELP_ALL = """
import contextlib, io, json, sys
from monitoriza.cli import main
answers = {}
for command in json.loads(sys.argv[1]):
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        try:
            code = main([*command, "--help"])
        except SystemExit as exit:
            code = exit.code
    answers[" ".join(command)] = [code, buffer.getvalue()]
print(json.dumps(answers))
"""


@dataclass
class Installed:
    """The wheel installed in its own virtualenv, and a working directory outside the tree."""

    venv: Path
    workdir: Path
    build_seconds: float
    install_seconds: float

    @property
    def monitoriza(self) -> str:
        return str(self.venv / "bin" / "monitoriza")

    def run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run([self.monitoriza, *args], check=False, cwd=self.workdir,
                              capture_output=True, text=True, timeout=timeout, env=_clean_env())


def _start(installed: Installed, log: Path, *args: str) -> subprocess.Popen[bytes]:
    """A long-running subcommand of the installed entry point, its output in ``log``."""
    with log.open("w") as output:
        return subprocess.Popen([installed.monitoriza, *args], cwd=installed.workdir,
                                stdout=output, stderr=subprocess.STDOUT, env=_clean_env())


def _clean_env() -> dict[str, str]:
    """The environment without anything that would put the source tree on ``sys.path``."""
    env = {k: v for k, v in os.environ.items()
           if k not in {"PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME"}}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """Build the wheel and install it, once for the module (about 25 s with a warm cache)."""
    base = tmp_path_factory.mktemp("wheel")
    source = base / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(ROOT / "monitoriza", source / "monitoriza",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w",
                    str(base / "dist"), str(source)], check=True, capture_output=True,
                   timeout=300, env=_clean_env())
    built = time.monotonic()
    wheels = list((base / "dist").glob("monitoriza-*.whl"))
    assert len(wheels) == 1, wheels
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    result = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q",
                             str(wheels[0])], check=False, capture_output=True, text=True,
                            timeout=600, env=_clean_env())
    assert result.returncode == 0, result.stderr
    workdir = base / "work"
    workdir.mkdir()
    return Installed(venv, workdir, built - started, time.monotonic() - built)


def _subcommands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()
                 ) -> Iterator[tuple[str, ...]]:
    """Every command path of the parser (``("audit", "verify")``, ...), parents first."""
    for action in parser._actions:  # argparse has no public walk over subparsers
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield (*prefix, name)
                yield from _subcommands(child, (*prefix, name))


def _write_config(directory: Path, *, prometheus: str, exporter_port: int,
                  target_port: int) -> Path:
    """A configuration naming every file relatively: they must land beside it."""
    (directory / "token").write_text(TOKEN + "\n")
    path = directory / "monitoriza.yml"
    path.write_text(yaml.safe_dump({
        "exporter": {"listen": f"127.0.0.1:{exporter_port}", "prometheus_url": prometheus,
                     "default_interval": "1s", "default_timeout": "500ms"},
        "responder": {"store_url": "sqlite:///responder.db", "token_file": "token"},
        "services": {
            "api": {"tier": "critical",
                    "probes": [{"name": "tcp", "kind": "tcp", "host": "127.0.0.1",
                                "port": target_port}]},
            "db": {"tier": "standard"}},
    }, sort_keys=False))
    return path


def _openmetrics(path: Path, end: int) -> None:
    """An hour of probe results: api always up, db down for the last ten minutes."""
    lines = ["# TYPE monitoriza_probe_success gauge"]
    for service in ("api", "db"):
        for t in range(end - 3600, end + 1, 60):
            up = service == "api" or t < end - 600
            lines.append(f'monitoriza_probe_success{{service="{service}",probe="main"}} '
                         f"{int(up)} {t}")
    lines.append("# EOF")
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Prometheus holding the last hour for ``api`` and ``db``."""
    directory = tmp_path_factory.mktemp("wheel-prometheus")
    end = int(time.time()) // 60 * 60 - 60
    _openmetrics(directory / "hour.om", end)
    subprocess.run([require_binary("promtool"), "tsdb", "create-blocks-from", "openmetrics",
                    "-q", str(directory / "hour.om"), str(directory / "data")], check=True,
                   capture_output=True, timeout=120)
    (directory / "prometheus.yml").write_text("global: {}\n")
    port = free_port()
    with (directory / "prometheus.log").open("w") as log:
        process = subprocess.Popen(
            [require_binary("prometheus"), f"--config.file={directory / 'prometheus.yml'}",
             f"--storage.tsdb.path={directory / 'data'}", "--storage.tsdb.retention.time=30d",
             f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        assert wait_until(lambda: _ok(f"{url}/-/ready"), 30, interval=0.2), (
            (directory / "prometheus.log").read_text())
        yield url
    finally:
        stop_process(process, timeout=20)


def _ok(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).status_code == 200
    except requests.RequestException:
        return False


@dataclass
class Site:
    """The configuration the installed commands share, and the ports it names."""

    config: Path
    exporter_port: int
    prometheus: str


@pytest.fixture(scope="module")
def site(installed: Installed, prometheus: str) -> Site:
    directory = installed.workdir / "etc"
    directory.mkdir()
    exporter_port = free_port()
    config = _write_config(directory, prometheus=prometheus, exporter_port=exporter_port,
                           target_port=free_port())
    return Site(config, exporter_port, prometheus)


class TestInstall:
    """The wheel installs alone and brings its entry point, not the dev tools."""

    def test_the_entry_point_runs_the_installed_package(self, installed: Installed) -> None:
        result = subprocess.run(
            [str(installed.venv / "bin" / "python"), "-c",
             "import importlib.util, monitoriza; print(monitoriza.__file__); "
             f"print([m for m in {DEV_ONLY!r} if importlib.util.find_spec(m)])"],
            check=True, cwd=installed.workdir, capture_output=True, text=True, timeout=60,
            env=_clean_env())
        location, dev_modules = result.stdout.splitlines()
        assert Path(location).is_relative_to(installed.venv), location
        assert dev_modules == "[]", "a dev extra was installed with the wheel"
        version = installed.run("--version")
        assert version.returncode == 0 and version.stdout.startswith("monitoriza "), version

    def test_build_and_install_stay_within_a_minute(self, installed: Installed) -> None:
        took = installed.build_seconds + installed.install_seconds
        assert took < 120, f"build {installed.build_seconds:.0f}s, install " \
                           f"{installed.install_seconds:.0f}s"

    def test_every_subcommand_answers_help(self, installed: Installed) -> None:
        """``--help`` of every subcommand, from the installed package in one interpreter (the
        entry point script itself is run by every other test here; a process per command
        cost 0.8 s each)."""
        commands = list(_subcommands(build_parser()))
        assert ("report",) in commands and ("journal", "dead-letters") in commands
        result = subprocess.run(
            [str(installed.venv / "bin" / "python"), "-c", HELP_ALL, json.dumps(commands)],
            check=False, cwd=installed.workdir, capture_output=True, text=True, timeout=60,
            env=_clean_env())
        assert result.returncode == 0, result.stderr
        answers = json.loads(result.stdout)
        for command in commands:
            code, text = answers[" ".join(command)]
            assert code == 0, (command, text)
            assert text.startswith(f"usage: monitoriza {' '.join(command)}"), command


class TestCommands:
    """Each subcommand's real path, from the installed entry point."""

    def test_check_config_accepts_the_example(self, installed: Installed) -> None:
        services = len(yaml.safe_load(EXAMPLE.read_text())["services"])
        result = installed.run("check-config", str(EXAMPLE))
        assert result.returncode == 0, result.stderr
        assert f"OK ({services} services" in result.stdout

    def test_lint_the_example_with_the_shipped_rules(self, installed: Installed) -> None:
        result = installed.run("lint", "--config", str(EXAMPLE), "--rules", str(ROOT / "rules"),
                               "--alertmanager", str(ROOT / "alertmanager" / "alertmanager.yml"))
        assert result.returncode == 0, result.stdout + result.stderr
        assert "lint: 0 errors" in result.stdout

    def test_rules_render(self, installed: Installed) -> None:
        out = installed.workdir / "rendered"
        result = installed.run("rules", "render", "--time-scale", "0.05", "--rules",
                               str(ROOT / "rules"), "--out", str(out))
        assert result.returncode == 0, result.stderr
        assert sorted(p.name for p in out.iterdir()) == sorted(
            p.name for p in (ROOT / "rules").glob("*.yml"))

    def test_forecast_backtest(self, installed: Installed) -> None:
        csv = installed.workdir / "disk.csv"
        csv.write_text("".join(f"{t},{0.5 + t / 720000}\n" for t in range(0, 36000, 60)))
        result = installed.run("forecast", "backtest", "--csv", str(csv), "--threshold", "0.9",
                               "--direction", "above", "--horizon", "1d", "--window", "2h",
                               "--json")
        assert result.returncode == 0, result.stderr
        assert result.stdout.count("\n") >= 10

    def test_forecast_evaluate(self, installed: Installed) -> None:
        """The frontier runs from the wheel alone (numpy and the package, no dev extras)."""
        csv = installed.workdir / "filling.csv"
        csv.write_text("timestamp,value\n" + "".join(
            f"{t},{(t % 43200) / 360}\n" for t in range(0, 4 * 86400, 300)))
        result = installed.run("forecast", "evaluate", "--csv", str(csv),
                               "--threshold-quantile", "0.9", "--json")
        assert result.returncode == 0, result.stderr
        report = json.loads(result.stdout)
        assert report["events"] == 8
        assert set(report["estimates"]) == {"lower", "median", "upper"}

    def test_responder_serves_takes_an_alert_and_stops(self, installed: Installed,
                                                       site: Site) -> None:
        port = free_port()
        log = installed.workdir.parent / "responder.log"
        process = _start(installed, log, "responder", "--config", str(site.config),
                         "--listen", f"127.0.0.1:{port}")
        url = f"http://127.0.0.1:{port}"
        try:
            assert wait_until(lambda: _ok(f"{url}/healthz"), 30, interval=0.1), log.read_text()
            assert _ok(f"{url}/readyz")
            now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            answer = requests.post(f"{url}/api/v1/alerts", timeout=5,
                                   headers={"Authorization": f"Bearer {TOKEN}"}, json={
                "version": "4", "receiver": "responder", "status": "firing",
                "groupKey": "{}:{service=\"db\"}", "alerts": [{
                    "status": "firing", "fingerprint": "f1", "startsAt": now,
                    "endsAt": "0001-01-01T00:00:00Z",
                    "labels": {"alertname": "ServiceDown", "service": "db",
                               "severity": "P3"}}]})
            assert answer.status_code == 200, answer.text
            assert "monitoriza_responder_alerts_received_total 1.0" in requests.get(
                f"{url}/metrics", timeout=5).text
        finally:
            stop_process(process, timeout=20)
        assert process.returncode == 0, log.read_text()
        # Relative paths in the file resolved beside it, not in the working directory.
        beside = site.config.parent
        assert (beside / "responder.db").is_file()
        assert not (installed.workdir / "responder.db").exists()

    def test_audit_verify_and_export_on_the_store(self, installed: Installed, site: Site) -> None:
        verify = installed.run("audit", "verify", "--config", str(site.config))
        assert verify.returncode == 0, verify.stdout + verify.stderr
        assert "audit chain OK" in verify.stdout
        export = installed.run("audit", "export", "--config", str(site.config))
        assert export.returncode == 0, export.stderr

    def test_journal_dead_letters_and_replay(self, installed: Installed, site: Site) -> None:
        listed = installed.run("journal", "dead-letters", "--config", str(site.config))
        assert listed.returncode == 0, listed.stderr
        assert "0 dead letters" in listed.stdout
        replay = installed.run("journal", "replay", "--config", str(site.config), "--all")
        assert replay.returncode == 0, replay.stderr

    def test_exporter_probes_and_serves_metrics(self, installed: Installed, site: Site) -> None:
        log = installed.workdir.parent / "exporter.log"
        process = _start(installed, log, "exporter", "--config", str(site.config))
        url = f"http://127.0.0.1:{site.exporter_port}"
        try:
            assert wait_until(lambda: _ok(f"{url}/-/healthy"), 30, interval=0.1), log.read_text()

            def probed() -> bool:
                text = requests.get(f"{url}/metrics", timeout=5).text
                return any(line.startswith("monitoriza_probe_success{")
                           and 'service="api"' in line and line.split()[-1] in {"0", "0.0"}
                           for line in text.splitlines())

            assert wait_until(probed, 15, interval=0.2), "the closed port was not probed"
        finally:
            stop_process(process, timeout=20)
        assert process.returncode == 0, log.read_text()

    def test_report_writes_html_with_charts(self, installed: Installed, site: Site) -> None:
        out = installed.workdir / "report.html"
        result = installed.run("report", "--config", str(site.config), "--since", "1h",
                               "--out", str(out))
        assert result.returncode == 0, result.stderr
        html = out.read_text()
        assert html.count("<svg ") == 2, "availability bars and timeline"
        assert "not ready" in html  # db, down for the last ten minutes
        # The other service is up, but never drilled: "not tested" is not "ready".
        assert "0 ready, 1 at risk, 1 not ready" in result.stderr, result.stderr
        assert "no drill run" in result.stderr

    def test_demo_fault_without_a_running_demo_is_a_usage_error(
            self, installed: Installed) -> None:
        result = installed.run("demo", "fault", "guardian", "down", "--run-dir",
                               str(installed.workdir / "no-demo"))
        assert result.returncode == 2, result.stdout + result.stderr
        assert "monitoriza demo fault:" in result.stderr
