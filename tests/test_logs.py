"""Structured logs (monitoriza/logs.py, docs/logging.md): the formats, the flags, one incident
told from notification to outcome by a real responder, and no secret in any line."""

from __future__ import annotations

import io
import json
import logging
import os
import pty
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from selenium.webdriver.common.by import By

from monitoriza import logs
from monitoriza.cli import build_parser
from monitoriza.healing.chat import ChatMessage, ChatNotifier, read_webhook_url
from tests.support.alertmanager import CaptureServer
from tests.support.binaries import free_port, wait_until
from tests.support.browser import ARTIFACTS, chromium_driver
from tests.support.redis_server import RedisServerFactory
from tests.support.responder import TOKEN
from tests.support.responder_process import ResponderFactory
from tests.support.stack import DemoStack, wait_for

REDIS_PASSWORD = "redis-pass-7f3a9c"  # the secrets the tests look for in every line
WEBHOOK_SECRET = "T0SECRET/B0SECRET/xoxSecretPath42"


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """Each test configures the root logger; put back what pytest had."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


def json_lines(text: str) -> list[dict[str, Any]]:
    """The lines of ``text`` that are JSON objects (a process may print other lines too)."""
    found = []
    for line in text.splitlines():
        if line.startswith("{"):
            document = json.loads(line)
            assert isinstance(document, dict), line
            found.append(document)
    return found


class TestFormats:
    """JSON lines off a terminal, the console format on one, both for every kind of line."""

    def test_json_lines_parse_with_the_common_fields(self) -> None:
        """structlog events and stdlib records both render as one JSON object a line, with
        timestamp, level, logger and event first, and the bound incident on both."""
        out = io.StringIO()
        assert logs.configure("INFO", "json", out) == "json"
        with logs.bound_incident(12, action=3):
            logs.get_logger("monitoriza.test").info("incident.opened", root_cause="redis")
            logging.getLogger("monitoriza.other").warning("plain %s line", "stdlib")
        lines = out.getvalue().splitlines()
        parsed = [json.loads(line) for line in lines]
        assert [list(p)[:4] for p in parsed] == [["timestamp", "level", "logger", "event"]] * 2
        assert parsed[0]["event"] == "incident.opened" and parsed[0]["root_cause"] == "redis"
        assert parsed[1]["event"] == "plain stdlib line" and parsed[1]["level"] == "warning"
        assert {p["incident"] for p in parsed} == {12} and {p["action"] for p in parsed} == {3}
        assert datetime.fromisoformat(parsed[0]["timestamp"]).tzinfo is not None

    def test_auto_is_console_on_a_terminal_and_json_elsewhere(self) -> None:
        """``auto`` looks at the stream: a real pseudo-terminal gets the console format."""
        primary, secondary = pty.openpty()
        try:
            with os.fdopen(secondary, "w", closefd=False) as terminal:
                assert logs.resolve_format("auto", terminal) == "console"
        finally:
            os.close(primary)
            os.close(secondary)
        assert logs.resolve_format("auto", io.StringIO()) == "json"
        assert logs.resolve_format("console", io.StringIO()) == "console"
        with pytest.raises(ValueError, match="log format must be one of auto, json, console"):
            logs.resolve_format("xml", io.StringIO())

    def test_level_filters_both_kinds_of_line(self) -> None:
        """At WARNING, info events and info records are dropped; warnings pass."""
        out = io.StringIO()
        logs.configure("WARNING", "console", out)
        events = logs.get_logger("monitoriza.test")
        events.info("action.started", incident=1)
        logging.getLogger("monitoriza.x").info("quiet")
        events.warning("chat.failed", incident=1, reason="HTTP 500")
        text = out.getvalue()
        assert "action.started" not in text and "quiet" not in text
        assert "chat.failed" in text and "reason='HTTP 500'" in text
        assert not text.lstrip().startswith("{")
        with pytest.raises(ValueError, match="log level must be one of"):
            logs.configure("LOUD", "json", out)

    def test_flags_are_global_options(self) -> None:
        """``--log-format`` sits beside ``--log-level``, before the command; bad values are
        usage errors."""
        args = build_parser().parse_args(["--log-level", "DEBUG", "--log-format", "json",
                                          "check-config", "x.yml"])
        assert (args.log_level, args.log_format) == ("DEBUG", "json")
        assert build_parser().parse_args(["check-config", "x.yml"]).log_format == "auto"
        with pytest.raises(SystemExit):
            build_parser().parse_args(["--log-format", "xml", "check-config", "x.yml"])

    def test_flags_reach_a_real_process(self, tmp_path: Path) -> None:
        """The exporter logs ``config.loaded`` before it binds: as JSON when stderr is a pipe,
        in the console format with ``--log-format console``, not at all at ``WARNING``."""
        config = tmp_path / "monitoriza.yml"
        config.write_text(yaml.safe_dump({"services": {"web": {"probes": [
            {"kind": "tcp", "host": "127.0.0.1", "port": 9}]}}}))
        blocker = free_port()

        def run(*flags: str) -> str:
            import socket  # noqa: PLC0415 - only this test holds a port

            with socket.socket() as held:
                held.bind(("127.0.0.1", blocker))
                held.listen()
                done = subprocess.run(
                    [sys.executable, "-m", "monitoriza", *flags, "exporter", "--config",
                     str(config), "--listen", f"127.0.0.1:{blocker}"],
                    capture_output=True, text=True, timeout=60, check=False)
            assert done.returncode == 2, done.stderr  # the port is taken
            return done.stderr

        default = json_lines(run())
        loaded = [line for line in default if line["event"] == "config.loaded"]
        assert loaded and loaded[0]["services"] == 1 and loaded[0]["probes"] == 1
        assert loaded[0]["path"] == str(config) and loaded[0]["reload"] is False
        console = run("--log-format", "console")
        assert "config.loaded" in console and "services=1" in console
        assert not json_lines(console)
        assert "config.loaded" not in run("--log-level", "WARNING")


class TestRedaction:
    """Secrets are masked in every field, including stdlib messages and tracebacks."""

    def test_secret_keys_url_passwords_bearer_and_registered_values(self) -> None:
        out = io.StringIO()
        logs.configure("INFO", "json", out)
        url = f"https://chat.example/hooks/{WEBHOOK_SECRET}"
        logs.register_secret(url)
        events = logs.get_logger("monitoriza.test")
        events.info("x.sent", token="t0ken-value", headers={"Authorization": "Bearer abc"},
                    target=f"redis://:{REDIS_PASSWORD}@db:6379/0", api_key="k")
        logging.getLogger("monitoriza.x").warning("posting to %s with Bearer %s", url, TOKEN)
        try:
            raise RuntimeError(f"cannot reach {url}")
        except RuntimeError:
            logging.getLogger("monitoriza.x").exception("delivery failed")
        text = out.getvalue()
        for secret in ("t0ken-value", "abc", REDIS_PASSWORD, WEBHOOK_SECRET, TOKEN):
            assert secret not in text, secret
        first, second, third = (json.loads(line) for line in text.splitlines())
        assert first["token"] == first["api_key"] == logs.MASK
        assert first["headers"] == {"Authorization": logs.MASK}
        assert first["target"] == "redis://:***@db:6379/0"
        assert second["event"] == "posting to *** with Bearer ***"
        assert "RuntimeError: cannot reach ***" in third["exception"]

    def test_a_failed_chat_post_is_logged_without_its_url(self, tmp_path: Path) -> None:
        """A webhook nobody answers: one ``chat.failed`` line with the incident and the
        reason, and the URL (read from its file, so registered) nowhere in it."""
        out = io.StringIO()
        logs.configure("INFO", "json", out)
        url_file = tmp_path / "webhook"
        url_file.write_text(f"http://127.0.0.1:{free_port()}/hooks/{WEBHOOK_SECRET}\n")
        notifier = ChatNotifier(read_webhook_url(str(url_file)), timeout=2.0,
                                max_per_minute=10, retries=0)
        assert notifier.post(ChatMessage(title="Healed: redis", text="ok", incident_id=41))
        assert notifier.close(timeout=10.0)
        failed = [line for line in json_lines(out.getvalue()) if line["event"] == "chat.failed"]
        assert len(failed) == 1, out.getvalue()
        assert failed[0]["incident"] == 41 and failed[0]["reason"] == "ConnectionError"
        assert failed[0]["level"] == "warning"
        assert WEBHOOK_SECRET not in out.getvalue()


def alert_notification(fingerprint: str) -> dict[str, Any]:
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return {"version": "4", "receiver": "responder", "status": "firing",
            "groupKey": '{}:{service="cache"}', "truncatedAlerts": 0,
            "alerts": [{"status": "firing", "fingerprint": fingerprint, "startsAt": now,
                        "endsAt": "0001-01-01T00:00:00Z",
                        "labels": {"alertname": "ServiceDown", "service": "cache",
                                   "severity": "P3"},
                        "annotations": {"summary": "cache is down"}}]}


class TestResponderIncident:
    """A real responder process heals a real alert; its stderr tells the whole story."""

    def test_one_incident_from_notification_to_outcome(
            self, tmp_path: Path, responder_process: ResponderFactory,
            make_redis_server: RedisServerFactory, capture_server: CaptureServer) -> None:
        """notification.accepted -> incident.opened -> healing.decision -> action.started ->
        action.finished, tied by the alert's fingerprint and then by one incident id; the
        action (a command, verified by a Redis probe that logs in with a password file) and
        the chat posts happen, and no line holds the bearer token, the Redis password or the
        webhook's secret path."""
        redis_server = make_redis_server("--requirepass", REDIS_PASSWORD)
        password_file = tmp_path / "redis-password"
        password_file.write_text(REDIS_PASSWORD + "\n")
        marker = tmp_path / "restarted"
        webhook_file = tmp_path / "chat-webhook"
        webhook_file.write_text(f"{capture_server.url}/hooks/{WEBHOOK_SECRET}\n")
        services = {"cache": {"probes": [
            {"kind": "redis", "name": "redis", "url": redis_server.url,
             "password_file": str(password_file)}],
            "healing": [{"name": "restart-cache", "match": {"alertname": ["ServiceDown"]},
                         "steps": [{"action": "command", "argv": [
                             sys.executable, "-c",
                             f"open({str(marker)!r}, 'w').write('done')"]}],
                         "verify": {"probe": "redis", "timeout": "10s",
                                    "interval": "200ms"}}]}}
        responder = responder_process(services=services, healing={
            "allowed_commands": [sys.executable],
            "kill_switch_file": str(tmp_path / "kill-switch"),
            "chat": {"webhook_url_file": str(webhook_file), "retries": 0}})

        answer = requests.post(f"{responder.url}/api/v1/alerts", timeout=10,
                               headers={"Authorization": f"Bearer {TOKEN}"},
                               json=alert_notification("cache-down-1"))
        assert answer.status_code == 200, answer.text

        def finished() -> bool:
            return any(line["event"] == "action.finished"
                       for line in json_lines(responder.log_path.read_text()))
        assert wait_until(finished, 60.0, interval=0.2), responder.log_path.read_text()
        capture_server.wait_for(lambda post: post.path == f"/hooks/{WEBHOOK_SECRET}"
                                and "Healed" in json.dumps(post.body), 10.0, "a Healed post")
        assert marker.read_text() == "done"
        time.sleep(0.2)  # the chat thread's own lines, if any, land before reading
        text = responder.log_path.read_text()
        lines = json_lines(text)

        story = [line for line in lines if line["event"] in {
            "notification.accepted", "incident.opened", "healing.decision", "action.started",
            "action.finished"}]
        assert [line["event"] for line in story] == [
            "notification.accepted", "incident.opened", "healing.decision", "action.started",
            "action.finished"], story
        accepted, opened, decision, started, done = story
        assert accepted["fingerprints"] == ["cache-down-1"] and accepted["alerts"] == 1
        assert (accepted["receiver"], accepted["firing"], accepted["resolved"]) == (
            "responder", 1, 0)
        assert opened["alert"] == "cache-down-1" and opened["root_cause"] == "cache"
        assert opened["reasoning"] == ["cache is down and is the only failing service"]
        incident = opened["incident"]
        assert isinstance(incident, int)
        assert {decision["incident"], started["incident"], done["incident"]} == {incident}
        assert decision["verdict"] == "queued" and decision["playbook"] == "restart-cache"
        assert started["playbook"] == done["playbook"] == "restart-cache"
        assert started["action"] == done["action"]
        assert done["outcome"] == "success", done
        assert 0 <= done["duration_seconds"] < 30
        # Every line logged while the action ran carries the incident (bound, not passed).
        during = lines[lines.index(started):lines.index(done) + 1]
        assert all(line.get("incident") == incident for line in during), during

        for secret in (TOKEN, REDIS_PASSWORD, WEBHOOK_SECRET):
            assert secret not in text, secret

    def test_a_refusal_names_its_check_and_reason(
            self, tmp_path: Path, responder_process: ResponderFactory) -> None:
        """With the kill switch on, the queued action is refused: ``healing.refused`` with
        the incident, the playbook, ``check`` kill_switch and the reason; nothing started."""
        kill_switch = tmp_path / "kill-switch"
        kill_switch.write_text("on\n")
        services = {"cache": {"healing": [{
            "name": "restart-cache", "steps": [{"action": "command",
                                                "argv": [sys.executable, "-c", "pass"]}]}]}}
        responder = responder_process(services=services, healing={
            "allowed_commands": [sys.executable], "kill_switch_file": str(kill_switch)})
        answer = requests.post(f"{responder.url}/api/v1/alerts", timeout=10,
                               headers={"Authorization": f"Bearer {TOKEN}"},
                               json=alert_notification("cache-down-2"))
        assert answer.status_code == 200, answer.text

        def refused() -> list[dict[str, Any]]:
            return [line for line in json_lines(responder.log_path.read_text())
                    if line["event"] == "healing.refused"]
        assert wait_until(lambda: bool(refused()), 30.0, interval=0.2), \
            responder.log_path.read_text()
        (line,) = refused()
        opened = next(found for found in json_lines(responder.log_path.read_text())
                      if found["event"] == "incident.opened")
        assert (line["incident"], line["service"], line["playbook"]) == (
            opened["incident"], "cache", "restart-cache")
        assert (line["outcome"], line["check"]) == ("blocked", "kill_switch")
        assert "kill switch" in line["reason"]
        assert not any(found["event"] == "action.started"
                       for found in json_lines(responder.log_path.read_text()))


