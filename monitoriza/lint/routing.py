"""Alertmanager 0.25 routing, evaluated in Python: which receivers an alert with given labels
reaches, and what each matcher of the file says.

Why not shell out to ``amtool config routes test``: the lint must work where only the
configuration files are (a CI job, a laptop without Alertmanager), it must say *which route*
an alert took, not just the receiver names, and it runs once per critical service. The
semantics are small and fixed (the tests compare this module with the real ``amtool`` on the
same files):

- ``matchers`` entries are parsed like Alertmanager's ``labels.ParseMatchers``: one or more
  comma-separated ``name OP value`` with ``OP`` one of ``=``, ``!=``, ``=~``, ``!~``, the
  value quoted (with ``\\"``, ``\\\\`` and ``\\n`` escapes) or bare, optionally in braces; the
  legacy ``match`` and ``match_re`` maps are read too.
- Regular expressions are anchored (``^(?:re)$``), and a missing label matches as ``""``.
- A route matches when all its matchers do; its children are tried in order, a matching
  child without ``continue: true`` stops the search; a route none of whose children
  matched is itself the destination; a child without ``receiver`` inherits its parent's.
  The root route matches every alert.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from monitoriza.exceptions import MonitorizaError

OPERATORS = ("=~", "!~", "!=", "=")

_MATCHER = re.compile(
    r"""\s*(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)\s*(?P<op>=~|!~|!=|=)\s*"""
    r"""(?P<value>"(?:[^"\\]|\\.)*"|[^,"]*?)\s*(?:,|$)""")
_ESCAPES = {"n": "\n", "\\": "\\", '"': '"'}


class RoutingError(MonitorizaError, ValueError):
    """A matcher or route the lint cannot read; the message starts with its path."""


@dataclass(frozen=True, slots=True)
class Matcher:
    """One label matcher, e.g. ``severity="P2"``."""

    name: str
    op: str
    value: str

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether ``labels`` satisfy this matcher (a missing label is ``""``)."""
        actual = labels.get(self.name, "")
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        found = re.fullmatch(self.value, actual) is not None
        return found if self.op == "=~" else not found

    def __str__(self) -> str:
        return f'{self.name}{self.op}"{self.value}"'


def _unquote(value: str) -> str:
    if not (len(value) >= 2 and value[0] == value[-1] == '"'):
        return value
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), "\\" + m.group(1)), value[1:-1])


def _checked(matcher: Matcher, text: str, path: str) -> Matcher:
    if matcher.op in {"=~", "!~"}:
        try:
            re.compile(matcher.value)
        except re.error as exc:
            raise RoutingError(f"{path}: invalid regular expression in {text!r}: "
                               f"{exc}") from None
    return matcher


def parse_matchers(text: str, path: str) -> list[Matcher]:
    """Parse one ``matchers`` entry (which may hold several comma-separated matchers)."""
    body = text.strip()
    if body.startswith("{") and body.endswith("}"):
        body = body[1:-1].strip()
    matchers: list[Matcher] = []
    position = 0
    while position < len(body):
        found = _MATCHER.match(body, position)
        if found is None or found.end() == position:
            raise RoutingError(f"{path}: cannot parse matcher {text!r}")
        matchers.append(_checked(Matcher(found["name"], found["op"], _unquote(found["value"])),
                                 text, path))
        position = found.end()
    if not matchers:
        raise RoutingError(f"{path}: empty matcher {text!r}")
    return matchers


def _map_matchers(value: object, op: str, path: str) -> list[Matcher]:
    if value is None:
        return []
    if not isinstance(value, Mapping):
        raise RoutingError(f"{path}: expected a mapping")
    return [_checked(Matcher(str(name), op, str(text)), f"{name}: {text}", f"{path}.{name}")
            for name, text in value.items()]


def _list(value: object, path: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise RoutingError(f"{path}: expected a list")
    return value


def node_matchers(node: Mapping[str, Any], path: str, prefix: str = "") -> list[Matcher]:
    """Every matcher of a route (``prefix=""``) or of one side of an inhibition rule
    (``prefix="source_"`` or ``"target_"``): ``matchers`` plus the legacy maps."""
    matchers: list[Matcher] = []
    key = f"{prefix}matchers"
    for index, text in enumerate(_list(node.get(key), f"{path}.{key}")):
        matchers += parse_matchers(str(text), f"{path}.{key}[{index}]")
    matchers += _map_matchers(node.get(f"{prefix}match"), "=", f"{path}.{prefix}match")
    matchers += _map_matchers(node.get(f"{prefix}match_re"), "=~", f"{path}.{prefix}match_re")
    return matchers


@dataclass(frozen=True, slots=True)
class Destination:
    """A route an alert ended at, and the receiver it notifies."""

    receiver: str
    route_path: str
    # The route's mute_time_intervals and active_time_intervals (not inherited by children):
    # outside an active interval, or inside a mute one, this route notifies nobody.
    time_intervals: tuple[str, ...] = ()


def _match(node: Mapping[str, Any], path: str, labels: Mapping[str, str], receiver: str,
           root: bool) -> list[Destination]:
    if not root and not all(m.matches(labels) for m in node_matchers(node, path)):
        return []
    receiver = str(node.get("receiver") or receiver)
    found: list[Destination] = []
    for index, child in enumerate(_list(node.get("routes"), f"{path}.routes")):
        if not isinstance(child, Mapping):
            raise RoutingError(f"{path}.routes[{index}]: expected a mapping")
        matched = _match(child, f"{path}.routes[{index}]", labels, receiver, root=False)
        found += matched
        if matched and not child.get("continue", False):
            break
    intervals = tuple(str(name) for key in ("mute_time_intervals", "active_time_intervals")
                      for name in _list(node.get(key), f"{path}.{key}"))
    return found or [Destination(receiver, path, intervals)]


def route_alert(alertmanager: Mapping[str, Any], labels: Mapping[str, str]) -> list[Destination]:
    """The destinations an alert with ``labels`` reaches, in Alertmanager's order."""
    root = alertmanager.get("route")
    if not isinstance(root, Mapping):
        raise RoutingError("route: the file has no route tree")
    return _match(root, "route", labels, "", root=True)


def iter_routes(alertmanager: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """Every route of the tree with its path, the root first."""
    stack: list[tuple[str, Any]] = [("route", alertmanager.get("route"))]
    while stack:
        path, node = stack.pop(0)
        if not isinstance(node, Mapping):
            continue
        yield path, node
        for index, child in enumerate(_list(node.get("routes"), f"{path}.routes")):
            stack.append((f"{path}.routes[{index}]", child))


def receivers(alertmanager: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """Receivers by name."""
    found: dict[str, Mapping[str, Any]] = {}
    for receiver in _list(alertmanager.get("receivers"), "receivers"):
        if isinstance(receiver, Mapping) and "name" in receiver:
            found[str(receiver["name"])] = receiver
    return found


def human_channels(receiver: Mapping[str, Any]) -> list[str]:
    """The integrations of a receiver that reach a person: every non-empty ``*_configs``
    list except ``webhook_configs`` (a webhook goes to a program: the responder, a dead man's
    switch, a relay the lint cannot see through)."""
    return sorted(key for key, value in receiver.items()
                  if key.endswith("_configs") and key != "webhook_configs" and value)
