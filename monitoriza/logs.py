"""Structured logs for every ``monitoriza`` process (docs/logging.md).

One handler on the root logger renders every line, whether it comes from a structlog event
(``events.info("incident.opened", incident=7)``) or from the standard library's ``logging``
that most modules use: JSON lines when stderr is not a terminal (a service, a pipe, a log
file), an aligned console format on a terminal. Both kinds of line carry ``timestamp``,
``level``, ``logger`` and whatever is bound in the context (the healer binds ``incident``
while it works on one), so one incident's lines share its id.

Secrets never reach a line: a value under a secret-looking key (``token``, ``password``,
``authorization``, ``webhook_url``...) is replaced, a password inside a URL is masked as
:func:`monitoriza.exporter.probes.common.redact` does, a bearer token after ``Bearer`` is
masked, and any value registered with :func:`register_secret` (the chat webhook URL, for one)
is cut out of every string, tracebacks included.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
import threading
from collections.abc import Iterable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TextIO

import structlog
from structlog.stdlib import ProcessorFormatter
from structlog.typing import EventDict, Processor, WrappedLogger

if TYPE_CHECKING:
    from monitoriza.config.schema import Config

LogFormat = Literal["json", "console"]
FORMATS = ("auto", "json", "console")
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
MASK = "***"
# Keys whose value is a secret whatever it holds (compared lower-case, ``-`` read as ``_``).
SECRET_KEYS = frozenset({"token", "password", "passwd", "secret", "authorization",
                         "webhook_url", "url_secret", "api_key", "cookie", "session_secret"})
_URL_PASSWORD = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^/\s:@]*):"
                           r"(?P<password>[^/\s@]+)@")
_BEARER = re.compile(r"\b(Bearer|bearer|BEARER|Basic)\s+[A-Za-z0-9._~+/=-]{8,}")
# Shorter registered values are ignored: cutting "on" out of every line would ruin them.
MIN_SECRET_CHARS = 8
_FIRST_KEYS = ("timestamp", "level", "logger", "event")

_secrets_lock = threading.Lock()
_secrets: frozenset[str] = frozenset()


def register_secret(value: str) -> None:
    """Cut ``value`` out of every log line from now on (a webhook URL, a token read from a
    file). Values shorter than :data:`MIN_SECRET_CHARS` are ignored."""
    global _secrets  # noqa: PLW0603 - one registry per process, read on every line
    value = value.strip()
    if len(value) >= MIN_SECRET_CHARS:
        with _secrets_lock:
            _secrets = _secrets | {value}


def scrub(text: str) -> str:
    """``text`` with registered secrets, URL passwords and bearer tokens masked."""
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    if "://" in text:
        text = _URL_PASSWORD.sub(rf"\g<scheme>\g<user>:{MASK}@", text)
    if "earer" in text or "EARER" in text or "Basic" in text:
        text = _BEARER.sub(rf"\1 {MASK}", text)
    return text


def _is_secret_key(key: str) -> bool:
    name = key.lower().replace("-", "_")
    return name in SECRET_KEYS or name.endswith(("_token", "_password", "_secret"))


def _scrubbed(value: object) -> object:
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {key: MASK if isinstance(key, str) and _is_secret_key(key) else _scrubbed(item)
                for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_scrubbed(item) for item in value]
    return value


def scrub_secrets(logger: WrappedLogger, method: str, event_dict: EventDict) -> EventDict:
    """The processor that masks secrets in every field of a line (the last before rendering)."""
    del logger, method
    # The fields every line has come first, so that lines read alike (and jq users know
    # where to look); the event's own fields follow in the order they were given.
    ordered = {key: event_dict.pop(key) for key in _FIRST_KEYS if key in event_dict}
    ordered.update(event_dict)
    return {key: MASK if _is_secret_key(key) else _scrubbed(value)
            for key, value in ordered.items()}


def resolve_format(requested: str, stream: TextIO) -> LogFormat:
    """``auto`` is console on a terminal and JSON lines otherwise; ValueError for others."""
    if requested == "auto":
        isatty = getattr(stream, "isatty", None)
        return "console" if isatty is not None and isatty() else "json"
    if requested in ("json", "console"):
        return "json" if requested == "json" else "console"
    raise ValueError(f"log format must be one of {', '.join(FORMATS)}, got {requested!r}")


# What every line gets, from structlog or from the standard library.
_SHARED: list[Processor] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_logger_name,
    structlog.stdlib.add_log_level,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]
_EVENT_CHAIN: list[Processor] = [
    structlog.stdlib.filter_by_level,
    *_SHARED,
    ProcessorFormatter.wrap_for_formatter,
]


def _renderer(log_format: LogFormat, stream: TextIO) -> Processor:
    if log_format == "json":
        return structlog.processors.JSONRenderer(sort_keys=False)
    colors = bool(getattr(stream, "isatty", lambda: False)())
    # Plain tracebacks: the default rich one prints local variables, which may hold secrets.
    return structlog.dev.ConsoleRenderer(colors=colors,
                                         exception_formatter=structlog.dev.plain_traceback)


def formatter(log_format: LogFormat, stream: TextIO) -> ProcessorFormatter:
    """The ``logging.Formatter`` that renders both structlog events and stdlib records."""
    return ProcessorFormatter(
        foreign_pre_chain=_SHARED,
        processors=[ProcessorFormatter.remove_processors_meta,
                    structlog.processors.format_exc_info,  # before scrubbing: tracebacks too
                    scrub_secrets,
                    _renderer(log_format, stream)])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``--log-level`` and ``--log-format``, global options of the command line."""
    parser.add_argument("--log-level", default="INFO", choices=list(LEVELS))
    parser.add_argument("--log-format", default="auto", choices=list(FORMATS),
                        help="json (one JSON object a line) or console; auto (the default) "
                             "is console on a terminal and json otherwise")


