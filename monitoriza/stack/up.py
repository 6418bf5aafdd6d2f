"""``monitoriza up``: the whole stack on this machine, from the real binaries.

Order of start: (demo: Redis, the recorder container, the demo services), the exporter, the
responder, Alertmanager, Prometheus — each one ready before the next, so that nothing scrapes
or posts to a part that is not there yet. Every generated file lives in the run directory
(``--run-dir``, default ``.monitoriza/run``), which is emptied at each start: configurations,
the time-scaled rules, the token, the stores, the logs.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

import redis
import yaml

from monitoriza.config import load_config
from monitoriza.config.loader import RELATIVE_SQLITE_URL
from monitoriza.exceptions import ConfigError
from monitoriza.stack import DEFAULT_RUN_DIR, demo_plan, recorder
from monitoriza.stack.ports import DEFAULT_BASE_PORT, StackPorts, busy_ports, ports_for
from monitoriza.stack.render import alertmanager_config, prometheus_config
from monitoriza.stack.supervisor import ChildSpec, StackError, Supervisor, http_ready
from monitoriza.timescale import default_rules_dir, render_rules

RUN_MARKER = ".monitoriza-run"  # only a directory holding it is ever emptied
PRODUCTION_INTERVAL = 15.0
# Debian's package names, for the message when a binary is missing.
BINARIES = {"prometheus": "prometheus", "prometheus-alertmanager": "prometheus-alertmanager",
            "redis-server": "redis-server"}


class UsageError(StackError):
    """A problem the user fixes before starting (exit 2): a port in use, a missing binary,
    a bad configuration."""


class Interrupted(Exception):  # noqa: N818 - a signal, not an error
    """Ctrl-C or SIGTERM: stop the stack."""


@dataclass(frozen=True)
class UpOptions:
    """What ``monitoriza up`` was asked for."""

    config: Path | None
    demo: bool
    run_dir: Path = DEFAULT_RUN_DIR
    base_port: int = DEFAULT_BASE_PORT
    host: str = "127.0.0.1"
    time_scale: float | None = None  # default: 1 for a configuration, DEMO_SCALE for --demo
    docker_host: str | None = None


@dataclass(frozen=True)
class Plan:
    """Everything decided before the first process starts."""

    ports: StackPorts
    run_dir: Path
    binaries: dict[str, str]
    config_path: Path
    demo_paths: demo_plan.DemoPaths | None
    docker: tuple[Any, str] | None  # (client, url) of the engine for the recorder


def find_binaries(names: list[str]) -> dict[str, str]:
    """Paths of ``names``; UsageError naming the apt command for those missing."""
    found = {name: shutil.which(name) for name in names}
    missing = [name for name, path in found.items() if path is None]
    if missing:
        packages = " ".join(BINARIES[name] for name in missing)
        raise UsageError(f"{', '.join(missing)} not found on PATH; install with: "
                         f"sudo apt-get install -y {packages}")
    return {name: path for name, path in found.items() if path is not None}


def fresh_run_dir(run_dir: Path) -> Path:
    """An empty run directory (only one made by ``monitoriza up`` is ever emptied)."""
    run_dir = run_dir.resolve()
    if run_dir.exists() and any(run_dir.iterdir()):
        if not (run_dir / RUN_MARKER).exists():
            raise UsageError(f"{run_dir} is not empty and was not made by monitoriza up; "
                             "choose another --run-dir")
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / RUN_MARKER).write_text("made by monitoriza up; emptied at each start\n")
    return run_dir


def write_yaml(path: Path, document: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return path


def write_token(path: Path) -> None:
    """A random bearer token, readable by this user only, unless one is already there."""
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_text(secrets.token_urlsafe(32) + "\n")


def write_secret(path: Path, value: str) -> None:
    """``value`` in ``path``, readable by this user only (created so, never widened)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_text(value + "\n", encoding="utf-8")


def write_secrets(token_file: Path, run_dir: Path, ports: StackPorts, *, demo: bool) -> None:
    """The responder's token and, for the demo, its chat webhook URL (the chat inbox)."""
    write_token(token_file)
    if demo:
        write_secret(demo_plan.chat_webhook_file(run_dir), demo_plan.chat_webhook_url(ports))


