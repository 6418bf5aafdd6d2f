"""Integer query parameters read strictly: ASCII digits only, within the store's 64-bit ids.

``int()`` alone takes ``" 5"``, ``"1_000"`` and ``"-3"``, and ``str.isdigit()`` takes ``"²"``,
which ``int()`` then refuses; a value past 2**63 - 1 makes the database driver raise. Each of
those was a 500 or a silently different page; here they are ``None``, which callers answer 400.
"""

from __future__ import annotations

from flask import request

MAX_ID = 2**63 - 1


def integer_arg(name: str, default: int, low: int = 0, high: int = MAX_ID) -> int | None:
    """The query parameter ``name`` as an int in ``low..high``, ``default`` when absent,
    None when it is anything else."""
    text = request.args.get(name)
    if text is None:
        return default
    if not text.isascii() or not text.isdigit() or len(text) > 19:
        return None
    value = int(text)
    return value if low <= value <= high else None
