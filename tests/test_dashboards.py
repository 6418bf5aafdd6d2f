"""The Grafana dashboards and their provisioning, checked offline.

A dashboard fails quietly: a misspelt metric, a counter without ``_total`` or an undefined
variable gives a panel that says "No data" and nobody notices until an incident. So every
query must parse and evaluate in Prometheus's own engine (``promtool test rules``), and every
metric it reads must be one Monitoriza exports or a rule records. The end-to-end test runs the
same queries (``tests/support/dashboards.py``) against a live Prometheus.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from monitoriza.exporter.metrics import MEASUREMENT_FAMILIES
from tests.support.binaries import require_binary
from tests.support.dashboards import (
    DASHBOARDS_DIR,
    ROOT,
    all_panels,
    dashboard_files,
    expand_variables,
    load_dashboard,
    panel_queries,
    variables_in,
)

PROVISIONING = ROOT / "grafana" / "provisioning"
DATASOURCE_UID = "monitoriza-prometheus"
DASHBOARD_REF = {"type": "prometheus", "uid": "${datasource}"}
EXPECTED_DASHBOARDS = {"monitoriza-overview", "monitoriza-responder"}
GRID_COLUMNS = 24
MAX_UID_LENGTH = 40  # Grafana refuses longer dashboard uids

# Series Prometheus itself creates, which dashboards may read next to Monitoriza's own.
PROMETHEUS_SERIES = {"ALERTS", "ALERTS_FOR_STATE", "up"}
# What a metric declared by these constructors is exposed as (prometheus_client and
# monitoriza.exporter.exposition.Family both add the suffixes).
SUFFIXES = {
    "Counter": ("_total",),
    "CounterMetricFamily": ("_total",),
    "Histogram": ("_bucket", "_sum", "_count"),
    "Info": ("_info",),
}
_DECLARED = re.compile(
    r"\b(Counter|CounterMetricFamily|Histogram|Info|Family|Gauge|GaugeMetricFamily)"
    r"\(\s*[\"'](monitoriza_[a-z0-9_]+)[\"']")
_NAME_LITERAL = re.compile(r"[\"'](monitoriza_[a-z0-9_]+)[\"']")

# Stripping PromQL down to its metric names: strings (label values), label matchers, grouping
# clauses and ranges go; identifiers followed by "(" are functions or aggregations.
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^}]*\}")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_RANGE = re.compile(r"\[[^\]]*\]")
_IDENTIFIER = re.compile(r"(?<![\w.:])[a-zA-Z_:][a-zA-Z0-9_:]*(?![\w:]|\s*\()")
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring",
             "group_left", "group_right", "inf", "nan"}


def _call_text(source: str, start: int) -> str:
    """The text of the call whose "(" is the first one at or after ``start``."""
    depth = 0
    for index in range(source.index("(", start), len(source)):
        if source[index] == "(":
            depth += 1
        elif source[index] == ")":
            depth -= 1
            if depth == 0:
                return source[start:index + 1]
    return source[start:]


def exported_names() -> set[str]:
    """Every series name Monitoriza's code exposes, as Prometheus stores it."""
    names: set[str] = set()
    declared: set[str] = set()
    literals: set[str] = set()
    for path in sorted((ROOT / "monitoriza").rglob("*.py")):
        source = path.read_text(encoding="utf-8")
        literals.update(_NAME_LITERAL.findall(source))
        for match in _DECLARED.finditer(source):
            kind, name = match.groups()
            declared.add(name)
            if kind == "Family":
                counter = re.search(r"type\s*=\s*[\"']counter[\"']",
                                    _call_text(source, match.start()))
                names.add(f"{name}_total" if counter else name)
            else:
                names.update(name + suffix for suffix in SUFFIXES.get(kind, ("",)))
    # The exporter's probe measurements are declared in a table, with their types.
    for name, family in MEASUREMENT_FAMILIES.items():
        declared.add(name)
        names.add(f"{name}_total" if family.type == "counter" else name)
    # Anything else (a collector's namespace, say) is taken as it is written.
    names.update(literals - declared)
    return names


