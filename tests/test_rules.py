"""The Prometheus rules: promtool accepts them, their unit tests pass, every alert is covered.

The unit tests themselves are `promtool test rules` files in ``tests/rules/``; this module runs
them and checks the contract every alert rule keeps (severity, annotations, runbook link).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.binaries import require_binary

ROOT = Path(__file__).parent.parent
RULES_DIR = ROOT / "rules"
RULE_TESTS_DIR = ROOT / "tests" / "rules"
RUNBOOKS = ROOT / "docs" / "runbooks.md"
SEVERITIES = {"P2", "P3", "P4", "none"}
REQUIRED_ANNOTATIONS = ("summary", "description", "runbook_url")
MIN_ALERT_CASES = 40


def rule_files() -> list[Path]:
    """Every rule file Prometheus loads (prometheus.yml reads ``../rules/*.yml``)."""
    return sorted(RULES_DIR.glob("*.yml"))


def rule_test_files() -> list[Path]:
    """Every ``promtool test rules`` file."""
    return sorted(RULE_TESTS_DIR.glob("*.yml"))


def load_yaml(path: Path) -> dict[str, Any]:
    """A YAML mapping from ``path``."""
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict), f"{path}: not a YAML mapping"
    return data


def alert_rules() -> list[dict[str, Any]]:
    """Every alerting rule (not recording rule) of rules/*.yml, in file order."""
    rules: list[dict[str, Any]] = []
    for path in rule_files():
        for group in load_yaml(path)["groups"]:
            rules.extend(rule for rule in group["rules"] if "alert" in rule)
    return rules


def rule_groups() -> dict[str, bool]:
    """Every rule group of rules/*.yml, and whether it records (rather than only alerts)."""
    return {group["name"]: any("record" in rule for rule in group["rules"])
            for path in rule_files() for group in load_yaml(path)["groups"]}


def alert_cases() -> list[dict[str, Any]]:
    """Every ``alert_rule_test`` case of tests/rules/*.yml."""
    cases: list[dict[str, Any]] = []
    for path in rule_test_files():
        for group in load_yaml(path)["tests"]:
            cases.extend(group.get("alert_rule_test") or [])
    return cases


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    """Run promtool in the repository root."""
    binary = require_binary("promtool")
    return subprocess.run([binary, *args], capture_output=True, text=True, check=False,
                          timeout=120, cwd=ROOT)


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading: lower case, punctuation dropped, '-' for ' '."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


@pytest.mark.real_binary("promtool")
class TestCheckRules:
    """``promtool check rules`` accepts every rule file, with no lint complaint."""

    def test_rules_are_valid_and_lint_clean(self) -> None:
        """Every file of rules/*.yml parses, and the linter finds nothing (exit 3 if it did)."""
        files = [str(path.relative_to(ROOT)) for path in rule_files()]
        assert files, "no rule files in rules/"
        result = promtool("check", "rules", "--lint=all", "--lint-fatal", *files)
        output = result.stdout + result.stderr
        assert result.returncode == 0, output
        assert output.count("SUCCESS") == len(files), output
        assert "FAILED" not in output, output
        assert "lint" not in output.lower(), output

    def test_lint_complaint_is_caught(self, tmp_path: Path) -> None:
        """A duplicate rule fails the same command, so the check above can fail too."""
        duplicate = {"alert": "Twice", "expr": "vector(1)", "labels": {"severity": "P4"}}
        broken = tmp_path / "duplicate.yml"
        broken.write_text(yaml.safe_dump({"groups": [{"name": "g",
                                                      "rules": [duplicate, duplicate]}]}))
        result = promtool("check", "rules", "--lint=all", "--lint-fatal", str(broken))
        assert result.returncode != 0
        assert "duplicate rule" in result.stdout + result.stderr


@pytest.mark.real_binary("promtool")
class TestUnitTests:
    """``promtool test rules`` passes every file in tests/rules/."""

    @pytest.mark.parametrize("test_file", rule_test_files(), ids=lambda path: path.name)
    def test_file_passes(self, test_file: Path) -> None:
        """All alert_rule_test and promql_expr_test cases of the file pass."""
        result = promtool("test", "rules", str(test_file.relative_to(ROOT)))
        assert result.returncode == 0, f"promtool test rules {test_file.name}:\n" + (
            result.stdout + result.stderr)

    def test_wrong_expectation_fails(self, tmp_path: Path) -> None:
        """A case expecting the wrong severity fails, so the test above can fail too."""
        case = {
            "rule_files": [str(RULES_DIR / "silent-alerts.yml")],
            "evaluation_interval": "1m",
            "tests": [{"interval": "1m", "input_series": [], "alert_rule_test": [{
                "eval_time": "0m", "alertname": "Watchdog",
                "exp_alerts": [{"exp_labels": {"severity": "P2"}}],
            }]}],
        }
        wrong = tmp_path / "wrong.yml"
        wrong.write_text(yaml.safe_dump(case))
        result = promtool("test", "rules", str(wrong))
        assert result.returncode != 0
        assert 'severity="none"' in result.stdout + result.stderr


class TestRuleTestFiles:
    """Each tests/rules/*.yml loads every rule file and evaluates the recording rules first."""

    def test_every_file_loads_every_rule_file(self) -> None:
        """Alerts read recording rules, so each test file's rule_files resolve to all of rules/."""
        expected = {path.resolve() for path in rule_files()}
        test_files = rule_test_files()
        assert test_files, "no promtool test files in tests/rules/"
        for path in test_files:
            loaded: set[Path] = set()
            for pattern in load_yaml(path)["rule_files"]:
                matches = sorted(path.parent.glob(pattern))
                assert matches, f"{path.name}: rule_files entry {pattern!r} matches nothing"
                loaded.update(match.resolve() for match in matches)
            assert loaded == expected, f"{path.name} loads {sorted(loaded)}"

    def test_every_file_evaluates_recording_groups_first(self) -> None:
        """group_eval_order lists every group, recording ones first (else promtool shuffles)."""
        groups = rule_groups()
        recording = {name for name, records in groups.items() if records}
        for path in rule_test_files():
            order = load_yaml(path).get("group_eval_order") or []
            assert sorted(order) == sorted(groups), f"{path.name}: group_eval_order {order}"
            assert set(order[:len(recording)]) == recording, (
                f"{path.name}: recording groups {sorted(recording)} must come first: {order}")


class TestCoverage:
    """Every alert rule keeps the label and annotation contract, and is unit-tested."""

    def test_every_alertname_is_tested(self) -> None:
        """Each alertname of rules/*.yml appears in some alert_rule_test."""
        tested = {case["alertname"] for case in alert_cases()}
        untested = sorted({rule["alert"] for rule in alert_rules()} - tested)
        assert not untested, f"alerts without an alert_rule_test: {untested}"

    def test_every_alertname_is_tested_before_and_after_its_for(self) -> None:
        """Each alert has a case where it fires; one with a `for` also one where it does not yet."""
        cases = alert_cases()
        firing = {case["alertname"] for case in cases if case.get("exp_alerts")}
        quiet = {case["alertname"] for case in cases if not case.get("exp_alerts")}
        rules = alert_rules()
        with_for = {rule["alert"] for rule in rules if "for" in rule}
        missing_firing = sorted({rule["alert"] for rule in rules} - firing)
        missing_quiet = sorted(with_for - quiet)
        assert not missing_firing, f"no case where these fire: {missing_firing}"
        assert not missing_quiet, f"no case before `for` ends (exp_alerts: []): {missing_quiet}"

    def test_expected_alerts_spell_out_severity_and_annotations(self) -> None:
        """Every expected alert states its severity and its full summary, description, runbook."""
        incomplete = [
            f"{case['alertname']} at {case['eval_time']}"
            for case in alert_cases()
            for alert in case.get("exp_alerts") or []
            if "severity" not in (alert.get("exp_labels") or {})
            or set(REQUIRED_ANNOTATIONS) - set(alert.get("exp_annotations") or {})
        ]
        assert not incomplete, f"expected alerts without severity or annotations: {incomplete}"

    def test_severity_label(self) -> None:
        """Every alert rule has labels.severity in P2, P3, P4 or none."""
        wrong = [(rule["alert"], (rule.get("labels") or {}).get("severity"))
                 for rule in alert_rules()
                 if (rule.get("labels") or {}).get("severity") not in SEVERITIES]
        assert not wrong, f"alert rules with a missing or unknown severity: {wrong}"

    def test_annotations(self) -> None:
        """Every alert rule has a summary, a description and a runbook_url."""
        missing = [(rule["alert"], name) for rule in alert_rules() for name in REQUIRED_ANNOTATIONS
                   if not (rule.get("annotations") or {}).get(name)]
        assert not missing, f"alert rules missing annotations: {missing}"

    def test_runbook_url_names_the_alert(self) -> None:
        """Every runbook_url is docs/runbooks.md#<alertname in lower case>."""
        wrong = [(rule["alert"], (rule.get("annotations") or {}).get("runbook_url"))
                 for rule in alert_rules()
                 if (rule.get("annotations") or {}).get("runbook_url")
                 != f"docs/runbooks.md#{rule['alert'].lower()}"]
        assert not wrong, f"runbook_url not docs/runbooks.md#<alertname>: {wrong}"

    def test_enough_cases(self) -> None:
        """There are at least 40 alert_rule_test cases in all."""
        assert len(alert_cases()) >= MIN_ALERT_CASES


class TestRunbooks:
    """docs/runbooks.md has a `## AlertName` section for every runbook_url of the rules."""

    def test_every_runbook_anchor_exists(self) -> None:
        """Each runbook_url anchor is the GitHub anchor of a level-2 heading of runbooks.md."""
        assert RUNBOOKS.is_file(), f"{RUNBOOKS.relative_to(ROOT)} is missing"
        anchors = {github_anchor(line[3:]) for line in RUNBOOKS.read_text().splitlines()
                   if line.startswith("## ")}
        links = {(rule.get("annotations") or {}).get("runbook_url", "") for rule in alert_rules()}
        missing = sorted(link for link in links if link.partition("#")[2] not in anchors)
        assert not missing, f"runbook links without a `## AlertName` heading: {missing}"
