"""Flows: strict configuration, the runner against real HTTP servers, the exporter's flow
metrics scraped over HTTP, and the demo's resident check-in through the demo server."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from monitoriza.config import config_from_data, load_config
from monitoriza.config.schema import Flow
from monitoriza.demo.faults import apply_fault
from monitoriza.demo.layout import DemoLayout, HttpService, write_layout
from monitoriza.demo.server import serve
from monitoriza.exceptions import ConfigError
from monitoriza.exporter.app import Exporter
from monitoriza.flows.jsonpath import JsonPathError, JsonPathNotFoundError, parse_json_path
from monitoriza.flows.placeholders import fill_json
from monitoriza.flows.runner import run_flow
from monitoriza.stack import demo_plan
from monitoriza.stack.ports import ports_for
from tests.support.binaries import free_port, wait_until
from tests.support.exposition import promtool_check_metrics, scrape, value
from tests.support.http_targets import HttpTarget


def config_errors(flows: dict[str, Any]) -> list[str]:
    """The loader's messages for a file with these flows (and services backend, redis)."""
    data = {"services": {"backend": {}, "redis": {}}, "flows": flows}
    with pytest.raises(ConfigError) as caught:
        config_from_data(data)
    return caught.value.messages


def flow(steps: list[dict[str, Any]], **settings: Any) -> Flow:
    data = {"services": {"backend": {}}, "flows": {"journey": {"steps": steps, **settings}}}
    return config_from_data(data).flows["journey"]


class TestJsonPath:
    """The JSON-path dialect is tiny: $, .key and [index], nothing else."""

    @pytest.mark.parametrize(("path", "expected"), [
        ("$", {"data": {"items": [{"id": 7}, {"id": 8}]}}),
        ("$.data.items[1].id", 8),
        ("$.data.items[0]", {"id": 7}),
    ])
    def test_finds(self, path: str, expected: object) -> None:
        """A valid path names exactly one value."""
        document = {"data": {"items": [{"id": 7}, {"id": 8}]}}
        assert parse_json_path(path).find(document) == expected

    @pytest.mark.parametrize("path", ["data.id", "$.data[*]", "$..id", "$.a[01]", "$.a[-1]",
                                      "$.a b", "$['a']", "$."])
    def test_rejects_what_is_outside_the_dialect(self, path: str) -> None:
        """Wildcards, recursion, quotes, negative or padded indexes are refused."""
        with pytest.raises(JsonPathError, match="is not a JSON path"):
            parse_json_path(path)

    def test_a_miss_says_where(self) -> None:
        """A path that names nothing says how far it got."""
        with pytest.raises(JsonPathNotFoundError, match=r"\$\.data\.items has no element \[5\]"):
            parse_json_path("$.data.items[5]").find({"data": {"items": []}})

    def test_placeholders_keep_their_json_type(self) -> None:
        """A whole-string placeholder takes the captured value; inside text it is written."""
        body = {"id": "{id}", "note": "order {id} of {who}", "list": ["{tags}"]}
        filled = fill_json(body, {"id": 3, "who": "apt-101", "tags": ["a"]})
        assert filled == {"id": 3, "note": "order 3 of apt-101", "list": [["a"]]}