class TestDemoIncident:
    """``monitoriza up --demo``: Redis killed, healed by the demo's playbook; the responder's
    log file tells it, its heal result reaches the chat inbox, and a browser reads that."""

    def test_redis_down_logged_and_posted_to_the_chat_inbox(self, demo_stack: DemoStack) -> None:
        """RUN/logs/responder.log (JSON lines: not a terminal) holds notification.accepted ->
        incident.opened -> action.started -> action.finished for the Redis incident with one
        incident id; the inbox's ``responder`` receiver gets "Healed: redis", which
        Chromium sees as a page; up's output names the console and how to print the token,
        and no log of the run holds the token or the chat webhook URL file's content."""
        stack = demo_stack
        stack.fault("redis", "down")
        try:
            def healed() -> dict[str, Any] | None:
                for found in stack.incidents():
                    if (found["root_cause"] or {}).get("service") == "redis":
                        incident = stack.incident(found["id"])
                        if any(a["outcome"] == "success" for a in incident["actions"]):
                            return incident
                return None
            wait_for(lambda: healed() is not None, 120, "the Redis incident healed", stack)
        finally:
            stack.fault("redis", "clear")
        incident = healed()
        assert incident is not None
        log_file = stack.run_dir / "logs" / "responder.log"
        wait_for(lambda: any(line["event"] == "action.finished"
                             for line in json_lines(log_file.read_text())),
                 10, "action.finished in the responder's log", stack)
        lines = json_lines(log_file.read_text())
        mine = [line for line in lines if line.get("incident") == incident["id"]]
        opened = next(line for line in mine if line["event"] == "incident.opened")
        accepted = [line for line in lines if line["event"] == "notification.accepted"
                    and opened["alert"] in line["fingerprints"]]
        assert accepted and lines.index(accepted[0]) < lines.index(opened)
        events = [line["event"] for line in mine]
        assert events.index("incident.opened") < events.index("action.started") \
            < events.index("action.finished"), events
        done = next(line for line in mine if line["event"] == "action.finished")
        assert (done["outcome"], done["playbook"], opened["root_cause"]) == (
            "success", "restart-redis", "redis")

        def posted() -> list[dict[str, Any]]:
            return [message for message in stack.chat_messages()
                    if message["receiver"] == "responder"
                    and "Healed: redis" in json.dumps(message["payload"])]
        wait_for(lambda: bool(posted()), 15, "the responder's Healed post", stack)
        with chromium_driver() as driver:  # a browser's own Accept header: the page
            driver.get(f"{stack.chat}/chat?receiver=responder")
            titles = [element.text for element in driver.find_elements(By.TAG_NAME, "h2")]
            assert "Healed: redis (restart-redis)" in titles, titles
            ARTIFACTS.mkdir(exist_ok=True)
            driver.get(f"{stack.chat}/chat")
            assert driver.save_screenshot(str(ARTIFACTS / "demo-chat-inbox.png"))

        output = stack.log()
        token_file = stack.run_dir / "secrets" / "responder-token"
        assert "/console/" in output and f"token: cat {token_file}" in output
        webhook = (stack.run_dir / "secrets" / "chat-webhook-url").read_text().strip()
        for path in [stack.output, *(stack.run_dir / "logs").iterdir()]:
            text = path.read_text(errors="replace")
            assert stack.token not in text, path
            assert webhook not in text, path


