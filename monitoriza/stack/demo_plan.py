"""The simulated Conecta Plus of ``monitoriza up --demo``: its services and the Monitoriza
configuration that watches and heals them (pure functions).

Five HTTP services answer health JSON with per-component status (``monitoriza demo serve``);
Redis is a real ``redis-server``; with a Docker engine, Guardian's recorder is a real busybox
container. The dependency graph is the platform's: the API gateway in front of the backend,
the AI orchestrator and Guardian; the backend and the orchestrator on Redis. Every timer of
the responder shrinks by the demo's time scale, like the rules, so an incident (detect,
escalate, correlate, heal, resolve) plays out in about a minute.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from monitoriza.demo.server import DISK_METRIC
from monitoriza.durations import format_duration
from monitoriza.stack.ports import StackPorts

DEMO_SCALE = 0.05  # ServiceDown: P4 after 1m -> 3 s, P3 after 5m -> 15 s
DEMO_INTERVAL = 1.0  # scrape, rule evaluation
PROBE_INTERVAL = "2s"
PROBE_TIMEOUT = "2s"  # the demo's "slow" fault answers after 2.5 s
RECORDER_CONTAINER = "conecta-guardian-recorder"
RECORDER_IMAGE = "monitoriza-demo-busybox:latest"
RECORDER_COMMAND = ["sh", "-c", "while [ ! -e /fault/down ]; do sleep 1; done; exit 1"]
DISK_THRESHOLD = 0.95
# Redis's limit in the demo: far above what it holds (a few MB), so that the example's
# redis-memory forecast has a line to forecast against; noeviction, so that a drill's
# canary is refused rather than silently evicted if it were ever reached.
REDIS_MAXMEMORY = "64mb"
# The example estate's expressions (examples/conecta-plus.yml), which the demo forecasts too.
HOST_MEMORY_EXPR = 'monitoriza_host_memory_utilization_ratio{service="host"}'
REDIS_MEMORY_EXPR = ('monitoriza_redis_memory_used_bytes{service="redis"} / '
                     '(monitoriza_redis_memory_max_bytes{service="redis"} > 0)')
# Redis's default title is "{title} {listen-addr} {server-mode}"; the file makes it unique.
REDIS_PROC_TITLE = "{title} {listen-addr} {config-file}"


@dataclass(frozen=True)
class DemoService:
    """One simulated HTTP service."""

    name: str
    tier: str
    description: str
    depends_on: tuple[str, ...]
    components: tuple[str, ...]
    uses_redis: bool = False


def demo_services(*, with_recorder: bool) -> tuple[DemoService, ...]:
    """The HTTP services, in port order."""
    guardian_needs = ("guardian-recorder",) if with_recorder else ()
    return (
        DemoService("api-gateway", "critical",
                    "Routes API calls to the backend, the AI orchestrator and Guardian",
                    ("backend", "ai-orchestrator", "guardian"), ()),
        DemoService("backend", "critical", "Condominium management API",
                    ("redis",), ("database", "redis"), uses_redis=True),
        DemoService("ai-orchestrator", "standard", "AI attendant for residents",
                    ("redis",), ("llm", "redis"), uses_redis=True),
        # Critical, as in Conecta Plus's own configuration (security depends on it): its
        # ServiceDown pages after 5 minutes (15 s at the demo's scale), not 30.
        DemoService("guardian", "critical", "CCTV: cameras and recordings",
                    guardian_needs, ("cameras", "recorder")),
        DemoService("frontend", "standard", "Residents' and managers' web application",
                    ("api-gateway",), ()),
    )


def example_forecasts() -> dict[str, dict[str, Any]]:
    """The forecasts of ``examples/conecta-plus.yml`` that the demo has the data for, with
    the example's expression, threshold and horizon, on the demo's clock (2 minutes of
    history every 5 s). Left out: the host's disks (the demo fills its services' simulated
    disks, not this machine's) and PostgreSQL's connections (the demo runs no PostgreSQL)."""
    clock = {"direction": "above", "window": "2m", "step": "2s", "interval": "5s"}
    return {
        "host-memory": {"service": "host", "expr": HOST_MEMORY_EXPR, "threshold": 0.95,
                        "horizon": "4h", **clock},
        "redis-memory": {"service": "redis", "expr": REDIS_MEMORY_EXPR, "threshold": 0.95,
                         "horizon": "12h", **clock},
    }



def _scaled(seconds: float, scale: float) -> str:
    return format_duration(max(seconds * scale, 0.01))


@dataclass(frozen=True)
class DemoPaths:
    """Files of the demo under the run directory."""

    run_dir: Path
    redis_binary: str

    @property
    def redis_dir(self) -> Path:
        return self.run_dir / "redis"

    @property
    def redis_conf(self) -> Path:
        return self.redis_dir / "redis.conf"

    @property
    def redis_pidfile(self) -> Path:
        return self.redis_dir / "redis.pid"

    @property
    def recorder_fault_dir(self) -> Path:
        return self.run_dir / "demo" / "guardian-recorder"


def redis_conf(port: int, paths: DemoPaths, host: str) -> str:
    """A redis.conf that daemonizes with a pid file: the healing playbook restarts Redis with
    the same file, and ``monitoriza up`` stops it by that pid file, whoever started it.

    Every write is appended and fsynced before Redis answers (AOF, ``appendfsync always``),
    so a kill loses nothing a client was told was stored: a drill's canary survives. The
    process title names the configuration file (Redis >= 6.2), so the process probe finds
    this Redis and no other redis-server on the machine.
    """
    return "\n".join([
        f"port {port}", f"bind {host}", "daemonize yes", f"pidfile {paths.redis_pidfile}",
        f"dir {paths.redis_dir}", f"logfile {paths.redis_dir / 'redis.log'}",
        'save ""', "appendonly yes", "appendfsync always",
        f"maxmemory {REDIS_MAXMEMORY}", "maxmemory-policy noeviction",
        f'proc-title-template "{REDIS_PROC_TITLE}"', ""])


def redis_process_probe(paths: DemoPaths) -> dict[str, Any]:
    """The demo Redis's process probe: what a drill's ``process_kill`` stops.

    redis-server rewrites its command line to its process title, here
    ``redis-server HOST:PORT /RUN/redis/redis.conf``; the configuration file's path is unique
    to this run directory, where ``HOST:PORT`` could be a prefix of another Redis's address.
    """
    return {"name": "process", "kind": "process", "process_name": "redis-server",
            "cmdline_contains": str(paths.redis_conf)}


def layout_document(ports: StackPorts, paths: DemoPaths, *,
                    docker_host: str | None) -> dict[str, Any]:
    """``RUN/demo/services.json``, which ``monitoriza demo serve`` and ``demo fault`` read."""
    services = demo_services(with_recorder=docker_host is not None)
    http = []
    for service, port in zip(services, ports.demo_http, strict=True):
        entry: dict[str, Any] = {"name": service.name, "port": port,
                                 "components": list(service.components)}
        if service.uses_redis and ports.redis is not None:
            entry["redis_port"] = ports.redis
        http.append(entry)
    return {
        "host": ports.host,
        "chat_port": ports.chat,
        "http": http,
        "redis": None if ports.redis is None else {
            "name": "redis", "port": ports.redis, "pidfile": str(paths.redis_pidfile)},
        "container": None if docker_host is None else {
            "name": "guardian-recorder", "container": RECORDER_CONTAINER,
            "fault_dir": str(paths.recorder_fault_dir), "docker_host": docker_host},
    }


def demo_config(ports: StackPorts, paths: DemoPaths, *, docker_host: str | None,
                scale: float = DEMO_SCALE) -> dict[str, Any]:
    """The Monitoriza configuration of the demo (services, playbooks, forecasts)."""
    host = ports.host
    services: dict[str, Any] = {}
    for service, port in zip(demo_services(with_recorder=docker_host is not None),
                             ports.demo_http, strict=True):
        services[service.name] = {
            "tier": service.tier, "description": service.description,
            "depends_on": list(service.depends_on),
            "probes": [{"name": "health", "kind": "http", "url": f"http://{host}:{port}/health",
                        "health_body": bool(service.components)}],
        }
        if service.uses_redis and service.name == "backend":
            # Conecta's real bug: the backend's Redis pool goes "unknown" while Redis is
            # fine. The cure is a reconnect, not a Redis restart, and only once Redis's own
            # probes pass while the backend still calls it unknown: ComponentDisagrees.
            services[service.name]["healing"] = [{
                "name": "reconnect-redis",
                "match": {"alertname": ["ComponentDisagrees"]},
                "steps": [{"action": "http", "method": "POST", "timeout": "5s",
                           "url": f"http://{host}:{port}/admin/reconnect"
                                  "?component={label.component}"}],
                "verify": {"probe": "health", "timeout": "10s", "interval": "500ms"}}]
    if ports.redis is None:
        raise ValueError("the demo needs a Redis port (ports_for(..., demo_services=N))")
    # Standard tier: a critical Redis would page (P2) at the same moment it escalates to
    # P3, and the demo shows the escalation first.
    services["redis"] = {
        "tier": "standard", "description": "Cache and queues of the backend and the AI",
        "probes": [{"name": "redis", "kind": "redis", "url": f"redis://{host}:{ports.redis}/0",
                    "timeout": "1s"},
                   redis_process_probe(paths)],
        "healing": [{
            "name": "restart-redis",
            "match": {"alertname": ["ServiceDown"], "severity": ["P3"]},
            "steps": [{"action": "command", "argv": [paths.redis_binary, str(paths.redis_conf)],
                       "timeout": "10s"}],
            "verify": {"probe": "redis", "timeout": "15s", "interval": "500ms"}}],
    }
    if docker_host is not None:
        services["guardian-recorder"] = {
            "tier": "standard", "description": "Guardian's recorder (a busybox container)",
            "probes": [{"name": "docker", "kind": "docker", "container": RECORDER_CONTAINER,
                        "docker_url": docker_host}],
            # Any alert about the recorder restarts it: a container that keeps dying then
            # spends its restart budget within seconds, and the breaker takes over.
            "healing": [{
                "name": "restart-recorder",
                "steps": [{"action": "docker_restart", "container": RECORDER_CONTAINER,
                           "docker_url": docker_host, "timeout": "10s"}],
                "verify": {"probe": "docker", "settle": "2s", "timeout": "3s",
                           "interval": "500ms"}}],
        }
    services["host"] = {"tier": "standard", "description": "This machine",
                        "probes": [{"kind": "host", "disk_paths": ["/"], "interval": "5s"}]}
    forecasts = {
        f"disk-{name}": {
            "service": name, "expr": f'{DISK_METRIC}{{service="{name}"}}',
            "threshold": DISK_THRESHOLD, "direction": "above", "horizon": "1h",
            "window": "2m", "step": "2s", "interval": "5s"}
        for name in services if name in {s.name for s in demo_services(with_recorder=False)}}
    forecasts |= example_forecasts()
    return {
        "exporter": {"listen": f"{host}:{ports.exporter}",
                     "prometheus_url": f"http://{host}:{ports.prometheus}",
                     "default_interval": PROBE_INTERVAL, "default_timeout": PROBE_TIMEOUT},
        "responder": _responder_section(ports, paths, scale),
        "forecasts": forecasts,
        "services": services,
        "flows": demo_flows(ports),
    }


def demo_flows(ports: StackPorts) -> dict[str, Any]:
    """A resident checks in through the API gateway and the backend confirms it (see
    monitoriza.demo.server); a fault on either service breaks the flow."""
    port = {service.name: number for service, number in
            zip(demo_services(with_recorder=False), ports.demo_http, strict=True)}
    gateway, backend = port["api-gateway"], port["backend"]
    return {"resident-checkin": {
        "interval": PROBE_INTERVAL, "timeout": PROBE_TIMEOUT,
        "services": ["api-gateway", "backend"],
        "steps": [
            {"name": "check-in", "method": "POST",
             "url": f"http://{ports.host}:{gateway}/api/checkins",
             "body": {"resident": "apt-101"}, "expect_status": 201,
             "assert": {"$.data.checkin.status": "checked_in"},
             "capture": {"checkin_id": "$.data.checkin.id"}},
            {"name": "confirm", "url": f"http://{ports.host}:{backend}/api/checkins/{{checkin_id}}",
             "expect_status": 200, "assert": {"$.data.resident": "apt-101"}},
        ]}}


# The chat inbox's receiver for the responder's own posts (healed, refused, incident opened).
RESPONDER_CHAT_RECEIVER = "responder"


def chat_webhook_file(run_dir: Path) -> Path:
    """Where ``monitoriza up`` writes the responder's chat webhook URL (a secret for a real
    Slack webhook, so it lives in a file beside the token, never in the configuration)."""
    return run_dir / "secrets" / "chat-webhook-url"


def chat_webhook_url(ports: StackPorts) -> str:
    """The demo chat inbox's address for the responder's posts."""
    return f"http://{ports.host}:{ports.chat}/chat/{RESPONDER_CHAT_RECEIVER}"


def _responder_section(ports: StackPorts, paths: DemoPaths, scale: float) -> dict[str, Any]:
    """Run-directory paths, and the healing timers scaled like the rules."""
    run = paths.run_dir / "responder"
    return {
        "listen": f"{ports.host}:{ports.responder}",
        "store_url": f"sqlite:///{run / 'responder.db'}",
        "token_file": str(paths.run_dir / "secrets" / "responder-token"),
        "audit": {"signing_key_file": str(run / "audit-signing.pem"),
                  "checkpoint_file": str(run / "audit-checkpoints.jsonl"),
                  "checkpoint_interval": _scaled(60, scale),
                  "verify_interval": _scaled(600, scale)},
        "healing": {
            "kill_switch_file": str(run / "kill-switch"),
            "allowed_commands": [paths.redis_binary],
            "allowed_urls": [f"http://{ports.host}:{port}/admin/" for port in ports.demo_http],
            "budget": {"restarts": 3, "window": _scaled(900, scale),
                       "backoff_initial": _scaled(10, scale),
                       "backoff_max": _scaled(300, scale)},
            "breaker": {"open_for": _scaled(60, scale), "max_open_for": _scaled(1800, scale)},
            "correlation_window": _scaled(300, scale),
            "recovery_cooldown": _scaled(180, scale),
            "blast_radius_window": _scaled(60, scale),
            "alertmanager_url": f"http://{ports.host}:{ports.alertmanager}",
            "chat": {"webhook_url_file": str(chat_webhook_file(paths.run_dir))},
        },
    }