class TestConfig:
    """flows: is strict, and every error names the flow and step."""

    def test_a_full_flow_loads(self, tmp_path: Path) -> None:
        """Every key of a step, with expect_status given as one integer."""
        token = tmp_path / "token"
        token.write_text("Bearer s3cret\n")
        loaded = flow([
            {"name": "login", "method": "POST", "url": "http://127.0.0.1:1/login",
             "headers": {"X-Client": "monitoriza"}, "headers_files": {"Authorization": str(token)},
             "body": {"user": "ana"}, "expect_status": 201, "assert": {"$.ok": True},
             "capture": {"token": "$.data.token"}, "timeout": "2s"},
            {"name": "read", "url": "http://127.0.0.1:1/items?token={token}",
             "expect_status": [200, 304]},
        ], interval="30s", timeout="5s", services=["backend"])
        assert loaded.steps[0].expect_status == [201]
        assert loaded.steps[0].assert_ == {"$.ok": True}
        assert loaded.steps[1].expect_status == [200, 304]
        assert (loaded.interval, loaded.timeout, loaded.steps[0].timeout) == (30.0, 5.0, 2.0)

    def test_a_relative_secret_file_is_read_beside_the_configuration(
            self, tmp_path: Path) -> None:
        """As every path of the file: relative to its directory, not to where it runs."""
        (tmp_path / "secrets").mkdir()
        (tmp_path / "secrets" / "token").write_text("Bearer s3cret\n")
        config = tmp_path / "config.yml"
        config.write_text(yaml.safe_dump({
            "services": {"backend": {"probes": [{"kind": "tcp", "host": "127.0.0.1",
                                                 "port": 1}]}},
            "flows": {"f": {"steps": [{"name": "a", "url": "http://127.0.0.1:1/",
                                       "headers_files": {"Authorization": "secrets/token"}}]}}}))
        loaded = load_config(config)
        assert loaded.flows["f"].steps[0].headers_files == {
            "Authorization": str(tmp_path / "secrets" / "token")}
        (tmp_path / "secrets" / "token").unlink()
        with pytest.raises(ConfigError) as refused:
            load_config(config)
        assert refused.value.messages == [
            f"flows.f.steps[0].headers_files.Authorization: file not found: "
            f"{tmp_path / 'secrets' / 'token'}"]

    @pytest.mark.parametrize(("flows", "message"), [
        ({"f": {"steps": [{"name": "a", "url": "http://h/", "assert": {"$.x[*]": 1}}]}},
         "flows.f.steps[0].assert.$.x[*]: '$.x[*]' is not a JSON path: unexpected '[*]' at "
         "character 4 (expected .key or [index])"),
        ({"f": {"steps": [{"name": "a", "url": "http://h/", "capture": {"id": "id"}}]}},
         "flows.f.steps[0].capture.id: 'id' is not a JSON path: it must start with '$'"),
        ({"f": {"services": ["backend", "nope"], "steps": [{"name": "a", "url": "http://h/"}]}},
         "flows.f.services[1]: unknown service 'nope'"),
        ({"f": {"steps": [{"name": "a", "url": "http://h/",
                           "headers_files": {"Authorization": "/nonexistent/token"}}]}},
         "flows.f.steps[0].headers_files.Authorization: file not found: /nonexistent/token"),
        ({"f": {"steps": [{"name": "a", "url": "http://h/{id}"}]}},
         "flows.f: steps[0].url: {id} is used before any earlier step captures it"),
        ({"f": {"steps": [{"name": "a", "url": "http://h/", "body": {"x": "{id}"}},
                          {"name": "b", "url": "http://h/", "capture": {"id": "$.id"}}]}},
         "flows.f: steps[0].body: {id} is used before any earlier step captures it"),
        ({"f": {"steps": [{"name": "a", "url": "http://h/", "capture": {"id": "$.id"}},
                          {"name": "b", "url": "http://h/", "headers": {"X": "{idd}"}}]}},
         "flows.f: steps[1].headers.X: {idd} is used before any earlier step captures it"),
        ({"f": {"steps": [{"name": "a", "url": "http://h/"}, {"name": "a", "url": "http://h/"}]}},
         "flows.f: steps[1].name: duplicate step name 'a'"),
        ({"f": {"interval": "5s", "timeout": "10s", "steps": [{"name": "a", "url": "http://h/"}]}},
         "flows.f: timeout must not exceed the interval (10s > 5s)"),
        ({"f": {"steps": [{"name": "a", "url": "ftp://h/"}]}},
         "flows.f.steps[0].url: 'ftp://h/' is not a valid URL (expected http or https://HOST…)"),
        ({"f": {"steps": [{"name": "a", "url": "http://h/", "expect_status": 99}]}},
         "flows.f.steps[0].expect_status[0]: must be >= 100"),
        ({"f": {"steps": [{"name": "a", "url": "http://h/", "method": "TRACE"}]}},
         "flows.f.steps[0].method: must be one of: GET, HEAD, POST, PUT, PATCH, DELETE"),
        ({"f": {"steps": [{"name": "a", "url": "http://h/", "retries": 3}]}},
         "flows.f.steps[0].retries: unknown key"),
        ({"f": {"steps": [{"name": "a", "url": "http://h/", "body": {"at": {1, 2}}}]}},
         "flows.f.steps[0].body: must be plain JSON (strings, numbers, booleans, null, lists, "
         "mappings)"),
        ({"Bad": {"steps": [{"name": "a", "url": "http://h/"}]}},
         "flows.Bad: 'Bad' is not a valid name (lower-case letters, digits, '_' and '-', "
         "starting with a letter)"),
    ])
    def test_bad_flows_are_named(self, flows: dict[str, Any], message: str) -> None:
        """One clear message with the offending path."""
        assert config_errors(flows) == [message]


