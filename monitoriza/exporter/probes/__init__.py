"""Probe kinds, one module each; :func:`create_runner` picks the module for a probe spec."""

from __future__ import annotations

import importlib

from monitoriza.config.schema import PROBE_KINDS, Flow, ProbeBase
from monitoriza.exporter.probes.base import ProbeRunner


def create_runner(spec: ProbeBase | Flow) -> ProbeRunner:
    """Return a runner for ``spec``, built by the module named after its ``kind`` (a flow
    is run by :mod:`.flow`)."""
    if isinstance(spec, Flow):
        from monitoriza.exporter.probes import flow  # noqa: PLC0415 - lazily, like the others

        return flow.create(spec)
    kind: str = getattr(spec, "kind")  # noqa: B009 - every concrete probe spec has a kind
    if kind not in PROBE_KINDS:
        raise ValueError(f"unknown probe kind {kind!r}")
    # Imported lazily so that a deployment without, say, Docker never loads the Docker SDK.
    module = importlib.import_module(f"monitoriza.exporter.probes.{kind}")
    runner: ProbeRunner = module.create(spec)
    return runner
