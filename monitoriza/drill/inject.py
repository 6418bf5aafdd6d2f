"""Inject a drill's fault into the real estate, and restore it.

``prepare`` resolves what will be done without doing it (and refuses what may not be done
safely), ``inject`` does it, ``release`` stops a crash loop's re-killing, ``restore`` puts
the estate back. ``restore`` is idempotent and needs nothing but the :class:`Injection`, so
it works in a new process from the restore journal after a crash.

Faults: ``container_stop`` (docker stop, with the container's own stop timeout),
``container_kill`` (SIGKILL through the engine), ``container_pause``, ``crash_loop`` (a
daemon thread kills the container whenever it sees it running, every 0.5 s, until
``release``), ``process_kill`` and ``disk_fill`` (:mod:`monitoriza.drill.host_faults`). A
``dependency_outage`` of D is D's ``container_stop`` when D has a docker probe, else D's
``process_kill``. Every container fault restores the same way: unpause if paused, start if
not running.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import docker.errors
import requests

from monitoriza.config.schema import Config, DockerProbe, ProcessProbe
from monitoriza.docker_engine import engine_client, engine_url
from monitoriza.drill import host_faults
from monitoriza.drill.injection import (
    Injection,
    InjectionError,
    InjectionRefused,
    RestoreError,
)
from monitoriza.drill.model import Experiment, FaultKind

__all__ = ["CONTAINER_FAULTS", "Injection", "InjectionError", "InjectionRefused",
           "RestoreError", "acted_on", "crash_loop_kills", "inject", "prepare", "release",
           "restore"]

CONTAINER_FAULTS: tuple[FaultKind, ...] = (
    "container_stop", "container_kill", "container_pause", "crash_loop")
#: Seconds a Docker API call may take (a stop adds the container's stop timeout to it).
DOCKER_TIMEOUT = 30.0
CRASH_LOOP_INTERVAL = 0.5

_DOCKER_ERRORS = (docker.errors.DockerException, requests.RequestException, OSError)


def acted_on(experiment: Experiment, config: Config) -> tuple[str, FaultKind]:
    """The service the fault acts on and the fault done to it (pure)."""
    if experiment.fault != "dependency_outage":
        if experiment.service not in config.services:
            raise InjectionRefused(f"unknown service {experiment.service!r}")
        return experiment.service, experiment.fault
    dependency = config.services.get(experiment.target)
    if dependency is None:
        raise InjectionRefused(f"unknown dependency {experiment.target!r} of "
                               f"{experiment.service}")
    if any(isinstance(p, DockerProbe) for p in dependency.probes):
        return experiment.target, "container_stop"
    if any(isinstance(p, ProcessProbe) for p in dependency.probes):
        return experiment.target, "process_kill"
    raise InjectionRefused(f"{experiment.target} has no docker or process probe: a drill "
                           "cannot stop it")


def prepare(experiment: Experiment, config: Config, *, max_fill_bytes: int) -> Injection:
    """What ``inject`` will do, checked but not done (``injected_at`` 0); InjectionRefused
    with the reason and the fix when it may not be done."""
    name, fault = acted_on(experiment, config)
    service = config.services[name]
    if fault in CONTAINER_FAULTS:
        details = _container_details(name, config)
        target = details["container"]
    elif fault == "process_kill":
        details = host_faults.process_details(name, service)
        target = details["process_name"]
    else:
        details = host_faults.disk_fill_details(name, service, config.health.saturation_warn,
                                                max_fill_bytes)
        target = details["disk_path"]
    return Injection(experiment.key, name, fault, str(target), details)


def inject(prepared: Injection) -> Injection:
    """Do the fault; the injection with ``injected_at`` set when it took effect and what the
    doing learnt (PIDs killed, bytes written). InjectionError if it could not be done."""
    if prepared.fault in CONTAINER_FAULTS:
        _inject_container(prepared)
        return prepared.with_effect(time.time())
    if prepared.fault == "process_kill":
        pids = host_faults.kill_processes(prepared.details)
        return prepared.with_effect(time.time(), killed_pids=pids)
    written = host_faults.write_ballast(prepared.details)
    return prepared.with_effect(time.time(), bytes_written=written)


def release(injection: Injection) -> None:
    """Stop a crash loop's re-killing (the container stays as it is); no-op otherwise."""
    with _LOOPS_LOCK:
        loop = _LOOPS.pop(injection.key, None)
    if loop is not None:
        loop.stop()