def _anchored(value: object, base: Path) -> Any:
    """``value`` with every relative path it holds made absolute against ``base``: the values of
    keys ending in ``_file``, and a relative ``sqlite:///`` store URL."""
    if isinstance(value, list):
        return [_anchored(item, base) for item in value]
    if not isinstance(value, dict):
        return value
    anchored = {}
    for key, item in value.items():
        if isinstance(key, str) and key.endswith("_file") and isinstance(item, str) and item \
                and not Path(item).is_absolute():
            anchored[key] = str(base / item)
        elif key == "store_url" and isinstance(item, str) and (
                store := RELATIVE_SQLITE_URL.match(item)):
            anchored[key] = f"{store.group(1)}{base / store.group(2)}"
        else:
            anchored[key] = _anchored(item, base)
    return anchored


def user_config(source: Path, ports: StackPorts, run_dir: Path) -> dict[str, Any]:
    """The user's configuration with the stack's addresses, written into the run directory.
    Relative paths the user wrote are made absolute against the directory of their file, where
    they meant them (the copy's own directory would be the run directory)."""
    try:
        data = yaml.safe_load(source.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise UsageError(f"{source}: cannot read the configuration: {exc}") from None
    if not isinstance(data, dict):
        raise UsageError(f"{source}: the configuration must be a mapping")
    data = {key: _anchored(item, source.resolve().parent) for key, item in data.items()}
    exporter = data.setdefault("exporter", {})
    exporter["listen"] = f"{ports.host}:{ports.exporter}"
    exporter["prometheus_url"] = f"http://{ports.host}:{ports.prometheus}"
    responder = data.setdefault("responder", {})
    responder["listen"] = f"{ports.host}:{ports.responder}"
    responder.setdefault("token_file", str(run_dir / "secrets" / "responder-token"))
    responder.setdefault("healing", {})["alertmanager_url"] = (
        f"http://{ports.host}:{ports.alertmanager}")
    return data


def plan(options: UpOptions, out: TextIO) -> Plan:
    """Check binaries and ports, write every file; nothing runs yet."""
    if options.demo == (options.config is not None):
        raise UsageError("give either --config FILE (your services) or --demo (a simulated "
                         "Conecta Plus), not both and not neither")
    names = ["prometheus", "prometheus-alertmanager"] + (["redis-server"] if options.demo
                                                         else [])
    binaries = find_binaries(names)
    services = len(demo_plan.demo_services(with_recorder=False)) if options.demo else 0
    try:
        ports = ports_for(options.base_port, demo_services=services, host=options.host)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    busy = busy_ports(ports.host, ports.named())
    if busy:
        raise UsageError("; ".join(busy) + ". Stop what holds it, or move the whole stack "
                         "with --base-port N")
    run_dir = fresh_run_dir(options.run_dir)
    scale = options.time_scale or (demo_plan.DEMO_SCALE if options.demo else 1.0)
    interval = demo_plan.DEMO_INTERVAL if options.demo else PRODUCTION_INTERVAL
    docker = None
    demo_paths = None
    if options.demo:
        demo_paths = demo_plan.DemoPaths(run_dir, binaries["redis-server"])
        docker = recorder.reachable_engine(options.docker_host)
        if docker is None:
            print(f"  no Docker engine at {options.docker_host or recorder.DEFAULT_DOCKER_HOST}:"
                  " the demo runs without Guardian's recorder container", file=out)
        docker_host = docker[1] if docker else None
        config = demo_plan.demo_config(ports, demo_paths, docker_host=docker_host, scale=scale)
        (run_dir / "demo").mkdir(parents=True, exist_ok=True)
        (run_dir / "demo" / "services.json").write_text(json.dumps(
            demo_plan.layout_document(ports, demo_paths, docker_host=docker_host), indent=2))
        demo_paths.redis_dir.mkdir(parents=True, exist_ok=True)
        demo_paths.redis_conf.write_text(
            demo_plan.redis_conf(ports.redis or 0, demo_paths, ports.host))
    else:
        assert options.config is not None
        config = user_config(options.config, ports, run_dir)
        # The chat inbox stands in for Slack with your services too; it serves no
        # simulated service.
        (run_dir / "demo").mkdir(parents=True, exist_ok=True)
        (run_dir / "demo" / "services.json").write_text(json.dumps(
            {"host": ports.host, "chat_port": ports.chat, "http": [], "redis": None,
             "container": None}, indent=2))
    (run_dir / "responder").mkdir()
    config_path = write_yaml(run_dir / "monitoriza.yml", config)
    try:
        loaded = load_config(config_path)
    except ConfigError as exc:
        source = options.config or config_path
        raise UsageError("\n".join(f"{source}: {message}" for message in exc.messages)) from None
    token_file = Path(loaded.responder.token_file).resolve()
    write_secrets(token_file, run_dir, ports, demo=options.demo)
    rules_dir = run_dir / "rules"
    render_rules(default_rules_dir(), rules_dir, scale)
    write_yaml(run_dir / "prometheus" / "prometheus.yml",
               prometheus_config(ports, rules_dir=rules_dir, interval=interval))
    canonical_dir = default_rules_dir().parent / "alertmanager"
    canonical = yaml.safe_load((canonical_dir / "alertmanager.yml").read_text())
    write_yaml(run_dir / "alertmanager" / "alertmanager.yml", alertmanager_config(
        canonical, templates_dir=canonical_dir / "templates",
        responder_url=f"http://{ports.host}:{ports.responder}/api/v1/alerts",
        token_file=token_file, chat_url=f"http://{ports.host}:{ports.chat}", scale=scale))
    return Plan(ports, run_dir, binaries, config_path, demo_paths, docker)


def _monitoriza(*args: str) -> list[str]:
    return [sys.executable, "-m", "monitoriza", *args]


def start_redis(plan_: Plan, supervisor: Supervisor) -> None:
    """redis-server daemonizes; it is stopped by its pid file, whoever restarted it last."""
    paths, port = plan_.demo_paths, plan_.ports.redis
    assert paths is not None and port is not None
    supervisor.say("  starting redis-server ...")
    subprocess.run([plan_.binaries["redis-server"], str(paths.redis_conf)], check=True,
                   stdin=subprocess.DEVNULL, capture_output=True, timeout=10)
    supervisor.on_stop("redis-server", lambda: stop_by_pidfile(paths.redis_pidfile))
    client = redis.Redis(host=plan_.ports.host, port=port, socket_timeout=0.5)
    deadline = time.monotonic() + 10
    while True:
        try:
            if client.ping():
                break
        except redis.RedisError:
            if time.monotonic() > deadline:
                raise StackError("redis-server did not answer PING within 10 s; see "
                                 f"{paths.redis_dir / 'redis.log'}") from None
            time.sleep(0.1)
    client.close()
    supervisor.say(f"  redis-server ready (port {port})")


def stop_by_pidfile(pidfile: Path) -> None:
    """SIGTERM the pid in ``pidfile`` and wait for it to go (a missing file: nothing to do)."""
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return
    try:
        os.kill(pid, signal.SIGTERM)
        for _ in range(100):
            os.kill(pid, 0)
            time.sleep(0.05)
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return


def start_all(plan_: Plan, supervisor: Supervisor) -> None:
    """Start every part in order; StackError when one does not come up."""
    ports, run, host = plan_.ports, plan_.run_dir, plan_.ports.host
    logs = run / "logs"
    if plan_.demo_paths is not None:
        start_redis(plan_, supervisor)
        if plan_.docker is not None:
            client = plan_.docker[0]
            supervisor.say(f"  starting the recorder container {demo_plan.RECORDER_CONTAINER}")
            recorder.start_recorder(client, plan_.demo_paths.recorder_fault_dir)
            supervisor.on_stop(demo_plan.RECORDER_CONTAINER,
                               lambda: recorder.remove_recorder(client))
    supervisor.start(ChildSpec(
        "demo services and chat inbox", _monitoriza("demo", "serve", "--run-dir", str(run)),
        http_ready(f"http://{host}:{ports.chat}/chat"), logs / "demo.log"))
    config = str(plan_.config_path)
    supervisor.start(ChildSpec("exporter", _monitoriza("exporter", "--config", config),
                               http_ready(f"http://{host}:{ports.exporter}/metrics"),
                               logs / "exporter.log"))
    supervisor.start(ChildSpec("responder", _monitoriza("responder", "--config", config),
                               http_ready(f"http://{host}:{ports.responder}/readyz"),
                               logs / "responder.log"))
    supervisor.start(ChildSpec(
        "alertmanager",
        [plan_.binaries["prometheus-alertmanager"],
         f"--config.file={run / 'alertmanager' / 'alertmanager.yml'}",
         f"--storage.path={run / 'alertmanager' / 'data'}",
         f"--web.listen-address={host}:{ports.alertmanager}",
         "--cluster.listen-address="],  # one Alertmanager: no gossip port
        http_ready(f"http://{host}:{ports.alertmanager}/-/ready"), logs / "alertmanager.log"))
    supervisor.start(ChildSpec(
        "prometheus",
        [plan_.binaries["prometheus"],
         f"--config.file={run / 'prometheus' / 'prometheus.yml'}",
         f"--storage.tsdb.path={run / 'prometheus' / 'data'}",
         f"--web.listen-address={host}:{ports.prometheus}"],
        http_ready(f"http://{host}:{ports.prometheus}/-/ready"), logs / "prometheus.log",
        timeout=60.0))


def token_path(plan_: Plan) -> Path:
    """The responder's token file, as the configuration the stack runs names it."""
    return Path(load_config(plan_.config_path).responder.token_file).resolve()


def urls(plan_: Plan, *, token: str | None = None) -> list[str]:
    """What to open, one line each. ``token`` (given only when the output is a terminal,
    never into a kept log) is printed on the console's login line; otherwise the line says
    how to print it."""
    host, ports = plan_.ports.host, plan_.ports
    token_file = token_path(plan_)
    login = (f"token: {token}" if token is not None
             else f"token: cat {shlex.quote(str(token_file))}")
    lines = [f"  console        http://{host}:{ports.responder}/console/",
             f"    log in with the responder's {login}",
             f"  Prometheus     http://{host}:{ports.prometheus}  (alerts: /classic/alerts)",
             f"  Alertmanager   http://{host}:{ports.alertmanager}",
             f"  exporter       http://{host}:{ports.exporter}/metrics",
             f"  responder      http://{host}:{ports.responder}/api/v1/incidents "
             f"(token: {token_file})",
             f"  chat inbox     http://{host}:{ports.chat}/chat  (a page in a browser)"]
    if plan_.demo_paths is not None:
        lines.append(f"  try: monitoriza demo fault redis down --run-dir {plan_.run_dir}")
    return lines


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise Interrupted(signal.Signals(signum).name)


def run_up(options: UpOptions, out: TextIO = sys.stdout) -> int:
    """Start the stack, wait for Ctrl-C or SIGTERM, stop it. 0 after a clean stop, 1 when a
    part failed, 2 for a usage problem (nothing was started)."""
    supervisor = Supervisor(out)
    previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    status = 0
    try:
        print("monitoriza up: preparing", file=out, flush=True)
        plan_ = plan(options, out)
        print(f"monitoriza up: starting (run directory {plan_.run_dir})", file=out, flush=True)
        start_all(plan_, supervisor)
        print("monitoriza up: ready; Ctrl-C stops everything", file=out, flush=True)
        token = None
        if out.isatty():  # a terminal only: a token printed into a kept log would leak
            token = token_path(plan_).read_text(encoding="utf-8").strip()
        for line in urls(plan_, token=token):
            print(line, file=out, flush=True)
        while True:
            dead = supervisor.dead()
            if dead:
                raise StackError("\n".join(dead))
            time.sleep(0.5)
    except Interrupted as exc:
        print(f"monitoriza up: {exc}, stopping", file=out, flush=True)
    except UsageError as exc:
        print(f"monitoriza up: {exc}", file=sys.stderr, flush=True)
        status = 2
    except (StackError, OSError, subprocess.SubprocessError) as exc:
        print(f"monitoriza up: {exc}", file=sys.stderr, flush=True)
        status = 1
    finally:
        for sig in previous:
            signal.signal(sig, signal.SIG_IGN)  # a second Ctrl-C must not cut the clean-up
        supervisor.stop_all()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print("monitoriza up: stopped", file=out, flush=True)
    return status
