"""Healing actions: placeholders, the allow-lists against injection, real runs, and verify.

Injection tests prove a negative by watching real side effects: the only allowed command is
a script in ``tmp_path`` that appends its arguments to a marker file, every shell payload
would create its own file in ``tmp_path``, and the HTTP targets are real servers that count
every request. A positive control in each group shows that the same setup does notice an
action that runs.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

import psutil
import pytest
import redis
from pydantic import ValidationError
from redis.backoff import NoBackoff
from redis.retry import Retry

from monitoriza.config.schema import (
    CommandAction,
    DockerRestartAction,
    HttpAction,
    RedisProbe,
    TcpProbe,
    Verify,
)
from monitoriza.durations import parse_duration
from monitoriza.healing.actions import ActionRefused, ActionResult, ActionRunner
from monitoriza.healing.placeholders import (
    ActionContext,
    PlaceholderError,
    is_safe_value,
    placeholders,
    render,
)
from monitoriza.healing.verify import VerifyResult, promql_truthy, verify
from tests.support.binaries import free_port, require_binary, wait_until
from tests.support.dockerd import DockerEngine
from tests.support.http_targets import HttpTarget
from tests.support.redis_server import RedisServer

CONTEXT = ActionContext("cache", "RedisDown", {"instance": "redis-1", "port": "6379"})

# Label values that must never fill a placeholder. "{side}" is replaced by a file path in
# tmp_path that the payload would create if a shell ever interpreted it.
UNSAFE_VALUES = [
    "; rm -rf /",
    "$(touch {side})",
    "`touch {side}`",
    "x | touch {side}",
    "x && touch {side}",
    "x\ntouch {side}",
    "x;touch {side}",
    "redis 1",
    "redis-1\n",
    "../../etc/passwd",
    "..",
    "a..b",
    "http://evil.example/",
    "evil.example@127.0.0.1",
    "%2e%2e",
    "-rf",
    "--help",
    "",
    "x" * 129,
    "r\u00e9dis",
    "redis\x00",
    "{service}",
]


def label_context(value: str) -> ActionContext:
    return ActionContext("cache", "RedisDown", {"x": value})


def command(*argv: str, timeout: str = "5s") -> CommandAction:
    return CommandAction.model_validate(
        {"action": "command", "argv": list(argv), "timeout": timeout}
    )


def http_action(url: str, method: str = "POST", timeout: str = "5s") -> HttpAction:
    """An HTTP step; one the schema rejects (a placeholder in the port) is built unvalidated,
    because the runner must not depend on the configuration having been checked."""
    fields: dict[str, Any] = {"action": "http", "url": url, "method": method, "timeout": timeout}
    try:
        return HttpAction.model_validate(fields)
    except ValidationError:
        fields["timeout"] = parse_duration(timeout)
        return HttpAction.model_construct(**fields)


def restart(
    container: str, docker_url: str | None = None, timeout: str = "1s"
) -> DockerRestartAction:
    return DockerRestartAction.model_validate(
        {
            "action": "docker_restart",
            "container": container,
            "docker_url": docker_url,
            "timeout": timeout,
        }
    )


def all_hits(target: HttpTarget) -> int:
    """Requests ``target`` received on any path at all."""
    counter = cast(Any, target)._hits  # the fixture only exposes per-path counts
    return sum(counter.values())


class Script:
    """An allowed command: appends its arguments, one per line, to a marker file."""

    def __init__(self, directory: Path, name: str = "heal") -> None:
        directory.mkdir(exist_ok=True)
        self.path = directory / name
        self.marker = directory / f"{name}.marker"
        self.path.write_text(f"#!/bin/sh\nprintf '%s\\n' \"$@\" >> '{self.marker}'\n")
        self.path.chmod(self.path.stat().st_mode | stat.S_IXUSR)

    def ran(self) -> bool:
        return self.marker.exists()

    def arguments(self) -> list[str]:
        return self.marker.read_text().splitlines()


@pytest.fixture
def script(tmp_path: Path) -> Script:
    return Script(tmp_path / "bin")


@pytest.fixture
def other_host() -> Iterator[HttpTarget]:
    """A second real HTTP server, standing in for a host that is not on the allow-list."""
    target = HttpTarget()
    try:
        yield target
    finally:
        target.close()


class TestPlaceholders:
    """Rendering {service}, {alertname} and {label.NAME} into a template."""

    def test_fills_service_alertname_and_labels(self) -> None:
        """Each placeholder is replaced by its value; other text is kept as is."""
        rendered = render("{service}/{alertname}:{label.instance}-{label.port}", CONTEXT)
        assert rendered == "cache/RedisDown:redis-1-6379"

    def test_double_braces_are_literal(self) -> None:
        """{{ and }} stand for single braces and are never placeholders."""
        assert render("{{service}} {{{service}}}", CONTEXT) == "{service} {cache}"

    def test_text_without_placeholders_is_unchanged(self) -> None:
        """A template without braces renders to itself, shell syntax included."""
        assert render("$(echo hi); a|b && c `d` %s %(x)s", CONTEXT) == (
            "$(echo hi); a|b && c `d` %s %(x)s"
        )

    @pytest.mark.parametrize(
        "template",
        [
            "{foo}",
            "{0}",
            "{}",
            "{label}",
            "{label.}",
            "{label.a-b}",
            "{service!r}",
            "{service:>10}",
            "{label.x.__class__}",
            "{Service}",
            "{ service}",
            "{label.x[0]}",
        ],
    )
    def test_unknown_placeholders_are_errors(self, template: str) -> None:
        """Anything in braces that is not a known placeholder is an error, not left as is."""
        with pytest.raises(PlaceholderError, match="unknown placeholder"):
            render(template, label_context("v"))

    @pytest.mark.parametrize("template", ["{service", "a{", "}", "a}b", "{label.{x}}", "{{{"])
    def test_malformed_templates_are_errors(self, template: str) -> None:
        """An unclosed brace, a lone closing brace or nested braces are errors."""
        with pytest.raises(PlaceholderError):
            render(template, CONTEXT)

    def test_missing_label_is_an_error(self) -> None:
        """A label the alert does not carry is an error naming the label, not ''."""
        with pytest.raises(PlaceholderError, match="no label 'pod'") as raised:
            render("{label.pod}", CONTEXT)
        assert raised.value.placeholder == "label.pod"

    @pytest.mark.parametrize("value", UNSAFE_VALUES)
    def test_unsafe_label_values_are_refused(self, value: str) -> None:
        """A label value that is not a plain token never fills a placeholder."""
        with pytest.raises(PlaceholderError, match="label 'x'") as raised:
            render("restart {label.x}", label_context(value))
        assert raised.value.placeholder == "label.x"

    @pytest.mark.parametrize(
        "value", ["redis-1", "Redis_1", "10.0.0.7:6379", "a.b.c", "0", "x" * 128, "pod-7f9c:a_b"]
    )
    def test_plain_tokens_are_accepted(self, value: str) -> None:
        """Letters, digits and ._:- (starting with a letter or digit) fill placeholders."""
        assert is_safe_value(value)
        assert render("{label.x}", label_context(value)) == value

    def test_unsafe_service_and_alertname_are_refused(self) -> None:
        """{service} and {alertname} follow the same rule: both can come from the alert."""
        with pytest.raises(PlaceholderError, match="alertname"):
            render("{alertname}", ActionContext("cache", "Down; reboot", {}))
        with pytest.raises(PlaceholderError, match="service"):
            render("{service}", ActionContext("../cache", "Down", {}))

    def test_values_are_not_rescanned(self) -> None:
        """A filled value is not read as a template again (it could not be one anyway)."""
        context = ActionContext("cache", "RedisDown", {"a": "label.b", "b": "secret"})
        assert render("{{{label.a}}}", context) == "{label.b}"

    def test_placeholders_lists_names_without_values(self) -> None:
        """placeholders() checks a template at configuration time, without an alert."""
        assert placeholders("{service}-{{x}}-{label.pod}") == ["service", "label.pod"]
        with pytest.raises(PlaceholderError, match="unknown placeholder"):
            placeholders("{pod}")


class TestCommandInjection:
    """No label value, however crafted, makes anything run but the allowed argv."""

    @pytest.mark.parametrize("value", UNSAFE_VALUES)
    @pytest.mark.parametrize(
        "argv", [("SCRIPT", "{label.x}"), ("SCRIPT", "--target={label.x}"), ("{label.x}",)]
    )
    def test_unsafe_label_runs_nothing(
        self, script: Script, tmp_path: Path, value: str, argv: tuple[str, ...]
    ) -> None:
        """The action is refused before anything starts: no marker, no side-effect file."""
        side = tmp_path / f"pwned-{uuid.uuid4().hex}"
        context = label_context(value.replace("{side}", str(side)))
        runner = ActionRunner([str(script.path)], [], None)
        action = command(*(str(script.path) if part == "SCRIPT" else part for part in argv))
        result = runner.run(action, context)
        assert not result.ok
        assert result.refused
        assert result.detail.startswith("refused: cannot fill a placeholder")
        assert not script.ran()
        assert not side.exists()
        assert list(tmp_path.glob("pwned-*")) == []

    def test_safe_label_runs_the_script_as_a_positive_control(self, script: Script) -> None:
        """The same setup does see a run: the marker holds the argument, verbatim."""
        runner = ActionRunner([str(script.path)], [], None)
        result = runner.run(command(str(script.path), "--target={label.instance}"), CONTEXT)
        assert result.ok, result.detail
        assert not result.refused
        assert result.target == str(script.path)
        assert script.arguments() == ["--target=redis-1"]

    def test_shell_syntax_in_the_template_is_passed_literally(
        self, script: Script, tmp_path: Path
    ) -> None:
        """The argv never goes through a shell: $(...), ; and | reach the script as text."""
        side = tmp_path / "pwned-template"
        payloads = [f"$(touch {side})", f"; touch {side}", f"| touch {side}", f"`touch {side}`"]
        runner = ActionRunner([str(script.path)], [], None)
        assert runner.run(command(str(script.path), *payloads), CONTEXT).ok
        assert script.arguments() == payloads
        assert not side.exists()

    @pytest.mark.parametrize(
        "argv0",
        ["/bin/sh", "heal", "HEAL_ALIAS", "HEAL-evil", "{label.instance}", "{service}"],
    )
    def test_command_not_on_the_allow_list_is_refused(
        self, script: Script, tmp_path: Path, argv0: str
    ) -> None:
        """argv[0] must equal an allowed entry exactly: no basename, prefix or path alias."""
        evil = Script(tmp_path / "bin", "heal-evil")  # would leave its own marker
        argv0 = argv0.replace("HEAL_ALIAS", f"{script.path.parent}/./heal").replace(
            "HEAL-evil", str(evil.path)
        )
        side = tmp_path / "pwned-sh"
        runner = ActionRunner([str(script.path)], [], None)
        result = runner.run(command(argv0, "-c", f"touch {side}"), CONTEXT)
        assert not result.ok
        assert result.refused
        assert "is not in allowed_commands" in result.detail
        assert not script.ran()
        assert not evil.ran()
        assert not side.exists()

    def test_allowed_command_rendered_from_a_label_must_still_match(self) -> None:
        """A templated argv[0] is compared after rendering, so it can only pick allowed ones."""
        runner = ActionRunner(["true"], [], None)
        assert runner.run(command("{label.x}"), label_context("true")).ok
        refused = runner.run(command("{label.x}"), label_context("false"))
        assert refused.refused

    def test_dry_run_description_runs_nothing(self, script: Script) -> None:
        """What a dry run records (describe) names the rendered command and runs nothing."""
        runner = ActionRunner([str(script.path)], [], None)
        described = runner.describe(command(str(script.path), "{label.instance}"), CONTEXT)
        assert described.startswith(f"run {script.path} redis-1")
        assert not script.ran()
        assert runner.describe(command("/bin/sh"), CONTEXT).startswith("refused: ")

    def test_describe_and_check(self, script: Script) -> None:
        """describe() says what would run, or why it is refused; check() raises."""
        runner = ActionRunner([str(script.path)], [], None)
        action = command(str(script.path), "{label.instance}", "a b")
        assert runner.describe(action, CONTEXT) == f"run {script.path} redis-1 'a b' (timeout 5s)"
        runner.check(action, CONTEXT)
        refused = command(str(script.path), "{label.x}")
        assert runner.describe(refused, label_context("; rm")).startswith("refused: ")
        with pytest.raises(ActionRefused):
            runner.check(refused, label_context("; rm"))
        assert not script.ran()


class TestCommandExecution:
    """How an allowed command runs: exit status, environment, timeout."""

    def test_non_zero_exit_is_a_failure_with_stderr(self, tmp_path: Path) -> None:
        """ok iff exit 0; the detail carries the exit status and the end of stderr."""
        failing = tmp_path / "fail"
        failing.write_text("#!/bin/sh\necho 'cannot heal' >&2\nexit 3\n")
        failing.chmod(0o755)
        result = ActionRunner([str(failing)], [], None).run(command(str(failing)), CONTEXT)
        assert not result.ok
        assert not result.refused
        assert result.detail == "exit status 3: cannot heal"

    def test_environment_is_minimal(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """The command sees PATH and LANG only, none of the responder's environment."""
        monkeypatch.setenv("MONITORIZA_SECRET_TOKEN", "s3cret")
        dump = tmp_path / "env"
        dump.write_text(f"#!/bin/sh\nenv > '{tmp_path / 'env.out'}'\n")
        dump.chmod(0o755)
        assert ActionRunner([str(dump)], [], None).run(command(str(dump)), CONTEXT).ok
        names = {line.split("=", 1)[0] for line in (tmp_path / "env.out").read_text().splitlines()}
        assert "MONITORIZA_SECRET_TOKEN" not in names
        assert names <= {"PATH", "LANG", "PWD", "SHLVL", "_"}  # the last three come from sh

    def test_timeout_kills_the_whole_process_group(self, tmp_path: Path) -> None:
        """A command that overruns is killed with everything it started in the background."""
        pids = tmp_path / "pids"
        slow = tmp_path / "slow"
        slow.write_text(
            f"#!/bin/sh\nsleep 30 &\necho $! > '{pids}'\necho $$ >> '{pids}'\nsleep 30\n"
        )
        slow.chmod(0o755)
        started = time.monotonic()
        result = ActionRunner([str(slow)], [], None).run(
            command(str(slow), timeout="500ms"), CONTEXT
        )
        assert time.monotonic() - started < 5
        assert not result.ok
        assert "timed out after 0.5s; process group killed" in result.detail
        background, shell = (int(line) for line in pids.read_text().split())
        # The foreground sleep is in the group too; SIGKILLed processes take a moment to exit.
        assert wait_until(lambda: not _alive(background) and not _alive(shell), 5.0)
        assert wait_until(lambda: not _group_members(shell), 5.0), _group_members(shell)

    def test_missing_executable_is_a_failure(self, tmp_path: Path) -> None:
        """An allowed command that does not exist fails without raising."""
        missing = str(tmp_path / "nope")
        result = ActionRunner([missing], [], None).run(command(missing), CONTEXT)
        assert not result.ok
        assert not result.refused
        assert result.detail.startswith(f"cannot start {missing}")


