"""``monitoriza drill load``: a real flow against a real HTTP server on loopback, driven by
Locust in the command's own child process, judged against ``--slo``; and ``--slo`` parsing."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from monitoriza.drill.slo import Slo, SloError, StepFigures, judge_slo, parse_slo

MONITORIZA = str(Path(sys.executable).with_name("monitoriza"))
SERVICE_SECONDS = 0.003  # every answer takes at least this, so p95=1ms cannot be met


class JourneyHandler(BaseHTTPRequestHandler):
    """POST /login answers a token; GET /orders/TOKEN answers 200, or 500 when the server's
    ``orders_fail`` is set. Counts what it answered per path."""

    server: JourneyServer

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._answer(200, {"data": {"token": "t-42"}}, "login")

    def do_GET(self) -> None:
        if self.path != "/orders/t-42":
            self._answer(404, {"error": "no such token"}, "other")
        elif self.server.orders_fail:
            self._answer(500, {"error": "boom"}, "orders")
        else:
            self._answer(200, {"status": "ok"}, "orders")

    def _answer(self, status: int, document: object, counter: str) -> None:
        time.sleep(SERVICE_SECONDS)
        body = json.dumps(document).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        with self.server.lock:
            self.server.answered[counter] = self.server.answered.get(counter, 0) + 1

    def log_message(self, format: str, *args: Any) -> None:
        pass


class JourneyServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, orders_fail: bool) -> None:
        super().__init__(("127.0.0.1", 0), JourneyHandler)
        self.orders_fail = orders_fail
        self.answered: dict[str, int] = {}
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


def serve(orders_fail: bool) -> Iterator[JourneyServer]:
    server = JourneyServer(orders_fail)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def healthy_server() -> Iterator[JourneyServer]:
    yield from serve(orders_fail=False)


@pytest.fixture
def failing_server() -> Iterator[JourneyServer]:
    yield from serve(orders_fail=True)


def write_config(directory: Path, server: JourneyServer) -> Path:
    """A configuration whose flow ``journey`` logs in, captures the token, reads orders."""
    config = directory / "monitoriza.yml"
    config.write_text(yaml.safe_dump({
        "services": {"backend": {}},
        "flows": {"journey": {"interval": "30s", "timeout": "5s", "services": ["backend"],
                              "steps": [
            {"name": "login", "method": "POST", "url": f"{server.url}/login",
             "body": {"user": "drill"}, "capture": {"token": "$.data.token"}},
            {"name": "orders", "url": server.url + "/orders/{token}",
             "assert": {"$.status": "ok"}},
        ]}},
    }), encoding="utf-8")
    return config


def drill_load(config: Path, *extra: str, duration: str = "5s",
               rate: str = "20") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [MONITORIZA, "drill", "load", "--config", str(config), "--flow", "journey",
         "--users", "4", "--rate", rate, "--duration", duration, *extra],
        capture_output=True, text=True, timeout=60, check=False)


class TestLoadAgainstARealServer:
    def test_rate_steps_and_percentiles(self, tmp_path: Path,
                                        healthy_server: JourneyServer) -> None:
        """20 flow runs a second for 5 s: within 5 % of the target, every step counted with
        its percentiles, progress on stderr, results stored beside the configuration."""
        config = write_config(tmp_path, healthy_server)
        done = drill_load(config, "--slo", "p95=2s,errors=1%", "--json")
        assert done.returncode == 0, done.stderr
        results = json.loads(done.stdout)
        assert results["achieved_rate"] == pytest.approx(20, rel=0.05)
        assert results["runs"] == pytest.approx(100, rel=0.05)
        assert results["failed_runs"] == 0
        steps = {step["name"]: step for step in results["steps"]}
        assert list(steps) == ["login", "orders"]
        for step in steps.values():
            assert step["requests"] == results["runs"]
            assert step["failures"] == 0
            p50, p95, p99 = (step["percentiles_ms"][key] for key in ("p50", "p95", "p99"))
            assert SERVICE_SECONDS * 1000 <= p50 <= p95 <= p99 < 2000
        assert healthy_server.answered == {"login": results["runs"],
                                           "orders": results["runs"]}
        assert results["slo"] == {"objectives": "p95=2s,errors=1%", "met": True, "missed": []}
        assert "drill load journey:" in done.stderr  # a live progress line
        stored = list((tmp_path / "drills").glob("load-journey-*.json"))
        assert len(stored) == 1
        assert json.loads(stored[0].read_text()) == results

    def test_impossible_latency_slo_exits_1(self, tmp_path: Path,
                                            healthy_server: JourneyServer) -> None:
        """p95=1ms cannot be met by a server that takes 3 ms: exit 1, the miss named."""
        out = tmp_path / "result.json"
        done = drill_load(write_config(tmp_path, healthy_server), "--slo", "p95=1ms",
                          "--out", str(out), duration="2s")
        assert done.returncode == 1, done.stderr
        assert "SLO p95=1ms: MISSED" in done.stdout
        assert "step login: p95" in done.stdout
        assert f"results: {out}" in done.stdout
        assert json.loads(out.read_text())["slo"]["met"] is False

    def test_failing_step_counts_failures_and_misses_errors_slo(
            self, tmp_path: Path, failing_server: JourneyServer) -> None:
        """A 500 on step 2: its failures counted there only, errors=1% missed, exit 1."""
        out = tmp_path / "result.json"
        done = drill_load(write_config(tmp_path, failing_server), "--slo", "errors=1%",
                          "--out", str(out), duration="2s")
        assert done.returncode == 1, done.stderr
        results = json.loads(out.read_text())
        login, orders = results["steps"]
        assert results["runs"] > 0
        assert results["failed_runs"] == results["runs"]
        assert (login["failures"], orders["failures"]) == (0, orders["requests"])
        assert orders["requests"] == results["runs"]
        assert orders["first_failure"] == "status 500, expected 2xx"
        assert "errors: 100.00% of flow runs failed > 1%" in done.stdout


class TestBadInput:
    def test_unknown_flow(self, tmp_path: Path, healthy_server: JourneyServer) -> None:
        """An unknown flow: one line naming it and the known ones, exit 2, no load."""
        config = write_config(tmp_path, healthy_server)
        done = subprocess.run(
            [MONITORIZA, "drill", "load", "--config", str(config), "--flow", "nope",
             "--users", "1", "--rate", "1", "--duration", "1s"],
            capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 2
        assert done.stderr == f"{config}: no flow named 'nope' (flows: journey)\n"
        assert healthy_server.answered == {}

    def test_bad_slo_text(self, tmp_path: Path, healthy_server: JourneyServer) -> None:
        """A bad --slo: one line, exit 2, no load."""
        done = drill_load(write_config(tmp_path, healthy_server), "--slo", "p95=fast")
        assert done.returncode == 2
        assert done.stderr == ("--slo 'p95=fast': p95: expected a duration like 90s, 5m or "
                               "1h30m, got 'fast'\n")
        assert healthy_server.answered == {}


class TestSloText:
    def test_parses_percentiles_and_errors(self) -> None:
        """Durations become milliseconds, errors a percentage."""
        slo = parse_slo("p50=100ms, p99=1s,errors=0.5%")
        assert slo == Slo({"p50": 100.0, "p99": 1000.0}, 0.5)
        assert slo.describe() == "p50=100ms,p99=1s,errors=0.5%"

    @pytest.mark.parametrize(("text", "message"), [
        ("", "expected NAME=VALUE (e.g. p95=300ms,errors=1%), got ''"),
        ("p95", "expected NAME=VALUE (e.g. p95=300ms,errors=1%), got 'p95'"),
        ("p90=1s", "unknown objective 'p90': expected p50, p95, p99 or errors"),
        ("errors=1", "errors: expected a percentage from 0% to 100%, got '1'"),
        ("errors=101%", "errors: expected a percentage from 0% to 100%, got '101%'"),
        ("p95=1s,p95=2s", "p95 is given twice"),
        ("p95=0s", "p95: must be more than 0, got '0s'"),
    ])
    def test_bad_text_is_named(self, text: str, message: str) -> None:
        with pytest.raises(SloError) as caught:
            parse_slo(text)
        assert str(caught.value) == message

    def test_judges_every_step_and_the_failed_runs(self) -> None:
        """A slow step and too many failed runs are each one miss; none ran is a miss."""
        steps = [StepFigures("a", 10, {"p95": 50.0}), StepFigures("b", 10, {"p95": 400.0})]
        slo = Slo({"p95": 300.0}, 1.0)
        assert judge_slo(slo, steps, 10, 0) == ["step b: p95 400ms > 300ms"]
        assert judge_slo(slo, steps[:1], 100, 2) == [
            "errors: 2.00% of flow runs failed > 1%"]
        assert judge_slo(slo, steps[:1], 100, 1) == []
        assert judge_slo(slo, steps, 0, 0) == ["no flow run completed"]
