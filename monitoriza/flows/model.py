"""The step model of a flow, free of I/O: build a step's request from earlier captures, and
judge its answer. The exporter's runner (:mod:`.runner`) and a load generator share it, so a
flow means the same thing under a probe and under load.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from monitoriza.config.schema import FlowStep
from monitoriza.exceptions import MonitorizaError
from monitoriza.flows.jsonpath import JsonPathNotFoundError, parse_json_path
from monitoriza.flows.placeholders import fill_json, fill_text

# Why a step failed: a fixed vocabulary, so it can be a metric label.
STEP_FAILURE_REASONS = (
    "timeout",  # no complete answer within the step's deadline
    "connection",  # refused, reset, DNS failure, a bad URL after filling placeholders
    "status",  # an unexpected HTTP status
    "body",  # an assertion or capture needed JSON and the body is not JSON
    "assertion",  # a value differs from the expected one, or its path names nothing
    "capture",  # a capture path names nothing in the body
    "secret",  # a headers_files file cannot be read
    "skipped",  # an earlier step failed, so this one did not run
)


@dataclass(frozen=True, slots=True)
class StepRequest:
    """A step's request with every placeholder and secret filled in."""

    method: str
    url: str
    headers: Mapping[str, str]
    body: Any  # JSON value, or None for no body


@dataclass(frozen=True, slots=True)
class StepVerdict:
    """What the answer to a step means: ok, or the reason and a message; its captures."""

    ok: bool
    reason: str | None = None
    message: str = ""
    captures: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class StepResult:
    """One step of one run."""

    name: str
    ok: bool
    status: int | None  # HTTP status, None when there was no answer
    duration_seconds: float
    reason: str | None = None  # one of STEP_FAILURE_REASONS when not ok
    message: str = ""


@dataclass(frozen=True, slots=True)
class FlowResult:
    """One run of a flow: a result for every step, in order (skipped ones included)."""

    flow: str
    steps: tuple[StepResult, ...]
    duration_seconds: float

    @property
    def ok(self) -> bool:
        return all(step.ok for step in self.steps)

    @property
    def failed_step(self) -> StepResult | None:
        return next((step for step in self.steps if not step.ok), None)


class SecretUnreadableError(MonitorizaError):
    """A headers_files file could not be read at run time."""


def build_request(step: FlowStep, captures: Mapping[str, object]) -> StepRequest:
    """Fill placeholders; read secret headers now, so a rotated token is picked up."""
    headers = {name: fill_text(value, captures) for name, value in step.headers.items()}
    for name, path in step.headers_files.items():
        try:
            headers[name] = Path(path).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise SecretUnreadableError(f"cannot read {path} for header {name}: {exc}") from None
    body = None if step.body is None else fill_json(step.body, captures)
    return StepRequest(step.method, fill_text(step.url, captures), headers, body)


def same_json(found: object, expected: object) -> bool:
    """JSON equality: unlike Python's, ``true`` is not ``1``."""
    if isinstance(found, bool) or isinstance(expected, bool):
        return type(found) is type(expected) and found == expected
    return found == expected


def judge_response(step: FlowStep, status: int, body: bytes) -> StepVerdict:
    """Check the status, then the assertions, then take the captures (pure)."""
    expected = step.expect_status
    if (status not in expected) if expected else not 200 <= status < 300:
        wanted = ", ".join(map(str, expected)) if expected else "2xx"
        return StepVerdict(False, "status", f"status {status}, expected {wanted}")
    if not step.assert_ and not step.capture:
        return StepVerdict(True)
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return StepVerdict(False, "body", f"the body is not JSON: {body[:80]!r}")
    return judge_document(step, document)


def judge_document(step: FlowStep, document: object) -> StepVerdict:
    """Check the assertions on a decoded body, then take the captures (pure)."""
    for path, value in step.assert_.items():
        try:
            found = parse_json_path(path).find(document)
        except JsonPathNotFoundError as exc:
            return StepVerdict(False, "assertion", f"assert {path}: {exc}")
        if not same_json(found, value):
            return StepVerdict(False, "assertion",
                               f"assert {path}: expected {value!r}, got {found!r}")
    captures = {}
    for name, path in step.capture.items():
        try:
            captures[name] = parse_json_path(path).find(document)
        except JsonPathNotFoundError as exc:
            return StepVerdict(False, "capture", f"capture {name} ({path}): {exc}")
    return StepVerdict(True, captures=captures)
