"""The lint's checks: pure functions from what was loaded to a list of findings.

Each check takes the validated :class:`~monitoriza.config.Config` and, where it needs them,
the parsed Alertmanager file, the parsed rule files or the components Prometheus reports, and
returns :class:`Finding` objects; nothing here reads a file or opens a socket (that is
:mod:`monitoriza.lint.run`). What the user sees is one line per finding: where the gap is,
what is wrong, and how to fix it. See docs/lint.md.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

from monitoriza.config.schema import Config, HttpAction, Playbook
from monitoriza.healing.notices import NOTICE_ALERTNAME
from monitoriza.healing.policy import SELF_RAISED_LABEL, SELF_RAISED_VALUE
from monitoriza.lint.routing import (
    Matcher,
    RoutingError,
    human_channels,
    iter_routes,
    node_matchers,
    receivers,
    route_alert,
)

Severity = Literal["error", "warning"]

#: The labels of the alert the P2 routing check sends through the route tree.
P2_PROBE_ALERTNAME = "ServiceDown"

_LITERAL_NAME = re.compile(r"[a-z][a-z0-9_-]*")
# service="x", service!="x", service=~"x|y", service!~"..." inside a PromQL expression.
_PROMQL_SERVICE = re.compile(
    r"""\bservice\s*(=~|!~|!=|=)\s*(?:"((?:[^"\\]|\\.)*)"|'((?:[^'\\]|\\.)*)')""")


@dataclass(frozen=True, slots=True)
class Finding:
    """One gap in the monitoring setup."""

    severity: Severity
    code: str  # short kebab-case id, e.g. "playbook-without-verify"
    path: str  # where: "services.redis.healing[0]", "rules/x.yml: groups[0].rules[1].expr"
    message: str  # what is wrong
    fix: str  # how to fix it

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class ComponentStatus:
    """One component a service's health endpoint reports, as Prometheus has it."""

    service: str
    component: str
    status: str


def check_probes(config: Config) -> list[Finding]:
    """A service without probes is never measured: it can be down without anyone knowing."""
    return [
        Finding("error", "service-without-probes", f"services.{name}.probes",
                f"{name} has no probes, so nothing measures it and no alert can fire for it",
                f"add at least one probe under services.{name}.probes (http, tcp, redis, "
                "postgres, docker, host or process)")
        for name, service in config.services.items() if not service.probes
    ]


def check_dependencies(config: Config) -> list[Finding]:
    """A dependency no probe covers cannot be named as a root cause, nor healed."""
    findings = []
    for name, service in config.services.items():
        for index, dependency in enumerate(service.depends_on):
            path = f"services.{name}.depends_on[{index}]"
            target = config.services.get(dependency)
            if target is None:
                findings.append(Finding(
                    "error", "dependency-undefined", path,
                    f"{name} depends on {dependency!r}, which is not a service of the "
                    "configuration",
                    f"define {dependency} under services: with its probes, or remove it "
                    f"from services.{name}.depends_on"))
            elif not target.probes:
                findings.append(Finding(
                    "error", "dependency-without-probes", path,
                    f"{name} depends on {dependency}, which has no probes: when it fails, "
                    f"{name}'s incidents cannot point at it as the root cause",
                    f"add probes to services.{dependency}"))
    return findings


def _static_prefix(url: str) -> str:
    return url.split("{", 1)[0]


def _http_steps(book: Playbook) -> Iterable[tuple[str, HttpAction]]:
    for part, steps in (("steps", book.steps), ("rollback", book.rollback)):
        for number, step in enumerate(steps):
            if isinstance(step, HttpAction):
                yield f"{part}[{number}]", step


def _alertnames(rule_files: Mapping[str, Any]) -> set[str]:
    names: set[str] = set()
    for document in rule_files.values():
        groups = document.get("groups") if isinstance(document, Mapping) else None
        for group in groups if isinstance(groups, list) else []:
            rules = group.get("rules") if isinstance(group, Mapping) else None
            names.update(str(rule["alert"]) for rule in (rules if isinstance(rules, list) else [])
                         if isinstance(rule, Mapping) and "alert" in rule)
    return names


