"""The demo's run directory: what ``services.json`` and ``faults.json`` hold, read strictly.

``RUN/demo/services.json`` is written by ``monitoriza up --demo`` (:func:`write_layout`)
before the demo server starts, and read by the server and by every fault command.
``RUN/demo/faults.json`` maps a service to its active faults (``{"backend": ["slow"]}``);
the fault command rewrites it atomically and the server rereads it when it changes, so the
two processes never talk to each other directly. A missing faults file means no faults.

Parsing is pure (:func:`layout_from_json`, :func:`faults_from_json`) and strict: an unknown
key, a wrong type or a duplicate name is a :class:`~monitoriza.demo.DemoError` that names the
file and the offending key, because a silently ignored typo would make a fault do nothing.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from monitoriza.demo import DemoError

DEMO_DIR = "demo"
SERVICES_FILE = "services.json"
FAULTS_FILE = "faults.json"
CHAT_FILE = "chat.jsonl"

# The faults an HTTP service can have at once; what each does is in monitoriza.demo.health.
HTTP_FAULT_KINDS = ("down", "slow", "unknown-component", "fill-disk", "break-checkins")

_LAYOUT_KEYS = {"host", "chat_port", "http", "redis", "container"}
_HTTP_KEYS = {"name", "port", "components", "redis_port"}
_REDIS_KEYS = {"name", "port", "pidfile"}
_CONTAINER_KEYS = {"name", "container", "fault_dir", "docker_host"}


@dataclass(frozen=True, slots=True)
class HttpService:
    """A simulated HTTP service: ``/health``, ``/`` and ``/metrics`` on its own port."""

    name: str
    port: int
    # The components its health body reports, in order (the first matters to a fault).
    components: tuple[str, ...] = ()
    # When set, the "redis" component reflects a real Redis on this port of the demo host.
    redis_port: int | None = None


@dataclass(frozen=True, slots=True)
class RedisService:
    """The real ``redis-server`` of the demo, daemonized with a pidfile."""

    name: str
    port: int
    pidfile: Path


@dataclass(frozen=True, slots=True)
class ContainerService:
    """A real busybox container that dies while ``fault_dir/down`` exists."""

    name: str  # the service name faults are addressed to
    container: str  # the Docker container's name
    fault_dir: Path  # bind-mounted at /fault in the container
    docker_host: str  # the engine's URL, e.g. unix:///var/run/docker.sock


@dataclass(frozen=True, slots=True)
class DemoLayout:
    """Everything in ``services.json``."""

    host: str
    chat_port: int
    http: tuple[HttpService, ...] = ()
    redis: RedisService | None = None
    container: ContainerService | None = None

    def service_names(self) -> tuple[str, ...]:
        """Every service a fault can be addressed to, HTTP services first."""
        names = [service.name for service in self.http]
        if self.redis is not None:
            names.append(self.redis.name)
        if self.container is not None:
            names.append(self.container.name)
        return tuple(names)

    def http_service(self, name: str) -> HttpService | None:
        """The HTTP service called ``name``, or None."""
        return next((service for service in self.http if service.name == name), None)


def demo_dir(run_dir: Path) -> Path:
    """``RUN/demo``, where every demo file lives."""
    return run_dir / DEMO_DIR


def services_path(run_dir: Path) -> Path:
    return demo_dir(run_dir) / SERVICES_FILE


def faults_path(run_dir: Path) -> Path:
    return demo_dir(run_dir) / FAULTS_FILE


def chat_path(run_dir: Path) -> Path:
    """The chat inbox: one JSON object a line, appended by the demo server."""
    return demo_dir(run_dir) / CHAT_FILE


def load_layout(run_dir: Path) -> DemoLayout:
    """Read ``RUN/demo/services.json``; raise DemoError naming the file when it is bad."""
    path = services_path(run_dir)
    return layout_from_json(_read_json(path, missing=None), str(path))


def write_layout(run_dir: Path, layout: DemoLayout) -> Path:
    """Write ``RUN/demo/services.json`` atomically (creating ``RUN/demo``); return its path."""
    path = services_path(run_dir)
    write_atomic(path, json.dumps(layout_to_json(layout), indent=2) + "\n")
    return path


def read_faults(run_dir: Path) -> dict[str, tuple[str, ...]]:
    """The active faults by service from ``RUN/demo/faults.json``; none when it is missing."""
    path = faults_path(run_dir)
    return faults_from_json(_read_json(path, missing={}), str(path))


def parse_faults(data: bytes, source: str) -> dict[str, tuple[str, ...]]:
    """Decode and validate the bytes of a ``faults.json``; ``source`` names it in errors."""
    try:
        document = json.loads(data)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        raise DemoError(f"{source}: not valid JSON: {exc}") from None
    return faults_from_json(document, source)


def write_faults(run_dir: Path, faults: Mapping[str, Sequence[str]]) -> None:
    """Replace ``RUN/demo/faults.json`` atomically, so the server never reads half a file.

    Services without faults are left out; each service's kinds are written once, sorted.
    """
    document = {name: sorted(set(kinds)) for name, kinds in sorted(faults.items()) if kinds}
    faults_from_json(document, "faults")  # refuse to write what could not be read back
    write_atomic(faults_path(run_dir), json.dumps(document, indent=2) + "\n")


@contextlib.contextmanager
def faults_locked(run_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock for a read-modify-write of ``faults.json``.

    Two fault commands run at once (or a command and the server's reconnect endpoint) would
    otherwise each read the old file and the second write would undo the first.
    """
    directory = demo_dir(run_dir)
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / ".faults.lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path``, fsync it, then rename it over."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def layout_to_json(layout: DemoLayout) -> dict[str, Any]:
    """The JSON document of ``layout``, as :func:`layout_from_json` reads it."""
    http: list[dict[str, Any]] = []
    for service in layout.http:
        entry: dict[str, Any] = {
            "name": service.name,
            "port": service.port,
            "components": list(service.components),
        }
        if service.redis_port is not None:
            entry["redis_port"] = service.redis_port
        http.append(entry)
    redis = layout.redis
    container = layout.container
    return {
        "host": layout.host,
        "chat_port": layout.chat_port,
        "http": http,
        "redis": None
        if redis is None
        else {"name": redis.name, "port": redis.port, "pidfile": str(redis.pidfile)},
        "container": None
        if container is None
        else {
            "name": container.name,
            "container": container.container,
            "fault_dir": str(container.fault_dir),
            "docker_host": container.docker_host,
        },
    }


