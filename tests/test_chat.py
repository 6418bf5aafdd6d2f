"""Chat notifications: the Slack payload, and background delivery to a real local webhook.

The webhook is a real HTTP server on 127.0.0.1 that records every JSON body it receives and
can be told to fail the first N requests, to hold requests until released, or be closed.
Backoff sleeps are recorded instead of slept; the rate limit's minute is a fake clock.
"""

from __future__ import annotations

import json
import socketserver
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, cast

import pytest

from monitoriza.config.schema import Chat
from monitoriza.exceptions import ConfigError
from monitoriza.healing.chat import (
    ChatMessage,
    ChatNotifier,
    ChatStats,
    NullNotifier,
    notifier_from_config,
    slack_payload,
)
from tests.support.http_targets import HungTcpTarget

_JOIN_TIMEOUT = 5.0


class Receiver:
    """A webhook that records JSON bodies; fails the first ``fail_first`` with ``fail_status``."""

    def __init__(self, *, fail_first: int = 0, fail_status: int = 500) -> None:
        self.fail_first = fail_first
        self.fail_status = fail_status
        self.bodies: list[Any] = []  # every request's body, failed ones included
        self.arrived = threading.Event()  # set when any request has come in
        self.gate = threading.Event()  # while clear, requests wait before answering
        self.gate.set()
        self.lock = threading.Lock()
        self._server = _ReceiverServer(("127.0.0.1", 0), _ReceiverHandler)
        self._server.receiver = self
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hooks/chat"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        self._closed = False

    @property
    def requests(self) -> int:
        """How many requests have arrived."""
        with self.lock:
            return len(self.bodies)

    def close(self) -> None:
        """Release held requests, stop serving, and join every handler thread."""
        if self._closed:
            return
        self._closed = True
        self.gate.set()
        self._server.shutdown()
        self._thread.join(_JOIN_TIMEOUT)
        self._server.server_close()  # joins handler threads (block_on_close)
        assert not self._thread.is_alive()


class _ReceiverServer(ThreadingHTTPServer):
    daemon_threads = False
    block_on_close = True
    receiver: Receiver

    def server_bind(self) -> None:
        # HTTPServer.server_bind does a reverse DNS lookup we do not need.
        socketserver.TCPServer.server_bind(self)
        self.server_name = "127.0.0.1"
        self.server_port = int(self.server_address[1])


class _ReceiverHandler(BaseHTTPRequestHandler):
    timeout = 2.0

    def do_POST(self) -> None:
        receiver = cast(_ReceiverServer, self.server).receiver
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with receiver.lock:
            receiver.bodies.append(body)
            number = len(receiver.bodies)
        receiver.arrived.set()
        receiver.gate.wait(_JOIN_TIMEOUT)
        status = receiver.fail_status if number <= receiver.fail_first else 200
        try:
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")
        except OSError:
            pass  # the client gave up waiting, as it should

    def log_message(self, format: str, *args: object) -> None:
        """Keep test output clean."""


