"""What Alertmanager does with an expected alert: the receivers it reaches (through
:func:`monitoriza.lint.routing.route_alert`), the grouping timer that delays the first
notification, and whether an inhibition rule mutes it.

Timers are inherited down the route tree as Alertmanager 0.25 does, with its defaults
(``group_wait`` 30s, ``group_interval`` 5m, no ``group_by``). An alert that joins a group
which already notified waits for the next ``group_interval`` tick, not ``group_wait``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from monitoriza.durations import parse_duration
from monitoriza.exceptions import DurationError
from monitoriza.lint.routing import (
    RoutingError,
    human_channels,
    iter_routes,
    node_matchers,
    receivers,
)

DEFAULTS = {"group_wait": 30.0, "group_interval": 300.0}


@dataclass(frozen=True, slots=True)
class Timer:
    """A route timer's value and where it was read (``route.routes[3].group_wait``)."""

    seconds: float
    source: str


def _ancestors(route_path: str) -> list[str]:
    parts = route_path.split(".routes[")
    return [".routes[".join(parts[:count]) for count in range(1, len(parts) + 1)]


class RouteTree:
    """The route tree of one Alertmanager file, indexed by route path."""

    def __init__(self, alertmanager: Mapping[str, Any], source: str) -> None:
        self.config = alertmanager
        self.source = source
        self._nodes = dict(iter_routes(alertmanager))
        self._receivers = receivers(alertmanager)

    def _inherited(self, route_path: str, key: str) -> tuple[Any, str] | None:
        for path in reversed(_ancestors(route_path)):
            node = self._nodes.get(path, {})
            if node.get(key) is not None:
                return node[key], f"{path}.{key}"
        return None

    def timer(self, route_path: str, key: str) -> Timer:
        """``group_wait`` or ``group_interval`` of a route, inherited from its parents."""
        found = self._inherited(route_path, key)
        if found is None:
            return Timer(DEFAULTS[key], f"Alertmanager's default {key}")
        value, where = found
        try:
            return Timer(parse_duration(str(value)), f"{self.source}: {where}")
        except DurationError as exc:
            raise RoutingError(f"{where}: {exc}") from None

    def group_key(self, route_path: str, labels: Mapping[str, str]) -> tuple[object, ...]:
        """The aggregation group an alert joins on this route."""
        found = self._inherited(route_path, "group_by")
        names = [str(name) for name in found[0]] if found else []
        if "..." in names:
            return (route_path, tuple(sorted(labels.items())))
        return (route_path, tuple((name, labels.get(name, "")) for name in names))

    def channels(self, receiver: str) -> tuple[str, ...]:
        found = self._receivers.get(receiver)
        return tuple(human_channels(found)) if found is not None else ()

    def posts_to(self, receiver: str, listen: str) -> bool:
        """Whether ``receiver`` has a webhook to ``listen`` (HOST:PORT): the responder."""
        found = self._receivers.get(receiver) or {}
        return any(isinstance(hook, Mapping) and urlsplit(str(hook.get("url", ""))).netloc == listen
                   for hook in found.get("webhook_configs") or [])

    def inhibitor(self, target: Mapping[str, str],
                  sources: Sequence[Mapping[str, str]]) -> Mapping[str, str] | None:
        """The first of ``sources`` (alerts firing no later than ``target``) that an
        ``inhibit_rules`` entry lets mute ``target``, or None."""
        for index, rule in enumerate(self.config.get("inhibit_rules") or []):
            path = f"inhibit_rules[{index}]"
            if not all(m.matches(target) for m in node_matchers(rule, path, "target_")):
                continue
            source_matchers = node_matchers(rule, path, "source_")
            equal = [str(name) for name in rule.get("equal") or []]
            for source in sources:
                if (all(m.matches(source) for m in source_matchers)
                        and all(source.get(n, "") == target.get(n, "") for n in equal)):
                    return source
        return None