class TestRunner:
    """run_flow against a real HTTP server on a loopback port."""

    def test_captures_flow_into_later_steps(self, http_target: HttpTarget,
                                            tmp_path: Path) -> None:
        """A token and an id captured from one answer fill the next request's URL and
        headers; the secret header is read from its file."""
        secret = tmp_path / "api-key"
        secret.write_text("key-123\n")
        http_target.respond("/login", status=201,
                            json_body={"data": {"token": "t0k", "items": [{"id": 7}]}})
        http_target.respond("/items/7", json_body={"id": 7, "name": "apt-101", "open": True})
        journey = flow([
            {"name": "login", "method": "POST", "url": http_target.url("/login"),
             "body": {"user": "ana"}, "expect_status": 201,
             "capture": {"token": "$.data.token", "item": "$.data.items[0].id"}},
            {"name": "read", "url": http_target.url("/items/{item}"),
             "headers": {"Authorization": "Bearer {token}"},
             "headers_files": {"X-Api-Key": str(secret)},
             "assert": {"$.name": "apt-101", "$.open": True}},
        ])
        result = run_flow("journey", journey)
        assert [(s.name, s.ok, s.status, s.reason) for s in result.steps] == [
            ("login", True, 201, None), ("read", True, 200, None)]
        headers = {k.lower(): v for k, v in http_target.last_headers("/items/7").items()}
        assert headers["authorization"] == "Bearer t0k"
        assert headers["x-api-key"] == "key-123"
        assert result.ok and result.duration_seconds >= sum(s.duration_seconds
                                                            for s in result.steps)

    def test_assertion_failure_skips_the_rest(self, http_target: HttpTarget) -> None:
        """A wrong value fails its step with both values; later steps are reported skipped."""
        http_target.respond("/a", json_body={"status": "pending", "count": 1})
        http_target.respond("/b", json_body={})
        journey = flow([
            {"name": "a", "url": http_target.url("/a"),
             "assert": {"$.status": "checked_in"}},
            {"name": "b", "url": http_target.url("/b")}])
        result = run_flow("journey", journey)
        assert not result.ok
        first, second = result.steps
        assert (first.reason, first.status) == ("assertion", 200)
        assert first.message == "assert $.status: expected 'checked_in', got 'pending'"
        assert (second.ok, second.reason) == (False, "skipped")
        assert http_target.hits("/b") == 0

    def test_true_is_not_one(self, http_target: HttpTarget) -> None:
        """JSON equality: an expected true does not match the number 1."""
        http_target.respond("/a", json_body={"open": 1})
        result = run_flow("journey", flow([{"name": "a", "url": http_target.url("/a"),
                                            "assert": {"$.open": True}}]))
        assert result.steps[0].reason == "assertion"

    def test_timeout_is_kept(self, http_target: HttpTarget) -> None:
        """A step that answers after its timeout fails as timeout, close to the timeout."""
        http_target.respond("/slow", json_body={}, delay=1.5)
        journey = flow([{"name": "slow", "url": http_target.url("/slow"), "timeout": "300ms"}])
        started = time.monotonic()
        result = run_flow("journey", journey)
        assert result.steps[0].reason == "timeout"
        assert time.monotonic() - started < 1.0

    def test_flow_timeout_bounds_every_step(self, http_target: HttpTarget) -> None:
        """Without a step timeout, the flow's own timeout is the limit."""
        http_target.respond("/slow", json_body={}, delay=1.5)
        result = run_flow("journey", flow([{"name": "slow", "url": http_target.url("/slow")}],
                                          timeout="400ms", interval="1s"))
        assert result.steps[0].reason == "timeout"
        assert result.duration_seconds < 1.0

    @pytest.mark.parametrize(("answer", "step", "reason", "message"), [
        ({"status": 200, "body": b"<html>ok</html>", "content_type": "text/html"},
         {"assert": {"$.ok": True}}, "body", "the body is not JSON: b'<html>ok</html>'"),
        ({"status": 503, "json_body": {}}, {}, "status", "status 503, expected 2xx"),
        ({"status": 200, "json_body": {}}, {"expect_status": [201, 202]}, "status",
         "status 200, expected 201, 202"),
        ({"status": 200, "json_body": {"data": []}}, {"capture": {"id": "$.data[0].id"}},
         "capture", "capture id ($.data[0].id): $.data has no element [0]"),
    ])
    def test_bad_answers(self, http_target: HttpTarget, answer: dict[str, Any],
                         step: dict[str, Any], reason: str, message: str) -> None:
        """Each kind of bad answer has its own reason and message."""
        http_target.respond("/x", **answer)
        result = run_flow("journey", flow([{"name": "x", "url": http_target.url("/x"),
                                            **step}]))
        assert (result.steps[0].reason, result.steps[0].message) == (reason, message)

    def test_non_json_body_is_fine_without_assertions(self, http_target: HttpTarget) -> None:
        """Only assertions and captures need JSON."""
        http_target.respond("/page", body=b"<html></html>", content_type="text/html")
        assert run_flow("journey", flow([{"name": "p", "url": http_target.url("/page")}])).ok

    def test_refused_connection(self) -> None:
        """Nothing listening is a connection failure, not an exception."""
        result = run_flow("journey", flow([{"name": "x",
                                            "url": f"http://127.0.0.1:{free_port()}/"}]))
        assert result.steps[0].reason == "connection"

    def test_secret_file_removed_after_loading(self, http_target: HttpTarget,
                                               tmp_path: Path) -> None:
        """A token file that disappears fails the step as 'secret', sending nothing."""
        secret = tmp_path / "token"
        secret.write_text("x")
        journey = flow([{"name": "x", "url": http_target.url("/x"),
                         "headers_files": {"Authorization": str(secret)}}])
        secret.unlink()
        result = run_flow("journey", journey)
        assert result.steps[0].reason == "secret"
        assert http_target.hits("/x") == 0