def layout_from_json(document: object, source: str) -> DemoLayout:
    """Validate a decoded ``services.json``; ``source`` names it in error messages."""
    top = _object(document, source, "", _LAYOUT_KEYS, required=_LAYOUT_KEYS)
    raw_http = top["http"]
    if not isinstance(raw_http, list):
        raise DemoError(f"{source}: http: must be a list")
    http = tuple(_http_service(entry, source, f"http[{i}]") for i, entry in enumerate(raw_http))
    redis = None if top["redis"] is None else _redis_service(top["redis"], source)
    container = None if top["container"] is None else _container_service(top["container"], source)
    layout = DemoLayout(
        host=_string(top["host"], source, "host"),
        chat_port=_port(top["chat_port"], source, "chat_port"),
        http=http,
        redis=redis,
        container=container,
    )
    _check_unique(layout.service_names(), source, "service name")
    ports = [layout.chat_port, *(service.port for service in layout.http)]
    if layout.redis is not None:
        ports.append(layout.redis.port)
    _check_unique([str(port) for port in ports], source, "listening port")
    return layout


def faults_from_json(document: object, source: str) -> dict[str, tuple[str, ...]]:
    """Validate a decoded ``faults.json``: service name -> list of HTTP fault kinds."""
    if not isinstance(document, dict):
        raise DemoError(f"{source}: must be a JSON object of service name -> list of faults")
    faults: dict[str, tuple[str, ...]] = {}
    for name, kinds in document.items():
        if not isinstance(kinds, list) or not all(isinstance(kind, str) for kind in kinds):
            raise DemoError(f"{source}: {name}: must be a list of fault names")
        unknown = sorted(set(kinds) - set(HTTP_FAULT_KINDS))
        if unknown:
            raise DemoError(
                f"{source}: {name}: unknown fault {', '.join(unknown)} "
                f"(known: {', '.join(HTTP_FAULT_KINDS)})"
            )
        faults[str(name)] = tuple(dict.fromkeys(kinds))
    return faults