def restore(injection: Injection) -> str:
    """Undo the fault; idempotent. What it did, e.g. ``container redis started``, or
    ``... nothing to do``. RestoreError when the estate could not be put back."""
    release(injection)
    if injection.fault in CONTAINER_FAULTS:
        return _restore_container(injection.details)
    if injection.fault == "process_kill":
        return host_faults.restore_processes(injection.details)
    return host_faults.remove_ballast(injection.details)


def crash_loop_kills(key: str) -> int | None:
    """How many times the crash loop of ``key`` killed its container; None if none runs."""
    with _LOOPS_LOCK:
        loop = _LOOPS.get(key)
    return None if loop is None else loop.kills


# -- containers ------------------------------------------------------------------------------

def _container_details(name: str, config: Config) -> dict[str, Any]:
    probe = next((p for p in config.services[name].probes if isinstance(p, DockerProbe)), None)
    if probe is None:
        raise InjectionRefused(f"{name} has no docker probe: a drill cannot tell which "
                               "container is the service's")
    url = engine_url(probe.docker_url, config.exporter.docker_url)
    try:
        with engine_client(url, DOCKER_TIMEOUT) as client:
            container = client.containers.get(probe.container)
            status, container_id = str(container.status), str(container.id)
    except docker.errors.NotFound:
        raise InjectionRefused(f"{name}: container {probe.container} does not exist on "
                               f"{url}") from None
    except _DOCKER_ERRORS as exc:
        raise InjectionRefused(f"{name}: cannot reach the Docker engine at {url}: {exc}") from None
    if status != "running":
        raise InjectionRefused(f"{name}: container {probe.container} is {status}, not running; "
                               "start it first (a drill starts from a healthy estate)")
    return {"docker_url": url, "container": probe.container, "container_id": container_id}


def _inject_container(prepared: Injection) -> None:
    url, name = prepared.details["docker_url"], prepared.details["container"]
    try:
        with engine_client(url, DOCKER_TIMEOUT) as client:
            container = client.containers.get(name)
            if prepared.fault == "container_stop":
                container.stop()  # with the container's own stop timeout, as docker stop
            elif prepared.fault == "container_pause":
                container.pause()
            else:
                container.kill()
    except _DOCKER_ERRORS as exc:
        raise InjectionError(f"{prepared.fault} of container {name} on {url} failed: "
                             f"{exc}") from None
    if prepared.fault == "crash_loop":
        loop = _CrashLoop(url, name)
        with _LOOPS_LOCK:
            previous = _LOOPS.pop(prepared.key, None)
            _LOOPS[prepared.key] = loop
        if previous is not None:
            previous.stop()
        loop.start()


def _restore_container(details: dict[str, Any]) -> str:
    url, name = details["docker_url"], details["container"]
    try:
        with engine_client(url, DOCKER_TIMEOUT) as client:
            container = client.containers.get(name)
            status = str(container.status)
            if status == "running":
                return f"container {name} is running: nothing to do"
            if status == "paused":
                container.unpause()
                return f"container {name} unpaused"
            container.start()
            return f"container {name} started (was {status})"
    except docker.errors.NotFound:
        raise RestoreError(f"container {name} no longer exists on {url}: recreate it") from None
    except _DOCKER_ERRORS as exc:
        raise RestoreError(f"cannot restore container {name} on {url}: {exc}") from None


class _CrashLoop:
    """A daemon thread that kills a container each time it sees it running."""

    def __init__(self, url: str, container: str) -> None:
        self.url, self.container = url, container
        self.kills = 0
        self.last_error = ""
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"drill-crash-loop-{container}")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(DOCKER_TIMEOUT)

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                with engine_client(self.url, DOCKER_TIMEOUT) as client:
                    while not self._stopping.is_set():
                        container = client.containers.get(self.container)
                        if container.status == "running":
                            container.kill()
                            self.kills += 1
                        self._stopping.wait(CRASH_LOOP_INTERVAL)
            except _DOCKER_ERRORS as exc:
                # Errors (the container stopped between look and kill, the engine
                # restarting) must not end the loop: the fault lasts until release().
                self.last_error = str(exc)
                self._stopping.wait(CRASH_LOOP_INTERVAL)


_LOOPS: dict[str, _CrashLoop] = {}
_LOOPS_LOCK = threading.Lock()