@pytest.fixture
def exporter_with_flows(http_target: HttpTarget) -> Iterator[str]:
    """A real exporter running two flows (one passing, one failing) on a 1 s interval."""
    http_target.respond("/start", status=201, json_body={"id": "c-1"})
    http_target.respond("/check/c-1", json_body={"status": "checked_in"})
    http_target.respond("/broken", status=500, json_body={})
    config = config_from_data({
        "exporter": {"listen": "127.0.0.1:0"},
        "services": {"backend": {"probes": [{"kind": "http", "url": http_target.url("/start"),
                                             "expect_status": [201], "interval": "1s"}]}},
        "flows": {
            "checkin": {"interval": "1s", "timeout": "1s", "services": ["backend"], "steps": [
                {"name": "start", "method": "POST", "url": http_target.url("/start"),
                 "expect_status": 201, "capture": {"id": "$.id"}},
                {"name": "check", "url": http_target.url("/check/{id}"),
                 "assert": {"$.status": "checked_in"}}]},
            "broken": {"interval": "1s", "timeout": "1s", "services": ["backend"], "steps": [
                {"name": "first", "url": http_target.url("/broken")},
                {"name": "second", "url": http_target.url("/start")}]},
        },
    })
    exporter = Exporter(config)
    exporter.start()
    try:
        yield "http://{}:{}/metrics".format(*exporter.address)
    finally:
        exporter.stop()


class TestExporter:
    """The exporter runs each flow on its interval and publishes it, promtool-clean."""

    def test_flow_metrics(self, exporter_with_flows: str) -> None:
        """Per-flow and per-step success, duration, status and the failing step's reason."""
        url = exporter_with_flows
        assert wait_until(lambda: all(
            value(scrape(url), "monitoriza_flow_success", {"flow": name}) is not None
            for name in ("checkin", "broken")), 10)
        text = scrape(url)

        def sample(name: str, **labels: str) -> float | None:
            return value(text, name, labels)

        assert sample("monitoriza_flow_success", flow="checkin") == 1.0
        assert sample("monitoriza_flow_success", flow="broken") == 0.0
        assert sample("monitoriza_flow_step_success", flow="checkin", step="check") == 1.0
        assert sample("monitoriza_flow_step_http_status_code", flow="checkin",
                      step="start") == 201.0
        assert sample("monitoriza_flow_step_success", flow="broken", step="first") == 0.0
        assert sample("monitoriza_flow_step_success", flow="broken", step="second") == 0.0
        assert sample("monitoriza_flow_failure_reason", flow="broken", step="first",
                      reason="status") == 1.0
        assert sample("monitoriza_flow_failure_reason", flow="checkin", step="start",
                      reason="status") is None
        duration = sample("monitoriza_flow_duration_seconds", flow="checkin")
        step_duration = sample("monitoriza_flow_step_duration_seconds", flow="checkin",
                               step="start")
        assert duration is not None and step_duration is not None
        assert 0 < step_duration <= duration < 1.0
        last_run = sample("monitoriza_flow_last_run_timestamp_seconds", flow="checkin")
        assert last_run is not None and abs(last_run - time.time()) < 5
        assert sample("monitoriza_flow_last_success_timestamp_seconds", flow="broken") == 0.0
        assert sample("monitoriza_flow_interval_seconds", flow="checkin") == 1.0
        # A flow is not a service: no probe series and no health score of its own.
        assert 'service="@flow"' not in text
        assert sample("monitoriza_probe_success", service="backend", probe="http") == 1.0
        result = promtool_check_metrics(text)
        assert result.returncode == 0, result.stdout + result.stderr

    def test_flows_count_in_the_health_of_their_services(self,
                                                         exporter_with_flows: str) -> None:
        """Each flow↔service pair is published; the backend's availability counts its probe
        and both flows (one failing: 2/3), while its probe's own success stays 1, so rules
        can still tell a flow failing behind green probes."""
        url = exporter_with_flows
        dimension = {"service": "backend", "dimension": "availability"}
        assert wait_until(lambda: value(scrape(url), "monitoriza_health_dimension_score",
                                        dimension) == pytest.approx(2 / 3), 10)
        text = scrape(url)
        for flow_name in ("checkin", "broken"):
            assert value(text, "monitoriza_flow_service",
                         {"flow": flow_name, "service": "backend"}) == 1.0
        assert value(text, "monitoriza_probe_success",
                     {"service": "backend", "probe": "http"}) == 1.0
        result = promtool_check_metrics(text)
        assert result.returncode == 0, result.stdout + result.stderr

    def test_runs_on_its_interval(self, exporter_with_flows: str,
                                  http_target: HttpTarget) -> None:
        """A 1 s flow runs again about every second."""
        assert wait_until(lambda: http_target.hits("/broken") >= 1, 10)
        first = http_target.hits("/broken")
        time.sleep(2.5)
        assert 2 <= http_target.hits("/broken") - first <= 3


