"""Running one healing action: a command, an HTTP call, or a container restart.

Every templated field is rendered first (:mod:`monitoriza.healing.placeholders`: the command's
argv element by element, the HTTP URL, the container name) and the rendered result is then
checked against the policy. Only then does anything run. The Docker engine URL is never
templated: an alert must not choose which engine to talk to.

Refusals. :meth:`ActionRunner.check` raises :class:`ActionRefused` (a placeholder that
cannot be filled safely, a command not on the allow-list, a URL outside it, an invalid
container name). :meth:`ActionRunner.run` never raises for a refusal or for a failure of the
target: it returns an :class:`ActionResult` with ``ok=False``, and ``refused=True`` when
nothing was attempted because the policy said no (so the caller can escalate a refusal
differently from a failed attempt). A dry run is checked exactly like a real run; a refused
dry run is ``ok=False``, an allowed one is ``ok=True`` with a detail saying what *would* run.

The policy:

``command``
    ``argv[0]``, as rendered, must be exactly one of ``allowed_commands`` (no prefix or
    basename matching). The argv runs directly (``shell=False``), with ``stdin`` from
    ``/dev/null``, a minimal environment (:data:`COMMAND_ENV`), ``/`` as working directory, in
    a new session. Output goes to temporary files, not pipes, so a command that starts a
    daemon (which keeps its inherited descriptors) does not keep the action waiting. On
    timeout the whole process group is killed with SIGKILL. ``ok`` iff the exit status is 0.
``http``
    The rendered URL must lie under one of ``allowed_urls``: same scheme, host and port
    (default ports made explicit), and a path equal to the allowed path or below it on a
    ``/`` boundary. A URL with userinfo (``@``), a backslash, whitespace or control
    characters, non-ASCII text, or a path segment that is ``.`` or ``..`` (also when
    percent-encoded, e.g. ``%2e%2e``) or an encoded ``/`` or ``\\`` is refused. The request
    does not follow redirects, ignores proxy and ``.netrc`` settings from the environment, and
    sends no body. ``ok`` iff the status is 2xx.
``docker_restart``
    The rendered container name must match Docker's name grammar
    (:data:`CONTAINER_NAME`). The action's ``timeout`` is the grace period Docker gives the
    container to stop before killing it. ``ok`` iff the restart call returned and the
    container is running afterwards.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import shlex
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO, Any
from urllib.parse import SplitResult, unquote, urlsplit

import docker
import docker.errors
import requests

from monitoriza.config.schema import CommandAction, DockerRestartAction, HttpAction
from monitoriza.exceptions import MonitorizaError
from monitoriza.exporter.probes.docker import DEFAULT_DOCKER_URL
from monitoriza.healing.placeholders import ActionContext, PlaceholderError, render

__all__ = [
    "COMMAND_ENV",
    "CONTAINER_NAME",
    "ActionContext",
    "ActionRefused",
    "ActionResult",
    "ActionRunner",
    "HealingAction",
    "PlaceholderError",
]

HealingAction = CommandAction | HttpAction | DockerRestartAction

# Docker's own container name grammar (daemon/names: RestrictedNameChars).
CONTAINER_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*")
# The whole environment a command gets: nothing of the responder's (tokens, proxies) leaks.
COMMAND_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8",
}
# Seconds the Docker API may take on top of the stop grace period of a restart.
DOCKER_API_TIMEOUT = 30
# Most output of a command kept in a result's detail (the end of stderr, else of stdout).
OUTPUT_TAIL_CHARS = 500
# Seconds to wait for a killed command to be reaped.
_KILL_WAIT = 5.0
_DEFAULT_PORTS = {"http": 80, "https": 443}
# Characters never allowed anywhere in an action URL (besides non-ASCII and controls).
_URL_FORBIDDEN = frozenset(" \\\"'<>^`{|}")
# Percent-encoded characters that could change how a server splits the path.
_ENCODED_SEPARATORS = ("/", "\\")


class ActionRefused(MonitorizaError):  # noqa: N818 - a refusal is a verdict, not an error
    """The policy refuses an action: nothing was run. The message says why."""


@dataclass(frozen=True, slots=True)
class ActionResult:
    """What happened when an action ran (or would have run, for a dry run).

    ``action`` is the kind (``command``, ``http``, ``docker_restart``); ``target`` is what it
    acted on: the rendered ``argv[0]``, URL or container name, or the unrendered template when
    rendering failed. ``refused`` is True when the policy refused the action and nothing was
    attempted.
    """

    ok: bool
    action: str
    target: str
    detail: str
    duration: float
    dry_run: bool
    refused: bool = False


@dataclass(frozen=True, slots=True)
class _Allowed:
    """One ``allowed_urls`` entry, split for comparison."""

    origin: tuple[str, str, int]
    path: str  # without a trailing "/"; "" allows every path


@dataclass(frozen=True, slots=True)
class _Command:
    argv: list[str]
    timeout: float


@dataclass(frozen=True, slots=True)
class _Http:
    method: str
    url: str
    timeout: float


@dataclass(frozen=True, slots=True)
class _DockerRestart:
    container: str
    docker_url: str
    timeout: float


_Prepared = _Command | _Http | _DockerRestart


def _origin(parts: SplitResult) -> tuple[str, str, int]:
    """(scheme, host, port) with the default port made explicit; ValueError if invalid."""
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise ValueError(f"scheme {parts.scheme!r} is not http or https")
    host = (parts.hostname or "").lower()
    if not host:
        raise ValueError("no host")
    port = parts.port  # raises ValueError for a bad port
    return scheme, host, port if port is not None else _DEFAULT_PORTS[scheme]


def _allowed_entry(url: str) -> _Allowed:
    parts = urlsplit(url)
    if "@" in parts.netloc or parts.query or parts.fragment:
        raise ValueError(
            f"allowed URL {url!r} must be scheme://host[:port][/path], without userinfo, "
            "query or fragment"
        )
    try:
        origin = _origin(parts)
        _check_path(parts.path)
    except ValueError as exc:
        raise ValueError(f"allowed URL {url!r} is invalid: {exc}") from None
    return _Allowed(origin, parts.path.rstrip("/"))


def _check_path(path: str) -> None:
    """Raise ValueError for a path with dot segments or encoded separators."""
    for segment in path.split("/"):
        decoded = segment
        # Decode until stable, so that double encoding (%252e) hides nothing.
        for _ in range(5):
            again = unquote(decoded)
            if again == decoded:
                break
            decoded = again
        else:
            raise ValueError("the path is percent-encoded too many times")
        if decoded in (".", ".."):
            raise ValueError(f"the path has a {segment!r} segment")
        if any(sep in decoded for sep in _ENCODED_SEPARATORS):
            raise ValueError(f"the path segment {segment!r} hides a separator")


def _check_url_text(url: str) -> None:
    if not url.isascii():
        raise ValueError("it is not plain ASCII")
    bad = sorted(
        {char for char in url if char in _URL_FORBIDDEN or ord(char) < 0x21 or ord(char) == 0x7F}
    )
    if bad:
        raise ValueError(f"it contains {''.join(bad)!r}")


def _output_tail(stdout: IO[bytes], stderr: IO[bytes]) -> str:
    """The end of what a command wrote (stderr preferred), for a result's detail."""
    for stream in (stderr, stdout):
        stream.seek(0, os.SEEK_END)
        size = stream.tell()
        stream.seek(max(size - OUTPUT_TAIL_CHARS * 4, 0))
        text = stream.read().decode("utf-8", errors="replace").strip()
        if text:
            return text[-OUTPUT_TAIL_CHARS:]
    return ""


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _unix_socket_path(url: str) -> str | None:
    if not url.startswith("unix://"):
        return None
    path = url[len("unix://") :]
    return path if path.startswith("/") else f"/{path}"


