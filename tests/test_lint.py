"""``monitoriza lint``: every seeded gap in a copy of the Conecta Plus setup is named with its
path; the setup as shipped has no errors; Alertmanager routing agrees with the real
``amtool``; a component Prometheus really has as ``unknown`` becomes a warning."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from monitoriza.config import load_config
from monitoriza.lint import default_alertmanager_file, lint_command
from monitoriza.lint.checks import (
    ComponentStatus,
    check_alertmanager_references,
    check_components,
    check_p2_routing,
    check_rule_references,
    check_service_p3_reaches_people,
)
from monitoriza.lint.routing import Matcher, RoutingError, parse_matchers, route_alert
from tests.support.binaries import require_binary, wait_until
from tests.support.http_targets import HttpTarget
from tests.support.prometheus import PrometheusFactory

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "conecta-plus.yml"
ALERTMANAGER = ROOT / "alertmanager" / "alertmanager.yml"
RULES = ROOT / "rules"


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def dump_yaml(path: Path, data: Any) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def lint(config: Path, alertmanager: Path = ALERTMANAGER, rules: Path = RULES,
         prometheus_url: str | None = None) -> tuple[int, dict[str, Any]]:
    out = io.StringIO()
    code = lint_command(config, alertmanager, rules, prometheus_url, out, output_format="json")
    result: dict[str, Any] = json.loads(out.getvalue())
    return code, result


def named(result: dict[str, Any]) -> set[tuple[str, str, str]]:
    return {(f["severity"], f["code"], f["path"]) for f in result["findings"]}


@pytest.fixture
def seeded(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A copy of the example setup with one of every gap the lint knows."""
    config = load_yaml(EXAMPLE)
    services = config["services"]
    services["host"]["probes"] = []  # service without probes...
    services["frontend"]["depends_on"].append("host")  # ...that another one depends on
    redis_book = services["redis"]["healing"][0]
    del redis_book["verify"]  # no verify (and, as shipped, no rollback)
    backend_book = services["backend"]["healing"][0]
    del backend_book["rollback"]  # verify kept: rollback warning only
    # A placeholder URL the loader lets through but allowed_urls can never contain.
    backend_book["steps"][0]["url"] = "http://127.0.0.1:9000/reconnect?c={label.component}"

    routing = load_yaml(ALERTMANAGER)
    routes = routing["route"]["routes"]
    # redis's P2 now stops at a webhook-only receiver: nobody is paged for it.
    routes.insert(0, {"matchers": ['service="redis"'], "receiver": "responder"})
    # A route and an inhibition about a service that does not exist.
    routes.insert(1, {"matchers": ['service="ghost-db"', 'severity="P2"'], "receiver": "oncall"})
    routing["inhibit_rules"].append({"source_matchers": ['service=~"ghost-db|redis"'],
                                     "target_matchers": ['service="redis"'],
                                     "equal": ["alertname"]})

    rules = tmp_path / "rules"
    shutil.copytree(RULES, rules)
    dump_yaml(rules / "extra.yml", {"groups": [{"name": "extra", "rules": [
        {"alert": "GhostDown", "expr": 'monitoriza_probe_success{service="ghost"} == 0',
         "labels": {"severity": "P3"}},
        {"alert": "PinnedToPhantom", "expr": "vector(1)",
         "labels": {"severity": "P4", "service": "phantom"}},
        {"alert": "SomeKnown", "expr": 'up{service=~"redis|wraith"} == 0',
         "labels": {"severity": "P4"}},
    ]}]})
    return (dump_yaml(tmp_path / "conecta.yml", config),
            dump_yaml(tmp_path / "alertmanager.yml", routing), rules)


def service_p2_route(routing: dict[str, Any]) -> int:
    """The index of the top-level route that pages a service's P2."""
    return next(index for index, route in enumerate(routing["route"]["routes"])
                if 'severity="P2"' in route.get("matchers", [])
                and 'service=~".+"' in route.get("matchers", []))


