"""A real ``prometheus-alertmanager`` per test, and an HTTP server that captures what it sends.

The Alertmanager runs a *test copy* of a configuration from ``alertmanager/``: the YAML is
loaded and only URLs and file paths are rewritten -- every webhook, Slack and Telegram
destination points at the :class:`CaptureServer`, every secret file is a file in ``tmp_path``
(the Slack URL files hold capture URLs, the responder token file a random token), and the
template glob is made absolute. ``group_wait`` and ``group_interval`` longer than one second
are shortened to one second so that notifications arrive within a test's patience. Routes,
receivers, matchers, ``repeat_interval`` and the inhibition rules are exactly the production
ones, so what a test observes is what production does, only sooner.

Where the capture server records each destination:

=========================================  =============================================
``/api/v1/alerts``                         the responder webhook (every receiver's)
``/ping``                                  the dead-man's-switch webhook
``/slack/<receiver>``                      a receiver's Slack webhook (``api_url_file``)
``/telegram/<receiver>/bot<token>/<call>``  a receiver's Telegram bot API calls
=========================================  =============================================

Fixtures: :func:`capture_server` (a :class:`CaptureServer`) and :func:`alertmanager_factory`
(an :data:`AlertmanagerFactory`; each call starts an :class:`Alertmanager`). Alertmanager
processes are only ever signalled by their own PID and are all stopped at teardown.
"""

from __future__ import annotations

import copy
import json
import secrets
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

import pytest
import yaml

from tests.support.binaries import free_port, require_binary, stop_process, wait_until
from tests.support.http_server import TrackedHTTPServer

REPO_ROOT = Path(__file__).resolve().parents[2]
ALERTMANAGER_DIR = REPO_ROOT / "alertmanager"
PRODUCTION_CONFIG = ALERTMANAGER_DIR / "alertmanager.yml"
TELEGRAM_CONFIG = ALERTMANAGER_DIR / "examples" / "telegram.yml"

# What the test copy shortens group_wait and group_interval to (when they are longer).
TEST_GROUP_SECONDS = 1
READY_TIMEOUT_SECONDS = 15.0
STOP_TIMEOUT_SECONDS = 10.0
_HTTP_TIMEOUT_SECONDS = 5.0
_JOIN_TIMEOUT_SECONDS = 5.0
_HANDLER_SOCKET_TIMEOUT = 5.0

# Loopback only: never route the test's requests through an HTTP proxy from the environment.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))

# The Telegram bot API answers every call with {"ok": true, "result": ...}; Alertmanager's
# client decodes the result, so the capture answers with a plausible sent message.
_TELEGRAM_REPLY = {
    "ok": True,
    "result": {
        "message_id": 1,
        "date": 0,
        "chat": {"id": -1, "type": "group", "title": "capture"},
        "text": "captured",
    },
}


@dataclass(frozen=True, slots=True)
class CapturedPost:
    """One POST the capture server received."""

    path: str
    headers: dict[str, str]
    body: Any  # the decoded JSON document, or None when the body was not JSON
    raw: bytes

    def header(self, name: str) -> str | None:
        """A request header, looked up case-insensitively."""
        wanted = name.lower()
        for key, value in self.headers.items():
            if key.lower() == wanted:
                return value
        return None