def configure(level: str = "INFO", log_format: str = "auto",
              stream: TextIO | None = None) -> LogFormat:
    """Send every log line of this process to ``stream`` (stderr) in ``log_format``.

    Replaces the root logger's handlers, so calling it again (a test) reconfigures rather
    than doubling lines. Returns the format chosen."""
    if level.upper() not in LEVELS:
        raise ValueError(f"log level must be one of {', '.join(LEVELS)}, got {level!r}")
    stream = stream if stream is not None else sys.stderr
    chosen = resolve_format(log_format, stream)
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter(chosen, stream))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    structlog.configure(processors=_EVENT_CHAIN,
                        logger_factory=structlog.stdlib.LoggerFactory(),
                        wrapper_class=structlog.stdlib.BoundLogger,
                        cache_logger_on_first_use=False)
    return chosen


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    """A bound logger for events, routed through the standard library like every other line
    (so it obeys ``--log-level`` and is rendered by :func:`configure`'s handler), whether or
    not :func:`configure` has run: in-process tests get ordinary ``logging`` records."""
    logger: structlog.stdlib.BoundLogger = structlog.wrap_logger(
        logging.getLogger(name), processors=_EVENT_CHAIN,
        wrapper_class=structlog.stdlib.BoundLogger)
    return logger


def bound_incident(incident: int | None, **more: Any) -> AbstractContextManager[None]:
    """A context manager binding ``incident`` (and ``more``) to every line logged inside it,
    structlog's and the standard library's alike, in this thread."""
    return structlog.contextvars.bound_contextvars(incident=incident, **more)


def first(values: Iterable[str], limit: int = 20) -> list[str]:
    """At most ``limit`` of ``values``: a storm's lists stay one readable line."""
    out: list[str] = []
    for value in values:
        if len(out) >= limit:
            break
        out.append(value)
    return out


def log_config_loaded(events: structlog.stdlib.BoundLogger, config: Config, path: Path, *,
                      reload: bool) -> None:
    """``config.loaded`` on ``events``: which file, and how much of the estate it describes
    (the exporter at start and on each reload; the responder at start)."""
    events.info("config.loaded", path=str(path), reload=reload,
                services=len(config.services),
                probes=sum(len(service.probes) for service in config.services.values()),
                forecasts=len(config.forecasts))
