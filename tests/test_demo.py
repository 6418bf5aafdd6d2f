"""The simulated Conecta Plus of ``monitoriza up --demo``: health answers as pure functions,
then the demo server, its faults, and the chat inbox against real Redis, Docker and probes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
import requests

from monitoriza.config.schema import HttpProbe
from monitoriza.demo import DemoError
from monitoriza.demo.faults import KINDS, apply_fault
from monitoriza.demo.health import (
    BASE_DISK_RATIO,
    DISK_NOISE,
    HealthAnswer,
    disk_ratio,
    faults_after_reconnect,
    health_answer,
)
from monitoriza.demo.layout import (
    ContainerService,
    DemoLayout,
    HttpService,
    RedisService,
    chat_path,
    faults_path,
    layout_from_json,
    load_layout,
    read_faults,
    services_path,
    write_faults,
    write_layout,
)
from monitoriza.demo.server import DISK_METRIC, FaultBoard, serve
from monitoriza.exporter.probes.base import Deadline
from monitoriza.exporter.probes.http import create as create_http_probe
from tests.support.binaries import free_port, require_binary, stop_process, wait_until
from tests.support.dockerd import DockerEngine
from tests.support.exposition import promtool_check_metrics, value
from tests.support.redis_server import RedisServer
from tests.support.stack import free_base_port

HOST = "127.0.0.1"
BACKEND = HttpService("backend", 1, ("database", "redis"), redis_port=2)
FRONTEND = HttpService("frontend", 3)
GUARDIAN = HttpService("guardian", 4, ("cameras", "recorder"))


def body(status: str, **components: str) -> dict[str, Any]:
    document: dict[str, Any] = {"status": status}
    if components:
        document["components"] = {name: {"status": state} for name, state in components.items()}
    return document


class TestHealthAnswers:
    @pytest.mark.parametrize(
        ("service", "faults", "redis_up", "expected"),
        [
            (BACKEND, (), True, body("UP", database="UP", redis="UP")),
            (BACKEND, (), False, body("DEGRADED", database="UP", redis="DOWN")),
            (BACKEND, ("unknown-component",), True, body("UP", database="UP", redis="UNKNOWN")),
            (BACKEND, ("unknown-component",), False, body("UP", database="UP", redis="UNKNOWN")),
            (GUARDIAN, ("unknown-component",), None,
             body("UP", cameras="UNKNOWN", recorder="UP")),
            (GUARDIAN, ("fill-disk",), None, body("UP", cameras="UP", recorder="UP")),
            (FRONTEND, (), None, body("UP")),
        ],
    )
    def test_health_body(
        self, service: HttpService, faults: tuple[str, ...], redis_up: bool | None,
        expected: dict[str, Any],
    ) -> None:
        """A user sees 200 and each component's status: Redis down shows as redis DOWN on a
        still-answering backend; the Conecta bug shows the redis (else first) component UNKNOWN."""
        answer = health_answer(service, faults, redis_up)
        assert answer == HealthAnswer(200, expected, 0.0)

    def test_slow_delays_and_down_answers_nothing(self) -> None:
        """``slow`` answers after 2.5 s, past the 2 s probe timeout; ``down`` answers nothing."""
        slow = health_answer(BACKEND, ("slow",), True)
        assert slow is not None
        assert slow.delay_seconds == 2.5
        assert health_answer(BACKEND, ("down", "slow"), True) is None

    @pytest.mark.parametrize(
        ("fill_seconds", "noise", "expected"),
        [
            (None, 0.0, 0.40),
            (None, 1.0, 0.405),
            (None, -7.0, 0.395),  # noise is clamped to its band
            (0.0, 1.0, 0.40),  # no noise while filling
            (10.0, 0.0, 0.45),
            (110.0, 0.0, 0.95),
            (500.0, 0.0, 1.0),
        ],
    )
    def test_disk_ratio(self, fill_seconds: float | None, noise: float, expected: float) -> None:
        """The disk sits at 40 % with a little noise, and fills at 0.5 % a second to 100 %."""
        assert disk_ratio(fill_seconds, noise) == pytest.approx(expected)

    def test_reconnect_ends_only_the_unknown_component_fault(self) -> None:
        """Healing's reconnect of the hidden component cures the Conecta bug, nothing else."""
        faults = ("slow", "unknown-component")
        assert faults_after_reconnect(BACKEND, faults, "redis") == ("slow",)
        assert faults_after_reconnect(BACKEND, faults, "database") == faults