class CaptureServer:
    """An HTTP server on 127.0.0.1 that records every POST and answers 200.

    Answers are ``{"ok": true, "result": ...}`` JSON, which satisfies the webhook and Slack
    notifiers (they only look at the status) and the Telegram bot client (it reads the body).
    """

    def __init__(self) -> None:
        self._posts: list[CapturedPost] = []
        self._lock = threading.Lock()
        self._server = _CaptureHTTPServer(("127.0.0.1", 0), _CaptureHandler)
        self._server.capture = self
        self.port: int = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"alertmanager-capture-{self.port}",
            daemon=True,
        )
        self._thread.start()

    def record(self, post: CapturedPost) -> None:
        with self._lock:
            self._posts.append(post)

    def posts(self, path: str | None = None, *, prefix: str | None = None) -> list[CapturedPost]:
        """Every POST so far, in arrival order; only those to ``path`` or under ``prefix``."""
        with self._lock:
            posts = list(self._posts)
        if path is not None:
            posts = [post for post in posts if post.path == path]
        if prefix is not None:
            posts = [post for post in posts if post.path.startswith(prefix)]
        return posts

    def has(self, predicate: Callable[[CapturedPost], bool]) -> bool:
        """Whether any POST so far satisfies ``predicate``."""
        return any(predicate(post) for post in self.posts())

    def paths(self) -> set[str]:
        """The distinct paths that received a POST."""
        return {post.path for post in self.posts()}

    def wait_for(
        self,
        predicate: Callable[[CapturedPost], bool],
        timeout: float,
        what: str = "a matching POST",
    ) -> list[CapturedPost]:
        """Wait until at least one POST satisfies ``predicate``; return all that do.

        Fails the test (listing what did arrive) when none does within ``timeout`` seconds.
        """
        found: list[CapturedPost] = []

        def arrived() -> bool:
            found[:] = [post for post in self.posts() if predicate(post)]
            return bool(found)

        if not wait_until(arrived, timeout):
            seen = [(post.path, post.body) for post in self.posts()]
            pytest.fail(f"no {what} within {timeout}s; captured: {seen}")
        return found

    def close(self) -> None:
        """Stop serving and wait for the serving thread and every handler thread to end."""
        self._server.shutdown()
        self._thread.join(_JOIN_TIMEOUT_SECONDS)
        self._server.server_close()
        stuck = [self._thread] if self._thread.is_alive() else []
        for handler in self._server.handler_threads:
            handler.join(_JOIN_TIMEOUT_SECONDS)
            if handler.is_alive():
                stuck.append(handler)
        if stuck:
            raise RuntimeError(f"capture server on port {self.port}: threads left: {stuck}")


class _CaptureHTTPServer(TrackedHTTPServer):
    """Knows its :class:`CaptureServer`, whose ``close`` joins the handler threads."""

    capture: CaptureServer


class _CaptureHandler(BaseHTTPRequestHandler):
    # HTTP/1.0 (the default): one request per connection, so no handler thread lingers on an
    # idle keep-alive connection when the server closes.
    timeout = _HANDLER_SOCKET_TIMEOUT

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length > 0 else b""
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = None
        capture = cast(_CaptureHTTPServer, self.server).capture
        capture.record(CapturedPost(self.path, dict(self.headers.items()), body, raw))
        reply = json.dumps(_TELEGRAM_REPLY).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, format: str, *args: object) -> None:
        """Keep the test output clean; the posts are recorded instead."""


def write_test_config(
    source: Path, capture: CaptureServer, directory: Path, token: str
) -> tuple[Path, dict[str, Any]]:
    """Write the test copy of ``source`` into ``directory``; return its path and content.

    Only URLs, file paths and the two grouping timers change (see the module docstring).
    Fails loudly on a receiver kind it does not know how to redirect, and checks at the end
    that no URL or file path of the copy points outside the capture server or ``directory``.
    """
    original: dict[str, Any] = yaml.safe_load(source.read_text(encoding="utf-8"))
    # Deep copy: YAML anchors would otherwise make the rewrite touch shared objects twice.
    config = copy.deepcopy(original)
    secrets_dir = directory / "secrets"
    secrets_dir.mkdir(parents=True, exist_ok=True)

    config["templates"] = [str(source.parent / pattern) for pattern in config.get("templates", [])]
    _shorten_timers(config["route"])

    for receiver in config.get("receivers", []):
        name = receiver["name"]
        for key, entries in receiver.items():
            if key == "name":
                continue
            kind = key.removesuffix("_configs")
            if kind not in {"webhook", "slack", "telegram"}:
                raise ValueError(f"receiver {name}: no test redirect for {key}")
            for entry in entries:
                _redirect(
                    entry,
                    kind=kind,
                    receiver=name,
                    capture=capture,
                    secrets_dir=secrets_dir,
                    token=token,
                )

    _assert_contained(config, capture.url, directory)
    path = directory / "alertmanager.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path, config


def _shorten_timers(route: dict[str, Any]) -> None:
    for key in ("group_wait", "group_interval"):
        if key in route and _seconds(route[key]) > TEST_GROUP_SECONDS:
            route[key] = f"{TEST_GROUP_SECONDS}s"
    for child in route.get("routes", []):
        _shorten_timers(child)


def _seconds(duration: str) -> float:
    """Seconds in a simple Prometheus duration such as ``30s``, ``5m``, ``4h`` or ``0s``."""
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
    for suffix in ("ms", "s", "m", "h", "d"):
        if duration.endswith(suffix):
            return float(duration.removesuffix(suffix)) * units[suffix]
    raise ValueError(f"unsupported duration in the test rewrite: {duration!r}")