def _check_unix_socket(path: str) -> None:
    """Connect once and close, raising OSError if the engine is not there.

    The SDK leaks its socket when a unix connect fails; this avoids that for the usual case.
    """
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(5.0)
        probe.connect(path)


class ActionRunner:
    """Checks healing actions against the allow-lists and runs them.

    ``allowed_commands`` are the exact ``argv[0]`` values that may run; ``allowed_urls`` are
    URL prefixes (``scheme://host[:port][/path]``) HTTP actions may call; an invalid entry is
    a ``ValueError`` here. ``default_docker_url`` is the engine for ``docker_restart``
    actions without their own ``docker_url``; when it is None too, ``DOCKER_HOST`` or the
    local socket is used, like the Docker probe does.
    """

    def __init__(
        self,
        allowed_commands: Sequence[str],
        allowed_urls: Sequence[str],
        default_docker_url: str | None = None,
    ) -> None:
        self.allowed_commands = frozenset(allowed_commands)
        self._allowed_urls = tuple(_allowed_entry(url) for url in allowed_urls)
        self.default_docker_url = default_docker_url

    # -- checking ---------------------------------------------------------------------------

    def check(self, action: HealingAction, context: ActionContext) -> None:
        """Raise :class:`ActionRefused` if running ``action`` for ``context`` would be refused."""
        self._prepare(action, context)

    def _prepare(self, action: HealingAction, context: ActionContext) -> _Prepared:
        """Render ``action`` for ``context`` and check it; raise :class:`ActionRefused`."""
        try:
            if isinstance(action, CommandAction):
                return self._prepare_command(action, context)
            if isinstance(action, HttpAction):
                return self._prepare_http(action, context)
            return self._prepare_docker(action, context)
        except PlaceholderError as exc:
            raise ActionRefused(f"cannot fill a placeholder: {exc}") from exc

    def _prepare_command(self, action: CommandAction, context: ActionContext) -> _Command:
        argv = [render(part, context) for part in action.argv]
        if argv[0] not in self.allowed_commands:
            raise ActionRefused(f"command {argv[0]!r} is not in allowed_commands")
        if any("\0" in part for part in argv):
            raise ActionRefused("an argument contains a NUL character")
        return _Command(argv, action.timeout)

    def _prepare_http(self, action: HttpAction, context: ActionContext) -> _Http:
        url = render(action.url, context)
        try:
            _check_url_text(url)
            parts = urlsplit(url)
            if "@" in parts.netloc:
                raise ValueError("it has userinfo ('@')")
            origin = _origin(parts)
            _check_path(parts.path)
        except ValueError as exc:
            raise ActionRefused(f"URL {url!r} is refused: {exc}") from None
        path = parts.path
        for allowed in self._allowed_urls:
            if allowed.origin == origin and (
                not allowed.path or path == allowed.path or path.startswith(allowed.path + "/")
            ):
                return _Http(action.method, url, action.timeout)
        raise ActionRefused(f"URL {url!r} is not under any of allowed_urls")

    def _prepare_docker(
        self, action: DockerRestartAction, context: ActionContext
    ) -> _DockerRestart:
        container = render(action.container, context)
        if CONTAINER_NAME.fullmatch(container) is None:
            raise ActionRefused(f"{container!r} is not a valid container name")
        docker_url = (
            action.docker_url
            or self.default_docker_url
            or os.environ.get("DOCKER_HOST")
            or DEFAULT_DOCKER_URL
        )
        return _DockerRestart(container, docker_url, action.timeout)

    def describe(self, action: HealingAction, context: ActionContext) -> str:
        """What running ``action`` would do, for dry runs and the audit log.

        For a refused action: ``refused: <reason>``. Never runs anything.
        """
        try:
            prepared = self._prepare(action, context)
        except ActionRefused as exc:
            return f"refused: {exc}"
        return _describe(prepared)

    # -- running ----------------------------------------------------------------------------

    def run(
        self, action: HealingAction, context: ActionContext, *, dry_run: bool = False
    ) -> ActionResult:
        """Check ``action`` and, unless refused or ``dry_run``, run it. Never raises for a
        refusal or a failing target (see the module docstring)."""
        started = time.monotonic()
        kind = action.action
        try:
            prepared = self._prepare(action, context)
        except ActionRefused as exc:
            return ActionResult(
                ok=False,
                action=kind,
                target=_template_target(action),
                detail=f"refused: {exc}",
                duration=time.monotonic() - started,
                dry_run=dry_run,
                refused=True,
            )
        target = _target(prepared)
        if dry_run:
            return ActionResult(
                ok=True,
                action=kind,
                target=target,
                detail=f"would {_describe(prepared)}",
                duration=time.monotonic() - started,
                dry_run=True,
            )
        if isinstance(prepared, _Command):
            ok, detail = _run_command(prepared)
        elif isinstance(prepared, _Http):
            ok, detail = _run_http(prepared)
        else:
            ok, detail = _run_docker_restart(prepared)
        return ActionResult(
            ok=ok,
            action=kind,
            target=target,
            detail=detail,
            duration=time.monotonic() - started,
            dry_run=False,
        )