def _alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie waiting for its reaper counts as gone)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _group_members(pgid: int) -> list[Any]:
    """Live processes in process group ``pgid``, with their command lines."""
    members = []
    for process in psutil.process_iter(["pid", "cmdline"]):
        try:
            if os.getpgid(process.pid) == pgid and process.status() != psutil.STATUS_ZOMBIE:
                members.append(process.info)
        except (ProcessLookupError, psutil.NoSuchProcess):
            continue
    return members


class TestHttpInjection:
    """An HTTP action only ever reaches the allowed origin and path prefix."""

    @pytest.fixture
    def runner(self, http_target: HttpTarget) -> ActionRunner:
        return ActionRunner([], [http_target.url("/heal")], None)

    def _assert_no_request(self, http_target: HttpTarget, other_host: HttpTarget) -> None:
        time.sleep(0.05)  # a request that was sent would have been counted by now
        assert all_hits(http_target) == 0
        assert all_hits(other_host) == 0

    @pytest.mark.parametrize("value", UNSAFE_VALUES)
    def test_unsafe_label_sends_nothing(
        self, runner: ActionRunner, http_target: HttpTarget, other_host: HttpTarget, value: str
    ) -> None:
        """A label that is not a plain token refuses the action: no server gets a request."""
        host = f"127.0.0.1:{http_target.port}"
        context = label_context(value.replace("{side}", "x"))
        for template in [
            "http://HOST/heal/{label.x}",
            "http://HOST/heal?target={label.x}",
            "http://{label.x}/heal",
            "http://HOST/heal/{label.x}/restart",
        ]:
            result = runner.run(http_action(template.replace("HOST", host)), context)
            assert result.refused, (template, result)
            assert not result.ok
        self._assert_no_request(http_target, other_host)

    @pytest.mark.parametrize(
        ("template", "value"),
        [
            ("http://{label.x}/heal", "127.0.0.2"),
            ("http://{label.x}/heal", "evil.example"),
            ("http://{label.x}/heal", "localhost:PORT"),
            ("http://{label.x}/heal", "127.0.0.1:OTHER"),
            ("http://127.0.0.1:{label.x}/heal", "OTHER"),
            ("https://{label.x}/heal", "127.0.0.1:PORT"),
            ("http://127.0.0.1:PORT@{label.x}/heal", "127.0.0.1:OTHER"),
            ("http://{label.x}@127.0.0.1:OTHER/heal", "127.0.0.1:PORT"),
            ("http://127.0.0.1:PORT/{label.x}", "admin"),
            ("http://127.0.0.1:PORT/heal{label.x}", "thy"),
            ("http://127.0.0.1:PORT/heal/%2e%2e/{label.x}", "admin"),
            ("http://127.0.0.1:PORT/heal/%2E%2E/{label.x}", "admin"),
            ("http://127.0.0.1:PORT/heal/%252e%252e/{label.x}", "admin"),
            ("http://127.0.0.1:PORT/heal/../{label.x}", "admin"),
            ("http://127.0.0.1:PORT/heal/./../{label.x}", "admin"),
            ("http://127.0.0.1:PORT/heal%2f..%2f{label.x}", "admin"),
            ("http://127.0.0.1:PORT/heal/..%5c{label.x}", "admin"),
            ("http://127.0.0.1:PORT/heal\\..\\{label.x}", "admin"),
        ],
    )
    def test_tokens_that_lead_elsewhere_are_refused(
        self,
        runner: ActionRunner,
        http_target: HttpTarget,
        other_host: HttpTarget,
        template: str,
        value: str,
    ) -> None:
        """Plain tokens pass the placeholder rule, but the rendered URL must stay allowed."""

        def fill(text: str) -> str:
            return text.replace("OTHER", str(other_host.port)).replace(
                "PORT", str(http_target.port)
            )

        result = runner.run(http_action(fill(template)), label_context(fill(value)))
        assert result.refused, result
        assert not result.ok
        self._assert_no_request(http_target, other_host)

    def test_allow_list_entries_are_checked(self) -> None:
        """An allow-list entry with userinfo, a query or a dot segment is a ValueError."""
        for entry in [
            "http://u:p@127.0.0.1/heal",
            "http://127.0.0.1/heal?x=1",
            "http://127.0.0.1/a/../heal",
            "ftp://127.0.0.1/",
        ]:
            with pytest.raises(ValueError, match="allowed URL"):
                ActionRunner([], [entry], None)

    def test_allowed_url_is_called_once(
        self, runner: ActionRunner, http_target: HttpTarget, other_host: HttpTarget
    ) -> None:
        """Positive control: a URL under the prefix is called, exactly once; ok on 2xx."""
        http_target.respond("/heal/redis-1", status=204)
        url = http_target.url("/heal/{label.instance}")
        result = runner.run(http_action(url), CONTEXT)
        assert result.ok, result.detail
        assert result.target == http_target.url("/heal/redis-1")
        assert result.detail.startswith("HTTP 204")
        assert http_target.hits("/heal/redis-1") == 1
        assert all_hits(http_target) == 1
        assert all_hits(other_host) == 0

    def test_exact_prefix_and_default_port_normalisation(self) -> None:
        """The prefix itself is allowed, scheme/host case and the default port do not matter."""
        runner = ActionRunner([], ["http://example.test/heal"], None)
        for url in [
            "http://example.test/heal",
            "HTTP://Example.TEST:80/heal/x",
            "http://example.test/heal/?x=1",
        ]:
            runner.check(http_action(url), CONTEXT)
        for url in [
            "http://example.test:8080/heal",
            "https://example.test/heal",
            "http://example.test./heal",
            "http://example.test/heal2",
        ]:
            with pytest.raises(ActionRefused):
                runner.check(http_action(url), CONTEXT)

    def test_non_2xx_is_a_failure_and_redirects_are_not_followed(
        self, runner: ActionRunner, http_target: HttpTarget, other_host: HttpTarget
    ) -> None:
        """A 500 fails; a 302 to another host fails without the other host being called."""
        http_target.respond("/heal/a", status=500)
        http_target.respond("/heal/b", status=302, headers={"Location": other_host.url("/x")})
        failed = runner.run(http_action(http_target.url("/heal/a")), CONTEXT)
        assert not failed.ok
        assert not failed.refused
        assert failed.detail.startswith("HTTP 500")
        redirected = runner.run(http_action(http_target.url("/heal/b"), method="GET"), CONTEXT)
        assert not redirected.ok
        assert redirected.detail.startswith("HTTP 302")
        assert all_hits(other_host) == 0

    def test_unreachable_server_is_a_failure(self) -> None:
        """A refused connection is ok=False, not an exception."""
        url = f"http://127.0.0.1:{free_port()}/heal"
        result = ActionRunner([], [url], None).run(http_action(url), CONTEXT)
        assert not result.ok
        assert not result.refused
        assert "failed" in result.detail

    def test_dry_run_sends_nothing(
        self, runner: ActionRunner, http_target: HttpTarget, other_host: HttpTarget
    ) -> None:
        """A dry run's description of an allowed URL names the call and calls nothing."""
        described = runner.describe(http_action(http_target.url("/heal/x")), CONTEXT)
        assert described == f"POST {http_target.url('/heal/x')} (timeout 5s)"
        self._assert_no_request(http_target, other_host)