def _redirect(
    entry: dict[str, Any],
    *,
    kind: str,
    receiver: str,
    capture: CaptureServer,
    secrets_dir: Path,
    token: str,
) -> None:
    if "url" in entry:  # webhook: same path, on the capture server
        entry["url"] = capture.url + (urlsplit(entry["url"]).path or "/")
    if "api_url_file" in entry:
        url_file = secrets_dir / Path(entry["api_url_file"]).name
        url_file.write_text(f"{capture.url}/{kind}/{receiver}\n", encoding="utf-8")
        entry["api_url_file"] = str(url_file)
    elif kind in {"slack", "telegram"}:
        entry["api_url"] = f"{capture.url}/{kind}/{receiver}"
    authorization = entry.get("http_config", {}).get("authorization")
    if authorization is not None and "credentials_file" in authorization:
        token_file = secrets_dir / Path(authorization["credentials_file"]).name
        token_file.write_text(token + "\n", encoding="utf-8")
        authorization["credentials_file"] = str(token_file)


def _assert_contained(node: object, capture_url: str, directory: Path) -> None:
    """Every URL targets the capture server and every ``*_file`` lives under ``directory``."""
    if isinstance(node, dict):
        for key, value in node.items():
            if isinstance(key, str) and key.endswith("_file") and isinstance(value, str):
                if not Path(value).is_relative_to(directory):
                    raise ValueError(f"test config still reads {key}: {value}")
            elif (
                isinstance(key, str)
                and key.endswith("url")
                and isinstance(value, str)
                and not value.startswith(capture_url)
            ):
                raise ValueError(f"test config still sends to {key}: {value}")
            _assert_contained(value, capture_url, directory)
    elif isinstance(node, list):
        for item in node:
            _assert_contained(item, capture_url, directory)


def alertmanager_argv(binary: str, config_path: Path, directory: Path, port: int,
                      cluster: list[str]) -> list[str]:
    """The command line of one Alertmanager on 127.0.0.1 with its data in ``directory``;
    ``cluster`` holds the --cluster.* flags (``["--cluster.listen-address="]``: no gossip)."""
    storage = directory / "data"
    storage.mkdir(exist_ok=True)
    return [binary, f"--config.file={config_path}", f"--storage.path={storage}",
            f"--web.listen-address=127.0.0.1:{port}", *cluster, "--log.level=debug"]