def _template_target(action: HealingAction) -> str:
    if isinstance(action, CommandAction):
        return action.argv[0]
    if isinstance(action, HttpAction):
        return action.url
    return action.container


def _target(prepared: _Prepared) -> str:
    if isinstance(prepared, _Command):
        return prepared.argv[0]
    if isinstance(prepared, _Http):
        return prepared.url
    return prepared.container


def _describe(prepared: _Prepared) -> str:
    if isinstance(prepared, _Command):
        return f"run {shlex.join(prepared.argv)} (timeout {prepared.timeout:g}s)"
    if isinstance(prepared, _Http):
        return f"{prepared.method} {prepared.url} (timeout {prepared.timeout:g}s)"
    return (
        f"restart container {prepared.container} on {prepared.docker_url} "
        f"(stop timeout {prepared.timeout:g}s)"
    )


def _run_command(command: _Command) -> tuple[bool, str]:
    with (
        tempfile.TemporaryFile() as stdout,
        tempfile.TemporaryFile() as stderr,
    ):
        try:
            process = subprocess.Popen(
                command.argv,
                shell=False,
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
                env=COMMAND_ENV,
                cwd="/",
                start_new_session=True,
            )
        except (OSError, ValueError) as exc:
            return False, f"cannot start {command.argv[0]}: {exc}"
        try:
            code = process.wait(timeout=command.timeout)
        except subprocess.TimeoutExpired:
            # The command leads its own session and process group: kill all of it.
            _kill_group(process.pid)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=_KILL_WAIT)
            tail = _output_tail(stdout, stderr)
            detail = f"timed out after {command.timeout:g}s; process group killed"
            return False, f"{detail}: {tail}" if tail else detail
        tail = _output_tail(stdout, stderr)
    if code == 0:
        detail = "exit status 0"
    elif code < 0:
        detail = f"killed by signal {-code}"
    else:
        detail = f"exit status {code}"
    return code == 0, f"{detail}: {tail}" if tail else detail