EXAMPLE_LAYOUT = {
    "host": "127.0.0.1",
    "chat_port": 18090,
    "http": [
        {"name": "backend", "port": 18081, "components": ["database", "redis"],
         "redis_port": 16379},
        {"name": "frontend", "port": 18082, "components": []},
    ],
    "redis": {"name": "redis", "port": 16379, "pidfile": "/abs/RUN/redis/redis.pid"},
    "container": {"name": "guardian-recorder", "container": "conecta-guardian-recorder",
                  "fault_dir": "/abs/RUN/demo/guardian-recorder",
                  "docker_host": "unix:///abs/docker.sock"},
}


class TestLayout:
    def test_example_round_trips(self, tmp_path: Path) -> None:
        """The documented services.json is read as written, and written back the same."""
        layout = layout_from_json(EXAMPLE_LAYOUT, "services.json")
        assert layout.http[0] == HttpService("backend", 18081, ("database", "redis"), 16379)
        assert layout.redis == RedisService("redis", 16379, Path("/abs/RUN/redis/redis.pid"))
        assert layout.service_names() == ("backend", "frontend", "redis", "guardian-recorder")
        write_layout(tmp_path, layout)
        assert load_layout(tmp_path) == layout
        assert json.loads(services_path(tmp_path).read_text()) == EXAMPLE_LAYOUT

    @pytest.mark.parametrize(
        ("change", "message"),
        [
            ({"colour": "red"}, "unknown key 'colour'"),
            ({"chat_port": 0}, "chat_port: must be a port number"),
            ({"http": [{"name": "a", "port": True}]}, "http[0].port: must be a port number"),
            ({"http": [{"name": "a", "port": 1}, {"name": "a", "port": 2}]},
             "service name 'a' appears twice"),
            ({"http": [{"name": "a", "port": 18090}]}, "listening port '18090' appears twice"),
            ({"redis": {"name": "redis", "port": 1, "pidfile": "redis.pid"}},
             "redis.pidfile: must be an absolute path"),
            ({"container": {"name": "c"}}, "container: missing key"),
        ],
    )
    def test_bad_layout_is_refused_by_name(self, change: dict[str, Any], message: str) -> None:
        """A mistake in services.json is an error naming the file and the key, not ignored."""
        with pytest.raises(DemoError, match=r"^services\.json: ") as caught:
            layout_from_json(EXAMPLE_LAYOUT | change, "services.json")
        assert message in str(caught.value)

    def test_missing_or_broken_files_name_the_file(self, tmp_path: Path) -> None:
        """Without a demo in the run directory, or with broken JSON, the error names the file."""
        with pytest.raises(DemoError, match=r"services\.json: not found"):
            load_layout(tmp_path)
        faults_path(tmp_path).parent.mkdir(parents=True)
        faults_path(tmp_path).write_text("{not json")
        with pytest.raises(DemoError, match=r"faults\.json: not valid JSON"):
            read_faults(tmp_path)
        faults_path(tmp_path).write_text('{"backend": ["on-fire"]}')
        with pytest.raises(DemoError, match="unknown fault on-fire"):
            read_faults(tmp_path)

    def test_faults_round_trip(self, tmp_path: Path) -> None:
        """No faults file is no faults; services without faults are not written."""
        assert read_faults(tmp_path) == {}
        write_faults(tmp_path, {"backend": ["slow", "down", "slow"], "frontend": []})
        assert read_faults(tmp_path) == {"backend": ("down", "slow")}

    def test_hand_broken_faults_file_keeps_the_last_good_faults(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A faults.json broken by hand does not crash the server or drop active faults."""
        board = FaultBoard(tmp_path)
        write_faults(tmp_path, {"backend": ["slow"]})
        assert board.faults("backend") == ("slow",)
        faults_path(tmp_path).write_text("[]")
        assert board.faults("backend") == ("slow",)
        assert "ignoring" in capsys.readouterr().err


@dataclass
class Demo:
    """A demo server running in a thread of the test process."""

    run_dir: Path
    layout: DemoLayout

    def url(self, service: str) -> str:
        if service == "chat":
            return f"http://{HOST}:{self.layout.chat_port}"
        found = self.layout.http_service(service)
        assert found is not None
        return f"http://{HOST}:{found.port}"

    def health(self, service: str, timeout: float = 5.0) -> dict[str, Any]:
        response = requests.get(f"{self.url(service)}/health", timeout=timeout)
        assert response.status_code == 200
        document: dict[str, Any] = response.json()
        return document

    def components(self, service: str) -> dict[str, str]:
        return {name: c["status"] for name, c in self.health(service)["components"].items()}

    def metrics(self, service: str) -> str:
        response = requests.get(f"{self.url(service)}/metrics", timeout=5)
        assert response.status_code == 200
        return response.text

    def disk(self, service: str) -> float:
        found = value(self.metrics(service), DISK_METRIC, {"service": service})
        assert found is not None
        return found

    def fault(self, service: str, kind: str) -> str:
        return apply_fault(self.run_dir, service, kind)


def distinct_free_ports(count: int) -> list[int]:
    """Free ports, all different (free_port alone may hand the same one out twice)."""
    ports: set[int] = set()
    while len(ports) < count:
        ports.add(free_port())
    return list(ports)


def demo_layout(redis_port: int | None = None) -> DemoLayout:
    chat, backend, frontend = distinct_free_ports(3)
    return DemoLayout(
        host=HOST,
        chat_port=chat,
        http=(
            HttpService("backend", backend, ("database", "redis"), redis_port),
            HttpService("frontend", frontend),
        ),
    )


@pytest.fixture
def start_demo(tmp_path: Path) -> Iterator[Any]:
    """Start ``serve`` in a thread on free ports; stop it (and check it returned 0) at the end."""
    running: list[tuple[threading.Event, threading.Thread, list[int]]] = []

    def start(layout: DemoLayout) -> Demo:
        run_dir = tmp_path / f"run-{len(running)}"
        write_layout(run_dir, layout)
        stop = threading.Event()
        result: list[int] = []
        thread = threading.Thread(target=lambda: result.append(serve(run_dir, stop=stop)))
        thread.start()
        running.append((stop, thread, result))
        assert wait_until(lambda: bool(result) or _listening(layout.chat_port), 10)
        assert not result, f"serve returned {result} while starting"
        return Demo(run_dir, layout)

    yield start
    for stop, thread, result in running:
        stop.set()
        thread.join(10)
        assert not thread.is_alive()
        assert result == [0]


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex((HOST, port)) == 0


@pytest.fixture
def demo(start_demo: Any, redis_server: RedisServer) -> Demo:
    """A demo whose backend is tied to a real redis-server."""
    result: Demo = start_demo(demo_layout(redis_server.port))
    return result


def probe_spec(url: str) -> HttpProbe:
    return HttpProbe.model_validate({"kind": "http", "url": url, "name": "health",
                                     "interval": "2s", "timeout": "2s", "health_body": True})


class TestDemoServer:
    def test_backend_reflects_the_real_redis(self, demo: Demo, redis_server: RedisServer) -> None:
        """While Redis runs the backend says redis UP; kill Redis and the backend, still
        answering 200, says redis DOWN."""
        assert demo.health("backend") == body("UP", database="UP", redis="UP")
        redis_server.kill()
        assert demo.health("backend") == body("DEGRADED", database="UP", redis="DOWN")

    def test_unknown_component_and_reconnect(self, demo: Demo) -> None:
        """The Conecta bug: redis UNKNOWN though Redis is fine; the healing playbook's
        reconnect call (or ``clear``) makes it UP again."""
        message = demo.fault("backend", "unknown-component")
        assert "redis as UNKNOWN" in message
        assert demo.components("backend") == {"database": "UP", "redis": "UNKNOWN"}
        answer = requests.post(f"{demo.url('backend')}/admin/reconnect?component=redis",
                               timeout=5)
        assert answer.status_code == 200
        assert demo.components("backend") == {"database": "UP", "redis": "UP"}
        demo.fault("backend", "unknown-component")
        assert "cleared unknown-component" in demo.fault("backend", "clear")
        assert demo.components("backend") == {"database": "UP", "redis": "UP"}
        assert read_faults(demo.run_dir) == {}

    def test_slow_answers_after_the_probe_timeout(self, demo: Demo) -> None:
        """``slow``: a client waiting 1 s gives up; the answer takes at least 2.5 s;
        /metrics stays quick."""
        demo.fault("frontend", "slow")
        with pytest.raises(requests.ReadTimeout):
            requests.get(f"{demo.url('frontend')}/health", timeout=(1, 1))
        started = time.monotonic()
        assert demo.health("frontend", timeout=5) == body("UP")
        assert time.monotonic() - started >= 2.5
        started = time.monotonic()
        demo.metrics("frontend")
        assert time.monotonic() - started < 1.0

    def test_down_closes_connections(self, demo: Demo) -> None:
        """``down``: the probe fails with reason "connection"; clear brings it back."""
        demo.fault("backend", "down")
        outcome = create_http_probe(probe_spec(f"{demo.url('backend')}/health"))(
            Deadline.after(2.0))
        assert not outcome.success
        assert outcome.failure_reason == "connection", outcome.message
        with pytest.raises(requests.ConnectionError):
            requests.get(f"{demo.url('backend')}/", timeout=2)
        assert demo.disk("backend") > 0  # the disk metrics stay scrapeable
        demo.fault("backend", "clear")
        assert requests.get(f"{demo.url('backend')}/", timeout=2).status_code == 200

    def test_fill_disk_rises_then_clears(self, demo: Demo) -> None:
        """``fill-disk``: the disk ratio leaves 40 % and climbs; ``clear`` resets it."""
        assert abs(demo.disk("backend") - BASE_DISK_RATIO) <= DISK_NOISE + 1e-9
        demo.fault("backend", "fill-disk")
        first = demo.disk("backend")
        time.sleep(2.0)
        second = demo.disk("backend")
        assert second - first >= 0.008  # 0.005 a second
        assert first >= BASE_DISK_RATIO
        demo.fault("backend", "clear")
        assert abs(demo.disk("backend") - BASE_DISK_RATIO) <= DISK_NOISE + 1e-9

    def test_break_checkins_fails_the_api_not_the_health(self, demo: Demo) -> None:
        """``break-checkins``: check-ins answer 500 while /health stays UP and the probe
        passes; ``clear`` makes check-ins work again."""
        checkins = f"{demo.url('backend')}/api/checkins"
        created = requests.post(checkins, json={"resident": "apt-101"}, timeout=5)
        assert created.status_code == 201
        checkin_id = created.json()["data"]["checkin"]["id"]
        assert "answers 500 while /health stays green" in demo.fault("backend", "break-checkins")
        assert requests.get(f"{checkins}/{checkin_id}", timeout=5).status_code == 500
        assert requests.post(checkins, json={"resident": "apt-101"}, timeout=5).status_code == 500
        assert demo.health("backend") == body("UP", database="UP", redis="UP")
        outcome = create_http_probe(probe_spec(f"{demo.url('backend')}/health"))(
            Deadline.after(2.0))
        assert outcome.success, outcome.message
        assert requests.get(f"{demo.url('frontend')}/api/checkins/{checkin_id}",
                            timeout=5).status_code == 200  # only the faulty service fails
        assert "cleared break-checkins" in demo.fault("backend", "clear")
        assert requests.get(f"{checkins}/{checkin_id}", timeout=5).status_code == 200

    def test_metrics_pass_promtool(self, demo: Demo) -> None:
        """Prometheus accepts the demo's /metrics as it is."""
        result = promtool_check_metrics(demo.metrics("backend"))
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout.strip() == "" and result.stderr.strip() == ""

    def test_exporter_probe_reads_the_components(
        self, demo: Demo, redis_server: RedisServer
    ) -> None:
        """The exporter's own HTTP probe sees what a user injected: the format contract."""
        probe = create_http_probe(probe_spec(f"{demo.url('backend')}/health"))
        outcome = probe(Deadline.after(2.0))
        assert outcome.success, outcome.message
        assert outcome.components == {"database": "healthy", "redis": "healthy"}
        demo.fault("backend", "unknown-component")
        outcome = probe(Deadline.after(2.0))
        assert outcome.success, outcome.message
        assert outcome.components == {"database": "healthy", "redis": "unknown"}
        demo.fault("backend", "clear")
        redis_server.kill()
        outcome = probe(Deadline.after(2.0))
        assert outcome.success, outcome.message  # the backend itself still serves
        assert outcome.components == {"database": "healthy", "redis": "unhealthy"}
        frontend = create_http_probe(probe_spec(f"{demo.url('frontend')}/health"))
        outcome = frontend(Deadline.after(2.0))
        assert outcome.success and outcome.components == {}, outcome.message

    def test_chat_inbox(self, demo: Demo) -> None:
        """What Alertmanager posts to a chat receiver is stored, durably, and listed back."""
        payload = {"text": "[P3] redis is down", "attachments": [{"title": "ServiceDown"}]}
        answer = requests.post(f"{demo.url('chat')}/chat/oncall", json=payload, timeout=5)
        assert (answer.status_code, answer.text) == (200, "ok")
        requests.post(f"{demo.url('chat')}/chat/team", json={"text": "hi"}, timeout=5)
        entries = requests.get(f"{demo.url('chat')}/chat", timeout=5).json()
        assert [(e["receiver"], e["payload"]) for e in entries] == [
            ("oncall", payload), ("team", {"text": "hi"})]
        assert abs(entries[0]["received_at"] - time.time()) < 60
        team = requests.get(f"{demo.url('chat')}/chat?receiver=team", timeout=5).json()
        assert [e["receiver"] for e in team] == ["team"]
        lines = chat_path(demo.run_dir).read_text().splitlines()
        assert [json.loads(line) for line in lines] == entries

    def test_chat_inbox_is_a_page_in_a_browser(self, demo: Demo) -> None:
        """A browser's Accept gets an HTML page: newest first, receiver, time, title, text
        and fields, every value escaped; API clients (``*/*``, JSON) still get the JSON."""
        chat = f"{demo.url('chat')}/chat"
        requests.post(f"{chat}/team", timeout=5, json={
            "text": "[P3] redis is down", "attachments": [
                {"title": "ServiceDown <script>alert(1)</script>", "text": "redis & co",
                 "color": "#f57c00", "fields": [{"title": "service", "value": "redis"}]}]})
        requests.post(f"{chat}/responder", timeout=5, json={
            "text": "[resolved] Healed: redis (restart-redis) (incident #4)",
            "attachments": [{"title": "Healed: redis (restart-redis)",
                             "text": "healed; probe redis succeeded",
                             "color": "red;background:url(x)"}]})
        browser = ("text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,"
                   "image/webp,*/*;q=0.8")
        page = requests.get(chat, headers={"Accept": browser}, timeout=5)
        assert page.status_code == 200
        assert page.headers["Content-Type"] == "text/html; charset=utf-8"
        text = page.text
        assert text.index("Healed: redis (restart-redis)") < text.index("ServiceDown")
        assert "ServiceDown &lt;script&gt;alert(1)&lt;/script&gt;" in text
        assert "<script>" not in text and "redis &amp; co" in text
        assert "<strong>responder</strong>" in text and "<strong>team</strong>" in text
        assert "<dt>service</dt><dd>redis</dd>" in text
        assert "border-color:#f57c00" in text and "url(x)" not in text  # a colour, or grey
        assert time.strftime("%Y-%m-%d", time.gmtime()) in text and " UTC</time>" in text
        one = requests.get(f"{chat}?receiver=responder", headers={"Accept": browser},
                           timeout=5).text
        assert "Healed" in one and "ServiceDown" not in one
        for accept in ("*/*", "application/json", "text/html;q=0.5, application/json"):
            answer = requests.get(chat, headers={"Accept": accept}, timeout=5)
            assert answer.headers["Content-Type"] == "application/json", accept
            assert [entry["receiver"] for entry in answer.json()] == ["team", "responder"]
        forced = requests.get(f"{chat}?format=html", timeout=5)
        assert forced.headers["Content-Type"].startswith("text/html")

    def test_chat_concurrent_posts_are_all_kept(self, demo: Demo) -> None:
        """Alerts posted at the same moment each end up as one whole line of the inbox."""
        def post(number: int) -> None:
            answer = requests.post(f"{demo.url('chat')}/chat/team",
                                   json={"text": f"alert {number}", "pad": "x" * 5000}, timeout=5)
            assert answer.status_code == 200

        threads = [threading.Thread(target=post, args=(number,)) for number in range(20)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        lines = chat_path(demo.run_dir).read_text().splitlines()
        texts = sorted(json.loads(line)["payload"]["text"] for line in lines)
        assert texts == sorted(f"alert {number}" for number in range(20))

    def test_chat_refuses_invalid_json(self, demo: Demo) -> None:
        """A body that is not JSON gets 400 with a JSON error, and nothing is stored."""
        answer = requests.post(f"{demo.url('chat')}/chat/oncall", data=b"{nope",
                               headers={"Content-Type": "application/json"}, timeout=5)
        assert answer.status_code == 400
        assert "not JSON" in answer.json()["error"]
        assert requests.get(f"{demo.url('chat')}/chat", timeout=5).json() == []

    def test_port_in_use(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """A taken port stops the demo at once with one line naming the port and service."""
        with socket.socket() as taken:
            taken.bind((HOST, 0))
            taken.listen()
            port = taken.getsockname()[1]
            layout = demo_layout()
            layout = replace(layout, http=(layout.http[0], HttpService("frontend", port)))
            write_layout(tmp_path, layout)
            assert serve(tmp_path, stop=threading.Event()) == 2
        error = capsys.readouterr().err.strip()
        assert error == (f"demo: cannot listen on {HOST}:{port} for frontend: "
                         f"port {port} is already in use")
        assert not _listening(layout.http[0].port)  # what it had bound is released

    def test_missing_layout(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """Without services.json the demo says which file it needs, and returns 2."""
        assert serve(tmp_path) == 2
        assert "services.json: not found" in capsys.readouterr().err

    @pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
    def test_signal_stops_the_process(self, tmp_path: Path, signum: int) -> None:
        """``monitoriza up`` stopping the demo (SIGTERM, or Ctrl-C) ends it cleanly, status 0."""
        layout = demo_layout()
        write_layout(tmp_path, layout)
        code = "import sys; from pathlib import Path; from monitoriza.demo.server import serve;" \
               " sys.exit(serve(Path(sys.argv[1])))"
        process = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert wait_until(lambda: _listening(layout.chat_port), 15)
            os.kill(process.pid, signum)
            stdout, stderr = process.communicate(timeout=10)
        finally:
            stop_process(process, signal.SIGKILL)
        assert process.returncode == 0, stderr
        assert f"demo: backend on http://{HOST}:{layout.http[0].port}" in stdout.splitlines()
        assert f"demo: chat inbox on http://{HOST}:{layout.chat_port}/chat" in stdout


class TestFaultCommand:
    def test_unknown_service_and_kind(self, tmp_path: Path) -> None:
        """A typo names what exists: the known services, or the kinds that apply."""
        write_layout(tmp_path, layout_from_json(EXAMPLE_LAYOUT, "services.json"))
        with pytest.raises(DemoError, match=r"known services: backend, frontend, redis, "
                                            r"guardian-recorder"):
            apply_fault(tmp_path, "backnd", "down")
        with pytest.raises(DemoError,
                           match=r"choose from: down, slow, fill-disk, break-checkins, clear"):
            apply_fault(tmp_path, "frontend", "unknown-component")
        with pytest.raises(DemoError, match=r"choose from: down, clear"):
            apply_fault(tmp_path, "redis", "break-checkins")
        assert set(KINDS) == {"down", "slow", "unknown-component", "fill-disk",
                              "break-checkins", "clear"}

    def test_repeat_and_clear_messages(self, tmp_path: Path) -> None:
        """Applying a fault twice, or clearing nothing, says so instead of failing."""
        write_layout(tmp_path, layout_from_json(EXAMPLE_LAYOUT, "services.json"))
        assert apply_fault(tmp_path, "frontend", "clear") == "frontend: no faults to clear"
        apply_fault(tmp_path, "frontend", "slow")
        assert "already on" in apply_fault(tmp_path, "frontend", "slow")
        apply_fault(tmp_path, "backend", "fill-disk")
        assert read_faults(tmp_path) == {"backend": ("fill-disk",), "frontend": ("slow",)}

    def test_redis_down_kills_the_real_daemon(self, tmp_path: Path) -> None:
        """``redis down`` kills the daemonized redis-server named by its pidfile; again, it
        says Redis is not running; a pidfile naming another process never kills it."""
        binary = require_binary("redis-server")
        port = free_port()
        pidfile = tmp_path / "redis.pid"
        layout = DemoLayout(HOST, free_port(), redis=RedisService("redis", port, pidfile))
        write_layout(tmp_path, layout)
        subprocess.run([binary, "--port", str(port), "--bind", HOST, "--daemonize", "yes",
                        "--pidfile", str(pidfile), "--dir", str(tmp_path), "--save", "",
                        "--logfile", str(tmp_path / "redis.log")], check=True, timeout=10)
        bystander = subprocess.Popen(["sleep", "300"])
        try:
            assert wait_until(lambda: pidfile.exists() and _listening(port), 10)
            message = apply_fault(tmp_path, "redis", "down")
            assert message.startswith("redis: Redis killed")
            assert not _listening(port)
            with pytest.raises(DemoError, match="redis is not running"):
                apply_fault(tmp_path, "redis", "down")
            assert "Redis is not running" in apply_fault(tmp_path, "redis", "clear")
            pidfile.write_text(f"{bystander.pid}\n")
            with pytest.raises(DemoError, match="redis is not running"):
                apply_fault(tmp_path, "redis", "down")
            assert bystander.poll() is None
        finally:
            stop_process(bystander, signal.SIGKILL)
            _kill_pidfile_redis(pidfile)


def _kill_pidfile_redis(pidfile: Path) -> None:
    """Whatever happened, stop the daemon the test started (by its PID, if still Redis)."""
    try:
        pid = int(pidfile.read_text())
        with open(f"/proc/{pid}/comm", encoding="ascii") as comm:
            if "redis" in comm.read():
                os.kill(pid, signal.SIGKILL)
    except (OSError, ValueError):
        pass


class TestContainerFaults:
    @pytest.fixture
    def recorder(self, tmp_path: Path, docker_engine: DockerEngine) -> Iterator[Any]:
        """Guardian's recorder as ``monitoriza up --demo`` runs it, in the private engine."""
        fault_dir = tmp_path / "guardian-recorder"
        fault_dir.mkdir()
        name = f"mz-demo-recorder-{uuid.uuid4().hex[:8]}"
        layout = DemoLayout(HOST, free_port(), container=ContainerService(
            "guardian-recorder", name, fault_dir, docker_engine.url))
        write_layout(tmp_path, layout)
        container = docker_engine.client.containers.run(
            docker_engine.image,
            ["sh", "-c", "while [ ! -e /fault/down ]; do sleep 1; done; exit 1"],
            name=name, detach=True, network_mode="none",
            volumes={str(fault_dir): {"bind": "/fault", "mode": "ro"}})
        try:
            yield container
        finally:
            container.remove(force=True)

    def test_down_keeps_dying_until_clear(self, tmp_path: Path, recorder: Any) -> None:
        """``down``: the recorder dies at once and again after every restart; ``clear``: it
        starts and stays up."""
        assert _status(recorder) == "running"
        assert "keeps dying" in apply_fault(tmp_path, "guardian-recorder", "down")
        assert wait_until(lambda: _status(recorder) == "exited", 2)
        recorder.start()
        assert wait_until(lambda: _status(recorder) == "exited", 3)
        assert "started again" in apply_fault(tmp_path, "guardian-recorder", "clear")
        assert _status(recorder) == "running"
        time.sleep(1.5)  # longer than one turn of the loop
        assert _status(recorder) == "running"
        assert "is running" in apply_fault(tmp_path, "guardian-recorder", "clear")


def _status(container: Any) -> str:
    container.reload()
    return str(container.status)


class TestChatPageSummary:
    """What the chat page makes of each kind of payload the inbox stores."""

    def test_alertmanager_slack_webhook_and_unknown_payloads(self) -> None:
        from monitoriza.demo.chat_page import summarize  # noqa: PLC0415

        slack = summarize({"receiver": "oncall", "received_at": 0, "payload": {
            "attachments": [{"title": "[FIRING:1] P2", "text": "down", "color": "danger"}]}})
        assert (slack.title, slack.text, slack.color) == ("[FIRING:1] P2", "down", "#d32f2f")
        webhook = summarize({"receiver": "deadmans-switch", "payload": {
            "status": "firing", "groupKey": "{}:{}", "alerts": [
                {"labels": {"alertname": "Watchdog"}}, {"labels": {"alertname": "Watchdog"}}]}})
        assert (webhook.title, webhook.text) == ("[FIRING] Watchdog", "2 alert(s), group {}:{}")
        assert webhook.received_at is None and webhook.color == "#9e9e9e"
        odd = summarize({"receiver": "team", "payload": {"blocks": [1]}})
        assert (odd.title, odd.text) == ("(no title)", '{"blocks": [1]}')


class TestDemoStackWiring:
    """What ``monitoriza up --demo`` writes before it starts anything: the responder posts to
    the chat inbox, and the ready message points at the console and how to log in."""

    def test_responder_chat_and_console_lines(self, tmp_path: Path,
                                              docker_engine: DockerEngine) -> None:
        """The webhook URL file (0600, the inbox's ``responder`` receiver) is what the
        responder's configuration names; off a terminal the login line tells how to print
        the token and never prints it; on one it is printed."""
        import io  # noqa: PLC0415 - only this test writes to a buffer

        from monitoriza.config import load_config  # noqa: PLC0415
        from monitoriza.stack.up import UpOptions, plan, urls  # noqa: PLC0415

        for name in ("prometheus", "prometheus-alertmanager", "redis-server"):
            require_binary(name)
        run_dir = tmp_path / "run"
        planned = plan(UpOptions(config=None, demo=True, run_dir=run_dir,
                                 base_port=free_base_port(), docker_host=docker_engine.url),
                       io.StringIO())
        assert planned.docker is not None
        planned.docker[0].close()
        chat = load_config(planned.config_path).responder.healing.chat
        assert chat is not None
        webhook = Path(chat.webhook_url_file)
        assert webhook == planned.run_dir / "secrets" / "chat-webhook-url"
        host, ports = planned.ports.host, planned.ports
        assert webhook.read_text() == f"http://{host}:{ports.chat}/chat/responder\n"
        assert webhook.stat().st_mode & 0o777 == 0o600
        token_file = planned.run_dir / "secrets" / "responder-token"
        token = token_file.read_text().strip()
        lines = urls(planned)
        assert lines[0] == f"  console        http://{host}:{ports.responder}/console/"
        assert lines[1] == f"    log in with the responder's token: cat {token_file}"
        assert not any(token in line for line in lines)
        assert f"token: {token}" in urls(planned, token=token)[1]
