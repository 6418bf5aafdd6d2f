"""``monitoriza demo fault SERVICE KIND``: break a demo service on purpose, or mend it.

What each kind does depends on what the service is:

* a simulated HTTP service: ``down``, ``slow``, ``unknown-component`` (only with
  components), ``fill-disk``, ``break-checkins`` and ``clear`` update
  ``RUN/demo/faults.json``, which the demo server rereads at its next request
  (:mod:`monitoriza.demo.health` says what each does);
* the real Redis: ``down`` sends SIGKILL to the PID in its pidfile, as a crash would, after
  checking that the PID is a redis-server (a stale pidfile may name someone else's process);
  ``clear`` has nothing to undo: Redis comes back when something restarts it;
* the real container: ``down`` creates ``fault_dir/down``, which the container's loop sees at
  /fault/down, and kills the container so that it dies at once; every restart then dies again
  within a second ("keeps dying"). ``clear`` removes the file and starts the container if it
  is not running.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import docker.errors
import psutil

from monitoriza.demo import DemoError
from monitoriza.demo.health import (
    CHECKINS_BROKEN_STATUS,
    SLOW_DELAY_SECONDS,
    unknown_component,
)
from monitoriza.demo.layout import (
    ContainerService,
    DemoLayout,
    HttpService,
    RedisService,
    faults_locked,
    load_layout,
    read_faults,
    write_faults,
)

CLEAR = "clear"
KINDS = ("down", "slow", "unknown-component", "fill-disk", "break-checkins", CLEAR)
CONTAINER_FAULT_FILE = "down"
KILL_WAIT_SECONDS = 5.0
DOCKER_TIMEOUT_SECONDS = 10


def apply_fault(run_dir: Path, service: str, kind: str) -> str:
    """Inject fault ``kind`` into ``service`` (or ``clear`` its faults); return what was done.

    Raises :class:`~monitoriza.demo.DemoError` for an unknown service (naming the known ones),
    a kind that does not apply to it (naming those that do), or when the fault cannot be
    applied (Redis not running, Docker unreachable).
    """
    layout = load_layout(run_dir)
    kinds = kinds_for(layout, service)
    if kind not in kinds:
        raise DemoError(
            f"{service}: no fault {kind!r} for this service (choose from: {', '.join(kinds)})"
        )
    http = layout.http_service(service)
    if http is not None:
        return _apply_http(run_dir, http, kind)
    if layout.redis is not None and service == layout.redis.name:
        return _apply_redis(layout.redis, layout.host, kind)
    assert layout.container is not None  # kinds_for refused every other name
    return _apply_container(layout.container, kind)


def kinds_for(layout: DemoLayout, service: str) -> tuple[str, ...]:
    """The fault kinds that apply to ``service``; DemoError naming the known services if none."""
    http = layout.http_service(service)
    if http is not None:
        return tuple(
            kind for kind in KINDS if kind != "unknown-component" or http.components
        )
    if service in layout.service_names():  # the real Redis or the real container
        return ("down", CLEAR)
    known = ", ".join(layout.service_names()) or "none"
    raise DemoError(f"unknown service {service!r} (known services: {known})")


def _apply_http(run_dir: Path, service: HttpService, kind: str) -> str:
    name = service.name
    with faults_locked(run_dir):
        faults = dict(read_faults(run_dir))
        active = faults.get(name, ())
        if kind == CLEAR:
            faults.pop(name, None)
            write_faults(run_dir, faults)
            if not active:
                return f"{name}: no faults to clear"
            return f"{name}: cleared {', '.join(active)}; it behaves normally again"
        if kind in active:
            return f"{name}: {kind} is already on ('clear' removes it)"
        faults[name] = (*active, kind)
        write_faults(run_dir, faults)
    return f"{name}: {_describe_http(service, kind)}"


def _describe_http(service: HttpService, kind: str) -> str:
    if kind == "down":
        return "down: it closes every connection without answering"
    if kind == "slow":
        return f"slow: every answer waits {SLOW_DELAY_SECONDS:g} s, past the probe's timeout"
    if kind == "unknown-component":
        return f"reports {unknown_component(service)} as UNKNOWN, though it is fine"
    if kind == "break-checkins":
        return (f"its check-in API answers {CHECKINS_BROKEN_STATUS} while /health stays "
                "green: flows through it fail behind passing probes")
    return "its disk is filling, 0.5 % a second: past 95 % in about two minutes"


def _apply_redis(spec: RedisService, host: str, kind: str) -> str:
    if kind == CLEAR:
        state = "running" if _redis_process(spec) is not None else "not running"
        return (
            f"{spec.name}: nothing to clear (Redis is {state}; a killed Redis comes back "
            "when something restarts it, such as Monitoriza's healing)"
        )
    process = _redis_process(spec)
    if process is None:
        raise DemoError(f"{spec.name}: redis is not running (stale or missing {spec.pidfile})")
    pid = process.pid
    try:
        # psutil refuses if the PID was reused since it was looked up.
        process.send_signal(signal.SIGKILL)
    except psutil.NoSuchProcess:
        raise DemoError(f"{spec.name}: redis is not running (PID {pid} is gone)") from None
    except psutil.AccessDenied:
        raise DemoError(f"{spec.name}: not allowed to kill Redis (PID {pid})") from None
    _wait_closed(host, spec.port, KILL_WAIT_SECONDS)
    return f"{spec.name}: Redis killed (SIGKILL to PID {pid}); it stays down until restarted"


def _redis_process(spec: RedisService) -> psutil.Process | None:
    """The running redis-server the pidfile names, or None (no file, gone, or not Redis)."""
    try:
        pid = int(spec.pidfile.read_text(encoding="ascii").strip())
    except (OSError, ValueError):
        return None
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return None
        # A stale pidfile's PID may have been reused: never kill what is not Redis.
        if "redis" not in process.name():
            return None
    except psutil.Error:
        return None
    return process


def _wait_closed(host: str, port: int, timeout: float) -> None:
    """Wait until nothing accepts connections on Redis's port any more.

    Not the process's state: a daemonized redis-server is not our child, so its main thread
    turns zombie (and may stay one where PID 1 does not reap orphans) while its other threads
    are still exiting and the listening socket is still open.
    """
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        with socket.socket() as probe:
            probe.settimeout(0.2)
            if probe.connect_ex((host, port)) != 0:
                return
        time.sleep(0.02)


def _apply_container(spec: ContainerService, kind: str) -> str:
    fault_file = spec.fault_dir / CONTAINER_FAULT_FILE
    if kind == CLEAR:
        fault_file.unlink(missing_ok=True)
        with _docker_container(spec) as container:
            if container.status == "running":
                return f"{spec.name}: fault removed; container {spec.container} is running"
            container.start()
        return f"{spec.name}: fault removed; container {spec.container} started again"
    spec.fault_dir.mkdir(parents=True, exist_ok=True)
    fault_file.touch()
    with _docker_container(spec) as container:
        if container.status == "running":
            # The loop would notice the file within a second; killing it makes the effect
            # immediate. A container already stopped keeps the file for its next start.
            with contextlib.suppress(docker.errors.APIError):  # it stopped meanwhile
                container.kill()
    return f"{spec.name}: container {spec.container} killed; it keeps dying after every restart"


@contextlib.contextmanager
def _docker_container(spec: ContainerService) -> Iterator[Any]:
    """The container (``docker.models.containers.Container``), its status freshly read."""
    client = None
    try:
        client = docker.DockerClient(base_url=spec.docker_host, timeout=DOCKER_TIMEOUT_SECONDS)
        try:
            container = client.containers.get(spec.container)
        except docker.errors.NotFound:
            raise DemoError(
                f"{spec.name}: container {spec.container} does not exist "
                "(is the demo running?)"
            ) from None
        yield container
    except docker.errors.DockerException as exc:
        raise DemoError(f"{spec.name}: Docker at {spec.docker_host} failed: {exc}") from None
    finally:
        if client is not None:
            client.close()