@pytest.fixture
def demo_flow(tmp_path: Path) -> Iterator[tuple[Flow, Path]]:
    """The demo's resident-checkin flow, pointed at a demo server running in a thread."""
    gateway, backend, chat = free_port(), free_port(), free_port()
    write_layout(tmp_path, DemoLayout(host="127.0.0.1", chat_port=chat, http=(
        HttpService("api-gateway", gateway), HttpService("backend", backend, ("database",)))))
    stop = threading.Event()
    returned: list[int] = []
    thread = threading.Thread(target=lambda: returned.append(serve(tmp_path, stop=stop)))
    thread.start()
    try:
        ports = replace(ports_for(21000, demo_services=5),
                        demo_http=(gateway, backend, free_port(), free_port(), free_port()))
        data = {"services": {"api-gateway": {}, "backend": {}},
                "flows": demo_plan.demo_flows(ports)}
        assert wait_until(lambda: run_flow("probe", config_from_data(data).flows[
            "resident-checkin"]).steps[0].status is not None, 10)
        yield config_from_data(data).flows["resident-checkin"], tmp_path
    finally:
        stop.set()
        thread.join(10)
    assert returned == [0]


class TestDemoFlow:
    """monitoriza up --demo probes a resident check-in through the gateway and backend."""

    def test_demo_config_has_the_flow(self, tmp_path: Path) -> None:
        """The generated demo configuration loads with its flow touching both services."""
        ports = ports_for(21000, demo_services=5)
        paths = demo_plan.DemoPaths(tmp_path, "/usr/bin/redis-server")
        config = config_from_data(demo_plan.demo_config(ports, paths, docker_host=None))
        assert config.flows["resident-checkin"].services == ["api-gateway", "backend"]

    def test_check_in_then_backend_down(self, demo_flow: tuple[Flow, Path]) -> None:
        """The flow passes; with the backend down its confirm step fails, the gateway's
        check-in still passing."""
        journey, run_dir = demo_flow
        assert run_flow("resident-checkin", journey).ok
        apply_fault(run_dir, "backend", "down")
        result = run_flow("resident-checkin", journey)
        assert [(s.name, s.ok, s.reason) for s in result.steps] == [
            ("check-in", True, None), ("confirm", False, "connection")]

    def test_break_checkins_fails_confirm_with_a_500(self, demo_flow: tuple[Flow, Path]
                                                     ) -> None:
        """``break-checkins`` on the backend fails the confirm step with status 500 (the
        backend's /health untouched); ``clear`` and the flow passes again."""
        journey, run_dir = demo_flow
        apply_fault(run_dir, "backend", "break-checkins")
        result = run_flow("resident-checkin", journey)
        assert [(s.name, s.ok, s.reason, s.status) for s in result.steps] == [
            ("check-in", True, None, 201), ("confirm", False, "status", 500)]
        apply_fault(run_dir, "backend", "clear")
        assert run_flow("resident-checkin", journey).ok