class TestSeededGaps:
    """Every seeded gap is named, where it is, with a fix; errors make the exit status 1."""

    def test_every_gap_named(self, seeded: tuple[Path, Path, Path]) -> None:
        config, routing, rules = seeded
        code, result = lint(config, routing, rules)
        assert code == 1
        expected = {
            ("error", "service-without-probes", "services.host.probes"),
            ("error", "dependency-without-probes", "services.frontend.depends_on[1]"),
            ("error", "playbook-without-verify", "services.redis.healing[0]"),
            ("warning", "playbook-without-rollback", "services.redis.healing[0]"),
            ("warning", "playbook-without-rollback", "services.backend.healing[0]"),
            ("warning", "playbook-without-rollback", "services.backend.healing[1]"),
            ("error", "http-step-outside-allowed-urls", "services.backend.healing[0].steps[0].url"),
            ("error", "critical-without-p2-receiver", "services.redis"),
            ("warning", "route-unknown-service", f"{routing}: route.routes[1]"),
            ("warning", "inhibition-unknown-service", f"{routing}: inhibit_rules[2]"),
            ("warning", "rule-unknown-service", f"{rules / 'extra.yml'}: groups[0].rules[0].expr"),
            ("warning", "rule-unknown-service",
             f"{rules / 'extra.yml'}: groups[0].rules[1].labels.service"),
            ("warning", "rule-unknown-service", f"{rules / 'extra.yml'}: groups[0].rules[2].expr"),
        }
        assert named(result) == expected
        assert (result["errors"], result["warnings"]) == (5, 8)
        assert all(f["message"] and f["fix"] for f in result["findings"])
        # Errors come first.
        severities = [f["severity"] for f in result["findings"]]
        assert severities == sorted(severities, key=lambda s: s != "error")
        by_code = {f["code"]: f for f in result["findings"]}
        assert "reaches responder (webhook only, at route.routes[0])" in (
            by_code["critical-without-p2-receiver"]["message"])
        assert any("GhostDown refers to service 'ghost'" in f["message"]
                   for f in result["findings"])
        wraith = [f for f in result["findings"] if "'wraith'" in f["message"]]
        assert len(wraith) == 1  # redis in the same regex is known

    def test_text_output(self, seeded: tuple[Path, Path, Path]) -> None:
        """One line per finding, in the documented shape, then the summary."""
        config, routing, rules = seeded
        out = io.StringIO()
        assert lint_command(config, routing, rules, None, out) == 1
        lines = out.getvalue().splitlines()
        assert len(lines) == 14
        assert lines[-1] == "lint: 5 errors, 8 warnings"
        verify = next(line for line in lines if "playbook-without-verify" in line)
        assert verify.startswith("error    services.redis.healing[0]  playbook-without-verify: "
                                 "playbook restart-redis of redis has no verify")
        assert " Fix: add verify: " in verify

    def test_p2_route_to_nowhere_fails_every_critical_service(self, tmp_path: Path) -> None:
        """The P2 route sent to a webhook-only receiver: every critical service is named."""
        routing = load_yaml(ALERTMANAGER)
        routing["route"]["routes"][service_p2_route(routing)]["receiver"] = "responder"
        findings = check_p2_routing(load_config(EXAMPLE), routing)
        critical = {name for name, s in load_yaml(EXAMPLE)["services"].items()
                    if s["tier"] == "critical"}
        assert {f.path for f in findings} == {f"services.{name}" for name in critical}
        assert {f.code for f in findings} == {"critical-without-p2-receiver"}

    def test_p2_route_removed_or_receiver_undefined(self) -> None:
        config = load_config(EXAMPLE)
        routing = load_yaml(ALERTMANAGER)
        # Both P2 routes gone: P2 falls through to the P3/P4 one or the root, responder only.
        routing["route"]["routes"] = [route for route in routing["route"]["routes"]
                                      if 'severity="P2"' not in route.get("matchers", [])]
        assert len(check_p2_routing(config, routing)) == 6
        routing = load_yaml(ALERTMANAGER)
        index = service_p2_route(routing)
        routing["route"]["routes"][index]["receiver"] = "pager"  # not defined
        findings = check_p2_routing(config, routing)
        assert len(findings) == 6
        assert f"pager (not defined, at route.routes[{index}])" in findings[0].message

    def test_p2_route_muted_at_times_is_a_warning(self) -> None:
        routing = load_yaml(ALERTMANAGER)
        routing["time_intervals"] = [{"name": "nights", "time_intervals": [
            {"times": [{"start_time": "22:00", "end_time": "24:00"}]}]}]
        routing["route"]["routes"][service_p2_route(routing)]["mute_time_intervals"] = ["nights"]
        findings = check_p2_routing(load_config(EXAMPLE), routing)
        assert {(f.severity, f.code) for f in findings} == {
            ("warning", "critical-p2-muted-at-times")}
        assert "(nights)" in findings[0].message

    def test_continue_route_keeps_the_page(self) -> None:
        """A route that catches redis first but continues still lets the P2 reach oncall."""
        routing = load_yaml(ALERTMANAGER)
        routing["route"]["routes"].insert(
            0, {"matchers": ['service="redis"'], "receiver": "responder", "continue": True})
        assert check_p2_routing(load_config(EXAMPLE), routing) == []


