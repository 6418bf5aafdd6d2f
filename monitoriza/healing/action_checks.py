"""What a healing action may do: render its templates, then check them against the allow-lists.

Pure: nothing here runs anything or talks to the network. :class:`AllowList` renders every
templated field (:mod:`monitoriza.healing.placeholders`: the command's argv element by element,
the HTTP URL, the container name) and checks the rendered result, returning a :data:`Prepared`
action that :mod:`monitoriza.healing.executors` may run, or raising :class:`ActionRefused` with
the reason. The Docker engine URL is never templated: an alert must not choose which engine to
talk to.

``command``
    ``argv[0]``, as rendered, must be exactly one of ``allowed_commands`` (no prefix or
    basename matching), and no argument may contain a NUL.
``http``
    The rendered URL must lie under one of ``allowed_urls``: same scheme, host and port
    (default ports made explicit), and a path equal to the allowed path or below it on a
    ``/`` boundary. A URL with userinfo (``@``), a backslash, whitespace or control
    characters, non-ASCII text, or a path segment that is ``.`` or ``..`` (also when
    percent-encoded, e.g. ``%2e%2e``) or an encoded ``/`` or ``\\`` is refused.
``docker_restart``
    The rendered container name must match Docker's name grammar (:data:`CONTAINER_NAME`).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import SplitResult, unquote, urlsplit

from monitoriza.config.schema import CommandAction, DockerRestartAction, HttpAction
from monitoriza.docker_engine import engine_url
from monitoriza.exceptions import MonitorizaError
from monitoriza.healing.placeholders import ActionContext, PlaceholderError, render

HealingAction = CommandAction | HttpAction | DockerRestartAction

# Docker's own container name grammar (daemon/names: RestrictedNameChars).
CONTAINER_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*")
_DEFAULT_PORTS = {"http": 80, "https": 443}
# Characters never allowed anywhere in an action URL (besides non-ASCII and controls).
_URL_FORBIDDEN = frozenset(" \\\"'<>^`{|}")
# Percent-encoded characters that could change how a server splits the path.
_ENCODED_SEPARATORS = ("/", "\\")


class ActionRefused(MonitorizaError):  # noqa: N818 - a refusal is a verdict, not an error
    """The policy refuses an action: nothing was run. The message says why."""


@dataclass(frozen=True, slots=True)
class _Allowed:
    """One ``allowed_urls`` entry, split for comparison."""

    origin: tuple[str, str, int]
    path: str  # without a trailing "/"; "" allows every path


@dataclass(frozen=True, slots=True)
class PreparedCommand:
    argv: list[str]
    timeout: float


@dataclass(frozen=True, slots=True)
class PreparedHttp:
    method: str
    url: str
    timeout: float


@dataclass(frozen=True, slots=True)
class PreparedRestart:
    container: str
    docker_url: str
    timeout: float


Prepared = PreparedCommand | PreparedHttp | PreparedRestart


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


class AllowList:
    """Renders healing actions for an alert and checks them against the allow-lists.

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

    def prepare(self, action: HealingAction, context: ActionContext) -> Prepared:
        """Render ``action`` for ``context`` and check it; raise :class:`ActionRefused`."""
        try:
            if isinstance(action, CommandAction):
                return self._prepare_command(action, context)
            if isinstance(action, HttpAction):
                return self._prepare_http(action, context)
            return self._prepare_docker(action, context)
        except PlaceholderError as exc:
            raise ActionRefused(f"cannot fill a placeholder: {exc}") from exc

    def _prepare_command(self, action: CommandAction, context: ActionContext) -> PreparedCommand:
        argv = [render(part, context) for part in action.argv]
        if argv[0] not in self.allowed_commands:
            raise ActionRefused(f"command {argv[0]!r} is not in allowed_commands")
        if any("\0" in part for part in argv):
            raise ActionRefused("an argument contains a NUL character")
        return PreparedCommand(argv, action.timeout)

    def _prepare_http(self, action: HttpAction, context: ActionContext) -> PreparedHttp:
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
                return PreparedHttp(action.method, url, action.timeout)
        raise ActionRefused(f"URL {url!r} is not under any of allowed_urls")

    def _prepare_docker(
        self, action: DockerRestartAction, context: ActionContext
    ) -> PreparedRestart:
        container = render(action.container, context)
        if CONTAINER_NAME.fullmatch(container) is None:
            raise ActionRefused(f"{container!r} is not a valid container name")
        docker_url = engine_url(action.docker_url, self.default_docker_url)
        return PreparedRestart(container, docker_url, action.timeout)


def template_target(action: HealingAction) -> str:
    if isinstance(action, CommandAction):
        return action.argv[0]
    if isinstance(action, HttpAction):
        return action.url
    return action.container


def target(prepared: Prepared) -> str:
    if isinstance(prepared, PreparedCommand):
        return prepared.argv[0]
    if isinstance(prepared, PreparedHttp):
        return prepared.url
    return prepared.container


def describe(prepared: Prepared) -> str:
    if isinstance(prepared, PreparedCommand):
        return f"run {shlex.join(prepared.argv)} (timeout {prepared.timeout:g}s)"
    if isinstance(prepared, PreparedHttp):
        return f"{prepared.method} {prepared.url} (timeout {prepared.timeout:g}s)"
    return (
        f"restart container {prepared.container} on {prepared.docker_url} "
        f"(stop timeout {prepared.timeout:g}s)"
    )


