"""A planned experiment as a Chaos Toolkit experiment (pure).

``monitoriza drill run`` executes exactly these documents with chaostoolkit-lib's runner, and
``monitoriza drill export --format chaostoolkit`` writes them for ``chaos run``: one engine,
one document, so both give the same verdicts. The activities are the Python functions of
:mod:`monitoriza.drill.chaos`; the experiment carries only the paths and settings they need
(the plan itself is derived again from the same files when the experiment runs, so a
document never drifts from the estate it is run on).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from monitoriza.drill.model import Experiment

EXTENSION_MODULE = "monitoriza.drill.chaos"
#: How often the steady state outside the blast radius is checked while the fault is on.
HYPOTHESIS_FREQUENCY_SECONDS = 2.0


@dataclass(frozen=True, slots=True)
class DrillSettings:
    """What every experiment of one drill run shares: the files the plan is derived from,
    where the pipeline is observed, and the limits a fault must respect."""

    config: Path
    rules: Path
    alertmanager_config: Path
    prometheus_config: Path
    drill_id: str
    time_limit: float  # seconds one experiment may run, restore excluded
    max_fill_bytes: int
    poll_interval: float = 0.5
    prometheus_url: str | None = None  # default: the configuration's exporter.prometheus_url
    alertmanager_url: str | None = None  # default: responder.healing.alertmanager_url
    responder_url: str | None = None  # default: http:// + responder.listen

    def as_configuration(self) -> dict[str, Any]:
        """The experiment's ``configuration`` block (plain values only)."""
        values: dict[str, Any] = {
            "monitoriza_config": str(self.config.absolute()),
            "monitoriza_rules": str(self.rules.absolute()),
            "monitoriza_alertmanager_config": str(self.alertmanager_config.absolute()),
            "monitoriza_prometheus_config": str(self.prometheus_config.absolute()),
            "monitoriza_drill_id": self.drill_id,
            "monitoriza_time_limit": self.time_limit,
            "monitoriza_max_fill_bytes": self.max_fill_bytes,
            "monitoriza_poll_interval": self.poll_interval,
        }
        for name in ("prometheus_url", "alertmanager_url", "responder_url"):
            value = getattr(self, name)
            if value is not None:
                values[f"monitoriza_{name}"] = value
        return values


def _activity(kind: str, name: str, func: str, key: str, **extra: Any) -> dict[str, Any]:
    activity: dict[str, Any] = {
        "type": kind, "name": name,
        "provider": {"type": "python", "module": EXTENSION_MODULE, "func": func,
                     "arguments": {"key": key}},
    }
    activity.update(extra)
    return activity


def to_chaostoolkit(experiment: Experiment, settings: DrillSettings) -> dict[str, Any]:
    """The Chaos Toolkit experiment of one cell of the plan.

    The steady-state hypothesis is "every service outside the blast radius passes its probes
    and healing is not switched off"; run continuously with fail-fast it aborts the fault the
    moment that stops holding, and the rollback restores. The method writes the canaries,
    injects, observes the pipeline until each stage is settled, releases the fault, waits for
    recovery, reads the canaries back and judges; ``judge``'s output is the verdict.
    """
    key = experiment.key
    blast = sorted({experiment.service, experiment.root_cause, *experiment.affected})
    return {
        "version": "1.0.0",
        "title": f"Monitoriza drill {key}",
        "description": (
            f"{experiment.fault} on {experiment.target}: expected root cause "
            f"{experiment.root_cause}; alerts "
            + (", ".join(f"{a.alertname} {a.severity}" for a in experiment.alerts) or "none")
            + (f"; healed by {experiment.heal.playbook}" if experiment.heal else
               "; no playbook heals it")),
        "tags": ["monitoriza", "drill", experiment.service, experiment.fault],
        "configuration": settings.as_configuration(),
        "extensions": [{"name": "monitoriza", "key": key, "blast_radius": blast}],
        "steady-state-hypothesis": {
            "title": "Every service outside the blast radius passes its probes; healing is on",
            "probes": [_activity("probe", "outside-blast-radius-healthy", "steady_state", key,
                                 tolerance=True)],
        },
        "method": [
            _activity("action", "write-canaries", "write_canaries", key),
            _activity("action", "inject-fault", "inject_fault", key),
            _activity("probe", "observe-pipeline", "observe_pipeline", key),
            _activity("action", "release-fault", "release_fault", key),
            _activity("probe", "await-recovery", "await_recovery", key),
            _activity("probe", "read-canaries", "read_canaries", key),
            _activity("probe", "judge", "judge", key),
        ],
        "rollbacks": [_activity("action", "restore", "restore_fault", key)],
        # Chaos Toolkit reads both strategies here; the frequency and fail-fast are flags of
        # ``chaos run`` (docs/drills.md gives the command).
        "runtime": {"rollbacks": {"strategy": "always"},
                    "hypothesis": {"strategy": "continuously"}},
    }


def verdict_of(journal: dict[str, Any]) -> dict[str, Any] | None:
    """The ``judge`` activity's output in a Chaos Toolkit journal (``chaos run``'s
    journal.json or the runner's return value), or None when the experiment stopped before
    judging."""
    for record in journal.get("run") or []:
        activity = record.get("activity") or {}
        if activity.get("name") == "judge" and record.get("status") == "succeeded":
            output = record.get("output")
            return output if isinstance(output, dict) else None
    return None