class TestDockerInjection:
    """A container name is rendered and checked against Docker's grammar before any call."""

    @pytest.mark.parametrize("value", [*UNSAFE_VALUES, "a:b", "a/b"])
    def test_unsafe_names_are_refused_before_the_engine_is_called(
        self, tmp_path: Path, value: str
    ) -> None:
        """Refused means refused=True: the (absent) engine was never contacted."""
        runner = ActionRunner([], [], f"unix://{tmp_path}/no-engine.sock")
        result = runner.run(restart("{label.x}"), label_context(value))
        assert result.refused, result
        assert not result.ok

    @pytest.mark.parametrize("template", ["-{label.instance}", "/{service}", "a b", "_x"])
    def test_invalid_names_from_the_template_are_refused(
        self, tmp_path: Path, template: str
    ) -> None:
        """Docker's grammar applies to the rendered name, whatever the template says."""
        runner = ActionRunner([], [], f"unix://{tmp_path}/no-engine.sock")
        assert runner.run(restart(template), CONTEXT).refused

    def test_dry_run_names_the_engine(self, tmp_path: Path) -> None:
        """A dry run says which container it would restart on which engine."""
        url = f"unix://{tmp_path}/no-engine.sock"
        described = ActionRunner([], [], url).describe(restart("{service}-{label.instance}"),
                                                       CONTEXT)
        assert described == f"restart container cache-redis-1 on {url} (stop timeout 1s)"

    def test_unreachable_engine_is_a_failure(self, tmp_path: Path) -> None:
        """An engine that is not there is ok=False (not refused), without raising."""
        result = ActionRunner([], [], f"unix://{tmp_path}/no.sock").run(restart("x"), CONTEXT)
        assert not result.ok
        assert not result.refused
        assert result.detail.startswith("cannot restart container x")


