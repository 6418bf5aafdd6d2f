"""What a fire drill tells the responder, read strictly: the pure core of ``POST
/api/v1/drills/events`` (:mod:`monitoriza.responder.drills` is its I/O).

Every refusal is a :class:`DrillEventError` naming the field, so the drill's own log says
what to fix. Two checks depend on the responder's clock rather than on the body's shape
(a ``start`` whose ``expires_at`` is past or more than two hours ahead): :func:`check_timing`
makes them a separate step, answered 409, because the same body was well formed and would
be accepted at another time (a drill host whose clock is off sees it at once).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from monitoriza.audit.chain import canonical_data
from monitoriza.exceptions import MonitorizaError

EVENTS = ("start", "inject", "restore", "verdict", "end", "abort")
CLOSING_EVENTS = frozenset({"end", "abort"})
MAX_AHEAD = 2 * 3600.0  # a window longer than any experiment's time limit is a mistake
MAX_DETAIL_BYTES = 16 * 1024
MAX_SERVICES = 200
IDENTIFIER = re.compile(r"[A-Za-z0-9._:-]{1,64}")
# Room for "<drill id>:<experiment>:<event>", the ids monitoriza.drill.events composes.
EVENT_ID = re.compile(r"[A-Za-z0-9._:-]{1,256}")
EXPERIMENT = re.compile(r"[A-Za-z0-9._:/-]{0,200}")
# A service as the configuration names it (monitoriza.config.schema).
SERVICE = re.compile(r"[a-z][a-z0-9_-]{0,62}")
FIELDS = frozenset({"event_id", "drill_id", "event", "experiment", "services", "expires_at",
                    "detail", "site"})


class DrillEventError(MonitorizaError, ValueError):
    """A drill event refused: ``field`` names what is wrong, ``status`` the HTTP answer."""

    def __init__(self, field_name: str, message: str, status: int = 400) -> None:
        super().__init__(f"{field_name}: {message}")
        self.field = field_name
        self.status = status


@dataclass(frozen=True, slots=True)
class DrillEvent:
    """One step of a drill, as the drill reported it."""

    event_id: str
    drill_id: str
    event: str
    experiment: str = ""
    services: tuple[str, ...] = ()
    expires_at: float | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)
    site: str | None = None  # the site the drill runs at; None: its window covers every site

    @property
    def audit_kind(self) -> str:
        return f"drill.{self.event}"

    def as_data(self) -> dict[str, object]:
        return {"event_id": self.event_id, "drill_id": self.drill_id, "event": self.event,
                "experiment": self.experiment, "services": list(self.services),
                "expires_at": self.expires_at, "detail": dict(self.detail), "site": self.site}


def _identifier(body: Mapping[str, Any], name: str, pattern: re.Pattern[str],
                longest: int) -> str:
    if name not in body:
        raise DrillEventError(name, "is required")
    value = body[name]
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise DrillEventError(name, f"must be 1 to {longest} characters of A-Z a-z 0-9 . _ : -")
    return value


def _services(body: Mapping[str, Any], event: str) -> tuple[str, ...]:
    value = body.get("services", [])
    if not isinstance(value, list) or len(value) > MAX_SERVICES:
        raise DrillEventError("services", f"must be a list of at most {MAX_SERVICES} "
                                          "service names")
    for index, name in enumerate(value):
        if not isinstance(name, str) or not SERVICE.fullmatch(name):
            raise DrillEventError(f"services[{index}]", "must be a service name "
                                  "(a lowercase letter, then up to 62 of a-z 0-9 _ -)")
    if event == "start" and not value:
        raise DrillEventError("services", "is required for start: the blast radius (the "
                                          "target and its dependents)")
    return tuple(sorted(set(value)))


def _expires_at(body: Mapping[str, Any], event: str) -> float | None:
    if "expires_at" not in body:
        if event == "start":
            raise DrillEventError("expires_at", "is required for start (epoch seconds): "
                                                "a window must end even if the drill crashes")
        return None
    value = body["expires_at"]
    try:
        moment = float(value) if isinstance(value, int | float) and not isinstance(
            value, bool) else math.nan
    except OverflowError:
        moment = math.nan
    if not math.isfinite(moment):
        raise DrillEventError("expires_at", "must be a number: epoch seconds")
    return moment


def _detail(body: Mapping[str, Any]) -> dict[str, Any]:
    value = body.get("detail", {})
    if not isinstance(value, dict):
        raise DrillEventError("detail", "must be a JSON object")
    try:
        size = len(canonical_data(value).encode("utf-8"))
    except (MonitorizaError, UnicodeEncodeError):
        raise DrillEventError("detail", "must hold only storable JSON (no lone surrogate "
                                        "escapes)") from None
    if size > MAX_DETAIL_BYTES:
        raise DrillEventError("detail", f"is {size} bytes of JSON; at most "
                                        f"{MAX_DETAIL_BYTES} (16 KiB)")
    return value


def parse_drill_event(body: object) -> DrillEvent:
    """The drill event in a decoded request body; DrillEventError (400) naming the field."""
    if not isinstance(body, dict):
        raise DrillEventError("body", "must be a JSON object")
    unknown = sorted(set(body) - FIELDS)
    if unknown:
        raise DrillEventError(unknown[0], f"unknown field (known: {', '.join(sorted(FIELDS))})")
    event_id = _identifier(body, "event_id", EVENT_ID, 256)
    drill_id = _identifier(body, "drill_id", IDENTIFIER, 64)
    if "event" not in body:
        raise DrillEventError("event", "is required")
    event = body["event"]
    if not isinstance(event, str) or event not in EVENTS:
        raise DrillEventError("event", f"must be one of {', '.join(EVENTS)}")
    experiment = body.get("experiment", "")
    if not isinstance(experiment, str) or not EXPERIMENT.fullmatch(experiment):
        raise DrillEventError("experiment", "must be at most 200 characters of "
                                            "A-Z a-z 0-9 . _ : / -")
    site = body.get("site")
    if site is not None and (not isinstance(site, str) or not IDENTIFIER.fullmatch(site)):
        raise DrillEventError("site", "must be a site name: 1 to 64 characters of "
                                      "A-Z a-z 0-9 . _ : -")
    return DrillEvent(event_id, drill_id, event, experiment, _services(body, event),
                      _expires_at(body, event), _detail(body), site)


def check_timing(event: DrillEvent, now: float, max_ahead: float = MAX_AHEAD) -> None:
    """A ``start`` must expire in the future and at most ``max_ahead`` seconds from ``now``
    (the responder's clock); DrillEventError with status 409 otherwise."""
    if event.event != "start" or event.expires_at is None:
        return
    if not now < event.expires_at <= now + max_ahead:
        raise DrillEventError(
            "expires_at", f"must be in the future and at most {max_ahead / 3600:g} h ahead of "
                          f"the responder's clock ({now:.0f}); got {event.expires_at:.0f}, "
                          f"{event.expires_at - now:+.0f} s from now", status=409)


def decode_body(raw: bytes) -> object:
    """The JSON body; ValueError for bad JSON, including NaN and Infinity (not JSON)."""

    def refuse(constant: str) -> object:
        raise ValueError(f"{constant} is not JSON")

    try:
        return json.loads(raw, parse_constant=refuse)
    except RecursionError:
        raise ValueError("nested too deeply") from None
