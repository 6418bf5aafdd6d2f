"""Blind spots found during a fault: a flow (a user journey) broke, yet no alert fired for
any service it touches nor for the fault's root cause, so no one would have heard of it.

``FlowWatch`` asks Prometheus which flows fail (``monitoriza_flow_success == 0``) on each
round of the drill's observation; ``find`` is pure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import requests

from monitoriza.drill.model import Experiment

TIMEOUT_SECONDS = 2.0
FAILING_FLOWS = "monitoriza_flow_success == 0"


class FlowWatch:
    """The first moment each flow was seen failing."""

    def __init__(self, prometheus: str, session: requests.Session | None = None) -> None:
        self.url = f"{prometheus}/api/v1/query"
        self.session = session or requests.Session()
        self.failed_at: dict[str, float] = {}

    def poll(self, now: float) -> None:
        """One query; a failed query is skipped (the next round asks again)."""
        try:
            response = self.session.get(self.url, params={"query": FAILING_FLOWS},
                                        timeout=TIMEOUT_SECONDS)
            response.raise_for_status()
            samples = response.json()["data"]["result"]
        except (requests.RequestException, ValueError, KeyError):
            return
        for sample in samples:
            flow = sample.get("metric", {}).get("flow")
            if flow:
                self.failed_at.setdefault(str(flow), now)


def find(experiment: Experiment, failed_at: Mapping[str, float],
         flow_services: Mapping[str, Sequence[str]], timeline: Any, *,
         injected_at: float) -> list[dict[str, Any]]:
    """The flows that failed after the fault while no alert of theirs (or of the root cause)
    fired at all during the watch."""
    spots = []
    for flow, moment in sorted(failed_at.items()):
        if moment < injected_at:
            continue
        services = list(flow_services.get(flow, ()))
        heard = {track.service for track in timeline.alerts.values()
                  if track.firing_seen_at is not None}
        if heard & {*services, experiment.root_cause}:
            continue
        names = ", ".join(services) or "its services"
        spots.append({"flow": flow, "key": experiment.key,
                      "failed_after_seconds": round(moment - injected_at, 3),
                      "services": services,
                      "detail": f"flow {flow} failed {moment - injected_at:.1f}s after the "
                                f"fault, but no alert fired for {names} or for the root "
                                f"cause {experiment.root_cause}"})
    return spots
