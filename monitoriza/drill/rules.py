"""The alerting rules a drill expects, read from the real rule files.

A fault produces a *condition* on a service (``down``: every probe fails; ``degraded``: a
health dimension below 0.8; ``forecast``: a time-to-failure forecast inside its horizon),
and each condition is one alert name escalated P4 → P3 → P2 by several rules (see
rules/service-alerts.yml). For a tier, the rule that raises each severity first is the one
with the shortest ``for`` among those whose expression does not select another tier
(``monitoriza_service_info{tier="critical"}``). Rules labelled ``escalation: spreading`` need
a second degraded dimension or service, which one injected fault does not promise, so they
are left out."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from monitoriza.durations import parse_duration
from monitoriza.exceptions import DurationError, MonitorizaError

Condition = Literal["down", "degraded", "forecast"]
CONDITION_ALERTS: Mapping[Condition, str] = {
    "down": "ServiceDown", "degraded": "ServiceDegraded", "forecast": "FailureForecast"}
SEVERITY_ORDER = ("P4", "P3", "P2")
_TIER_SELECTOR = re.compile(r"""\btier\s*=\s*"([^"]*)\"""")
_NOT_PROMISED = {"spreading"}


class PlanInputError(MonitorizaError, ValueError):
    """A rule file or Prometheus setting the plan cannot read; the message names the file
    and the place in it."""


@dataclass(frozen=True, slots=True)
class AlertRule:
    """One alerting rule, as much of it as a drill needs."""

    alertname: str
    severity: str
    for_seconds: float
    labels: tuple[tuple[str, str], ...]  # the rule's static labels, severity included
    tiers: frozenset[str] | None  # None: every tier
    evaluation_interval: float | None  # the group's own ``interval``, if it sets one
    source: str

    def applies_to(self, tier: str) -> bool:
        return self.tiers is None or tier in self.tiers


def _seconds(value: object, where: str) -> float:
    try:
        return parse_duration(str(value))
    except DurationError as exc:
        raise PlanInputError(f"{where}: {exc}") from None


def parse_rule_files(files: Mapping[str, Any]) -> list[AlertRule]:
    """Every alerting rule of ``files`` (display name → parsed YAML ``groups: [...]``)."""
    found: list[AlertRule] = []
    for name, document in files.items():
        groups = document.get("groups") if isinstance(document, Mapping) else None
        if not isinstance(groups, list):
            raise PlanInputError(f"{name}: expected a rule file with a list of groups")
        for group in groups:
            if not isinstance(group, Mapping) or not isinstance(group.get("rules"), list):
                raise PlanInputError(f"{name}: every group needs a list of rules")
            where_group = f"{name}: group {group.get('name')}"
            interval = (_seconds(group["interval"], where_group)
                        if group.get("interval") is not None else None)
            for index, rule in enumerate(group["rules"]):
                if not isinstance(rule, Mapping) or "alert" not in rule:
                    continue  # recording rules
                where = f"{where_group}, rule {index}"
                labels = {str(k): str(v) for k, v in (rule.get("labels") or {}).items()}
                tiers = frozenset(_TIER_SELECTOR.findall(str(rule.get("expr", ""))))
                found.append(AlertRule(
                    alertname=str(rule["alert"]), severity=labels.get("severity", ""),
                    for_seconds=_seconds(rule.get("for", "0s"), where),
                    labels=tuple(sorted(labels.items())), tiers=tiers or None,
                    evaluation_interval=interval, source=where))
    return found


def escalation(rules: list[AlertRule], condition: Condition, tier: str) -> list[AlertRule]:
    """The rule raising each severity of ``condition`` first for ``tier``, earliest first."""
    alertname = CONDITION_ALERTS[condition]
    chosen: list[AlertRule] = []
    for severity in SEVERITY_ORDER:
        candidates = [rule for rule in rules
                      if rule.alertname == alertname and rule.severity == severity
                      and rule.applies_to(tier)
                      and dict(rule.labels).get("escalation") not in _NOT_PROMISED]
        if candidates:
            chosen.append(min(candidates, key=lambda rule: rule.for_seconds))
    return sorted(chosen, key=lambda rule: (rule.for_seconds, SEVERITY_ORDER.index(rule.severity)))