class FakeClock:
    """A monotonic clock that moves only when a test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll ``predicate`` until it holds; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout} s")
        time.sleep(0.01)


MakeReceiver = Callable[..., Receiver]
MakeNotifier = Callable[..., ChatNotifier]


@pytest.fixture
def make_receiver() -> Iterator[MakeReceiver]:
    """Start receivers on demand; every one is closed at teardown."""
    started: list[Receiver] = []

    def make(**kwargs: Any) -> Receiver:
        receiver = Receiver(**kwargs)
        started.append(receiver)
        return receiver

    yield make
    for receiver in started:
        receiver.close()


@pytest.fixture
def sleeps() -> list[float]:
    """The backoff delays a notifier asked for, in order (nothing is actually slept)."""
    return []


@pytest.fixture
def make_notifier(sleeps: list[float]) -> Iterator[MakeNotifier]:
    """Build notifiers with test defaults and recorded sleeps; each is closed at teardown."""
    started: list[ChatNotifier] = []

    def make(url: str, **kwargs: Any) -> ChatNotifier:
        options: dict[str, Any] = {
            "timeout": 2.0, "max_per_minute": 100, "retries": 3, "sleep": sleeps.append,
        }
        options.update(kwargs)
        notifier = ChatNotifier(url, **options)
        started.append(notifier)
        return notifier

    yield make
    for notifier in started:
        assert notifier.close(_JOIN_TIMEOUT)


def message(title: str = "backend down", **kwargs: Any) -> ChatMessage:
    """A P2 message with one field unless overridden."""
    options: dict[str, Any] = {
        "text": "HTTP probe failing for 2m", "severity": "P2", "incident_id": 42,
        "fields": {"service": "backend"},
    }
    options.update(kwargs)
    return ChatMessage(title, **options)


class TestSlackPayload:
    """The payload is a fallback line plus one attachment coloured by severity."""

    def test_shape(self) -> None:
        """Title, text and fields land where an incoming webhook expects them."""
        payload = slack_payload(
            ChatMessage("backend down", "probe failing", "P2", 42,
                        {"service": "backend", "action": "restart"})
        )
        assert payload == {
            "text": "[P2] backend down (incident #42)",
            "attachments": [
                {
                    "title": "backend down",
                    "text": "probe failing",
                    "color": "#d32f2f",
                    "fields": [
                        {"title": "service", "value": "backend", "short": True},
                        {"title": "action", "value": "restart", "short": True},
                    ],
                }
            ],
        }
        json.dumps(payload)  # serialisable as is

    @pytest.mark.parametrize(
        ("severity", "color"),
        [
            ("P2", "#d32f2f"),
            ("P3", "#f57c00"),
            ("P4", "#fbc02d"),
            ("resolved", "#2e7d32"),
            ("healed", "#2e7d32"),
            ("p3", "#f57c00"),
            ("weird", "#9e9e9e"),
            (None, "#9e9e9e"),
        ],
    )
    def test_color_by_severity(self, severity: str | None, color: str) -> None:
        """P2 red, P3 orange, P4 yellow, resolved/healed green, anything else grey."""
        payload = slack_payload(ChatMessage("t", "x", severity, None, {}))
        assert payload["attachments"][0]["color"] == color

    def test_fallback_without_severity_or_incident(self) -> None:
        """The fallback line is just the title when there is nothing to add."""
        payload = slack_payload(ChatMessage("disk filling", "", None, None, {}))
        assert payload["text"] == "disk filling"
        assert payload["attachments"][0]["fields"] == []


class TestDelivery:
    """Messages reach the webhook; transient failures are retried with doubling backoff."""

    def test_post_arrives_with_slack_shape(
        self, make_receiver: MakeReceiver, make_notifier: MakeNotifier, sleeps: list[float]
    ) -> None:
        """One post arrives once, as the Slack payload, and is counted as sent."""
        receiver = make_receiver()
        notifier = make_notifier(receiver.url)
        assert notifier.post(message()) is True
        assert notifier.close(_JOIN_TIMEOUT)
        assert receiver.bodies == [slack_payload(message())]
        assert notifier.stats() == ChatStats(sent=1)
        assert sleeps == []

    @pytest.mark.parametrize("status", [500, 503, 429])
    def test_transient_failure_then_success(
        self, make_receiver: MakeReceiver, make_notifier: MakeNotifier, sleeps: list[float],
        status: int,
    ) -> None:
        """A 5xx or 429 followed by a 200 delivers the message once, after one retry."""
        receiver = make_receiver(fail_first=1, fail_status=status)
        notifier = make_notifier(receiver.url)
        notifier.post(message())
        assert notifier.close(_JOIN_TIMEOUT)
        assert receiver.requests == 2
        assert notifier.stats() == ChatStats(sent=1, retries=1)
        assert sleeps == [0.5]

    def test_backoff_doubles(
        self, make_receiver: MakeReceiver, make_notifier: MakeNotifier, sleeps: list[float]
    ) -> None:
        """Each retry waits twice as long as the one before, starting at 0.5 s."""
        receiver = make_receiver(fail_first=3)
        notifier = make_notifier(receiver.url, retries=3)
        notifier.post(message())
        assert notifier.close(_JOIN_TIMEOUT)
        assert sleeps == [0.5, 1.0, 2.0]
        assert notifier.stats() == ChatStats(sent=1, retries=3)

    def test_gives_up_after_retries(
        self, make_receiver: MakeReceiver, make_notifier: MakeNotifier, sleeps: list[float]
    ) -> None:
        """After ``retries`` retries the message is counted as failed, and the next one goes."""
        receiver = make_receiver(fail_first=3)
        notifier = make_notifier(receiver.url, retries=2)
        notifier.post(message("first"))
        notifier.post(message("second"))
        assert notifier.close(_JOIN_TIMEOUT)
        assert receiver.requests == 4
        assert notifier.stats() == ChatStats(sent=1, failed=1, retries=2)
        assert [body["attachments"][0]["title"] for body in receiver.bodies] == [
            "first", "first", "first", "second"
        ]

    def test_client_error_is_not_retried(
        self, make_receiver: MakeReceiver, make_notifier: MakeNotifier, sleeps: list[float]
    ) -> None:
        """A 404 (a wrong or revoked webhook) fails at once: retrying cannot fix it."""
        receiver = make_receiver(fail_first=1, fail_status=404)
        notifier = make_notifier(receiver.url)
        notifier.post(message())
        assert notifier.close(_JOIN_TIMEOUT)
        assert receiver.requests == 1
        assert notifier.stats() == ChatStats(failed=1)
        assert sleeps == []


class TestUnreachableWebhook:
    """A dead or hung webhook never blocks the caller; the failure is counted, not raised."""

    def test_receiver_down(
        self, make_receiver: MakeReceiver, make_notifier: MakeNotifier, sleeps: list[float]
    ) -> None:
        """With nothing listening, post() returns at once and the failure follows the retries."""
        receiver = make_receiver()
        receiver.close()  # the port is now closed: connections are refused
        notifier = make_notifier(receiver.url, retries=2)
        start = time.monotonic()
        assert notifier.post(message()) is True
        assert time.monotonic() - start < 0.05
        wait_until(lambda: notifier.stats().failed == 1)
        assert notifier.stats() == ChatStats(failed=1, retries=2)
        assert sleeps == [0.5, 1.0]

    def test_receiver_hangs(
        self, hung_tcp_target: HungTcpTarget, make_notifier: MakeNotifier
    ) -> None:
        """Against a server that never answers, post() returns at once; each try times out."""
        notifier = make_notifier(hung_tcp_target.url, timeout=0.3, retries=1)
        start = time.monotonic()
        assert notifier.post(message()) is True
        assert time.monotonic() - start < 0.05
        assert notifier.stats().failed == 0
        wait_until(lambda: notifier.stats().failed == 1)
        assert time.monotonic() - start >= 0.6  # two attempts, each given up after 0.3 s
        assert notifier.stats() == ChatStats(failed=1, retries=1)
        assert hung_tcp_target.accepted >= 1


class TestRateLimit:
    """At most ``max_per_minute`` messages are sent per sliding minute; the rest are dropped."""

    def test_burst_beyond_limit_is_dropped(
        self, make_receiver: MakeReceiver, make_notifier: MakeNotifier
    ) -> None:
        """Posting 10 within a minute with a limit of 3 sends 3 and drops 7."""
        receiver = make_receiver()
        clock = FakeClock()
        notifier = make_notifier(receiver.url, max_per_minute=3, clock=clock)
        accepted = [notifier.post(message(f"m{i}")) for i in range(10)]
        assert accepted == [True] * 3 + [False] * 7
        assert notifier.close(_JOIN_TIMEOUT)
        assert notifier.stats() == ChatStats(sent=3, dropped_rate_limited=7)
        assert [body["attachments"][0]["title"] for body in receiver.bodies] == ["m0", "m1", "m2"]

    def test_window_slides(
        self, make_receiver: MakeReceiver, make_notifier: MakeNotifier
    ) -> None:
        """A slot frees up exactly one minute after the send that took it."""
        receiver = make_receiver()
        clock = FakeClock()
        notifier = make_notifier(receiver.url, max_per_minute=2, clock=clock)
        assert notifier.post(message("a"))
        clock.now += 30
        assert notifier.post(message("b"))
        clock.now += 29.9
        assert not notifier.post(message("dropped"))
        clock.now += 0.1  # 60 s after "a"
        assert notifier.post(message("c"))
        assert not notifier.post(message("dropped"))
        assert notifier.close(_JOIN_TIMEOUT)
        assert notifier.stats() == ChatStats(sent=3, dropped_rate_limited=2)
        assert receiver.requests == 3


class TestQueue:
    """The queue is bounded; close() drains it, or gives up on it when time runs out."""

    def test_full_queue_drops(
        self, make_receiver: MakeReceiver, make_notifier: MakeNotifier
    ) -> None:
        """While one message is in flight and the queue holds 2, further posts are dropped."""
        receiver = make_receiver()
        receiver.gate.clear()
        notifier = make_notifier(receiver.url, queue_size=2)
        assert notifier.post(message("in flight"))
        assert receiver.arrived.wait(_JOIN_TIMEOUT)
        assert [notifier.post(message(f"q{i}")) for i in range(4)] == [True, True, False, False]
        assert notifier.stats() == ChatStats(dropped_queue_full=2)
        receiver.gate.set()
        assert notifier.close(_JOIN_TIMEOUT)
        assert notifier.stats() == ChatStats(sent=3, dropped_queue_full=2)
        assert receiver.requests == 3

    def test_close_drains(
        self, make_receiver: MakeReceiver, make_notifier: MakeNotifier
    ) -> None:
        """close() returns once everything queued has been delivered; later posts are refused."""
        receiver = make_receiver()
        receiver.gate.clear()
        notifier = make_notifier(receiver.url)
        for i in range(5):
            assert notifier.post(message(f"m{i}"))
        opener = threading.Timer(0.1, receiver.gate.set)
        opener.start()
        assert notifier.close(_JOIN_TIMEOUT) is True
        opener.join()
        assert receiver.requests == 5
        assert notifier.stats() == ChatStats(sent=5)
        assert notifier.post(message("late")) is False

    def test_close_timeout_abandons_the_rest(
        self, make_receiver: MakeReceiver, make_notifier: MakeNotifier
    ) -> None:
        """When close() runs out of time, what is left is counted as failed, not lost silently."""
        receiver = make_receiver()
        receiver.gate.clear()
        notifier = make_notifier(receiver.url, timeout=0.5)
        for i in range(3):
            notifier.post(message(f"m{i}"))
        assert receiver.arrived.wait(_JOIN_TIMEOUT)
        start = time.monotonic()
        assert notifier.close(0.1) is False
        assert time.monotonic() - start < 0.3
        wait_until(lambda: notifier.stats().failed == 3)
        assert notifier.stats() == ChatStats(failed=3)
        assert receiver.requests == 1

    def test_close_cuts_backoff_short(self, make_receiver: MakeReceiver) -> None:
        """The default backoff sleep wakes when close() gives up, instead of sleeping on."""
        receiver = make_receiver(fail_first=100)
        notifier = ChatNotifier(receiver.url, timeout=2.0, max_per_minute=10, retries=3)
        notifier.post(message())
        wait_until(lambda: receiver.requests == 1)
        start = time.monotonic()
        assert notifier.close(0.1) is False
        wait_until(lambda: notifier.stats().failed == 1, timeout=1.0)
        assert time.monotonic() - start < 0.5  # not the 3.5 s the backoff would take
        assert notifier.stats() == ChatStats(failed=1)


class TestFromConfig:
    """The webhook URL comes from a file; a bad file is a configuration error naming it."""

    def test_reads_url_file(self, tmp_path: Path, make_receiver: MakeReceiver) -> None:
        """The URL (surrounding whitespace stripped) and the settings come from the config."""
        receiver = make_receiver()
        url_file = tmp_path / "chat.url"
        url_file.write_text(f"  {receiver.url}\n", encoding="utf-8")
        config = Chat.model_validate({"webhook_url_file": str(url_file), "timeout": "2s"})
        notifier = ChatNotifier.from_config(config)
        try:
            assert notifier.post(message())
        finally:
            assert notifier.close(_JOIN_TIMEOUT)
        assert notifier.stats() == ChatStats(sent=1)
        assert receiver.bodies == [slack_payload(message())]

    def test_missing_file(self, tmp_path: Path) -> None:
        """A missing file names the file and the setting."""
        path = tmp_path / "absent.url"
        with pytest.raises(ConfigError, match="webhook_url_file:") as info:
            ChatNotifier.from_config(Chat(webhook_url_file=str(path)))
        assert str(path) in str(info.value)

    def test_empty_file(self, tmp_path: Path) -> None:
        """An empty (or blank) file is refused, naming the file."""
        path = tmp_path / "empty.url"
        path.write_text(" \n", encoding="utf-8")
        with pytest.raises(ConfigError, match="is empty") as info:
            ChatNotifier.from_config(Chat(webhook_url_file=str(path)))
        assert str(path) in str(info.value)

    def test_not_a_url(self, tmp_path: Path) -> None:
        """A file without an http(s) URL is refused without echoing its (secret) content."""
        path = tmp_path / "bad.url"
        path.write_text("xoxb-secret-token", encoding="utf-8")
        with pytest.raises(ConfigError, match="does not hold an http") as info:
            ChatNotifier.from_config(Chat(webhook_url_file=str(path)))
        assert "xoxb" not in str(info.value)

    def test_no_chat_configured(self) -> None:
        """Without a chat section the notifier is a null one that accepts and sends nothing."""
        notifier = notifier_from_config(None)
        assert isinstance(notifier, NullNotifier)
        assert notifier.post(message()) is False
        assert notifier.stats() == ChatStats()
        assert notifier.close() is True
