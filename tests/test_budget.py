"""The restart budget and backoff, driven by a fake clock."""

from __future__ import annotations

import json

import pytest

from monitoriza.config.schema import Budget
from monitoriza.healing.budget import (
    BudgetState,
    Verdict,
    check,
    record_attempt,
    record_healthy,
    remaining,
)

CFG = Budget()
T0 = 1_000_000.0


def restart(state: BudgetState, now: float) -> BudgetState:
    """Check and, if allowed, record a restart at ``now``."""
    verdict = check(state, now, CFG)
    assert verdict.allowed, verdict.reason
    return record_attempt(state, now, CFG)


class TestBudget:
    """At most three restarts in any fifteen minutes."""

    def test_three_then_refused(self) -> None:
        """Three restarts fit; the fourth within 15 minutes is refused with the reason."""
        state = BudgetState()
        for now in (T0, T0 + 100, T0 + 300):
            state = restart(state, now)
        verdict = check(state, T0 + 800, CFG)
        assert verdict == Verdict(False, "budget spent: 3 restarts in 15m", T0 + 900)

    def test_allowed_when_oldest_leaves_the_window(self) -> None:
        """At exactly 15 minutes after the first attempt, one more restart fits."""
        state = BudgetState()
        for now in (T0, T0 + 100, T0 + 300):
            state = restart(state, now)
        assert not check(state, T0 + 899.9, CFG).allowed
        assert check(state, T0 + 900, CFG).allowed
        state = record_attempt(state, T0 + 900, CFG)
        assert state.attempts == (T0 + 100, T0 + 300, T0 + 900)
        assert check(state, T0 + 950, CFG).retry_at == T0 + 1000

    def test_remaining(self) -> None:
        """remaining counts down with each attempt and back up as attempts age out."""
        state = BudgetState()
        assert remaining(state, T0, CFG) == 3
        state = record_attempt(state, T0, CFG)
        assert remaining(state, T0, CFG) == 2
        state = record_attempt(state, T0 + 100, CFG)
        state = record_attempt(state, T0 + 400, CFG)
        assert remaining(state, T0 + 500, CFG) == 0
        assert remaining(state, T0 + 900, CFG) == 1
        assert remaining(state, T0 + 1300, CFG) == 3

    def test_allowed_reason_counts_down(self) -> None:
        """An allowed verdict says how many restarts are left after this one."""
        assert check(BudgetState(), T0, CFG) == Verdict(
            True, "within budget: 2 of 3 restarts left after this")


class TestBackoff:
    """The wait between attempts doubles from 10 s up to 5 minutes."""

    def test_doubles_and_caps(self) -> None:
        """10, 20, 40, 80, 160, 300, 300 — each attempt waits the previous backoff out first."""
        cfg = Budget(restarts=100)
        state = BudgetState()
        now = T0
        waits = []
        for _ in range(7):
            assert check(state, now, cfg).allowed
            state = record_attempt(state, now, cfg)
            assert state.next_allowed_at == now + state.backoff
            waits.append(state.backoff)
            now = state.next_allowed_at
        assert waits == [10.0, 20.0, 40.0, 80.0, 160.0, 300.0, 300.0]

    def test_refused_while_backing_off(self) -> None:
        """Right after an attempt the next is refused until next_allowed_at."""
        state = record_attempt(record_attempt(BudgetState(), T0, CFG), T0 + 10, CFG)
        assert state.next_allowed_at == T0 + 30
        verdict = check(state, T0 + 18, CFG)
        assert verdict == Verdict(False, "backing off for 20s (12s left)", T0 + 30)
        assert check(state, T0 + 30, CFG).allowed

    def test_spent_budget_waits_for_backoff_too(self) -> None:
        """When both apply, retry_at is the later of the window and the backoff."""
        cfg = Budget.model_validate({"restarts": 1, "window": "5s"})
        state = record_attempt(BudgetState(), T0, cfg)
        verdict = check(state, T0 + 1, cfg)
        assert verdict.reason == "budget spent: 1 restarts in 5s"
        assert verdict.retry_at == T0 + 10

    def test_reset_after_ten_healthy_minutes(self) -> None:
        """Healthy for 10 minutes: the backoff starts over at 10 s, attempts still count."""
        state = BudgetState()
        for now in (T0, T0 + 10, T0 + 30):
            state = record_attempt(state, now, CFG)
        assert state.backoff == 40.0
        state = record_healthy(state, T0 + 100, CFG)
        assert state.healthy_since == T0 + 100
        state = record_healthy(state, T0 + 699, CFG)
        assert state.backoff == 40.0
        assert state.healthy_since == T0 + 100
        state = record_healthy(state, T0 + 700, CFG)
        assert state.backoff == 0.0
        assert remaining(state, T0 + 700, CFG) == 0
        assert not check(state, T0 + 700, CFG).allowed
        state = restart(state, T0 + 900)
        assert state.backoff == 10.0
        assert state.healthy_since is None

    def test_attempt_breaks_the_healthy_streak(self) -> None:
        """An attempt in between starts the health streak over."""
        state = record_healthy(record_attempt(BudgetState(), T0, CFG), T0 + 50, CFG)
        state = record_attempt(state, T0 + 100, CFG)
        state = record_healthy(state, T0 + 200, CFG)
        state = record_healthy(state, T0 + 700, CFG)
        assert state.backoff == 20.0
        assert record_healthy(state, T0 + 800, CFG).backoff == 0.0


class TestStorage:
    """Budget states round-trip through JSON, and damaged records are refused."""

    def test_round_trip(self) -> None:
        """to_dict is JSON-safe and from_dict gives back an equal state."""
        states = [BudgetState(), record_attempt(BudgetState(), T0, CFG),
                  record_healthy(record_attempt(BudgetState(), T0, CFG), T0 + 5, CFG)]
        for state in states:
            assert BudgetState.from_dict(json.loads(json.dumps(state.to_dict()))) == state

    @pytest.mark.parametrize(("key", "value"), [
        ("attempts", [T0, "later"]), ("attempts", None), ("backoff", True),
        ("next_allowed_at", None), ("healthy_since", "now"),
    ])
    def test_rejects_bad_fields(self, key: str, value: object) -> None:
        """A field of the wrong type raises ValueError naming it."""
        data = record_attempt(BudgetState(), T0, CFG).to_dict()
        data[key] = value
        with pytest.raises(ValueError, match=key):
            BudgetState.from_dict(data)