def check_playbook_alertnames(config: Config, rule_files: Mapping[str, Any]) -> list[Finding]:
    """A playbook answering an alertname no rule raises never runs (often a typo)."""
    known = _alertnames(rule_files)
    findings = []
    for name, service in config.services.items():
        for index, book in enumerate(service.healing):
            for number, alertname in enumerate(book.match.alertname):
                if alertname not in known:
                    findings.append(Finding(
                        "warning", "playbook-unknown-alertname",
                        f"services.{name}.healing[{index}].match.alertname[{number}]",
                        f"playbook {book.name} of {name} answers {alertname}, which no rule "
                        "in the rules directory raises: it never runs for it",
                        "use the alertname of an existing rule (e.g. ServiceDown, "
                        "ComponentUnknown), or add the rule that raises it"))
    return findings


def check_playbooks(config: Config) -> list[Finding]:
    """Playbooks that cannot tell whether they healed, cannot undo, or can never run.

    Commands outside ``allowed_commands`` and literal URLs outside ``allowed_urls`` are
    already refused when the configuration is loaded; what the loader lets through is an
    ``http`` URL with placeholders, which is checked here by its fixed part."""
    findings = []
    allowed = [str(url) for url in config.responder.healing.allowed_urls]
    for name, service in config.services.items():
        for index, book in enumerate(service.healing):
            path = f"services.{name}.healing[{index}]"
            if book.verify is None:
                findings.append(Finding(
                    "error", "playbook-without-verify", path,
                    f"playbook {book.name} of {name} has no verify: the responder cannot tell "
                    "whether it healed anything, so it can neither roll back nor stop "
                    "retrying a useless action",
                    f"add verify: {{probe: NAME, timeout: 60s}} (a probe of {name}) or "
                    "verify: {promql: EXPR} to the playbook"))
            if not book.rollback:
                findings.append(Finding(
                    "warning", "playbook-without-rollback", path,
                    f"playbook {book.name} of {name} has no rollback: when verify fails, "
                    "the service is left as the steps left it",
                    "add rollback: [...] with the steps that undo or go one step further "
                    "(e.g. a docker_restart), or accept this if the steps need no undoing"))
            for where, step in _http_steps(book):
                if "{" not in step.url:
                    continue  # the loader already checked it
                prefix = _static_prefix(step.url)
                if not any(prefix.startswith(url) or url.startswith(prefix) for url in allowed):
                    findings.append(Finding(
                        "error", "http-step-outside-allowed-urls", f"{path}.{where}.url",
                        f"{step.url!r} can never lie under responder.healing.allowed_urls "
                        f"({', '.join(allowed) or 'empty'}): the step will always be refused",
                        "add its URL prefix to responder.healing.allowed_urls, or fix the URL"))
    return findings


def _p2_labels(service: str) -> dict[str, str]:
    return {"alertname": P2_PROBE_ALERTNAME, "service": service, "severity": "P2",
            "tier": "critical"}


def check_p2_routing(config: Config, alertmanager: Mapping[str, Any],
                     source: str = "alertmanager.yml") -> list[Finding]:
    """Every critical service's P2 must reach a receiver with a human channel.

    The alert sent through the real route tree is ``{alertname: ServiceDown, service: NAME,
    severity: P2, tier: critical}``, the P2 the rules raise when a critical service has been
    down for 5 minutes. It passes when at least one receiver it reaches has an integration
    other than ``webhook_configs`` (see :func:`monitoriza.lint.routing.human_channels`)."""
    by_name = receivers(alertmanager)
    findings = []
    for name, service in config.services.items():
        if service.tier != "critical":
            continue
        destinations = route_alert(alertmanager, _p2_labels(name))
        reached = []
        human = False
        always: list[str] = []  # human receivers whose route has no time intervals
        for destination in destinations:
            receiver = by_name.get(destination.receiver)
            if receiver is None:
                reached.append(f"{destination.receiver or '(none)'} (not defined, at "
                               f"{destination.route_path})")
                continue
            channels = human_channels(receiver)
            human = human or bool(channels)
            if channels and not destination.time_intervals:
                always.append(destination.receiver)
            kinds = ", ".join(channels) if channels else "webhook only"
            reached.append(f"{destination.receiver} ({kinds}, at {destination.route_path})")
        if not human:
            findings.append(Finding(
                "error", "critical-without-p2-receiver", f"services.{name}",
                f"critical service {name}: a P2 {P2_PROBE_ALERTNAME} for it reaches "
                f"{'; '.join(reached)} in {source}: no person is paged",
                f"route severity=\"P2\" alerts for service {name} to a receiver with a human "
                "channel (slack_configs, email_configs, pagerduty_configs, telegram_configs, "
                "...), e.g. the on-call receiver, and check with amtool config routes test"))
        elif not always:
            timed = sorted({n for d in destinations for n in d.time_intervals})
            findings.append(Finding(
                "warning", "critical-p2-muted-at-times", f"services.{name}",
                f"critical service {name}: a P2 {P2_PROBE_ALERTNAME} for it reaches a person "
                f"only through routes with time intervals ({', '.join(timed)}) in {source}: "
                "at some times nobody is paged",
                "remove mute_time_intervals/active_time_intervals from the P2 route, or add a "
                "continue: true route to a receiver that pages at all times"))
    return findings


