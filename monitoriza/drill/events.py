"""The drill's steps in the responder's audit chain (``POST /api/v1/drills/events``).

Each event has an id made of the drill, the experiment and the step, so a retried post is
recorded once. A post that fails is logged and kept in :attr:`DrillEvents.failures`: the
drill's own results then say which steps the audit chain lacks, rather than stopping a fault
half-way because the audit trail hiccuped.
"""

from __future__ import annotations

import logging
from typing import Any

import requests

from monitoriza.drill.observe import Endpoints

log = logging.getLogger(__name__)

TIMEOUT_SECONDS = 5.0
ATTEMPTS = 3


class DrillEvents:
    """Posts one drill's events to the responder."""

    def __init__(self, endpoints: Endpoints, drill_id: str,
                 session: requests.Session | None = None, site: str | None = None) -> None:
        self.url = f"{endpoints.responder}/api/v1/drills/events"
        self.token = endpoints.token
        self.drill_id = drill_id
        self.site = site  # the estate's own site: its window marks only that site's incidents
        self.session = session or requests.Session()
        self.failures: list[str] = []

    def send(self, event: str, experiment: str, services: list[str],
             detail: dict[str, Any], *, expires_at: float) -> bool:
        body: dict[str, Any] = {
            "event_id": f"{self.drill_id}:{experiment}:{event}", "drill_id": self.drill_id,
            "event": event, "experiment": experiment, "services": services,
            "detail": detail}
        if event == "start":
            body["expires_at"] = expires_at
        if self.site is not None:
            body["site"] = self.site
        problem = ""
        for _ in range(ATTEMPTS):
            try:
                response = self.session.post(
                    self.url, json=body, timeout=TIMEOUT_SECONDS,
                    headers={"Authorization": f"Bearer {self.token}"})
            except requests.RequestException as exc:
                problem = f"{type(exc).__name__}: {exc}"
                continue
            if response.status_code in {200, 201}:
                return True
            problem = f"HTTP {response.status_code}: {response.text[:200]}"
            if response.status_code < 500:
                break  # the same body would be refused again
        message = f"drill.{event} of {experiment} not recorded in the audit chain ({problem})"
        log.warning("%s", message)
        self.failures.append(message)
        return False