def recorded_names() -> set[str]:
    """Every series the recording rules of rules/*.yml write."""
    names: set[str] = set()
    for path in sorted((ROOT / "rules").glob("*.yml")):
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]:
            names.update(rule["record"] for rule in group["rules"] if "record" in rule)
    return names


KNOWN_SERIES = exported_names() | recorded_names() | PROMETHEUS_SERIES


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads."""
    text = _STRING.sub('""', expand_variables(expr))
    for pattern in (_MATCHERS, _GROUPING, _RANGE):
        text = pattern.sub(" ", text)
    return {name for name in _IDENTIFIER.findall(text) if name.lower() not in _KEYWORDS}


def dashboards() -> list[tuple[Path, dict[str, Any]]]:
    return [(path, load_dashboard(path)) for path in dashboard_files()]


def ids(item: tuple[Path, dict[str, Any]]) -> str:
    return item[0].name


def content_panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel that shows data (rows only group them)."""
    return [panel for panel in all_panels(dashboard) if panel.get("type") != "row"]


def variable(dashboard: dict[str, Any], name: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = [v for v in dashboard["templating"]["list"]
                                   if v["name"] == name]
    assert len(found) == 1, f"{dashboard['uid']}: variable {name!r} defined {len(found)} times"
    return found[0]


class TestDashboardModel:
    """Each file is a dashboard Grafana imports as it is, with stable identities."""

    def test_both_dashboards_are_there(self) -> None:
        """The overview and the responder dashboards, one file each, named by uid."""
        assert {path.stem for path in dashboard_files()} == EXPECTED_DASHBOARDS

    @pytest.mark.parametrize("item", dashboards(), ids=ids)
    def test_identity(self, item: tuple[Path, dict[str, Any]]) -> None:
        """A stable uid (the file's name) and no numeric id, so imports never collide."""
        path, dashboard = item
        assert dashboard["uid"] == path.stem
        assert len(dashboard["uid"]) <= MAX_UID_LENGTH
        assert dashboard.get("id") is None
        assert dashboard["title"]
        assert dashboard["schemaVersion"] >= 39
        assert "monitoriza" in dashboard["tags"]

    @pytest.mark.parametrize("item", dashboards(), ids=ids)
    def test_panel_ids_are_unique(self, item: tuple[Path, dict[str, Any]]) -> None:
        """Grafana links to panels and keeps their state by id: no two may share one."""
        panel_ids = [panel["id"] for panel in all_panels(item[1])]
        assert len(panel_ids) == len(set(panel_ids)), sorted(panel_ids)

    @pytest.mark.parametrize("item", dashboards(), ids=ids)
    def test_every_panel_has_a_title_and_a_query(self, item: tuple[Path, dict[str, Any]]) -> None:
        """No untitled panel, and none that queries nothing."""
        for panel in content_panels(item[1]):
            assert panel.get("title"), f"panel {panel['id']} has no title"
            exprs = [target.get("expr") for target in panel.get("targets", [])]
            assert exprs and all(exprs), f"{panel['title']!r}: a target without a query"
            ref_ids = [target["refId"] for target in panel["targets"]]
            assert len(ref_ids) == len(set(ref_ids)), f"{panel['title']!r}: refIds {ref_ids}"

    @pytest.mark.parametrize("item", dashboards(), ids=ids)
    def test_panels_fit_the_grid(self, item: tuple[Path, dict[str, Any]]) -> None:
        """Every panel lies within Grafana's 24 columns."""
        for panel in all_panels(item[1]):
            grid = panel["gridPos"]
            assert grid["x"] >= 0 and grid["w"] > 0 and grid["h"] > 0, panel["title"]
            assert grid["x"] + grid["w"] <= GRID_COLUMNS, f"{panel['title']!r}: {grid}"

    @pytest.mark.parametrize("item", dashboards(), ids=ids)
    def test_queries_go_to_the_chosen_datasource(self, item: tuple[Path, dict[str, Any]]) -> None:
        """Panels query the `datasource` variable, which defaults to the provisioned uid, so
        the dashboards work as provisioned and can still be pointed elsewhere on import."""
        dashboard = item[1]
        chooser = variable(dashboard, "datasource")
        assert chooser["type"] == "datasource"
        assert chooser["query"] == "prometheus"
        assert chooser["current"]["value"] == DATASOURCE_UID
        for panel in content_panels(dashboard):
            assert panel["datasource"] == DASHBOARD_REF, panel["title"]
            for target in panel["targets"]:
                assert target["datasource"] == DASHBOARD_REF, panel["title"]

    @pytest.mark.parametrize("item", dashboards(), ids=ids)
    def test_service_variable(self, item: tuple[Path, dict[str, Any]]) -> None:
        """Services to show come from the exporter's service list, several at once or All."""
        service = variable(item[1], "service")
        assert service["query"] == "label_values(monitoriza_service_info, service)"
        assert service["multi"] is True
        assert service["includeAll"] is True
        assert service["allValue"] == ".+"

    @pytest.mark.parametrize("item", dashboards(), ids=ids)
    def test_variables_are_defined(self, item: tuple[Path, dict[str, Any]]) -> None:
        """Every variable a query uses is the dashboard's own or one Grafana provides."""
        dashboard = item[1]
        defined = {v["name"] for v in dashboard["templating"]["list"]}
        builtin = {"__rate_interval", "__interval", "__range"}
        for panel in content_panels(dashboard):
            for target in panel["targets"]:
                unknown = variables_in(target["expr"]) - defined - builtin
                assert not unknown, f"{panel['title']!r} uses undefined {sorted(unknown)}"


class TestQueries:
    """Every query reads series that exist and is valid PromQL."""

    def test_queries_are_found(self) -> None:
        """Every dashboard contributes queries, those of a collapsed row included."""
        queries = panel_queries(DASHBOARDS_DIR)
        assert {query.dashboard for query in queries} == EXPECTED_DASHBOARDS
        collapsed = [panel for _, dashboard in dashboards() for row in dashboard["panels"]
                     if row.get("collapsed") for panel in row["panels"]]
        assert collapsed, "no collapsed row left to check the nested panels with"
        titles = {query.panel for query in queries}
        assert {panel["title"] for panel in collapsed} <= titles

    @pytest.mark.parametrize("query", panel_queries(DASHBOARDS_DIR),
                             ids=lambda q: f"{q.dashboard}:{q.panel}")
    def test_metric_names_exist(self, query: Any) -> None:
        """Each metric is one Monitoriza exports or a rule records (a typo fails here)."""
        names = metric_names(query.expr)
        assert names, f"no metric found in {query.expr!r}"
        unknown = names - KNOWN_SERIES
        assert not unknown, f"{query.panel!r} reads series nobody exports: {sorted(unknown)}"

    def test_service_variable_reads_an_exported_metric(self) -> None:
        """label_values() of the service variable names a real metric too."""
        assert "monitoriza_service_info" in KNOWN_SERIES

    @pytest.mark.parametrize(("expr", "expected"), [
        ('sum by (service) (rate(monitoriza_probe_success{service=~"$service"}[5m]))',
         {"monitoriza_probe_success"}),
        ('a_b * on (service) group_left (tier) max by (service, tier) (c_d{x="y z"}) > bool 1',
         {"a_b", "c_d"}),
        ("histogram_quantile(0.99, sum by (le) (rate(x_bucket[$__rate_interval]))) < +Inf",
         {"x_bucket"}),
        ("time() - max(service:monitoriza_health_score:avg5m offset 5m)",
         {"service:monitoriza_health_score:avg5m"}),
    ])
    def test_metric_name_extraction(self, expr: str, expected: set[str]) -> None:
        """Functions, keywords, label names, label values and durations are not metrics."""
        assert metric_names(expr) == expected

    @pytest.mark.parametrize("expr", [
        "monitoriza_helth_score",                               # typo
        "sum(rate(monitoriza_healing_actions[5m]))",            # counter without _total
        "histogram_quantile(0.9, rate(monitoriza_responder_intake_duration_seconds[5m]))",
    ])
    def test_wrong_names_are_caught(self, expr: str) -> None:
        """A misspelt metric, or a counter or histogram read without its suffix, is unknown."""
        assert metric_names(expr) - KNOWN_SERIES

    @pytest.mark.real_binary("promtool")
    def test_every_query_evaluates(self, tmp_path: Path) -> None:
        """Prometheus's engine (promtool) parses and evaluates every query.

        No input series: every query must come back empty rather than fail, which proves it
        parses and type-checks (a range where a vector belongs, a bad matcher, etc.)."""
        queries = panel_queries(DASHBOARDS_DIR)
        cases = [{"expr": expand_variables(query.expr), "eval_time": "0m", "exp_samples": []}
                 for query in queries]
        test_file = tmp_path / "dashboards.yml"
        test_file.write_text(yaml.safe_dump({
            "rule_files": [], "evaluation_interval": "1m",
            "tests": [{"interval": "1m", "input_series": [], "promql_expr_test": cases}],
        }))
        result = promtool_test(test_file)
        assert result.returncode == 0, result.stdout + result.stderr

    @pytest.mark.real_binary("promtool")
    def test_bad_query_fails_promtool(self, tmp_path: Path) -> None:
        """An unbalanced query fails the same check, so the test above can fail."""
        test_file = tmp_path / "bad.yml"
        test_file.write_text(yaml.safe_dump({
            "rule_files": [], "evaluation_interval": "1m",
            "tests": [{"interval": "1m", "input_series": [], "promql_expr_test": [
                {"expr": "sum(rate(monitoriza_probe_success[1m])", "eval_time": "0m",
                 "exp_samples": []}]}],
        }))
        result = promtool_test(test_file)
        assert result.returncode != 0
        assert "parse error" in result.stdout + result.stderr


def promtool_test(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([require_binary("promtool"), "test", "rules", str(path)],
                          capture_output=True, text=True, check=False, timeout=60)


class TestExpandVariables:
    """Grafana's variables become values Prometheus accepts, for the live end-to-end test."""

    @pytest.mark.parametrize(("expr", "expected"), [
        ('x{service=~"$service"}', 'x{service=~".+"}'),
        ('x{service=~"${service}"}', 'x{service=~".+"}'),
        ('x{service=~"${service:regex}"}', 'x{service=~".+"}'),
        ("rate(x[$__rate_interval])", "rate(x[1m])"),
        ("rate(x[$__interval])", "rate(x[1m])"),
        ("avg_over_time(x[$__range])", "avg_over_time(x[1h])"),
        ('x{path=~"/api$"}', 'x{path=~"/api$"}'),   # a regex anchor is not a variable
    ])
    def test_expansion(self, expr: str, expected: str) -> None:
        assert expand_variables(expr) == expected

    def test_unknown_variable_is_refused(self) -> None:
        with pytest.raises(ValueError, match=r"\$tenant"):
            expand_variables('x{tenant="$tenant"}')


class TestProvisioning:
    """Grafana, as provisioned, has the data source and loads the dashboards."""

    def test_datasource(self) -> None:
        """One Prometheus data source, with the uid the dashboards default to."""
        document = yaml.safe_load((PROVISIONING / "datasources" / "prometheus.yml").read_text())
        (source,) = document["datasources"]
        assert source["uid"] == DATASOURCE_UID
        assert source["type"] == "prometheus"
        assert source["url"] == "http://prometheus:9090"
        assert source["isDefault"] is True

    def test_dashboard_provider(self) -> None:
        """A file provider reading the directory the dashboards are mounted at."""
        document = yaml.safe_load((PROVISIONING / "dashboards" / "monitoriza.yml").read_text())
        (provider,) = document["providers"]
        assert provider["type"] == "file"
        assert provider["options"]["path"] == "/var/lib/grafana/dashboards"
