"""The circuit breaker: a pure state machine driven by a fake clock."""

from __future__ import annotations

import json

import pytest

from monitoriza.config.schema import Breaker
from monitoriza.healing.breaker import (
    BreakerState,
    Permit,
    acquire,
    record,
    release,
)

CFG = Breaker()
T0 = 1_000_000.0


def run(state: BreakerState, outcomes: str, now: float = T0) -> BreakerState:
    """Feed ``outcomes`` ("S" success, "F" failure) through acquire and record."""
    for i, outcome in enumerate(outcomes):
        permit, state = acquire(state, now + i, CFG)
        assert permit.allowed
        state = record(state, outcome == "S", now + i, CFG)
    return state


def opened() -> BreakerState:
    """A breaker that opened at T0 after three failures."""
    state = BreakerState.initial(CFG)
    for _ in range(3):
        state = record(state, False, T0, CFG)
    assert state.state == "open"
    assert state.opened_at == T0
    return state


def trial(state: BreakerState, now: float) -> BreakerState:
    """Take the half-open trial at ``now``, asserting it is granted."""
    permit, state = acquire(state, now, CFG)
    assert permit == Permit(allowed=True, trial=True, reason="half-open trial")
    assert state.state == "half_open"
    assert state.trial_in_flight
    return state


class TestOpening:
    """A closed breaker opens on a run of failures or a high failure ratio."""

    def test_starts_closed(self) -> None:
        """A new breaker is closed and lets callers through without a trial."""
        permit, state = acquire(BreakerState.initial(CFG), T0, CFG)
        assert permit.allowed
        assert not permit.trial
        assert state == BreakerState.initial(CFG)

    def test_three_consecutive_failures(self) -> None:
        """Two failures in a row keep it closed; the third opens it."""
        state = run(BreakerState.initial(CFG), "SFF")
        assert state.state == "closed"
        assert state.consecutive_failures == 2
        state = run(state, "F", T0 + 10)
        assert state.state == "open"
        assert state.opened_at == T0 + 10
        assert state.open_for == 60.0

    def test_success_breaks_the_run(self) -> None:
        """A success resets the consecutive count."""
        state = run(BreakerState.initial(CFG), "SSSSFFSFF")
        assert state.state == "closed"
        assert state.consecutive_failures == 2

    def test_failure_ratio(self) -> None:
        """S F S F S F: three failures of six (50 %) with at least five calls opens it."""
        state = run(BreakerState.initial(CFG), "SFSFS")
        assert state.state == "closed"  # 2 of 5
        state = run(state, "F", T0 + 5)
        assert state.state == "open"
        assert state.recent == (True, False, True, False, True, False)

    def test_ratio_needs_min_calls(self) -> None:
        """S F S F is 50 % failures but only four calls: still closed."""
        state = run(BreakerState.initial(CFG), "SFSF")
        assert state.state == "closed"

    def test_ratio_over_last_window_only(self) -> None:
        """Old outcomes slide out of the window of ten."""
        state = run(BreakerState.initial(CFG), "FSFSSS" + "SSSSSS")
        assert state.state == "closed"
        assert len(state.recent) == 10
        assert state.recent.count(False) == 1

    def test_success_never_opens(self) -> None:
        """Only a failure can push the breaker open."""
        state = run(BreakerState.initial(CFG), "SSSS")
        assert state.state == "closed"
        assert state.consecutive_failures == 0


class TestOpen:
    """An open breaker refuses everyone until its open period is over."""

    def test_refuses_until_open_for(self) -> None:
        """Refused at +0 s and +59.9 s, with the time it reopens; the trial comes at +60 s."""
        state = opened()
        for now in (T0, T0 + 30, T0 + 59.9):
            permit, after = acquire(state, now, CFG)
            assert not permit.allowed
            assert permit.reason.startswith("breaker open until ")
            assert permit.retry_at == T0 + 60
            assert after == state
        trial(state, T0 + 60)

    def test_refusal_names_the_time(self) -> None:
        """The reason gives the reopening time in UTC and what is left of the wait."""
        permit, _ = acquire(opened(), T0 + 15, CFG)
        assert permit.reason == "breaker open until 1970-01-12T13:47:40Z (45s left)"

    def test_outcomes_while_open_are_ignored(self) -> None:
        """A straggler granted before the breaker opened does not change it."""
        state = opened()
        assert record(state, True, T0 + 1, CFG) == state
        assert record(state, False, T0 + 1, CFG) == state


