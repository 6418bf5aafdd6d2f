"""The tiny JSON-path dialect of flows: ``$``, then ``.key`` and ``[index]`` segments.

``$.data.items[0].id`` reads key ``data``, key ``items``, element 0, key ``id``. Keys are
letters, digits, ``_`` and ``-``; indexes are non-negative integers. Nothing else (no
wildcards, filters or slices): a path names exactly one value, so an assertion or a capture
can never silently match several. Parsing is done once, when the configuration is loaded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from monitoriza.exceptions import MonitorizaError

_SEGMENT = re.compile(r"\.([A-Za-z0-9_-]+)|\[(0|[1-9][0-9]*)\]")


class JsonPathError(MonitorizaError, ValueError):
    """A path outside the dialect."""


class JsonPathNotFoundError(MonitorizaError, LookupError):
    """A valid path that names nothing in this document."""


@dataclass(frozen=True, slots=True)
class JsonPath:
    """A parsed path: its text and its segments (``str`` keys, ``int`` indexes)."""

    text: str
    segments: tuple[str | int, ...]

    def find(self, document: object) -> object:
        """The value the path names in ``document``; raise JsonPathNotFoundError if none."""
        value = document
        walked = "$"
        for segment in self.segments:
            if isinstance(segment, int):
                if not isinstance(value, list) or segment >= len(value):
                    raise JsonPathNotFoundError(f"{walked} has no element [{segment}]")
                value = value[segment]
                walked += f"[{segment}]"
            else:
                if not isinstance(value, dict) or segment not in value:
                    raise JsonPathNotFoundError(f"{walked} has no key {segment!r}")
                value = value[segment]
                walked += f".{segment}"
        return value


def parse_json_path(text: str) -> JsonPath:
    """Parse ``text``; raise :class:`JsonPathError` saying where it leaves the dialect."""
    if not text.startswith("$"):
        raise JsonPathError(f"{text!r} is not a JSON path: it must start with '$'")
    segments: list[str | int] = []
    position = 1
    while position < len(text):
        match = _SEGMENT.match(text, position)
        if match is None:
            raise JsonPathError(
                f"{text!r} is not a JSON path: unexpected {text[position:]!r} at character "
                f"{position + 1} (expected .key or [index])")
        key, index = match.groups()
        segments.append(key if key is not None else int(index))
        position = match.end()
    return JsonPath(text, tuple(segments))