def _read_json(path: Path, *, missing: object) -> object:
    """Decode ``path``; ``missing`` is returned for an absent file, or None makes it an error."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if missing is None:
            raise DemoError(
                f"{path}: not found (is the demo running from this run directory?)"
            ) from None
        return missing
    except OSError as exc:
        raise DemoError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise DemoError(f"{path}: not valid JSON: {exc}") from None


def _http_service(entry: object, source: str, where: str) -> HttpService:
    fields = _object(entry, source, where, _HTTP_KEYS, required={"name", "port"})
    raw_components = fields.get("components", [])
    if not isinstance(raw_components, list):
        raise DemoError(f"{source}: {where}.components: must be a list of names")
    components = tuple(
        _string(component, source, f"{where}.components[{i}]")
        for i, component in enumerate(raw_components)
    )
    _check_unique(components, source, f"{where} component")
    raw_redis_port = fields.get("redis_port")
    return HttpService(
        name=_string(fields["name"], source, f"{where}.name"),
        port=_port(fields["port"], source, f"{where}.port"),
        components=components,
        redis_port=None
        if raw_redis_port is None
        else _port(raw_redis_port, source, f"{where}.redis_port"),
    )


def _redis_service(entry: object, source: str) -> RedisService:
    fields = _object(entry, source, "redis", _REDIS_KEYS, required=_REDIS_KEYS)
    return RedisService(
        name=_string(fields["name"], source, "redis.name"),
        port=_port(fields["port"], source, "redis.port"),
        pidfile=_absolute_path(fields["pidfile"], source, "redis.pidfile"),
    )


def _container_service(entry: object, source: str) -> ContainerService:
    fields = _object(entry, source, "container", _CONTAINER_KEYS, required=_CONTAINER_KEYS)
    return ContainerService(
        name=_string(fields["name"], source, "container.name"),
        container=_string(fields["container"], source, "container.container"),
        fault_dir=_absolute_path(fields["fault_dir"], source, "container.fault_dir"),
        docker_host=_string(fields["docker_host"], source, "container.docker_host"),
    )


def _object(
    value: object, source: str, where: str, allowed: set[str], *, required: set[str]
) -> dict[str, object]:
    prefix = f"{source}: {where + ': ' if where else ''}"
    if not isinstance(value, dict):
        raise DemoError(f"{prefix}must be a JSON object")
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise DemoError(f"{prefix}unknown key {', '.join(map(repr, unknown))}")
    absent = sorted(required - set(value))
    if absent:
        raise DemoError(f"{prefix}missing key {', '.join(map(repr, absent))}")
    return value


def _string(value: object, source: str, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise DemoError(f"{source}: {where}: must be a non-empty string")
    return value


def _port(value: object, source: str, where: str) -> int:
    # bool is an int in Python, but `true` is no port.
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 65535:
        raise DemoError(f"{source}: {where}: must be a port number (1..65535)")
    return value


def _absolute_path(value: object, source: str, where: str) -> Path:
    # Relative paths would mean different files to the server and to a fault command run
    # from another directory.
    path = Path(_string(value, source, where))
    if not path.is_absolute():
        raise DemoError(f"{source}: {where}: must be an absolute path")
    return path


def _check_unique(values: Sequence[str], source: str, what: str) -> None:
    seen: set[str] = set()
    for value in values:
        if value in seen:
            raise DemoError(f"{source}: {what} {value!r} appears twice")
        seen.add(value)
