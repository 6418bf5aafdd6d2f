"""Placeholders in healing actions: ``{service}``, ``{alertname}`` and ``{label.NAME}``.

A playbook step may name the thing to heal after the alert that triggered it, e.g.
``argv: [/usr/local/bin/restart-worker, "{label.instance}"]``. The values come from the
alert, which is untrusted input, so the substitution is deliberately narrow:

* The template is scanned by hand; :meth:`str.format` is never used, so a template or a
  value can not reach attributes, indexes or format specs.
* ``{{`` and ``}}`` stand for literal braces; any other text in braces, an unclosed ``{`` or
  a lone ``}`` is a :class:`PlaceholderError`.
* A value fills a placeholder only if it is a plain token (:data:`SAFE_VALUE`: a letter or
  digit, then up to 127 letters, digits, ``.``, ``_``, ``:`` or ``-``, and no ``..``). That
  rules out whitespace and newlines, shell syntax, ``/`` and ``..`` (paths, URL paths), ``@``
  (URL userinfo), ``%`` (URL encoding), and a leading ``-`` (an option to a command). A value
  that is not a plain token is a :class:`PlaceholderError` naming the placeholder, never a
  silently "cleaned" value. The same rule applies to ``{service}`` and ``{alertname}``,
  because both can come from the alert too.
* A label the alert does not carry is a :class:`PlaceholderError`, not an empty string.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from monitoriza.exceptions import MonitorizaError

# What a value must look like to be substituted. fullmatch, so a trailing newline never passes.
SAFE_VALUE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
# Prometheus label names.
_LABEL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_LABEL_PREFIX = "label."
# Longest value shown in an error message; the rest is cut (the value is untrusted).
_SHOWN = 60


class PlaceholderError(MonitorizaError, ValueError):
    """A template is malformed, or a placeholder has no value or an unsafe one.

    ``placeholder`` is the placeholder's name (``label.instance``), or None when the template
    itself is malformed.
    """

    def __init__(self, message: str, placeholder: str | None = None) -> None:
        super().__init__(message)
        self.placeholder = placeholder


@dataclass(frozen=True, slots=True)
class ActionContext:
    """The alert an action answers: the values its placeholders may use."""

    service: str
    alertname: str
    labels: Mapping[str, str] = field(default_factory=dict)


def is_safe_value(value: str) -> bool:
    """Whether ``value`` may fill a placeholder (see :data:`SAFE_VALUE`)."""
    return SAFE_VALUE.fullmatch(value) is not None and ".." not in value


def _shown(value: str) -> str:
    """``value`` for an error message: repr'd (so control characters show) and shortened."""
    text = repr(value)
    return text if len(text) <= _SHOWN else text[:_SHOWN] + "…"


def _check_name(name: str) -> None:
    """Raise :class:`PlaceholderError` unless ``name`` is a placeholder this module knows."""
    if name in ("service", "alertname"):
        return
    if name.startswith(_LABEL_PREFIX) and _LABEL_NAME.fullmatch(name[len(_LABEL_PREFIX) :]):
        return
    raise PlaceholderError(
        f"unknown placeholder {{{_shown(name)[1:-1]}}} "
        "(expected {service}, {alertname} or {label.NAME})",
        name,
    )


def _value(name: str, context: ActionContext) -> str:
    """The value of placeholder ``name``; raise :class:`PlaceholderError` if there is none."""
    _check_name(name)
    if name == "service":
        value = context.service
    elif name == "alertname":
        value = context.alertname
    else:
        label = name[len(_LABEL_PREFIX) :]
        found = context.labels.get(label)
        if found is None:
            raise PlaceholderError(f"the alert has no label {label!r} for {{{name}}}", name)
        value = found
    if not is_safe_value(value):
        what = f"label {name[len(_LABEL_PREFIX) :]!r}" if name.startswith(_LABEL_PREFIX) else name
        raise PlaceholderError(
            f"{what} has the value {_shown(value)}, which is not a plain token "
            "(letters, digits and ._:- only, starting with a letter or digit, no '..')",
            name,
        )
    return value


def placeholders(template: str) -> list[str]:
    """The placeholder names in ``template``, in order, without filling them.

    Raises :class:`PlaceholderError` for a malformed template or an unknown placeholder, so
    a configuration can be checked before any alert arrives.
    """
    names = [name for _, name in _scan(template) if name is not None]
    for name in names:
        _check_name(name)
    return names


def render(template: str, context: ActionContext) -> str:
    """Fill the placeholders of ``template`` from ``context``.

    Raises :class:`PlaceholderError` for a malformed template, an unknown placeholder, a
    missing label, or a value that is not a plain token.
    """
    parts: list[str] = []
    for literal, name in _scan(template):
        parts.append(literal)
        if name is not None:
            parts.append(_value(name, context))
    return "".join(parts)


def _scan(template: str) -> list[tuple[str, str | None]]:
    """Split ``template`` into (literal text, placeholder name or None) pairs."""
    pieces: list[tuple[str, str | None]] = []
    literal: list[str] = []
    index = 0
    length = len(template)
    while index < length:
        char = template[index]
        if char == "{":
            if template.startswith("{{", index):
                literal.append("{")
                index += 2
                continue
            end = template.find("}", index + 1)
            if end == -1:
                raise PlaceholderError(f"unclosed '{{' at position {index} of the template")
            name = template[index + 1 : end]
            if "{" in name:
                raise PlaceholderError(f"'{{' inside a placeholder at position {index}")
            pieces.append(("".join(literal), name))
            literal = []
            index = end + 1
        elif char == "}":
            if not template.startswith("}}", index):
                raise PlaceholderError(
                    f"lone '}}' at position {index} of the template (write '}}}}' for a brace)"
                )
            literal.append("}")
            index += 2
        else:
            literal.append(char)
            index += 1
    pieces.append(("".join(literal), None))
    return pieces