@pytest.fixture
def container(docker_engine: DockerEngine) -> Iterator[Any]:
    created = docker_engine.run_container(f"mz-heal-{uuid.uuid4().hex[:10]}")
    yield created
    created.remove(force=True)


@pytest.mark.real_binary("dockerd")
class TestDockerRestart:
    """docker_restart against a private real Docker engine."""

    def test_stopped_container_is_running_again(
        self, docker_engine: DockerEngine, container: Any
    ) -> None:
        """The container named by the alert's label is restarted and reported running."""
        container.stop(timeout=0)
        container.reload()
        assert container.status == "exited"
        runner = ActionRunner([], [], docker_engine.url)
        context = ActionContext("cache", "ContainerDown", {"container": container.name})
        result = runner.run(restart("{label.container}"), context)
        assert result.ok, result.detail
        assert result.target == container.name
        container.reload()
        assert container.status == "running"

    def test_action_docker_url_wins_over_the_default(
        self, docker_engine: DockerEngine, container: Any, tmp_path: Path
    ) -> None:
        """The action's own docker_url is used instead of the runner's default."""
        runner = ActionRunner([], [], f"unix://{tmp_path}/no.sock")
        result = runner.run(restart(container.name, docker_url=docker_engine.url), CONTEXT)
        assert result.ok, result.detail

    def test_missing_container_is_a_failure(self, docker_engine: DockerEngine) -> None:
        """A container the engine does not know is ok=False with a clear detail."""
        result = ActionRunner([], [], docker_engine.url).run(restart("mz-no-such"), CONTEXT)
        assert not result.ok
        assert not result.refused
        assert result.detail == f"container mz-no-such does not exist on {docker_engine.url}"