def _literal_names(op: str, value: str) -> list[str]:
    """The service names a matcher value spells out: ``x``, or ``x|y`` for a regex."""
    if op in {"=", "!="}:
        return [value] if _LITERAL_NAME.fullmatch(value) else []
    parts = value.split("|")
    return parts if all(_LITERAL_NAME.fullmatch(part) for part in parts) else []


def _unknown(config: Config, names: Iterable[str]) -> list[str]:
    return sorted({name for name in names if name not in config.services})


def check_rule_references(config: Config, rule_files: Mapping[str, Any]) -> list[Finding]:
    """Rules that name a service the configuration does not have never fire for anything
    (or, with ``!=``, exclude nothing): usually a renamed or removed service.

    ``rule_files`` maps a file's display name to its parsed YAML (``groups: [...]``)."""
    findings = []
    for file_name, document in rule_files.items():
        groups = document.get("groups") if isinstance(document, Mapping) else None
        for g, group in enumerate(groups if isinstance(groups, list) else []):
            rules = group.get("rules") if isinstance(group, Mapping) else None
            for r, rule in enumerate(rules if isinstance(rules, list) else []):
                if not isinstance(rule, Mapping):
                    continue
                where = f"{file_name}: groups[{g}].rules[{r}]"
                title = rule.get("alert") or rule.get("record") or "rule"
                names: list[tuple[str, str]] = []
                for found in _PROMQL_SERVICE.finditer(str(rule.get("expr", ""))):
                    value = found.group(2) if found.group(2) is not None else found.group(3)
                    names += [(f"{where}.expr", n) for n in _literal_names(found.group(1), value)]
                labels = rule.get("labels")
                if isinstance(labels, Mapping) and "service" in labels:
                    value = str(labels["service"])
                    names += [(f"{where}.labels.service", n) for n in _literal_names("=", value)]
                for path, unknown in sorted({(p, n) for p, n in names
                                             if n not in config.services}):
                    findings.append(Finding(
                        "warning", "rule-unknown-service", path,
                        f"{title} refers to service {unknown!r}, which is not in the "
                        "configuration",
                        f"rename it to an existing service or remove the rule ({file_name})"))
    return findings


def _service_matcher_names(matchers: Sequence[Matcher]) -> list[str]:
    names: list[str] = []
    for matcher in matchers:
        if matcher.name == "service":
            names += _literal_names(matcher.op, matcher.value)
    return names


def check_alertmanager_references(config: Config, alertmanager: Mapping[str, Any],
                                  source: str = "alertmanager.yml") -> list[Finding]:
    """Routes and inhibition rules matching on a ``service`` the configuration does not
    have: dead routing that hides a mistake (a renamed service now takes the default path)."""
    findings = []
    for path, route in iter_routes(alertmanager):
        for unknown in _unknown(config, _service_matcher_names(node_matchers(route, path))):
            findings.append(Finding(
                "warning", "route-unknown-service", f"{source}: {path}",
                f"this route matches service {unknown!r}, which is not in the configuration",
                "rename the matcher to an existing service, or remove the route"))
    rules = alertmanager.get("inhibit_rules")
    for index, rule in enumerate(rules if isinstance(rules, list) else []):
        if not isinstance(rule, Mapping):
            continue
        path = f"inhibit_rules[{index}]"
        names = (_service_matcher_names(node_matchers(rule, path, "source_"))
                 + _service_matcher_names(node_matchers(rule, path, "target_")))
        for unknown in _unknown(config, names):
            findings.append(Finding(
                "warning", "inhibition-unknown-service", f"{source}: {path}",
                f"this inhibition rule matches service {unknown!r}, which is not in the "
                "configuration",
                "rename the matcher to an existing service, or remove the inhibition rule"))
    return findings