class Alertmanager:
    """One ``prometheus-alertmanager`` on 127.0.0.1, clustering off, data in its directory."""

    def __init__(
        self,
        binary: str,
        *,
        directory: Path,
        config_path: Path,
        config: dict[str, Any],
        capture: CaptureServer,
        responder_token: str,
    ) -> None:
        self.binary = binary
        self.directory = directory
        self.config_path = config_path
        self.config = config
        self.capture = capture
        self.responder_token = responder_token
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = directory / "alertmanager.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        """PID of the running process, or None when it is not running."""
        process = self._process
        return process.pid if process is not None and process.poll() is None else None

    def start(self) -> None:
        """Start Alertmanager and return once ``/-/ready`` answers 200."""
        # An empty listen address: no gossip, no HA mode, no extra port.
        command = alertmanager_argv(self.binary, self.config_path, self.directory, self.port,
                                    ["--cluster.listen-address="])
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        if not wait_until(self._ready, READY_TIMEOUT_SECONDS, interval=0.1):
            self.stop()
            pytest.fail(f"alertmanager on port {self.port} did not become ready:\n{self.log()}")

    def stop(self) -> None:
        """SIGTERM, wait, then SIGKILL if it is still there; always reap the process."""
        stop_process(self._process, timeout=STOP_TIMEOUT_SECONDS)

    def log(self) -> str:
        """What Alertmanager wrote (debug level), to explain a failure."""
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def errors(self) -> list[str]:
        """Log lines at level error or warn, e.g. a failed notification or template."""
        return [
            line
            for line in self.log().splitlines()
            if "level=error" in line or "level=warn" in line
        ]

    def post_alerts(self, alerts: list[dict[str, Any]]) -> None:
        """POST alerts (``labels``, ``annotations``, optional ``startsAt``/``endsAt``) to v2."""
        status, _ = self._request("POST", "/api/v2/alerts", alerts)
        if status != 200:
            pytest.fail(f"POST /api/v2/alerts answered {status}:\n{self.log()}")

    def alerts(self) -> list[dict[str, Any]]:
        """GET /api/v2/alerts: every alert with its ``status`` (state, inhibitedBy...)."""
        status, body = self._request("GET", "/api/v2/alerts", None)
        if status != 200 or not isinstance(body, list):
            pytest.fail(f"GET /api/v2/alerts answered {status}: {body!r}")
        return cast(list[dict[str, Any]], body)

    def _request(self, method: str, path: str, document: object) -> tuple[int, Any]:
        data = None if document is None else json.dumps(document).encode()
        request = urllib.request.Request(
            self.url + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with _DIRECT.open(request, timeout=_HTTP_TIMEOUT_SECONDS) as response:
                raw = response.read()
                code: int = response.status
                is_json = response.headers.get_content_type() == "application/json"
        except urllib.error.HTTPError as error:
            with error:
                return error.code, error.read().decode(errors="replace")
        if is_json and raw:
            return code, json.loads(raw)
        return code, raw.decode(errors="replace")

    def _ready(self) -> bool:
        if self._process is None or self._process.poll() is not None:
            pytest.fail(f"alertmanager on port {self.port} exited:\n{self.log()}")
        try:
            status, _ = self._request("GET", "/-/ready", None)
        except OSError:
            return False
        return status == 200


AlertmanagerFactory = Callable[..., Alertmanager]


@pytest.fixture
def capture_server() -> Iterator[CaptureServer]:
    """An HTTP server on 127.0.0.1 recording every POST (``.url``, ``.posts()``...)."""
    server = CaptureServer()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def alertmanager_factory(
    tmp_path: Path, capture_server: CaptureServer
) -> Iterator[AlertmanagerFactory]:
    """Start Alertmanagers on test copies of a config: ``alertmanager_factory(TELEGRAM_CONFIG)``.

    The default source is ``alertmanager/alertmanager.yml``. Every Alertmanager started through
    the factory sends to ``capture_server`` and is stopped (by PID) at the end of the test.
    Teardown then fails the test if one logged an error or warning (a notification that
    failed, a template that did not execute), unless it was made with ``allow_errors=True``.
    """
    binary = require_binary("prometheus-alertmanager")
    started: list[Alertmanager] = []
    must_be_clean: list[Alertmanager] = []

    def make(source: Path = PRODUCTION_CONFIG, *, allow_errors: bool = False) -> Alertmanager:
        directory = tmp_path / f"alertmanager-{len(started)}"
        directory.mkdir()
        token = secrets.token_urlsafe(24)
        config_path, config = write_test_config(source, capture_server, directory, token)
        alertmanager = Alertmanager(
            binary,
            directory=directory,
            config_path=config_path,
            config=config,
            capture=capture_server,
            responder_token=token,
        )
        started.append(alertmanager)
        if not allow_errors:
            must_be_clean.append(alertmanager)
        alertmanager.start()
        return alertmanager

    try:
        yield make
    finally:
        for alertmanager in started:
            alertmanager.stop()
    errors = [line for alertmanager in must_be_clean for line in alertmanager.errors()]
    if errors:
        pytest.fail("alertmanager logged errors:\n" + "\n".join(errors))


def alert(
    alertname: str,
    severity: str | None = None,
    *,
    service: str | None = None,
    tier: str | None = None,
    resolved: bool = False,
    **extra_labels: str,
) -> dict[str, Any]:
    """An alert in the v2 API's shape, with the contract's annotations.

    ``resolved=True`` sets ``endsAt`` in the past, which is how Prometheus resolves an alert.
    """
    labels = {"alertname": alertname, **extra_labels}
    for name, value in (("severity", severity), ("service", service), ("tier", tier)):
        if value is not None:
            labels[name] = value
    document: dict[str, Any] = {
        "labels": labels,
        "annotations": {
            "summary": f"{alertname} on {service or 'the monitor'}",
            "description": f"{alertname} fired for a test.",
            "runbook_url": f"https://runbooks.example/{alertname.lower()}",
        },
        "generatorURL": "http://127.0.0.1:9090/graph",
    }
    if resolved:
        past = time.time() - 60
        document["startsAt"] = _rfc3339(past - 60)
        document["endsAt"] = _rfc3339(past)
    return document


def _rfc3339(timestamp: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))
