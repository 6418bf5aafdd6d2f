"""Incident posts to a Slack-compatible incoming webhook, sent from a background thread.

The responder must never wait on a chat service: :meth:`ChatNotifier.post` only puts the
message on a bounded queue and returns; one daemon thread delivers it, retrying transient
failures with exponential backoff. Every message that is not delivered is counted in
:meth:`ChatNotifier.stats`, by reason, so a broken webhook is visible and never silent.

The webhook URL is a secret (it carries the token), so it is never logged or put in an
error message.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import requests

from monitoriza.config.schema import Chat
from monitoriza.exceptions import ConfigError
from monitoriza.logs import get_logger, register_secret

log = logging.getLogger(__name__)
events = get_logger(__name__)

# Attachment colours by severity; matched case-insensitively.
SEVERITY_COLORS: Mapping[str, str] = {
    "p2": "#d32f2f",  # red
    "p3": "#f57c00",  # orange
    "p4": "#fbc02d",  # yellow
    "resolved": "#2e7d32",  # green
    "healed": "#2e7d32",  # green
}
UNKNOWN_COLOR = "#9e9e9e"  # grey: no or an unknown severity

# The first retry waits this long; each further retry waits twice as long as the one before.
BACKOFF_INITIAL = 0.5
RATE_WINDOW = 60.0
DEFAULT_QUEUE_SIZE = 100
# Slack answers 429 when rate limited; 5xx are the service's own transient failures.
_RETRY_STATUS = 429


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """One chat post: a title, a body, and short labelled fields shown side by side."""

    title: str
    text: str
    severity: str | None = None  # P2, P3, P4, resolved or healed
    incident_id: int | None = None
    fields: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ChatStats:
    """What became of the messages posted so far (each message is counted at most once)."""

    sent: int = 0
    failed: int = 0  # gave up after the retries, a non-retriable answer, or closed before sent
    dropped_rate_limited: int = 0
    dropped_queue_full: int = 0
    retries: int = 0  # extra attempts made, over all messages


def slack_payload(message: ChatMessage) -> dict[str, Any]:
    """The incoming-webhook JSON for ``message``: a plain fallback line and one attachment."""
    prefix = f"[{message.severity}] " if message.severity else ""
    incident = f" (incident #{message.incident_id})" if message.incident_id is not None else ""
    color = SEVERITY_COLORS.get((message.severity or "").lower(), UNKNOWN_COLOR)
    return {
        "text": f"{prefix}{message.title}{incident}",
        "attachments": [
            {
                "title": message.title,
                "text": message.text,
                "color": color,
                "fields": [
                    {"title": name, "value": value, "short": True}
                    for name, value in message.fields.items()
                ],
            }
        ],
    }


class Notifier(Protocol):
    """What the responder needs from a chat notifier, real or null."""

    def post(self, message: ChatMessage) -> bool: ...

    def stats(self) -> ChatStats: ...

    def close(self, timeout: float = 5.0) -> bool: ...


class NullNotifier:
    """The notifier used when no chat is configured: it accepts nothing and sends nothing."""

    def post(self, message: ChatMessage) -> bool:
        """Return False: nothing will ever be sent."""
        return False

    def stats(self) -> ChatStats:
        """All zero."""
        return ChatStats()

    def close(self, timeout: float = 5.0) -> bool:
        """Nothing to drain; return True."""
        return True


def read_webhook_url(path: str) -> str:
    """The webhook URL held in ``path``; a missing, empty or non-URL file is a config error."""
    try:
        url = Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(
            [f"healing.chat.webhook_url_file: cannot read {path}: {exc.strerror}"]
        ) from None
    if not url:
        raise ConfigError([f"healing.chat.webhook_url_file: {path} is empty"])
    if not url.startswith(("http://", "https://")):
        # The content is not echoed: it may be a mangled secret.
        raise ConfigError(
            [f"healing.chat.webhook_url_file: {path} does not hold an http(s) URL"]
        )
    register_secret(url)  # whatever prints it by mistake, no log line will carry it
    return url


@dataclass(frozen=True, slots=True)
class _Failure:
    """Why one delivery attempt failed, and whether trying again may help."""

    text: str
    retriable: bool


class ChatNotifier:
    """Posts :class:`ChatMessage` objects to a webhook without ever blocking the caller.

    ``clock`` drives the rate limit's sliding minute; ``sleep`` waits between retries (by
    default an interruptible wait that :meth:`close` cuts short when its time is up).
    """

    def __init__(
        self,
        url: str,
        *,
        timeout: float,
        max_per_minute: int,
        retries: int,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], object] | None = None,
        queue_size: int = DEFAULT_QUEUE_SIZE,
    ) -> None:
        if max_per_minute < 1 or retries < 0 or queue_size < 1 or timeout <= 0:
            raise ValueError("need timeout > 0, max_per_minute >= 1, retries >= 0, "
                             "queue_size >= 1")
        self._url = url
        self._timeout = timeout
        self._max_per_minute = max_per_minute
        self._retries = retries
        self._clock = clock
        self._abandon = threading.Event()
        self._sleep: Callable[[float], object] = sleep or self._abandon.wait
        self._queue_size = queue_size
        # Each payload with the incident it is about (for the log line if it fails).
        self._pending: collections.deque[tuple[dict[str, Any], int | None]] = (
            collections.deque())
        self._recent: collections.deque[float] = collections.deque()  # accepted post times
        self._cond = threading.Condition()
        self._closing = False
        self._stats = ChatStats()
        self._thread = threading.Thread(target=self._run, name="chat-notifier", daemon=True)
        self._thread.start()

    @classmethod
    def from_config(cls, config: Chat) -> ChatNotifier:
        """A notifier for the configured webhook, its URL read from ``webhook_url_file``."""
        return cls(
            read_webhook_url(config.webhook_url_file),
            timeout=config.timeout,
            max_per_minute=config.max_per_minute,
            retries=config.retries,
        )

    def __repr__(self) -> str:
        return f"<ChatNotifier {self.stats()}>"  # never the URL: it is a secret

    def post(self, message: ChatMessage) -> bool:
        """Queue ``message`` for sending; return False if it was dropped (or we are closed)."""
        payload = slack_payload(message)
        with self._cond:
            if self._closing:
                events.warning("chat.failed", incident=message.incident_id,
                               title=message.title, attempts=0, reason="notifier closed")
                return False
            now = self._clock()
            while self._recent and self._recent[0] <= now - RATE_WINDOW:
                self._recent.popleft()
            # Beyond the limit we drop rather than delay: during an incident storm a flood of
            # chat messages hides the important ones, and every incident's state is in the
            # API and the audit log anyway.
            if len(self._recent) >= self._max_per_minute:
                self._count("dropped_rate_limited")
                events.warning("chat.failed", incident=message.incident_id,
                               title=message.title, attempts=0,
                               reason=f"rate limit ({self._max_per_minute} a minute) reached")
                return False
            if len(self._pending) >= self._queue_size:
                self._count("dropped_queue_full")
                events.warning("chat.failed", incident=message.incident_id,
                               title=message.title, attempts=0,
                               reason=f"queue full ({self._queue_size} waiting)")
                return False
            self._recent.append(now)
            self._pending.append((payload, message.incident_id))
            self._cond.notify()
        return True

    def stats(self) -> ChatStats:
        """A snapshot of the counters."""
        with self._cond:
            return self._stats

    def close(self, timeout: float = 5.0) -> bool:
        """Send what is queued, then stop the thread; wait at most ``timeout`` seconds.

        Return True when the queue was drained in time. Otherwise retries stop, what is
        still queued is counted as failed, and the thread ends after its request in flight
        (bounded by the request timeout).
        """
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join(timeout)
        if not self._thread.is_alive():
            return True
        self._abandon.set()
        return False

    def _count(self, counter: str, amount: int = 1) -> None:
        # Called with self._cond held.
        self._stats = replace(self._stats, **{counter: getattr(self._stats, counter) + amount})

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closing:
                    self._cond.wait()
                if self._abandon.is_set() or not self._pending:
                    left = len(self._pending)
                    self._pending.clear()
                    if left:
                        self._count("failed", left)
                        log.warning("chat notifier closed with %d message(s) unsent", left)
                    return
                payload, incident = self._pending.popleft()
            try:
                delivered = self._deliver(payload, incident)
            except Exception:  # the thread must outlive any bug in one delivery
                log.exception("chat delivery failed unexpectedly")
                delivered = False
            with self._cond:
                self._count("sent" if delivered else "failed")

    def _deliver(self, payload: dict[str, Any], incident: int | None = None) -> bool:
        """Send one payload, retrying transient failures; return whether it was delivered."""
        delay = BACKOFF_INITIAL
        attempt = 0
        while True:
            reason = self._attempt(payload)
            if reason is None:
                return True
            if attempt >= self._retries or not reason.retriable:
                events.warning("chat.failed", incident=incident, title=payload["text"],
                               attempts=attempt + 1, reason=reason.text)
                return False
            self._sleep(delay)
            if self._abandon.is_set():
                log.warning("chat post %r abandoned at close: %s", payload["text"], reason.text)
                return False
            attempt += 1
            delay *= 2
            with self._cond:
                self._count("retries")

    def _attempt(self, payload: dict[str, Any]) -> _Failure | None:
        """One POST; None on a 2xx answer, else why it failed."""
        try:
            response = requests.post(self._url, json=payload, timeout=self._timeout)
        except requests.RequestException as exc:
            # Only the class name: requests' messages contain the (secret) URL.
            return _Failure(type(exc).__name__, retriable=True)
        with response:
            status = response.status_code
        if 200 <= status < 300:
            return None
        return _Failure(f"HTTP {status}", retriable=status == _RETRY_STATUS or status >= 500)


def notifier_from_config(config: Chat | None) -> Notifier:
    """A :class:`ChatNotifier` for a configured chat, else a :class:`NullNotifier`."""
    return NullNotifier() if config is None else ChatNotifier.from_config(config)
