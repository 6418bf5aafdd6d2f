"""Run one flow with ``requests``: each step in order, captures carried forward.

Thin I/O around :mod:`.model`. The whole run keeps to the flow's ``timeout``: a step gets its
own ``timeout`` or what is left, whichever is less, and the body is read within that time.
The first failing step ends the run; the steps after it are reported as ``skipped``, so every
step has a result on every run. A runner never raises for the target's fault.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import requests
import urllib3.exceptions

from monitoriza.config.schema import Flow, FlowStep
from monitoriza.flows.model import (
    FlowResult,
    SecretUnreadableError,
    StepResult,
    build_request,
    judge_response,
)

# A flow's answers are JSON documents, not downloads.
MAX_BODY_BYTES = 1_048_576
CHUNK_BYTES = 65536

_CONNECTION_ERRORS = (requests.ConnectionError, requests.exceptions.InvalidURL,
                      requests.exceptions.MissingSchema, requests.exceptions.InvalidSchema,
                      urllib3.exceptions.HTTPError, OSError, ValueError)


class _StepTimeout(Exception):  # noqa: N818 - internal signal, never leaves this module
    pass


def _read_body(response: requests.Response, deadline: float) -> bytes:
    chunks, size = [], 0
    for chunk in response.iter_content(CHUNK_BYTES):
        if time.monotonic() > deadline:
            raise _StepTimeout
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            break
    return b"".join(chunks)


def run_step(session: requests.Session, step: FlowStep, captures: dict[str, object],
             seconds: float) -> StepResult:
    """One step within ``seconds``; on success its captures are added to ``captures``."""
    started = time.monotonic()
    deadline = started + seconds

    def result(ok: bool, status: int | None, reason: str | None = None,
               message: str = "") -> StepResult:
        return StepResult(step.name, ok, status, time.monotonic() - started, reason, message)

    try:
        request = build_request(step, captures)
    except SecretUnreadableError as exc:
        return result(False, None, "secret", str(exc))
    try:
        with session.request(request.method, request.url, headers=dict(request.headers),
                             json=request.body, timeout=(seconds, seconds), stream=True,
                             allow_redirects=False) as response:
            body = _read_body(response, deadline)
            status = response.status_code
    except (requests.Timeout, _StepTimeout):
        return result(False, None, "timeout", f"no answer within {seconds:g}s")
    except _CONNECTION_ERRORS as exc:
        return result(False, None, "connection", f"{request.method} {request.url}: {exc}")
    if time.monotonic() > deadline:
        return result(False, status, "timeout", f"the answer took longer than {seconds:g}s")
    verdict = judge_response(step, status, body)
    captures.update(verdict.captures)
    return result(verdict.ok, status, verdict.reason, verdict.message)


def run_flow(name: str, flow: Flow, *, clock: Callable[[], float] = time.monotonic,
             session: requests.Session | None = None) -> FlowResult:
    """Run every step of ``flow`` in order and return a result for each."""
    started = clock()
    deadline = started + flow.timeout
    captures: dict[str, object] = {}
    results: list[StepResult] = []
    own_session = session is None
    session = session or requests.Session()
    try:
        for step in flow.steps:
            if results and not results[-1].ok:
                results.append(StepResult(step.name, False, None, 0.0, "skipped",
                                          f"not run: step {results[-1].name!r} failed"))
                continue
            left = deadline - clock()
            if left <= 0:
                results.append(StepResult(step.name, False, None, 0.0, "timeout",
                                          f"the flow's {flow.timeout:g}s were used up"))
                continue
            seconds = min(step.timeout, left) if step.timeout else left
            results.append(run_step(session, step, captures, seconds))
    finally:
        if own_session:
            session.close()
    return FlowResult(name, tuple(results), clock() - started)