def check_components(config: Config, statuses: Sequence[ComponentStatus]) -> list[Finding]:
    """Components a health endpoint reports ``unknown``: the service cannot see them (the
    Conecta case: the backend says ``redis: unknown`` while Redis is fine)."""
    findings = []
    for status in sorted(set(statuses), key=lambda s: (s.service, s.component)):
        if status.status != "unknown":
            continue
        known = status.service in config.services
        findings.append(Finding(
            "warning", "component-unknown",
            f"services.{status.service}" if known else f"service {status.service}",
            f"{status.service} reports its component {status.component} as unknown",
            f"check {status.service}'s connection to {status.component} (a reconnect "
            "playbook matching ComponentUnknown heals this), or stop reporting a component "
            "it no longer uses"))
    return findings


def _reaches_a_person(alertmanager: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    by_name = receivers(alertmanager)
    return any(human_channels(by_name[destination.receiver])
               for destination in route_alert(alertmanager, labels)
               if destination.receiver in by_name)


def check_service_p3_reaches_people(config: Config, alertmanager: Mapping[str, Any],
                                    source: str = "alertmanager.yml") -> list[Finding]:
    """A service's P3 must reach a person: straight from Alertmanager, or, when it goes to the
    responder only, as the responder's incident notice. The responder raises notices only with
    ``responder.healing.alertmanager_url``, and a notice must itself route to a person;
    otherwise the team hears of nothing below a page, silently."""
    if not config.services:
        return []
    name, service = next(iter(config.services.items()))
    p3 = {"alertname": "ServiceDegraded", "service": name, "severity": "P3",
          "tier": service.tier}
    if _reaches_a_person(alertmanager, p3):
        return []
    path = "responder.healing.alertmanager_url"
    if config.responder.healing.alertmanager_url is None:
        return [Finding(
            "error", "service-p3-reaches-no-one", path,
            f"a P3 about a service ({name}) reaches only the responder in {source}, and "
            "without responder.healing.alertmanager_url the responder raises no incident "
            "notices: the team hears of nothing below a page",
            "set responder.healing.alertmanager_url to this Alertmanager's URL, or route "
            "severity=\"P3\" service alerts to a receiver with a human channel")]
    notice = {"alertname": NOTICE_ALERTNAME, "incident": "1", "severity": "P3",
              "root_cause": name, SELF_RAISED_LABEL: SELF_RAISED_VALUE}
    if not _reaches_a_person(alertmanager, notice):
        return [Finding(
            "error", "incident-notice-reaches-no-one", path,
            f"a P3 about a service ({name}) reaches only the responder in {source}, and the "
            f"responder's incident notice ({NOTICE_ALERTNAME}) reaches no person either",
            f"route alertname=\"{NOTICE_ALERTNAME}\" to the team's chat receiver, as "
            "alertmanager/alertmanager.yml does")]
    return []


def run_checks(config: Config, alertmanager: Mapping[str, Any], rule_files: Mapping[str, Any],
               statuses: Sequence[ComponentStatus] = (),
               alertmanager_source: str = "alertmanager.yml") -> list[Finding]:
    """Every check; errors first, then warnings, each group in the order checks found them.

    Raises :class:`~monitoriza.lint.routing.RoutingError` when the Alertmanager file has a
    matcher that cannot be read."""
    findings = (check_probes(config) + check_dependencies(config) + check_playbooks(config)
                + check_p2_routing(config, alertmanager, alertmanager_source)
                + check_service_p3_reaches_people(config, alertmanager, alertmanager_source)
                + check_rule_references(config, rule_files)
                + check_playbook_alertnames(config, rule_files)
                + check_alertmanager_references(config, alertmanager, alertmanager_source)
                + check_components(config, statuses))
    return sorted(findings, key=lambda f: f.severity != "error")


__all__ = ["ComponentStatus", "Finding", "RoutingError", "run_checks"]