class TestHalfOpen:
    """After the open period, one trial at a time decides whether the breaker closes."""

    def test_one_trial_at_a_time(self) -> None:
        """While the trial runs, every other caller is refused."""
        state = trial(opened(), T0 + 60)
        for now in (T0 + 60, T0 + 61, T0 + 500):
            permit, after = acquire(state, now, CFG)
            assert permit == Permit(
                allowed=False, trial=False, reason="a half-open trial is already running")
            assert after == state

    def test_two_successes_close(self) -> None:
        """The first trial success lets the next caller trial; the second closes the breaker."""
        state = record(trial(opened(), T0 + 60), True, T0 + 61, CFG)
        assert state.state == "half_open"
        assert state.half_open_successes == 1
        assert not state.trial_in_flight
        state = trial(state, T0 + 62)
        state = record(state, True, T0 + 63, CFG)
        assert state == BreakerState.initial(CFG)
        permit, _ = acquire(state, T0 + 64, CFG)
        assert permit.allowed
        assert not permit.trial

    def test_failure_reopens_doubled(self) -> None:
        """Each trial failure re-opens the breaker for twice as long, capped at 30 minutes."""
        state = opened()
        now = T0
        seen = []
        for _ in range(8):
            now += state.open_for
            state = record(trial(state, now), False, now, CFG)
            assert state.state == "open"
            assert state.opened_at == now
            seen.append(state.open_for)
        assert seen == [120.0, 240.0, 480.0, 960.0, 1800.0, 1800.0, 1800.0, 1800.0]

    def test_reopened_refuses_for_the_doubled_period(self) -> None:
        """After a failed trial at t the breaker refuses until t + 120 s."""
        t = T0 + 60
        state = record(trial(opened(), t), False, t, CFG)
        assert not acquire(state, t + 119, CFG)[0].allowed
        trial(state, t + 120)

    def test_failure_after_one_success_reopens(self) -> None:
        """A failure on the second trial re-opens even after one success."""
        state = record(trial(opened(), T0 + 60), True, T0 + 61, CFG)
        state = record(trial(state, T0 + 62), False, T0 + 62, CFG)
        assert state.state == "open"
        assert state.half_open_successes == 0
        assert state.open_for == 120.0

    def test_closing_resets_open_for(self) -> None:
        """After closing, the next opening lasts the configured 60 s again."""
        state = opened()
        state = record(trial(state, T0 + 60), False, T0 + 60, CFG)  # open for 120 s
        for i in range(CFG.close_after):
            state = record(trial(state, T0 + 180 + i), True, T0 + 180 + i, CFG)
        assert state.state == "closed"
        assert state.open_for == 60.0
        assert state.recent == ()
        state = run(state, "FFF", T0 + 200)
        assert state.open_for == 60.0

    def test_straggler_without_trial_is_ignored(self) -> None:
        """Between trials, an outcome nobody was granted does not count."""
        state = record(trial(opened(), T0 + 60), True, T0 + 61, CFG)
        assert record(state, False, T0 + 61, CFG) == state

    def test_release_returns_the_trial(self) -> None:
        """A cancelled trial is given back, and the next caller gets it."""
        state = release(trial(opened(), T0 + 60))
        assert state.state == "half_open"
        assert not state.trial_in_flight
        trial(state, T0 + 61)

    def test_release_outside_a_trial_changes_nothing(self) -> None:
        """Releasing a closed or open breaker is a no-op."""
        closed = BreakerState.initial(CFG)
        assert release(closed) == closed
        assert release(opened()) == opened()


class TestStorage:
    """States round-trip through JSON, and damaged records are refused."""

    @pytest.mark.parametrize("state", [
        BreakerState.initial(CFG),
        run(BreakerState.initial(CFG), "SFSF"),
        opened(),
        record(trial(opened(), T0 + 60), True, T0 + 61, CFG),
        trial(opened(), T0 + 60),
    ])
    def test_round_trip(self, state: BreakerState) -> None:
        """to_dict is JSON-safe and from_dict gives back an equal state."""
        text = json.dumps(state.to_dict())
        assert BreakerState.from_dict(json.loads(text)) == state

    @pytest.mark.parametrize(("key", "value"), [
        ("state", "ajar"), ("recent", [1, 0]), ("consecutive_failures", -1),
        ("consecutive_failures", True), ("open_for", "60s"), ("opened_at", float("nan")),
        ("trial_in_flight", 0), ("half_open_successes", None),
    ])
    def test_rejects_bad_fields(self, key: str, value: object) -> None:
        """A field of the wrong type or value raises ValueError naming it."""
        data = opened().to_dict()
        data[key] = value
        with pytest.raises(ValueError, match=key.split("_", maxsplit=1)[0]):
            BreakerState.from_dict(data)