def pong(port: int) -> bool:
    """Whether a redis-server on ``port`` answers PING (one try, no client-side retries)."""
    try:
        with redis.Redis(port=port, socket_timeout=1, retry=Retry(NoBackoff(), 0)) as client:
            return bool(client.ping())
    except redis.ConnectionError:
        return False


@pytest.fixture
def healed_redis(tmp_path: Path) -> Iterator[Path]:
    """The pidfile a daemonized redis-server started by a test writes; stopped at teardown."""
    pidfile = tmp_path / "healed-redis.pid"
    yield pidfile
    if pidfile.exists():
        pid = int(pidfile.read_text().strip())
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        if not wait_until(lambda: not _alive(pid), 10.0):
            os.kill(pid, signal.SIGKILL)
            wait_until(lambda: not _alive(pid), 5.0)


@pytest.mark.real_binary("redis-server")
class TestCommandRestartsRedis:
    """A command action brings a crashed real redis-server back."""

    def test_killed_redis_answers_again(
        self, redis_server: RedisServer, healed_redis: Path, tmp_path: Path
    ) -> None:
        """After a SIGKILL, the allowed redis-server command restarts it and PING works."""
        binary = require_binary("redis-server")
        redis_server.kill()
        assert not pong(redis_server.port)
        action = command(
            binary,
            "--port",
            "{label.port}",
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "yes",
            "--dir",
            str(tmp_path),
            "--pidfile",
            str(healed_redis),
            "--logfile",
            str(tmp_path / "healed.log"),
        )
        context = ActionContext("cache", "RedisDown", {"port": str(redis_server.port)})
        result = ActionRunner([binary], [], None).run(action, context)
        assert result.ok, result.detail
        assert wait_until(lambda: pong(redis_server.port), 10.0)
        assert wait_until(healed_redis.exists, 5.0)


