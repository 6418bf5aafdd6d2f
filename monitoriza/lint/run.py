"""``monitoriza lint``: read the files (and optionally ask Prometheus), run the checks, print.

The user sees one line per finding, errors first::

    error    services.redis.healing[0]  playbook-without-verify: ... Fix: ...

then a summary line; or, with ``--format json``, one JSON document. Exit status: 0 with no
findings or only warnings, 1 with at least one error, 2 when an input cannot be read (a
configuration the loader refuses, with its messages and paths; an unreadable Alertmanager
file or rules directory).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

import requests
import yaml

from monitoriza.config import load_config
from monitoriza.exceptions import ConfigError, MonitorizaError
from monitoriza.lint.checks import ComponentStatus, Finding, run_checks
from monitoriza.lint.routing import RoutingError

EXIT_OK = 0
EXIT_ERRORS = 1
EXIT_BAD_INPUT = 2

#: What the unknown-component check asks Prometheus.
UNKNOWN_COMPONENTS_QUERY = 'monitoriza_component_status{status="unknown"} == 1'
PROMETHEUS_TIMEOUT = 5.0


def default_alertmanager_file() -> Path:
    """``alertmanager/alertmanager.yml`` of the source tree this package runs from, else of
    the current directory (like :func:`monitoriza.timescale.default_rules_dir`)."""
    beside_package = Path(__file__).resolve().parents[2] / "alertmanager" / "alertmanager.yml"
    return beside_package if beside_package.is_file() else Path("alertmanager/alertmanager.yml")


class LintInputError(MonitorizaError):
    """An input file the lint cannot read; each message names the file."""

    def __init__(self, messages: list[str]) -> None:
        super().__init__("; ".join(messages))
        self.messages = messages


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise LintInputError([f"{path}: cannot read: {exc}"]) from None
    except yaml.YAMLError as exc:
        raise LintInputError([f"{path}: not valid YAML: {exc}"]) from None


def read_alertmanager(path: Path) -> Mapping[str, Any]:
    """The parsed Alertmanager configuration; LintInputError if it is not a mapping."""
    data = _read_yaml(path)
    if not isinstance(data, Mapping):
        raise LintInputError([f"{path}: expected an Alertmanager configuration (a mapping)"])
    return data


def read_rules(directory: Path) -> dict[str, Any]:
    """``*.yml`` and ``*.yaml`` files directly in ``directory``, parsed, by path."""
    if not directory.is_dir():
        raise LintInputError([f"{directory}: not a directory of rule files"])
    files = sorted([*directory.glob("*.yml"), *directory.glob("*.yaml")])
    return {str(path): _read_yaml(path) for path in files}


def query_unknown_components(prometheus_url: str) -> tuple[list[ComponentStatus], list[Finding]]:
    """Components Prometheus has as ``unknown`` right now, or a warning saying why not."""
    url = f"{prometheus_url.rstrip('/')}/api/v1/query"
    try:
        response = requests.get(url, params={"query": UNKNOWN_COMPONENTS_QUERY},
                                timeout=PROMETHEUS_TIMEOUT)
        body = response.json()
        if response.status_code != 200 or body.get("status") != "success":
            raise ValueError(f"HTTP {response.status_code}: {body.get('error', body)}")
        result = body["data"]["result"]
        statuses = [ComponentStatus(str(item["metric"].get("service", "")),
                                    str(item["metric"].get("component", "")), "unknown")
                    for item in result]
    except requests.ConnectionError:
        problem = "nothing answers there (connection failed)"
    except requests.Timeout:
        problem = f"no answer within {PROMETHEUS_TIMEOUT:g}s"
    except (requests.RequestException, ValueError, KeyError, TypeError, AttributeError) as exc:
        problem = f"unexpected answer: {exc}"
    else:
        return statuses, []
    return [], [Finding(
        "warning", "prometheus-unreachable", prometheus_url,
        f"cannot ask Prometheus which components are unknown: {problem}",
        "check --prometheus (e.g. http://127.0.0.1:9090) and that Prometheus is up; "
        "the other checks ran without it")]


def _print_text(findings: list[Finding], out: TextIO) -> None:
    for finding in findings:
        out.write(f"{finding.severity:<8} {finding.path}  {finding.code}: {finding.message}. "
                  f"Fix: {finding.fix}\n")
    errors = sum(f.severity == "error" for f in findings)
    warnings = len(findings) - errors
    if not findings:
        out.write("lint: no problems found\n")
    else:
        out.write(f"lint: {errors} error{'s' * (errors != 1)}, "
                  f"{warnings} warning{'s' * (warnings != 1)}\n")


def lint_command(config: Path, alertmanager: Path, rules: Path, prometheus_url: str | None,
                 out: TextIO, *, output_format: str = "text") -> int:
    """Run every check and print the findings to ``out`` (``"text"`` or ``"json"``).

    Returns 0 (nothing, or only warnings), 1 (at least one error) or 2 (an input cannot be
    read: its messages, each starting with the file, go to ``out``)."""
    try:
        loaded = load_config(config)
    except ConfigError as exc:
        return _bad_input([f"{config}: {message}" for message in exc.messages], out,
                          output_format)
    try:
        routing = read_alertmanager(alertmanager)
        rule_files = read_rules(rules)
    except LintInputError as exc:
        return _bad_input(exc.messages, out, output_format)
    findings: list[Finding] = []
    statuses: list[ComponentStatus] = []
    if prometheus_url:
        statuses, findings = query_unknown_components(prometheus_url)
    try:
        findings = run_checks(loaded, routing, rule_files, statuses, str(alertmanager)) + findings
    except RoutingError as exc:
        return _bad_input([f"{alertmanager}: {exc}"], out, output_format)
    if output_format == "json":
        errors = sum(f.severity == "error" for f in findings)
        json.dump({"findings": [f.as_dict() for f in findings], "errors": errors,
                   "warnings": len(findings) - errors}, out, indent=2)
        out.write("\n")
    else:
        _print_text(findings, out)
    return EXIT_ERRORS if any(f.severity == "error" for f in findings) else EXIT_OK


def _bad_input(messages: list[str], out: TextIO, output_format: str) -> int:
    if output_format == "json":
        json.dump({"input_errors": messages}, out, indent=2)
        out.write("\n")
    else:
        for message in messages:
            out.write(f"{message}\n")
    return EXIT_BAD_INPUT
