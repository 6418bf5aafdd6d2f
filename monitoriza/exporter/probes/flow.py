"""Flow probe: run a flow (:mod:`monitoriza.flows.runner`) and report each step.

The per-step results travel as measurements named after the flow families of
:mod:`monitoriza.exporter.metrics`; :func:`monitoriza.exporter.samples.flow_lines` renders
them with the flow's name as the ``flow`` label.
"""

from __future__ import annotations

import functools

from monitoriza.config.schema import Flow
from monitoriza.exporter import metrics
from monitoriza.exporter.probes.base import Deadline, Measurement, ProbeOutcome, ProbeRunner
from monitoriza.flows.model import FlowResult
from monitoriza.flows.runner import run_flow

# A flow step's reason, as the probe failure reason used in logs and by the scheduler.
_PROBE_REASON = {"timeout": "timeout", "connection": "connection", "status": "status",
                 "body": "body", "assertion": "body", "capture": "body", "secret": "auth"}


def outcome_of(result: FlowResult) -> ProbeOutcome:
    """A flow run as a probe outcome (pure)."""
    samples = []
    for step in result.steps:
        labels = (("step", step.name),)
        samples += [
            Measurement(metrics.FLOW_STEP_SUCCESS.name, labels, 1.0 if step.ok else 0.0),
            Measurement(metrics.FLOW_STEP_DURATION.name, labels, step.duration_seconds),
            Measurement(metrics.FLOW_STEP_STATUS.name, labels, float(step.status or 0)),
        ]
    failed = result.failed_step
    if failed is None:
        return ProbeOutcome(success=True, latency_seconds=result.duration_seconds,
                            measurements=tuple(samples))
    reason = failed.reason or "error"
    samples.append(Measurement(metrics.FLOW_FAILURE_REASON.name,
                               (("step", failed.name), ("reason", reason)), 1.0))
    return ProbeOutcome.failed(_PROBE_REASON.get(reason, "error"),
                               f"step {failed.name}: {failed.message}",
                               measurements=tuple(samples))


def run(spec: Flow, deadline: Deadline) -> ProbeOutcome:
    # The flow keeps to its own timeout, which is the job's deadline.
    return outcome_of(run_flow("", spec))


def create(spec: Flow) -> ProbeRunner:
    return functools.partial(run, spec)