class FakePrometheus:
    """A fake Prometheus HTTP API: /api/v1/query answers from a script of replies.

    A fake, because a real Prometheus holding exactly the series a test needs would take
    seconds to start and scrape. Each reply is ``(status, body)``; the last one repeats.
    The queries received are recorded.
    """

    def __init__(self, replies: list[tuple[int, Any]]) -> None:
        self.replies = list(replies)
        self.queries: list[str] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                if parts.path != "/api/v1/query":
                    self.send_error(404)
                    return
                fake.queries.extend(parse_qs(parts.query).get("query", []))
                status, body = fake.replies.pop(0) if len(fake.replies) > 1 else fake.replies[0]
                raw = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, format: str, *args: object) -> None:
                """Quiet."""

        self._server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._thread.join(5)
        self._server.server_close()


@pytest.fixture
def fake_prometheus() -> Iterator[Callable[..., FakePrometheus]]:
    started: list[FakePrometheus] = []

    def start(*replies: tuple[int, Any]) -> FakePrometheus:
        server = FakePrometheus(list(replies))
        started.append(server)
        return server

    yield start
    for server in started:
        server.close()


def vector(*values: str) -> tuple[int, Any]:
    result = [{"metric": {"instance": f"i{n}"}, "value": [1.0, v]} for n, v in enumerate(values)]
    return 200, {"status": "success", "data": {"resultType": "vector", "result": result}}