class TestOtherEvents:
    """The events no incident run above produces: breaker changes and a refused reload."""

    def test_breaker_transition_only_on_a_change_of_state(self) -> None:
        from monitoriza.config.schema import Breaker  # noqa: PLC0415
        from monitoriza.healing.breaker import BreakerState, log_transition, record  # noqa: PLC0415

        out = io.StringIO()
        logs.configure("INFO", "json", out)
        settings = Breaker(consecutive_failures=2)
        closed = BreakerState.initial(settings)
        once = record(closed, False, 100.0, settings)
        opened = record(once, False, 101.0, settings)
        assert not log_transition("redis", "restart-redis", closed, once, incident=5)
        assert log_transition("redis", "restart-redis", once, opened, incident=5)
        (line,) = json_lines(out.getvalue())
        assert (line["event"], line["from"], line["to"]) == ("breaker.transition", "closed",
                                                             "open")
        assert (line["service"], line["action"], line["incident"]) == (
            "redis", "restart-redis", 5)
        assert line["open_for"] == settings.open_for

    def test_a_refused_reload_names_every_error(self, tmp_path: Path) -> None:
        """SIGHUP's reload of a broken file: one ``config.reload_refused`` error line with
        each message; a good file again: ``config.loaded`` with ``reload`` true."""
        from monitoriza.config import load_config  # noqa: PLC0415
        from monitoriza.exporter.app import Exporter  # noqa: PLC0415

        out = io.StringIO()
        logs.configure("INFO", "json", out)
        path = tmp_path / "monitoriza.yml"
        path.write_text(yaml.safe_dump({"services": {"web": {}}}))
        exporter = Exporter(load_config(path), path, "127.0.0.1:0")
        path.write_text(yaml.safe_dump({"services": {"web": {"tier": "gold"}}, "bogus": 1}))
        assert exporter.reload() is False
        path.write_text(yaml.safe_dump({"services": {"web": {}, "db": {}}}))
        assert exporter.reload() is True
        refused, loaded = json_lines(out.getvalue())
        assert (refused["event"], refused["level"]) == ("config.reload_refused", "error")
        assert refused["path"] == str(path) and len(refused["errors"]) == 2, refused
        assert any("tier" in error for error in refused["errors"])
        assert (loaded["event"], loaded["reload"], loaded["services"]) == (
            "config.loaded", True, 2)