class TestServiceP3ReachesPeople:
    """Service P3s go to the responder only; the team hears of them as incident notices."""

    def test_the_shipped_setup_passes(self) -> None:
        assert check_service_p3_reaches_people(load_config(EXAMPLE),
                                               load_yaml(ALERTMANAGER)) == []

    def test_responder_without_alertmanager_url_is_an_error(self, tmp_path: Path) -> None:
        data = load_yaml(EXAMPLE)
        del data["responder"]["healing"]["alertmanager_url"]
        config = tmp_path / "config.yml"
        config.write_text(yaml.safe_dump(data))
        findings = check_service_p3_reaches_people(load_config(config), load_yaml(ALERTMANAGER))
        assert [(f.code, f.path) for f in findings] == [
            ("service-p3-reaches-no-one", "responder.healing.alertmanager_url")]

    def test_notice_routed_to_no_person_is_an_error(self) -> None:
        routing = load_yaml(ALERTMANAGER)
        for route in routing["route"]["routes"]:
            if 'alertname="MonitorizaIncident"' in route.get("matchers", []):
                route["receiver"] = "responder"  # webhook only
        findings = check_service_p3_reaches_people(load_config(EXAMPLE), routing)
        assert [f.code for f in findings] == ["incident-notice-reaches-no-one"]

    def test_p3_straight_to_a_chat_needs_no_notices(self, tmp_path: Path) -> None:
        """The routing of the previous release (P3 to the team chat) passes without a URL."""
        routing = load_yaml(ALERTMANAGER)
        routing["route"]["routes"].insert(0, {"matchers": ['severity="P3"'], "receiver": "team"})
        data = load_yaml(EXAMPLE)
        del data["responder"]["healing"]["alertmanager_url"]
        config = tmp_path / "config.yml"
        config.write_text(yaml.safe_dump(data))
        assert check_service_p3_reaches_people(load_config(config), routing) == []


def test_playbook_answering_an_alertname_no_rule_raises(tmp_path: Path) -> None:
    config = load_yaml(EXAMPLE)
    config["services"]["redis"]["healing"][0]["match"]["alertname"] = ["ServiceDwn",
                                                                       "ProbeFailing"]
    code, result = lint(dump_yaml(tmp_path / "c.yml", config))
    assert code == 0
    typo = [f for f in result["findings"] if f["code"] == "playbook-unknown-alertname"]
    assert [(f["severity"], f["path"]) for f in typo] == [
        ("warning", "services.redis.healing[0].match.alertname[0]")]
    assert "answers ServiceDwn, which no rule" in typo[0]["message"]


class TestCleanSetup:
    def test_example_as_shipped(self) -> None:
        """The shipped setup has no errors; its two restart playbooks have no rollback."""
        code, result = lint(EXAMPLE)
        assert code == 0
        assert named(result) == {
            ("warning", "playbook-without-rollback", "services.backend.healing[1]"),
            ("warning", "playbook-without-rollback", "services.redis.healing[0]"),
        }

    def test_fully_clean_copy(self, tmp_path: Path) -> None:
        config = load_yaml(EXAMPLE)
        for service in config["services"].values():
            for book in service.get("healing", []):
                book.setdefault("rollback", [dict(book["steps"][0])])
        out = io.StringIO()
        assert lint_command(dump_yaml(tmp_path / "c.yml", config), ALERTMANAGER, RULES, None,
                            out) == 0
        assert out.getvalue() == "lint: no problems found\n"

    def test_telegram_example_routes_p2_to_a_human(self, tmp_path: Path) -> None:
        telegram = ROOT / "alertmanager" / "examples" / "telegram.yml"
        assert check_p2_routing(load_config(EXAMPLE), load_yaml(telegram)) == []


def test_default_alertmanager_file_is_the_shipped_one() -> None:
    assert default_alertmanager_file() == ALERTMANAGER


