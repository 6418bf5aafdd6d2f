"""``{name}`` placeholders in a step's URL, headers and body, filled from earlier captures.

A placeholder is ``{`` + an identifier + ``}``; other braces (``{}``, ``{"a": 1}`` inside a
string) are left alone. A body string that is exactly one placeholder takes the captured
value itself, keeping its JSON type (``"{count}"`` becomes the number 3); inside a longer
string the value is written as text (JSON for lists and mappings).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from typing import Any

PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def placeholders_in(value: Any) -> Iterator[str]:
    """Every placeholder name in a string or (recursively) in a JSON value's strings."""
    if isinstance(value, str):
        yield from PLACEHOLDER.findall(value)
    elif isinstance(value, list):
        for item in value:
            yield from placeholders_in(item)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from placeholders_in(key)
            yield from placeholders_in(item)


def as_text(value: object) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"))


def fill_text(text: str, captures: Mapping[str, object]) -> str:
    """``text`` with each placeholder replaced; a name not captured raises KeyError."""
    return PLACEHOLDER.sub(lambda match: as_text(captures[match.group(1)]), text)


def fill_json(value: Any, captures: Mapping[str, object]) -> Any:
    """A JSON value with its strings filled (see the module docstring for typing rules)."""
    if isinstance(value, str):
        whole = PLACEHOLDER.fullmatch(value)
        return captures[whole.group(1)] if whole else fill_text(value, captures)
    if isinstance(value, list):
        return [fill_json(item, captures) for item in value]
    if isinstance(value, dict):
        return {fill_text(key, captures): fill_json(item, captures)
                for key, item in value.items()}
    return value
