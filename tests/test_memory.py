"""Operational memory: success ratios, conservative bounds, ranking and demotion."""

from __future__ import annotations

import pytest

from monitoriza.healing.memory import Outcomes, demoted, lower_bound, rank, success_ratio


class TestEstimates:
    """The Beta(1 + s, 1 + f) posterior gives the ratio and its lower bound."""

    @pytest.mark.parametrize(("successes", "failures", "ratio"), [
        (0, 0, 0.5), (3, 0, 0.8), (0, 3, 0.2), (1, 1, 0.5), (9, 1, 10 / 12)])
    def test_success_ratio(self, successes: int, failures: int, ratio: float) -> None:
        """The posterior mean is (1 + s) / (2 + s + f)."""
        assert success_ratio(Outcomes(successes, failures)) == pytest.approx(ratio)

    def test_lower_bound_values(self) -> None:
        """mean - 1.28 sd: 0/0 → 0.5 - 1.28·sqrt(1/12); 3/0 → 0.8 - 1.28·sqrt(4/150)."""
        assert lower_bound(Outcomes(0, 0)) == pytest.approx(0.5 - 1.28 * (1 / 12) ** 0.5)
        assert lower_bound(Outcomes(3, 0)) == pytest.approx(0.8 - 1.28 * (4 / 150) ** 0.5)

    def test_lower_bound_is_below_the_mean_and_clamped(self) -> None:
        """The bound never exceeds the mean and stays within [0, 1]."""
        for o in (Outcomes(0, 0), Outcomes(0, 50), Outcomes(50, 0), Outcomes(5, 5)):
            assert 0.0 <= lower_bound(o) <= success_ratio(o) <= 1.0
        assert lower_bound(Outcomes(0, 1), z=10) == 0.0

    def test_more_evidence_tightens_the_bound(self) -> None:
        """The same ratio with more attempts has a higher lower bound."""
        assert lower_bound(Outcomes(90, 10)) > lower_bound(Outcomes(9, 1))

    def test_counts_must_not_be_negative(self) -> None:
        """Negative counts are refused."""
        with pytest.raises(ValueError, match=">= 0"):
            Outcomes(-1, 0)

    def test_add(self) -> None:
        """add counts one more success or failure."""
        assert Outcomes().add(True).add(False).add(True) == Outcomes(2, 1)
        assert Outcomes(2, 1).attempts == 3


class TestDemotion:
    """Actions that keep failing are demoted once there is enough evidence."""

    @pytest.mark.parametrize(("successes", "failures", "expected"), [
        (0, 3, True),   # mean 0.2
        (0, 2, False),  # mean 0.25, but only two attempts
        (1, 3, False),  # mean 1/3
        (1, 5, True),   # mean 0.25
        (0, 0, False),
        (5, 0, False),
    ])
    def test_demoted(self, successes: int, failures: int, expected: bool) -> None:
        """Demoted means at least 3 attempts and a posterior mean below 0.3."""
        assert demoted(Outcomes(successes, failures)) is expected


class TestRank:
    """Candidates are ranked best first, demoted ones last."""

    def test_proven_beats_lucky(self) -> None:
        """Nine of ten beats one of one: the bound, not the mean, decides."""
        assert rank({"lucky": Outcomes(1, 0), "proven": Outcomes(9, 1)}) == ["proven", "lucky"]

    def test_order(self) -> None:
        """Best lower bound first; untried beats a mostly failing one; demoted last."""
        candidates = {
            "restart": Outcomes(8, 1),
            "scale": Outcomes(0, 0),
            "flaky": Outcomes(1, 3),
            "broken": Outcomes(0, 4),
        }
        assert rank(candidates) == ["restart", "scale", "flaky", "broken"]

    def test_demoted_last_even_with_a_higher_bound(self) -> None:
        """A demoted action ranks after an undemoted one whatever their bounds."""
        candidates = {"broken": Outcomes(1, 6), "doubtful": Outcomes(0, 2)}
        assert lower_bound(candidates["broken"]) > lower_bound(candidates["doubtful"])
        assert rank(candidates) == ["doubtful", "broken"]

    def test_ties_favour_fewer_attempts(self) -> None:
        """Equal bounds: the less-tried action goes first to explore, then by name."""
        candidates = {"b": Outcomes(0, 0), "a": Outcomes(0, 0)}
        assert rank(candidates) == ["a", "b"]
        candidates = {"many": Outcomes(0, 6), "few": Outcomes(0, 5)}
        assert lower_bound(candidates["many"]) == 0.0 == lower_bound(candidates["few"])
        assert rank(candidates) == ["few", "many"]

    def test_empty(self) -> None:
        """No candidates, no ranking."""
        assert rank({}) == []
