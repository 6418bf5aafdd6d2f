"""``monitoriza drill plan``: read the configuration, the rule files, the Alertmanager and
Prometheus files, print the fault matrix (a table per service, or ``--json``).

Exit status: 0 with a plan, 2 when an input cannot be read (each problem on one line that
names the file).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TextIO

import yaml

from monitoriza.config import load_config
from monitoriza.drill.model import DrillPlan, ExpectedAlert, Experiment, Reach
from monitoriza.drill.plan import build_plan, read_timers
from monitoriza.drill.rules import PlanInputError, parse_rule_files
from monitoriza.exceptions import ConfigError
from monitoriza.lint.routing import RoutingError
from monitoriza.lint.run import LintInputError, read_alertmanager, read_rules

EXIT_OK = 0
EXIT_BAD_INPUT = 2


def default_prometheus_file() -> Path:
    """``prometheus/prometheus.yml`` of the source tree this package runs from, else of the
    current directory (like :func:`monitoriza.lint.default_alertmanager_file`)."""
    beside_package = Path(__file__).resolve().parents[2] / "prometheus" / "prometheus.yml"
    return beside_package if beside_package.is_file() else Path("prometheus/prometheus.yml")


def _read_prometheus(path: Path) -> Any:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise LintInputError([f"{path}: cannot read: {exc}"]) from None
    except yaml.YAMLError as exc:
        raise LintInputError([f"{path}: not valid YAML: {exc}"]) from None
    if not isinstance(data, dict):
        raise LintInputError([f"{path}: expected a Prometheus configuration (a mapping)"])
    return data


def load_plan(config_path: Path, alertmanager: Path, rules: Path, prometheus: Path) -> DrillPlan:
    """The plan from these files; ConfigError, LintInputError, PlanInputError or RoutingError
    when one cannot be read."""
    config = load_config(config_path)
    alertmanager_config = read_alertmanager(alertmanager)
    rule_files = read_rules(rules)
    alert_rules = parse_rule_files(rule_files)
    if not alert_rules:
        raise PlanInputError(f"{rules}: no alerting rules found")
    timers = read_timers(_read_prometheus(prometheus), str(prometheus))
    return build_plan(config, alertmanager_config, alert_rules, timers, str(alertmanager))


PLAN_INPUT_ERRORS = (ConfigError, LintInputError, PlanInputError, RoutingError)


def plan_error_lines(exc: Exception, config_path: Path, alertmanager: Path) -> list[str]:
    """One line per problem of an input the plan could not read (one of PLAN_INPUT_ERRORS),
    each naming its file."""
    if isinstance(exc, ConfigError):
        return [f"{config_path}: {message}" for message in exc.messages]
    if isinstance(exc, LintInputError):
        return list(exc.messages)
    if isinstance(exc, RoutingError):
        return [f"{alertmanager}: {exc}"]
    return [str(exc)]


def plan_command(config_path: Path, alertmanager: Path, rules: Path, prometheus: Path, *,
                 out: TextIO, err: TextIO, as_json: bool = False) -> int:
    """Print the plan to ``out``; problems go to ``err``, one line each."""
    try:
        plan = load_plan(config_path, alertmanager, rules, prometheus)
    except PLAN_INPUT_ERRORS as exc:
        for line in plan_error_lines(exc, config_path, alertmanager):
            err.write(f"{line}\n")
        return EXIT_BAD_INPUT
    if as_json:
        json.dump(plan.as_data(), out, indent=2)
        out.write("\n")
    else:
        write_text(plan, out)
    return EXIT_OK


# -- text -----------------------------------------------------------------------------------

_COLUMNS = ("FAULT", "TARGET", "ROOT CAUSE", "ALERT (for)", "FIRES BY", "NOTIFIES BY", "HEAL BY")


def _reach_cell(reach: Reach) -> str:
    who = reach.receiver + ("*" if reach.person else "")
    via = f" via {reach.notice.rsplit(' ', 1)[-1]} notice" if reach.via == "notice" else ""
    return f"{who}{via} {reach.deadline.seconds:g}s"


def _alert_cells(alert: ExpectedAlert) -> tuple[str, str, str]:
    name = f"{alert.alertname} {alert.severity} (for {alert.for_seconds:g}s)"
    if alert.expectation == "if_persisting":
        name += " if persisting"
    reaches = ", ".join(_reach_cell(r) for r in alert.reaches) or "no one (inhibited)"
    return name, f"{alert.detect.seconds:g}s", reaches


def _rows(experiment: Experiment) -> list[tuple[str, ...]]:
    heal = (f"{experiment.heal.playbook} {experiment.heal.deadline.seconds:g}s"
            if experiment.heal else "none")
    rows: list[tuple[str, ...]] = []
    for index, alert in enumerate(experiment.alerts or ()):
        name, fires, reaches = _alert_cells(alert)
        lead = (experiment.fault, experiment.target, experiment.root_cause) if index == 0 \
            else ("", "", "")
        rows.append((*lead, f"{alert.service}: {name}" if alert.service != experiment.service
                     else name, fires, reaches, heal if index == 0 else ""))
    if not rows:
        rows.append((experiment.fault, experiment.target, experiment.root_cause,
                     "no alert rule", "", "", heal))
    return rows


def _table(rows: list[tuple[str, ...]], out: TextIO) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(_COLUMNS))]
    for row in rows:
        out.write("  " + "  ".join(cell.ljust(width) for cell, width in
                                   zip(row, widths, strict=True)).rstrip() + "\n")


def _derivation(experiment: Experiment, out: TextIO) -> None:
    out.write(f"  how {experiment.key}'s deadlines add up (seconds after the fault):\n")
    for alert in experiment.alerts:
        label = f"{alert.alertname} {alert.severity}"
        out.write(f"    {label} fires by: {alert.detect.explain()}\n")
        for reach in alert.reaches:
            via = f" (via {reach.notice})" if reach.via == "notice" else ""
            out.write(f"    {label} reaches {reach.receiver}{via} by: "
                      f"{reach.deadline.explain()}\n")
    if experiment.heal:
        out.write(f"    healed by {experiment.heal.playbook} by: "
                  f"{experiment.heal.deadline.explain()}\n")


def write_text(plan: DrillPlan, out: TextIO) -> None:
    """A table per service, then how its first experiment's deadlines add up, then notes."""
    timers = plan.timers
    out.write(f"drill plan: {len(plan.experiments)} experiments. "
              f"Scrape interval {timers.scrape_interval.seconds:g}s "
              f"({timers.scrape_interval.source}), evaluation interval "
              f"{timers.evaluation_interval.seconds:g}s ({timers.evaluation_interval.source}); "
              f"{plan.margin_rule}. Receivers marked * reach a person.\n")
    services = list(dict.fromkeys(e.service for e in plan.experiments))
    for service in services:
        experiments = plan.for_service(service)
        out.write(f"\n{service}\n")
        rows: list[tuple[str, ...]] = [_COLUMNS]
        for experiment in experiments:
            rows += _rows(experiment)
        _table(rows, out)
        # Faults with the same alerts add up the same way: explain the service's own once;
        # a dependency outage adds up as in the dependency's own section.
        own = next((e for e in experiments if e.root_cause == service and e.alerts), None)
        if own is not None:
            _derivation(own, out)
        notes = list(dict.fromkeys(note for e in experiments for note in e.notes))
        for note in notes:
            out.write(f"  note: {note}\n")