def _run_http(call: _Http) -> tuple[bool, str]:
    try:
        with requests.Session() as session:
            session.trust_env = False  # no proxies or .netrc credentials from the environment
            with session.request(
                call.method, call.url, timeout=call.timeout, allow_redirects=False, stream=True
            ) as response:
                status = response.status_code
                reason = response.reason or ""
    except requests.RequestException as exc:
        return False, f"{call.method} {call.url} failed: {exc}"
    ok = 200 <= status < 300
    return ok, f"HTTP {status} {reason}".strip()


def _run_docker_restart(restart: _DockerRestart) -> tuple[bool, str]:
    name, url = restart.container, restart.docker_url
    grace = max(math.ceil(restart.timeout), 0)
    client: Any = None
    try:
        socket_path = _unix_socket_path(url)
        if socket_path is not None:
            _check_unix_socket(socket_path)
        client = docker.DockerClient(base_url=url, timeout=DOCKER_API_TIMEOUT)
        container = client.containers.get(name)
        container.restart(timeout=grace)
        container.reload()
        status = str(container.status)
    except docker.errors.NotFound:
        return False, f"container {name} does not exist on {url}"
    except (docker.errors.DockerException, requests.RequestException, OSError) as exc:
        return False, f"cannot restart container {name} on {url}: {exc}"
    finally:
        if client is not None:
            client.close()
    if status != "running":
        return False, f"container {name} is {status} after the restart"
    return True, f"container {name} restarted and running"
