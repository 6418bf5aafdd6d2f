"""The healing policy applies its checks in order; the first refusal is the reason."""

from __future__ import annotations

from dataclasses import replace

import pytest

from monitoriza.config.schema import MaintenanceWindow
from monitoriza.healing.policy import (
    SELF_RAISED_LABEL,
    SELF_RAISED_VALUE,
    Facts,
    decide,
    in_maintenance,
    judge_alert,
    raised_by_responder,
)

ALLOWED = Facts(alert_firing=True, is_symptom=False, kill_switch=False, dry_run=False,
                in_maintenance=False, budget_allowed=True, budget_reason="",
                breaker_allowed=True, breaker_reason="", running_on_target=0, running_total=0,
                max_concurrent=4, recent_targets=frozenset(), max_targets_per_minute=2,
                target="redis")


class TestOrder:
    """Each check refuses on its own, and earlier checks win over later ones."""

    @pytest.mark.parametrize(("change", "verdict", "check"), [
        ({}, "act", "act"),
        ({"alert_firing": False}, "skipped", "resolved"),
        ({"is_symptom": True}, "skipped", "symptom"),
        ({"refused_step": "cannot fill a placeholder"}, "blocked", "refused"),
        ({"kill_switch": True}, "blocked", "kill_switch"),
        ({"dry_run": True}, "dry_run", "dry_run"),
        ({"in_maintenance": True}, "blocked", "maintenance"),
        ({"budget_allowed": False, "budget_reason": "budget spent"}, "blocked", "budget"),
        ({"breaker_allowed": False, "breaker_reason": "open"}, "blocked", "breaker"),
        ({"running_on_target": 1}, "blocked", "one_per_target"),
        ({"running_total": 4}, "blocked", "global_limit"),
        ({"recent_targets": frozenset({"a", "b"})}, "blocked", "blast_radius"),
        ({"recent_targets": frozenset({"a", "redis"})}, "act", "act"),
    ])
    def test_single_check(self, change: dict[str, object], verdict: str, check: str) -> None:
        """One failing fact gives its own verdict."""
        decision = decide(replace(ALLOWED, **change))  # type: ignore[arg-type]
        assert (decision.verdict, decision.check) == (verdict, check)

    def test_order(self) -> None:
        """With everything wrong at once, each check shadows the ones after it."""
        facts = replace(ALLOWED, alert_firing=False, is_symptom=True, refused_step="no",
                        kill_switch=True,
                        dry_run=True, in_maintenance=True, budget_allowed=False,
                        breaker_allowed=False, running_on_target=1, running_total=9,
                        recent_targets=frozenset({"a", "b"}))
        order = ["resolved", "symptom", "refused", "kill_switch", "dry_run", "maintenance",
                 "budget", "breaker", "one_per_target", "global_limit", "blast_radius"]
        fields = ["alert_firing", "is_symptom", "refused_step", "kill_switch", "dry_run",
                  "in_maintenance", "budget_allowed", "breaker_allowed", "running_on_target",
                  "running_total", "recent_targets"]
        good: dict[str, object] = {"alert_firing": True, "is_symptom": False, "refused_step": None,
                "kill_switch": False,
                "dry_run": False, "in_maintenance": False, "budget_allowed": True,
                "breaker_allowed": True, "running_on_target": 0, "running_total": 0,
                "recent_targets": frozenset()}
        for check, field in zip(order, fields, strict=True):
            assert decide(facts).check == check
            facts = replace(facts, **{field: good[field]})  # type: ignore[arg-type]
        assert decide(facts).verdict == "act"


class TestMaintenance:
    """Maintenance windows cover their services (or all) between start and end."""

    def test_windows(self) -> None:
        """Inside the window for its service only; a window without services covers all."""
        window = MaintenanceWindow(services=["backend"], start="2026-11-24T22:00:00Z",
                                   end="2026-11-24T23:00:00Z")
        inside = 1795557600.0 + 600  # 2026-11-24 22:10 UTC
        assert in_maintenance([window], "backend", inside)
        assert not in_maintenance([window], "redis", inside)
        assert not in_maintenance([window], "backend", inside + 3600)
        everything = MaintenanceWindow(start="2026-11-24T22:00:00Z", end="2026-11-24T23:00:00Z")
        assert in_maintenance([everything], "redis", inside)


def test_blast_radius_message_names_the_window() -> None:
    """A scaled window (the demo's 3 s) is the one the refusal names."""
    verdict = decide(replace(ALLOWED, recent_targets=frozenset({"a", "b"}),
                             blast_radius_window=3.0))
    assert verdict.check == "blast_radius"
    assert "in the last 3s" in verdict.reason


class TestOneJudge:
    """The journal step and the healer ask the same questions of the same functions."""

    def test_judge_alert_is_the_start_of_decide(self) -> None:
        """decide() refuses a resolved alert or a symptom exactly as judge_alert() does."""
        for firing, symptom in [(False, False), (True, True), (False, True)]:
            facts = replace(ALLOWED, alert_firing=firing, is_symptom=symptom,
                            root_cause="redis")
            assert decide(facts) == judge_alert(firing, symptom, "redis")
        assert judge_alert(True, False) is None

    def test_symptom_reason_names_the_root_cause(self) -> None:
        """The reason says of which root cause the alert is a symptom."""
        decision = judge_alert(True, True, "redis")
        assert decision is not None
        assert decision.reason.startswith("a symptom of redis;")

    def test_self_raised_label(self) -> None:
        """Only the responder's own label value marks an alert as self-raised."""
        assert raised_by_responder({SELF_RAISED_LABEL: SELF_RAISED_VALUE})
        assert not raised_by_responder({SELF_RAISED_LABEL: "someone-else"})
        assert not raised_by_responder({"alertname": "MonitorizaHealingRefused"})