class TestBadInput:
    """Inputs the lint cannot read: exit 2, with the loader's messages and paths."""

    def test_config_refused_by_the_loader(self, tmp_path: Path) -> None:
        config = load_yaml(EXAMPLE)
        config["services"]["frontend"]["depends_on"].append("nope")  # undefined dependency
        config["services"]["redis"]["healing"][0]["steps"] = [
            {"action": "command", "argv": ["/bin/rm", "-rf", "/"]}]  # not an allowed command
        path = dump_yaml(tmp_path / "bad.yml", config)
        out = io.StringIO()
        assert lint_command(path, ALERTMANAGER, RULES, None, out) == 2
        lines = out.getvalue().splitlines()
        assert f"{path}: services.frontend.depends_on[1]: unknown service 'nope'" in lines
        assert (f"{path}: services.redis.healing[0].steps[0].argv[0]: '/bin/rm' is not in "
                "responder.healing.allowed_commands") in lines

    def test_missing_files(self, tmp_path: Path) -> None:
        out = io.StringIO()
        assert lint_command(EXAMPLE, tmp_path / "none.yml", RULES, None, out) == 2
        assert str(tmp_path / "none.yml") in out.getvalue()
        assert lint_command(EXAMPLE, ALERTMANAGER, tmp_path / "none", None, io.StringIO()) == 2

    def test_unreadable_matcher(self, tmp_path: Path) -> None:
        routing = load_yaml(ALERTMANAGER)
        routing["route"]["routes"][0]["matchers"] = ['alertname=~"(unclosed"']
        path = dump_yaml(tmp_path / "am.yml", routing)
        out = io.StringIO()
        assert lint_command(EXAMPLE, path, RULES, None, out) == 2
        assert "route.routes[0].matchers[0]: invalid regular expression" in out.getvalue()


class TestMatchers:
    @pytest.mark.parametrize(("text", "expected"), [
        ('severity="P2"', [Matcher("severity", "=", "P2")]),
        ("severity=P2", [Matcher("severity", "=", "P2")]),
        ('{a="1", b!~"x|y"}', [Matcher("a", "=", "1"), Matcher("b", "!~", "x|y")]),
        ('a =~ "x,y"', [Matcher("a", "=~", "x,y")]),
        (r'a!="say \"hi\""', [Matcher("a", "!=", 'say "hi"')]),
    ])
    def test_parse(self, text: str, expected: list[Matcher]) -> None:
        assert parse_matchers(text, "p") == expected

    def test_parse_error_names_the_path(self) -> None:
        with pytest.raises(RoutingError, match=r"^route\.routes\[0\]: cannot parse"):
            parse_matchers("=P2", "route.routes[0]")

    def test_regexes_are_anchored_and_missing_labels_are_empty(self) -> None:
        assert not Matcher("s", "=~", "P2").matches({"s": "P22"})
        assert Matcher("s", "!~", "P2|P3").matches({})
        assert Matcher("s", "=", "").matches({})


# Label sets whose routes are compared with amtool, on the shipped and on a tricky file.
_LABEL_SETS = [
    {"alertname": "ServiceDown", "service": "redis", "severity": "P2", "tier": "critical"},
    {"alertname": "ServiceDown", "service": "redis", "severity": "P3"},
    {"alertname": "Watchdog", "severity": "P2"},
    {"alertname": "X", "severity": "P4", "service": "ghost-db"},
    {"alertname": "X"},
    {"alertname": "X", "severity": "P5", "service": "api-gateway"},
]
_TRICKY = {
    "route": {"receiver": "a", "routes": [
        {"matchers": ['service=~"redis|ghost-db"'], "receiver": "b", "continue": True},
        {"matchers": ['{severity="P2", tier!="standard"}'], "receiver": "c",
         "routes": [{"match": {"service": "redis"}},
                    {"match_re": {"alertname": "Service.*"}, "receiver": "d"}]},
        {"matchers": ["severity!~P2|P3"], "routes": [{"matchers": ['alertname="X"'],
                                                       "receiver": "b", "continue": True},
                                                      {"matchers": ['alertname!=""'],
                                                       "receiver": "d"}]},
    ]},
    "receivers": [{"name": name} for name in "abcd"],
}


@pytest.mark.real_binary("amtool")
@pytest.mark.parametrize("which", ["shipped", "tricky"])
def test_routing_agrees_with_amtool(tmp_path: Path, which: str) -> None:
    amtool = require_binary("amtool")
    path = ALERTMANAGER if which == "shipped" else dump_yaml(tmp_path / "am.yml", _TRICKY)
    routing = load_yaml(path)
    for labels in _LABEL_SETS:
        ours = ",".join(d.receiver for d in route_alert(routing, labels))
        theirs = subprocess.run(
            [amtool, "config", "routes", "test", f"--config.file={path.name}",
             *(f"{k}={v}" for k, v in labels.items())],
            cwd=path.parent, capture_output=True, text=True, timeout=30, check=True)
        assert ours == theirs.stdout.strip(), labels


