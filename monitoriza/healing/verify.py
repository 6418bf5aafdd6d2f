"""Checking that a healing action worked: re-run a probe, or evaluate a PromQL condition.

:func:`verify` tries again every ``spec.interval`` seconds until the check passes or
``spec.timeout`` seconds have passed since it started; the last attempt may start as late
as the timeout, so a check is never given up on while time is left. Each attempt's own
timeout (the probe's ``timeout``, or :data:`PROMETHEUS_QUERY_TIMEOUT`) is cut to the time
left, but never below :data:`MIN_ATTEMPT_TIMEOUT`.

* **Probe** (``spec.probe``): the exporter's own probe for that name runs again
  (:func:`monitoriza.exporter.probes.create_runner`), so "healed" means exactly what the
  exporter would report. An attempt passes when the outcome is a success.
* **PromQL** (``spec.promql``): the query is evaluated as an instant query with
  prometheus-api-client. An attempt passes when the result is not empty and every value in
  it is "true": a number other than 0 and not NaN. That covers both styles of condition:
  a filter (``up{job="redis"} == 1``, empty while unhealthy) and a value
  (``redis_up``, 0 while unhealthy). For a vector every sample must be true; for a matrix
  (a range selector) the latest value of every series; a string result never passes. An
  error talking to Prometheus (refused, timeout, HTTP error, bad JSON) is a failed attempt.
* Both set: an attempt passes only if the probe and then the query pass.
* ``spec.settle``: when set, :func:`verify` first waits that long, so that a target that
  comes up and falls over again at once is not counted as healed; the ``timeout`` window
  starts after the settle wait.
* Neither set: nothing to check; the result is ``ok=True`` with zero attempts.

A probe name without a ``probe_spec`` (it is not configured) or a query without a
``prometheus_url`` is ``ok=False`` with zero attempts, never an exception.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests
from prometheus_api_client.exceptions import PrometheusApiClientException
from prometheus_api_client.prometheus_connect import PrometheusConnect
from urllib3.util.retry import Retry

from monitoriza.config.schema import ProbeBase, Verify
from monitoriza.exporter.probes import create_runner
from monitoriza.exporter.probes.base import Deadline

# Probe timeout when the spec has none (the loader normally fills it from the exporter).
DEFAULT_PROBE_TIMEOUT = 5.0
# Seconds one PromQL query may take (cut to the time left, rounded up to whole seconds).
PROMETHEUS_QUERY_TIMEOUT = 10.0
# No attempt gets less time than this, even right at the end of the verify timeout.
MIN_ATTEMPT_TIMEOUT = 0.2
# Longest detail kept from one attempt.
_DETAIL_CHARS = 300


@dataclass(frozen=True, slots=True)
class VerifyResult:
    """Whether the check passed, after how many attempts, and what the last attempt saw."""

    ok: bool
    attempts: int
    detail: str


def promql_truthy(result: Any) -> tuple[bool, str]:
    """Whether a ``custom_query`` result counts as a passed condition, and why.

    ``result`` is the ``data.result`` of an instant query: a list of samples
    (``{"metric": ..., "value": [ts, "1"]}``) or series (``"values"``) for a vector or matrix,
    or a ``[ts, "value"]`` pair for a scalar or string.
    """
    if not isinstance(result, list) or not result:
        return False, "the query returned no result"
    if all(isinstance(item, dict) for item in result):
        for item in result:
            if "value" in item:
                pair = item["value"]
            elif item.get("values"):
                pair = item["values"][-1]
            else:
                return False, f"unexpected series without a value: {item!r}"
            ok, value = _number(pair)
            if not ok:
                return False, f"{item.get('metric', {})} = {value}"
        count = len(result)
        return True, f"the query returned {count} true sample{'s' if count != 1 else ''}"
    ok, value = _number(result)
    return ok, f"the query returned {value}"


def _number(pair: Any) -> tuple[bool, str]:
    """Whether a ``[timestamp, "value"]`` pair is a true number, and the value as text."""
    if not isinstance(pair, list) or len(pair) != 2:
        return False, f"unexpected value {pair!r}"
    text = str(pair[1])
    try:
        number = float(text)
    except ValueError:
        return False, f"non-numeric value {text!r}"
    return number != 0 and not math.isnan(number), text


def _short(text: str) -> str:
    return text if len(text) <= _DETAIL_CHARS else text[:_DETAIL_CHARS] + "…"


class _Check:
    """One attempt of the configured checks, given how much time it may take."""

    def __init__(
        self, spec: Verify, probe_spec: ProbeBase | None, client: PrometheusConnect | None
    ) -> None:
        self._spec = spec
        self._probe_spec = probe_spec
        self._runner = create_runner(probe_spec) if probe_spec is not None else None
        self._client = client

    def __call__(self, time_left: float) -> tuple[bool, str]:
        if self._runner is not None and self._probe_spec is not None:
            wanted = self._probe_spec.timeout or DEFAULT_PROBE_TIMEOUT
            seconds = max(min(wanted, time_left), MIN_ATTEMPT_TIMEOUT)
            name = self._probe_spec.name or self._spec.probe
            try:
                outcome = self._runner(Deadline.after(seconds))
            except Exception as exc:  # a probe bug is a failed attempt, as in the scheduler
                return False, f"probe {name} raised {type(exc).__name__}: {exc}"
            if not outcome.success:
                return False, f"probe {name} failed ({outcome.failure_reason}): {outcome.message}"
            if self._client is None:
                return True, f"probe {name} succeeded"
        if self._client is not None and self._spec.promql is not None:
            seconds = max(min(PROMETHEUS_QUERY_TIMEOUT, time_left), MIN_ATTEMPT_TIMEOUT)
            try:
                result = self._client.custom_query(
                    self._spec.promql, timeout=max(math.ceil(seconds), 1)
                )
            except (
                requests.RequestException,
                PrometheusApiClientException,
                ValueError,  # a body that is not JSON
                KeyError,  # JSON without data.result
                TypeError,
            ) as exc:
                return False, f"Prometheus query failed: {exc}"
            return promql_truthy(result)
        return True, "nothing to verify"


def verify(
    spec: Verify,
    probe_spec: ProbeBase | None,
    prometheus_url: str | None,
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> VerifyResult:
    """Check, until it passes or ``spec.timeout`` runs out, that healing worked.

    ``probe_spec`` is the service's probe named ``spec.probe`` (None when it has none);
    ``prometheus_url`` is where PromQL conditions are evaluated. See the module docstring.
    """
    if spec.probe is None and spec.promql is None:
        return VerifyResult(True, 0, "nothing to verify (verify has neither probe nor promql)")
    if spec.probe is not None and probe_spec is None:
        return VerifyResult(False, 0, f"probe {spec.probe} is not configured for this service")
    if spec.promql is not None and not prometheus_url:
        return VerifyResult(False, 0, "a PromQL condition needs a Prometheus URL")

    client: PrometheusConnect | None = None
    if spec.promql is not None and prometheus_url:
        # One request per attempt: the attempts are the retries.
        client = PrometheusConnect(url=prometheus_url, retry=Retry(total=0, read=False))
    try:
        check = _Check(spec, probe_spec if spec.probe is not None else None, client)
        if spec.settle is not None:
            sleep(spec.settle)
        start = clock()
        attempts = 0
        while True:
            attempts += 1
            ok, detail = check(spec.timeout - (clock() - start))
            if ok:
                return VerifyResult(True, attempts, _short(detail))
            time_left = spec.timeout - (clock() - start)
            if time_left <= 0:
                plural = "s" if attempts != 1 else ""
                summary = f"not healthy after {spec.timeout:g}s ({attempts} attempt{plural})"
                return VerifyResult(False, attempts, f"{summary}: {_short(detail)}")
            sleep(min(spec.interval, time_left))
    finally:
        if client is not None:
            client.close()