def scalar(value: str) -> tuple[int, Any]:
    return 200, {"status": "success", "data": {"resultType": "scalar", "result": [1.0, value]}}


class FakeTime:
    """A clock that only moves when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def verify_spec(**fields: str) -> Verify:
    return Verify.model_validate({"timeout": "1s", "interval": "250ms", **fields})


def redis_probe(url: str) -> RedisProbe:
    return RedisProbe.model_validate(
        {"kind": "redis", "name": "ping", "url": url, "timeout": "1s", "interval": "5s"}
    )


class TestVerifyProbe:
    """verify() re-runs the exporter's probe until it succeeds or time runs out."""

    @pytest.mark.real_binary("redis-server")
    def test_healthy_redis_passes_at_once(self, redis_server: RedisServer) -> None:
        """A probe that succeeds on the first attempt: ok after one attempt, no sleep."""
        fake = FakeTime()
        result = verify(
            verify_spec(probe="ping"),
            redis_probe(redis_server.url),
            None,
            sleep=fake.sleep,
            clock=fake.clock,
        )
        assert result == VerifyResult(True, 1, "probe ping succeeded")
        assert fake.sleeps == []

    @pytest.mark.real_binary("redis-server")
    def test_redis_that_comes_back_passes_on_a_later_attempt(
        self, redis_server: RedisServer
    ) -> None:
        """A failed attempt is retried after the interval; the restart makes it pass."""
        redis_server.kill()
        fake = FakeTime()

        def sleep(seconds: float) -> None:
            fake.sleep(seconds)
            redis_server.start()

        result = verify(
            verify_spec(probe="ping"),
            redis_probe(redis_server.url),
            None,
            sleep=sleep,
            clock=fake.clock,
        )
        assert result.ok, result.detail
        assert result.attempts == 2
        assert fake.sleeps == [0.25]

    def test_closed_port_fails_after_the_timeout(self) -> None:
        """Attempts every interval until the timeout; the last one at the timeout itself."""
        probe = TcpProbe.model_validate(
            {
                "kind": "tcp",
                "name": "port",
                "host": "127.0.0.1",
                "port": free_port(),
                "timeout": "200ms",
            }
        )
        fake = FakeTime()
        result = verify(verify_spec(probe="port"), probe, None, sleep=fake.sleep, clock=fake.clock)
        assert not result.ok
        assert result.attempts == 5  # at 0, 0.25, 0.5, 0.75 and 1.0 s
        assert result.detail.startswith("not healthy after 1s (5 attempts): probe port failed")

    def test_closed_port_with_the_real_clock(self) -> None:
        """With real time the check gives up after about the timeout."""
        probe = TcpProbe.model_validate(
            {
                "kind": "tcp",
                "name": "port",
                "host": "127.0.0.1",
                "port": free_port(),
                "timeout": "200ms",
            }
        )
        started = time.monotonic()
        result = verify(verify_spec(probe="port", timeout="500ms", interval="100ms"), probe, None)
        elapsed = time.monotonic() - started
        assert not result.ok
        assert result.attempts >= 3
        assert 0.5 <= elapsed < 2.0

    def test_settle_waits_before_the_first_attempt(self) -> None:
        """settle is slept once before the first attempt, outside the timeout window."""
        probe = TcpProbe.model_validate(
            {
                "kind": "tcp",
                "name": "port",
                "host": "127.0.0.1",
                "port": free_port(),
                "timeout": "200ms",
            }
        )
        fake = FakeTime()
        result = verify(
            verify_spec(probe="port", settle="3s"), probe, None, sleep=fake.sleep, clock=fake.clock
        )
        assert fake.sleeps[0] == 3.0
        assert result.attempts == 5

    def test_unconfigured_probe_and_empty_verify(self) -> None:
        """A probe name without a spec fails at once; a verify without a check passes."""
        missing = verify(verify_spec(probe="gone"), None, None)
        assert missing == VerifyResult(False, 0, "probe gone is not configured for this service")
        assert verify(verify_spec(), None, None).ok


