"""How often the real crossing falls inside [lower, upper]: the bounds' coverage.

Replayed forecasts are scored against what the series did next. A *crossing* is an
evaluation time whose series reaches the threshold within the horizon after it (at T
seconds); only those have a crossing time to cover. Of them, the forecast *foresaw* the ones
where its lower estimate was within the horizon: it said a crossing was plausible. Those are
*inside* when lower ≤ T ≤ upper, *early* when the crossing came before the lower estimate,
*late* when after the upper one.

Two rates come out, and both are reported because each hides what the other shows:

* ``rate``: inside / foreseen, what the stated level promises: when the forecast gives an
  interval and the series fails, the failure is inside it that often.
* ``all_rate``: inside / crossings, which also counts the crossings nothing in the window
  announced (a burst out of a flat series). Those are missed detections, which the frontier
  (``frontier``) measures: an interval that covered them would have to put its lower
  estimate within the horizon for the quiet series too.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Coverage:
    """Counts of replayed crossings by where they fell against [lower, upper]."""

    crossings: int
    foreseen: int
    inside: int
    early: int
    late: int

    @property
    def rate(self) -> float | None:
        """inside / foreseen; None when nothing was foreseen."""
        return self.inside / self.foreseen if self.foreseen else None

    @property
    def all_rate(self) -> float | None:
        """inside / crossings; None without crossings."""
        return self.inside / self.crossings if self.crossings else None

    def public(self) -> dict[str, int | float | None]:
        """For JSON."""
        return {"crossings": self.crossings, "foreseen": self.foreseen, "inside": self.inside,
                "early": self.early, "late": self.late,
                "rate": None if self.rate is None else round(self.rate, 4),
                "all_rate": None if self.all_rate is None else round(self.all_rate, 4)}


NONE = Coverage(0, 0, 0, 0, 0)


def coverage_of(until_crossing: FloatArray, lower: FloatArray, upper: FloatArray,
                horizon: float) -> Coverage:
    """Score forecasts against the seconds from each forecast to the real crossing
    (``until_crossing``: inf or NaN when there was none within the horizon)."""
    crossed = np.isfinite(until_crossing) & (until_crossing <= horizon)
    foreseen = crossed & (lower <= horizon)
    early = foreseen & (until_crossing < lower)
    late = foreseen & (until_crossing > upper)
    return Coverage(crossings=int(crossed.sum()), foreseen=int(foreseen.sum()),
                    inside=int((foreseen & ~early & ~late).sum()), early=int(early.sum()),
                    late=int(late.sum()))


def pooled(parts: Iterable[Coverage]) -> Coverage:
    """The counts of several replays added up."""
    total = NONE
    for part in parts:
        total = Coverage(total.crossings + part.crossings, total.foreseen + part.foreseen,
                         total.inside + part.inside, total.early + part.early,
                         total.late + part.late)
    return total


def describe(result: Coverage, stated: float) -> str:
    """One paragraph for a terminal."""
    if result.crossings == 0:
        return "coverage: no crossing of the threshold in the replayed history"
    if result.rate is None:
        return (f"coverage: {result.crossings} forecasts were followed by a crossing; "
                "none of them had foreseen it (lower beyond the horizon)")
    all_rate = result.all_rate or 0.0
    return (f"coverage: {result.inside} of {result.foreseen} foreseen crossings fell inside "
            f"[lower, upper] ({100 * result.rate:.0f} %, stated {100 * stated:.0f} %); "
            f"{result.early} came earlier, {result.late} later; "
            f"{result.crossings - result.foreseen} of {result.crossings} crossings were not "
            f"foreseen ({100 * all_rate:.0f} % of all crossings inside)")
