"""Alerts the responder raises in Alertmanager (``POST /api/v2/alerts``), posted from a daemon
thread behind a bounded queue, so an Alertmanager outage never blocks the journal worker or
the healer. What becomes of each batch is counted, never raised: the counts are exported
(``monitoriza_healing_escalations_total``, ``monitoriza_healing_notices_total``), because a
post that fails silently is a page or a team notice nobody gets."""

from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass, replace

import requests

log = logging.getLogger(__name__)

QUEUE_SIZE = 1000


@dataclass(frozen=True)
class PostStats:
    """What became of the batches queued so far (each counted once)."""

    sent: int = 0  # Alertmanager accepted it
    failed: int = 0  # Alertmanager unreachable or refused it
    dropped_queue_full: int = 0  # queued faster than Alertmanager took them


class AlertPoster:
    """Posts batches of alerts to one Alertmanager; does nothing without a URL."""

    def __init__(self, alertmanager_url: str | None, name: str, timeout: float = 5.0) -> None:
        self.url = alertmanager_url.rstrip("/") if alertmanager_url else None
        self.name = name  # for the log and the thread: "escalations", "incident notices"
        self.timeout = timeout
        self._stats = PostStats()
        self._lock = threading.Lock()  # callers and the sending thread both count
        self._queue: queue.Queue[list[dict[str, object]]] = queue.Queue(maxsize=QUEUE_SIZE)
        if self.url is not None:
            threading.Thread(target=self._run, name=name, daemon=True).start()

    def stats(self) -> PostStats:
        with self._lock:
            return self._stats

    def post(self, alerts: list[dict[str, object]]) -> None:
        if self.url is None or not alerts:
            return
        try:
            self._queue.put_nowait(alerts)
        except queue.Full:
            self._count("dropped_queue_full")
            log.warning("%s: queue full; dropped %d alert(s)", self.name, len(alerts))

    def _count(self, result: str) -> None:
        with self._lock:
            self._stats = replace(self._stats, **{result: getattr(self._stats, result) + 1})

    def _run(self) -> None:
        session = requests.Session()
        while True:
            alerts = self._queue.get()
            try:
                session.post(f"{self.url}/api/v2/alerts", json=alerts,
                             timeout=self.timeout).raise_for_status()
                self._count("sent")
            except requests.RequestException:
                log.warning("%s: could not post to Alertmanager at %s", self.name, self.url)
                self._count("failed")