class TestVerifyPromql:
    """verify() evaluates a PromQL condition against (a fake) Prometheus."""

    def test_true_vector_passes_and_sends_the_query(
        self, fake_prometheus: Callable[..., FakePrometheus]
    ) -> None:
        """A vector whose samples are non-zero passes at once; the query is sent verbatim."""
        server = fake_prometheus(vector("1", "1"))
        query = 'up{job="redis"} == 1'
        result = verify(verify_spec(promql=query), None, server.url)
        assert result == VerifyResult(True, 1, "the query returned 2 true samples")
        assert server.queries == [query]

    def test_empty_then_true_passes_on_a_later_attempt(
        self, fake_prometheus: Callable[..., FakePrometheus]
    ) -> None:
        """Empty results are failed attempts; the first true one ends the check."""
        server = fake_prometheus(vector(), vector(), vector("1"))
        fake = FakeTime()
        result = verify(
            verify_spec(promql="up"), None, server.url, sleep=fake.sleep, clock=fake.clock
        )
        assert result.ok
        assert result.attempts == 3

    def test_zero_value_fails_after_the_timeout(
        self, fake_prometheus: Callable[..., FakePrometheus]
    ) -> None:
        """A sample equal to 0 is a failed condition, attempt after attempt."""
        server = fake_prometheus(vector("1", "0"))
        fake = FakeTime()
        result = verify(
            verify_spec(promql="up"), None, server.url, sleep=fake.sleep, clock=fake.clock
        )
        assert not result.ok
        assert result.attempts == 5
        assert "= 0" in result.detail

    def test_prometheus_errors_are_failed_attempts(
        self, fake_prometheus: Callable[..., FakePrometheus]
    ) -> None:
        """An HTTP error or a body that is not JSON is retried like a false condition."""
        server = fake_prometheus((500, {"status": "error"}), (200, b"not json"), scalar("1"))
        fake = FakeTime()
        result = verify(
            verify_spec(promql="vector(1)"), None, server.url, sleep=fake.sleep, clock=fake.clock
        )
        assert result.ok
        assert result.attempts == 3
        assert len(server.queries) == 3  # no hidden retries inside one attempt

    def test_unreachable_prometheus_fails(self) -> None:
        """A Prometheus that is not there fails every attempt, with the error in the detail."""
        fake = FakeTime()
        result = verify(
            verify_spec(promql="up"),
            None,
            f"http://127.0.0.1:{free_port()}",
            sleep=fake.sleep,
            clock=fake.clock,
        )
        assert not result.ok
        assert result.attempts == 5
        assert "Prometheus query failed" in result.detail

    def test_promql_without_a_url_fails(self) -> None:
        """A PromQL condition with no Prometheus to ask is ok=False, zero attempts."""
        assert verify(verify_spec(promql="up"), None, None) == VerifyResult(
            False, 0, "a PromQL condition needs a Prometheus URL"
        )

    @pytest.mark.real_binary("redis-server")
    def test_probe_and_promql_must_both_pass(
        self, redis_server: RedisServer, fake_prometheus: Callable[..., FakePrometheus]
    ) -> None:
        """With both set, a passing probe is not enough while the query is false."""
        server = fake_prometheus(vector("0"))
        fake = FakeTime()
        result = verify(
            verify_spec(probe="ping", promql="up"),
            redis_probe(redis_server.url),
            server.url,
            sleep=fake.sleep,
            clock=fake.clock,
        )
        assert not result.ok
        assert len(server.queries) == result.attempts == 5

    @pytest.mark.parametrize(
        ("result", "ok"),
        [
            ([], False),
            (None, False),
            ([{"metric": {}, "value": [1, "1"]}], True),
            ([{"metric": {}, "value": [1, "0.5"]}], True),
            ([{"metric": {}, "value": [1, "-1"]}], True),
            ([{"metric": {}, "value": [1, "+Inf"]}], True),
            ([{"metric": {}, "value": [1, "0"]}], False),
            ([{"metric": {}, "value": [1, "NaN"]}], False),
            ([{"metric": {}, "value": [1, "1"]}, {"metric": {}, "value": [1, "0"]}], False),
            ([{"metric": {}, "values": [[1, "0"], [2, "1"]]}], True),
            ([{"metric": {}, "values": [[1, "1"], [2, "0"]]}], False),
            ([1.0, "1"], True),
            ([1.0, "0"], False),
            ([1.0, "hello"], False),
        ],
    )
    def test_truthiness_of_results(self, result: Any, ok: bool) -> None:
        """Non-empty, and every value a number other than 0 and not NaN."""
        assert promql_truthy(result)[0] is ok


def test_results_are_plain_data() -> None:
    """ActionResult carries kind, target and timing for the audit log."""
    result = ActionRunner(["true"], [], None).run(command("true"), CONTEXT)
    assert isinstance(result, ActionResult)
    assert (result.ok, result.action, result.target, result.refused) == (
        True,
        "command",
        "true",
        False,
    )
    assert 0 <= result.duration < 5
