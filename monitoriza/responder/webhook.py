"""The Alertmanager webhook payload (version 4), validated; unknown fields are ignored.

Alertmanager may add fields in later versions; a receiver that rejected them would lose
alerts, so only what the responder relies on is checked, and strictly. Everything that
processing needs is checked here, before the 200: a payload acknowledged but impossible to
process would be retried and then dead-lettered instead of handled. So every string the
responder keeps must be encodable as UTF-8 (JSON's ``"\\ud800"`` escapes decode to lone
surrogates, which no store and no audit entry can hold), and ``startsAt``/``endsAt`` must be
RFC 3339 date-times as Alertmanager writes them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from monitoriza.exceptions import MonitorizaError

Text = Annotated[str, StringConstraints(max_length=65536)]
Key = Annotated[str, StringConstraints(min_length=1, max_length=4096)]


# RFC 3339 section 5.6 ``date-time`` with upper-case ``T`` and ``Z``, as Alertmanager (Go's
# time.RFC3339Nano) writes it; any number of fractional digits (Alertmanager sends
# nanoseconds). ASCII digits only: ``\d`` alone would also match other scripts' digits.
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(?:Z|([+-])(\d{2}):(\d{2}))",
    re.ASCII)
# Alertmanager's "not set" for endsAt: Go's zero time.
ZERO_TIME = "0001-01-01T00:00:00Z"
_SHOWN = 40  # characters of a bad value quoted in an error message


def parse_rfc3339(text: str) -> datetime:
    """``text`` as an aware datetime, or ValueError unless it is a strict RFC 3339 date-time.

    Refused: a date alone, no offset, week or ordinal dates, basic format (no separators), a
    space or lower-case ``t``/``z`` (processing parses with ``datetime.fromisoformat``, which
    would not), out-of-range fields, and leap seconds (``:60``, which Go and Python both
    refuse). Fractional digits past microseconds are dropped.
    """
    match = _RFC3339.fullmatch(text)
    if match is None:
        raise ValueError(f"{text!r} is not an RFC 3339 date-time")
    year, month, day, hour, minute, second = map(int, match.group(1, 2, 3, 4, 5, 6))
    micro = int((match.group(7) or "").ljust(6, "0")[:6])
    sign, offset_hours, offset_minutes = match.group(8, 9, 10)
    try:
        zone: timezone = UTC
        if sign is not None:
            if int(offset_hours) > 23 or int(offset_minutes) > 59:
                raise ValueError("offset out of range")
            offset = timedelta(hours=int(offset_hours), minutes=int(offset_minutes))
            zone = timezone(-offset if sign == "-" else offset)
        # The constructor checks every range (month, day of that month, hour, minute, second).
        return datetime(year, month, day, hour, minute, second, micro, tzinfo=zone)
    except ValueError as exc:
        raise ValueError(f"{text!r} is not an RFC 3339 date-time: {exc}") from None


def printable(text: str, limit: int | None = None) -> str:
    """``text`` quoted with escapes (``'\\ud800'``), safe in any message; cut at ``limit``."""
    shown = text if limit is None or len(text) <= limit else text[:limit] + "..."
    return ascii(shown)


def text_problems(value: object, path: str) -> Iterator[str]:
    """A message for every string in ``value`` (and every key of its mappings) that the store
    cannot hold: not encodable as UTF-8 (a lone surrogate), or holding a NUL character
    (PostgreSQL text cannot), each named by its dotted path."""
    if isinstance(value, str):
        if (problem := _text_problem(value)) is not None:
            yield f"{path}: {problem[0]} at character {problem[1]}"
    elif isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str) and (problem := _text_problem(key)) is not None:
                yield f"{path}: key {printable(key, _SHOWN)} is {problem[0]}"
                continue
            yield from text_problems(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from text_problems(item, f"{path}.{index}")


def _text_problem(text: str) -> tuple[str, int] | None:
    """Why ``text`` cannot be stored, and where; None when it can."""
    try:
        text.encode()
    except UnicodeEncodeError as exc:
        return "not valid UTF-8", exc.start
    if "\x00" in text:
        return "not storable (a NUL character)", text.index("\x00")
    return None


def _encodable(text: str) -> bool:
    return _text_problem(text) is None


class WebhookError(MonitorizaError):
    """The payload is not an Alertmanager v4 notification; ``details`` says where."""

    def __init__(self, message: str, details: list[str]) -> None:
        super().__init__(message)
        self.details = details


class Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Alert(Lenient):
    status: Literal["firing", "resolved"]
    labels: dict[str, Text]
    annotations: dict[str, Text] = Field(default_factory=dict)
    startsAt: Annotated[str, StringConstraints(min_length=1, max_length=64)]  # noqa: N815
    endsAt: Annotated[str, StringConstraints(max_length=64)] = ""  # noqa: N815
    generatorURL: Text = ""  # noqa: N815
    fingerprint: Annotated[str, StringConstraints(min_length=1, max_length=64)]

    def starts(self) -> datetime:
        return parse_rfc3339(self.startsAt)

    def problems(self, path: str) -> Iterator[str]:
        """What processing could not cope with: bad times (``path`` is ``alerts.N``)."""
        try:
            self.starts()
        except ValueError:
            yield f"{path}.startsAt: not an RFC 3339 time"
        if self.endsAt and self.endsAt != ZERO_TIME:
            try:
                parse_rfc3339(self.endsAt)
            except ValueError:
                yield f"{path}.endsAt: not an RFC 3339 time"


class Notification(Lenient):
    version: Literal["4"]
    receiver: Key
    status: Literal["firing", "resolved"]
    alerts: Annotated[list[Alert], Field(max_length=10000)]
    groupLabels: dict[str, Text] = Field(default_factory=dict)  # noqa: N815
    commonLabels: dict[str, Text] = Field(default_factory=dict)  # noqa: N815
    commonAnnotations: dict[str, Text] = Field(default_factory=dict)  # noqa: N815
    externalURL: Text = ""  # noqa: N815
    groupKey: Key  # noqa: N815
    truncatedAlerts: Annotated[int, Field(ge=0, le=1_000_000_000)] = 0  # noqa: N815


def parse_notification(data: object) -> Notification:
    """Validate decoded JSON as a v4 notification, or raise WebhookError with every problem."""
    if not isinstance(data, dict):
        raise WebhookError("the body must be a JSON object", [])
    try:
        notification = Notification.model_validate(data)
    except ValidationError as exc:
        details = [_detail(error["loc"], "not valid UTF-8 (a lone surrogate)"
                           if error["type"] == "string_unicode" else error["msg"])
                   for error in exc.errors(include_url=False)]
        raise WebhookError("not an Alertmanager v4 webhook payload", details) from None
    problems = list(text_problems(notification.model_dump(), ""))
    for index, alert in enumerate(notification.alerts):
        problems.extend(alert.problems(f"alerts.{index}"))
    if problems:
        raise WebhookError("not an Alertmanager v4 webhook payload", problems)
    return notification


def _detail(location: tuple[int | str, ...], message: str) -> str:
    """A pydantic error as ``path: message``; a key that is not UTF-8 shown escaped."""
    path = ".".join(str(part) if _encodable(str(part)) else printable(str(part), _SHOWN)
                    for part in location)
    return f"{path or '(root)'}: {message}"
