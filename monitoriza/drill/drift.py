"""Does the running pipeline match the files the plan was derived from?

A drill judges what runs against what was reviewed. When the running Prometheus has another
``for`` than the rule file, or the running Alertmanager another route tree, a cell comes out
late or a receiver never reached; saying so before the first fault points at the cause
(a stale deployment, a hand edit) instead of leaving it to be guessed. Comparisons are pure;
:func:`running_state` asks Prometheus (``/api/v1/rules``) and Alertmanager
(``/api/v2/status``, the configuration it loaded) once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import requests
import yaml

from monitoriza.drill.rules import AlertRule
from monitoriza.durations import parse_duration
from monitoriza.exceptions import DurationError

TIMEOUT_SECONDS = 5.0


def _key(name: str, labels: Mapping[str, Any]) -> tuple[str, tuple[tuple[str, str], ...]]:
    return name, tuple(sorted((str(k), str(v)) for k, v in labels.items()))


def rule_drift(planned: Sequence[AlertRule], running_groups: Sequence[Mapping[str, Any]]
               ) -> list[str]:
    """One line per planned alerting rule that the running Prometheus does not have, or has
    with another ``for``; rules matched by name and static labels."""
    running: dict[tuple[str, tuple[tuple[str, str], ...]], list[float]] = {}
    for group in running_groups:
        for rule in group.get("rules") or []:
            if rule.get("type") == "alerting":
                running.setdefault(_key(str(rule.get("name")), rule.get("labels") or {}),
                                   []).append(float(rule.get("duration") or 0.0))
    lines = []
    for rule in planned:
        name = f"{rule.alertname} {rule.severity}".strip()
        found = running.get(_key(rule.alertname, dict(rule.labels)))
        if not found:
            lines.append(f"{name} ({rule.source}) is not loaded in the running Prometheus")
        elif rule.for_seconds not in found:
            there = ", ".join(f"{value:g}s" for value in sorted(set(found)))
            lines.append(f"{name} waits {there} in the running Prometheus, "
                         f"{rule.for_seconds:g}s in {rule.source}")
    return lines


#: Alertmanager leaves these out of the configuration it reports when the root has them.
ROOT_DEFAULTS = {"group_wait": 30.0, "group_interval": 300.0, "repeat_interval": 14400.0}
TIMER_KEYS = ("group_wait", "group_interval", "repeat_interval")
MATCHER_KEYS = ("matchers", "source_matchers", "target_matchers")


def _seconds(value: Any) -> Any:
    try:
        return parse_duration(str(value))
    except DurationError:
        return value


def canonical_route(route: Mapping[str, Any], *, root: bool = False) -> dict[str, Any]:
    """A route as Alertmanager reports it back, whatever way the file wrote it: timers in
    seconds (the root's defaults filled in), matchers sorted, ``continue: false`` dropped."""
    shaped: dict[str, Any] = {}
    for key, value in route.items():
        if key == "continue" and value is False:
            continue
        if key in TIMER_KEYS:
            shaped[key] = _seconds(value)
        elif key in MATCHER_KEYS:
            shaped[key] = sorted(str(item) for item in value or [])
        elif key == "routes":
            shaped[key] = [canonical_route(child) for child in value or []]
        else:
            shaped[key] = value
    if root:
        for key, default in ROOT_DEFAULTS.items():
            shaped.setdefault(key, default)
    return shaped


def _canonical_inhibitions(rules: Any) -> list[dict[str, Any]]:
    return [{key: sorted(str(v) for v in value or []) if key in MATCHER_KEYS else value
             for key, value in rule.items()} for rule in rules or []]


def route_drift(planned: Mapping[str, Any], running: Mapping[str, Any], source: str
                ) -> list[str]:
    """One line per routing part (route tree, inhibition) that differs between the file and
    the configuration Alertmanager loaded, compared in Alertmanager's own canonical form."""
    lines = []
    if canonical_route(planned.get("route") or {}, root=True) != \
            canonical_route(running.get("route") or {}, root=True):
        lines.append(f"the running Alertmanager's route tree differs from {source}'s")
    if _canonical_inhibitions(planned.get("inhibit_rules")) != \
            _canonical_inhibitions(running.get("inhibit_rules")):
        lines.append(f"the running Alertmanager's inhibit rules differ from {source}'s")
    return lines


def running_state(prometheus: str, alertmanager: str
                  ) -> tuple[list[dict[str, Any]] | None, dict[str, Any] | None, list[str]]:
    """(rule groups, Alertmanager's loaded configuration, problems): either may be None when
    it could not be read, and the problem says why."""
    problems: list[str] = []
    groups: list[dict[str, Any]] | None = None
    loaded: dict[str, Any] | None = None
    try:
        response = requests.get(f"{prometheus}/api/v1/rules", params={"type": "alert"},
                                timeout=TIMEOUT_SECONDS)
        response.raise_for_status()
        groups = list(response.json()["data"]["groups"])
    except (requests.RequestException, ValueError, KeyError) as exc:
        problems.append(f"cannot read the running rules from {prometheus}: {exc}")
    try:
        response = requests.get(f"{alertmanager}/api/v2/status", timeout=TIMEOUT_SECONDS)
        response.raise_for_status()
        parsed = yaml.safe_load(response.json()["config"]["original"])
        loaded = parsed if isinstance(parsed, dict) else None
    except (requests.RequestException, ValueError, KeyError, yaml.YAMLError) as exc:
        problems.append(f"cannot read the running configuration from {alertmanager}: {exc}")
    return groups, loaded, problems
