"""When a drill may stop watching, and which services are unhealthy (steady state).

``settled`` is pure: the experiment is settled once every stage the plan expects has been
seen on time, or the latest deadline still open has passed. ``unhealthy_services`` asks
Prometheus which services have a failing probe (the exporter's ``monitoriza_probe_success``)
and the responder whether healing is switched off.
"""

from __future__ import annotations

from typing import Any

import requests

from monitoriza.drill.model import Experiment
from monitoriza.drill.observe import Endpoints
from monitoriza.drill.verdict import judge

TIMEOUT_SECONDS = 3.0
#: Stages measured after the observation (release, recovery, canaries): not waited for here.
LATER_STAGES = frozenset({"recover", "canary"})
SETTLED_OUTCOMES = frozenset({"on_time", "skipped"})
GRACE_SECONDS = 1.0


def settled(experiment: Experiment, timeline: Any, *, injected_at: float, now: float,
            scrape_interval: float = 0.0) -> bool:
    """Every stage is seen on time or past its deadline (stages without one do not hold the
    drill)."""
    result = judge(experiment, timeline, injected_at=injected_at, released_at=None,
                   canary=None, scrape_interval=scrape_interval).as_data()
    elapsed = now - injected_at
    for stage in result["stages"]:
        if stage["stage"] in LATER_STAGES or stage["outcome"] in SETTLED_OUTCOMES:
            continue
        deadline = stage.get("deadline")
        if deadline is not None and elapsed <= float(deadline) + GRACE_SECONDS:
            return False
    return True


def failing(samples: list[dict[str, Any]]) -> set[str]:
    """Services with at least one probe whose last run failed, from an instant query of
    ``min by (service) (monitoriza_probe_success)``."""
    return {str(s["metric"].get("service")) for s in samples
            if float(s["value"][1]) < 1 and s["metric"].get("service")}


def unhealthy_services(endpoints: Endpoints, services: set[str], ignore: set[str]) -> str:
    """What is wrong outside ``ignore`` ("" when nothing): failing services, healing switched
    off, or a part that cannot be asked."""
    try:
        response = requests.get(f"{endpoints.prometheus}/api/v1/query",
                                params={"query": "min by (service) (monitoriza_probe_success)"},
                                timeout=TIMEOUT_SECONDS)
        response.raise_for_status()
        bad = failing(response.json()["data"]["result"]) & (services - ignore)
        switch = requests.get(f"{endpoints.responder}/api/v1/kill-switch",
                              headers={"Authorization": f"Bearer {endpoints.token}"},
                              timeout=TIMEOUT_SECONDS)
        switch.raise_for_status()
        killed = bool(switch.json().get("enabled"))
    except (requests.RequestException, ValueError, KeyError) as exc:
        return f"cannot check the steady state: {type(exc).__name__}: {exc}"
    problems = []
    if bad:
        problems.append("failing probes: " + ", ".join(sorted(bad)))
    if killed:
        problems.append("the responder's kill switch is on: healing is off")
    return "; ".join(problems)
