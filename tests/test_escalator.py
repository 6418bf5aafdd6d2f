"""Refusals escalated to Alertmanager: one runbook section per refusing check, and the
escalator's counts exported as ``monitoriza_healing_escalations_total``.

Alertmanager is stood in for by a real HTTP server that records posts (tests/support), and an
unused port for an Alertmanager that is down.
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from monitoriza.config.schema import Healing
from monitoriza.healing.chat import ChatStats
from monitoriza.healing.healer import ActionJob, HealOutcome
from monitoriza.healing.metrics import HealingCollector
from monitoriza.healing.notify import (
    REFUSAL_RUNBOOK_FALLBACK,
    REFUSAL_RUNBOOKS,
    Escalator,
    refusal_runbook_url,
)
from monitoriza.healing.policy import Facts, decide
from monitoriza.store import create_store
from tests.support.alertmanager import CaptureServer
from tests.support.binaries import free_port, wait_until
from tests.test_rules import RUNBOOKS, github_anchor

# Facts under which every check passes; each refusal below changes one of them.
PASSING = {"alert_firing": True, "is_symptom": False, "kill_switch": False, "dry_run": False,
           "in_maintenance": False, "budget_allowed": True, "budget_reason": "budget spent",
           "breaker_allowed": True, "breaker_reason": "breaker open", "running_on_target": 0,
           "running_total": 0, "max_concurrent": 4, "recent_targets": frozenset(),
           "max_targets_per_minute": 2, "target": "db"}
REFUSING: list[dict[str, Any]] = [
    {"kill_switch": True}, {"in_maintenance": True}, {"budget_allowed": False},
    {"breaker_allowed": False}, {"running_on_target": 1}, {"running_total": 4},
    {"recent_targets": frozenset({"a", "b"})}]


def _facts(**changes: Any) -> Facts:
    known = {field.name for field in fields(Facts)}
    return Facts(**{k: v for k, v in {**PASSING, **changes}.items() if k in known})


def _outcome(service: str = "db", check: str = "") -> HealOutcome:
    return HealOutcome(ActionJob(1, 1, service, f"restart-{service}", {}), "blocked",
                       "refused for the test", check)


def _runbook_anchors() -> set[str]:
    return {github_anchor(line.lstrip("#").strip()) for line in RUNBOOKS.read_text().splitlines()
            if line.startswith("#")}


class TestRunbooks:
    """Each refusal links to the runbook section of its own check."""

    def test_every_refusing_check_of_the_policy_has_its_section(self) -> None:
        assert decide(_facts()).verdict == "act"
        checks = {decide(_facts(**change)).check for change in REFUSING}
        assert all(decide(_facts(**c)).verdict == "blocked" for c in REFUSING)
        assert checks == set(REFUSAL_RUNBOOKS)

    def test_every_anchor_the_escalator_can_emit_exists_in_runbooks_md(self) -> None:
        anchors = _runbook_anchors()
        emitted = {*REFUSAL_RUNBOOKS.values(), REFUSAL_RUNBOOK_FALLBACK}
        assert emitted <= anchors, sorted(emitted - anchors)
        assert len(set(REFUSAL_RUNBOOKS.values())) == len(REFUSAL_RUNBOOKS), "one each"

    def test_an_unknown_check_links_to_the_alert_section(self) -> None:
        assert refusal_runbook_url("something_new") == "docs/runbooks.md#monitorizahealingrefused"


def _collector(tmp_path: Path, escalator: Escalator) -> CollectorRegistry:
    engine = create_store(f"sqlite:///{tmp_path / 'store.db'}")
    registry = CollectorRegistry()
    registry.register(HealingCollector(engine, Healing(), ChatStats, escalator.stats))
    return registry


def _escalations(registry: CollectorRegistry, result: str) -> float | None:
    return registry.get_sample_value("monitoriza_healing_escalations_total", {"result": result})


class TestEscalations:
    """What the escalator sends, and its counts as metrics."""

    def test_a_sent_refusal_carries_its_runbook_and_is_counted(self, tmp_path: Path) -> None:
        capture = CaptureServer()
        try:
            escalator = Escalator(capture.url)
            registry = _collector(tmp_path, escalator)
            assert _escalations(registry, "sent") == 0.0
            escalator.escalate(_outcome(check="budget"))
            [post] = capture.wait_for(lambda p: p.path == "/api/v2/alerts", 10)
            [alert] = post.body
            assert alert["labels"]["alertname"] == "MonitorizaHealingRefused"
            assert alert["annotations"]["runbook_url"] == (
                "docs/runbooks.md#refused-restart-budget")
            assert wait_until(lambda: _escalations(registry, "sent") == 1.0, 5)
            assert _escalations(registry, "failed") == 0.0
        finally:
            capture.close()

    def test_an_unreachable_alertmanager_counts_as_failed(self, tmp_path: Path) -> None:
        escalator = Escalator(f"http://127.0.0.1:{free_port()}", timeout=1.0)
        registry = _collector(tmp_path, escalator)
        escalator.escalate(_outcome(check="breaker"))
        assert wait_until(lambda: _escalations(registry, "failed") == 1.0, 10)
        assert _escalations(registry, "sent") == 0.0
        assert _escalations(registry, "dropped_queue_full") == 0.0

    def test_without_an_escalator_the_counts_are_zero(self, tmp_path: Path) -> None:
        engine = create_store(f"sqlite:///{tmp_path / 'store.db'}")
        registry = CollectorRegistry()
        registry.register(HealingCollector(engine, Healing(), ChatStats))
        assert _escalations(registry, "sent") == 0.0