@pytest.mark.real_binary("amtool")
def test_seeded_alertmanager_is_one_amtool_accepts(seeded: tuple[Path, Path, Path]) -> None:
    """The gaps are seeded into a file Alertmanager would load, not into a broken one."""
    routing = seeded[1]
    checked = subprocess.run([require_binary("amtool"), "check-config", routing.name],
                             cwd=routing.parent, capture_output=True, text=True, timeout=30,
                             check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr


class TestReferences:
    def test_shipped_rules_and_routes_name_no_service(self) -> None:
        config = load_config(EXAMPLE)
        rules = {str(p): load_yaml(p) for p in sorted(RULES.glob("*.yml"))}
        assert check_rule_references(config, rules) == []
        assert check_alertmanager_references(config, load_yaml(ALERTMANAGER)) == []

    def test_non_literal_regex_is_not_guessed(self) -> None:
        config = load_config(EXAMPLE)
        rules = {"r.yml": {"groups": [{"name": "g", "rules": [
            {"alert": "A", "expr": 'up{service=~".+"} or up{service!=""}'},
            {"alert": "B", "expr": "up{service=~'ghost.*'}"},
            {"alert": "C", "expr": "up{service='ghost'}"},
        ]}]}}
        findings = check_rule_references(config, rules)
        assert [(f.path, f.code) for f in findings] == [
            ("r.yml: groups[0].rules[2].expr", "rule-unknown-service")]


class TestComponents:
    def test_only_unknown_components_are_named(self) -> None:
        config = load_config(EXAMPLE)
        findings = check_components(config, [
            ComponentStatus("backend", "redis", "unknown"),
            ComponentStatus("backend", "redis", "unknown"),  # two Prometheus series
            ComponentStatus("backend", "database", "healthy"),
        ])
        assert [(f.severity, f.code, f.path) for f in findings] == [
            ("warning", "component-unknown", "services.backend")]
        assert "backend reports its component redis as unknown" in findings[0].message

    def test_prometheus_unreachable_is_a_warning(self, tmp_path: Path) -> None:
        from tests.support.binaries import free_port  # noqa: PLC0415

        url = f"http://127.0.0.1:{free_port()}"
        code, result = lint(EXAMPLE, prometheus_url=url)
        assert code == 0
        unreachable = [f for f in result["findings"] if f["code"] == "prometheus-unreachable"]
        assert unreachable[0]["path"] == url
        assert unreachable[0]["severity"] == "warning"

    def test_not_prometheus_is_a_warning(self, http_target: HttpTarget) -> None:
        http_target.respond("/api/v1/query", status=404, body=b"<html>no</html>",
                            content_type="text/html")
        code, result = lint(EXAMPLE, prometheus_url=http_target.base_url)
        assert code == 0
        assert "prometheus-unreachable" in {f["code"] for f in result["findings"]}

    @pytest.mark.real_binary("prometheus")
    def test_unknown_component_from_a_real_prometheus(
            self, http_target: HttpTarget, prometheus_factory: PrometheusFactory) -> None:
        """Prometheus scrapes a target exposing backend's redis as unknown: the lint names it."""
        exposition = (
            "# HELP monitoriza_component_status Component status.\n"
            "# TYPE monitoriza_component_status gauge\n"
            'monitoriza_component_status{service="backend",component="redis",'
            'status="unknown"} 1\n'
            'monitoriza_component_status{service="backend",component="redis",'
            'status="healthy"} 0\n'
            'monitoriza_component_status{service="backend",component="database",'
            'status="healthy"} 1\n'
            'monitoriza_component_status{service="backend",component="database",'
            'status="unknown"} 0\n')
        http_target.respond("/metrics", body=exposition.encode(),
                            content_type="text/plain; version=0.0.4")
        prometheus = prometheus_factory({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [{"job_name": "target", "static_configs": [
                {"targets": [f"127.0.0.1:{http_target.port}"]}]}],
        })
        assert wait_until(lambda: bool(prometheus.api(
            "query", query="monitoriza_component_status")["result"]), 20.0, interval=0.5)
        code, result = lint(EXAMPLE, prometheus_url=prometheus.url)
        assert code == 0
        components = [f for f in result["findings"] if f["code"] == "component-unknown"]
        assert [(f["severity"], f["path"]) for f in components] == [
            ("warning", "services.backend")]
        assert "component redis as unknown" in components[0]["message"]
