"""Re-verifies the audit chain now and then, and publishes the result as metrics."""

from __future__ import annotations

import logging
import threading
import time

from monitoriza.audit.chain import VerifyResult
from monitoriza.audit.log import AuditLog
from monitoriza.responder.metrics import ResponderMetrics

log = logging.getLogger(__name__)


class AuditVerifier:
    """Verifies the audit chain now and then, and publishes the result as metrics."""

    def __init__(self, audit: AuditLog, metrics: ResponderMetrics, interval: float) -> None:
        self.audit = audit
        self.metrics = metrics
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # The latest verification and when it ran, for the console (the metrics carry only
        # the outcome, not why it failed).
        self.last: VerifyResult | None = None
        self.last_at: float | None = None

    def verify(self) -> bool:
        result = self.audit.verify()
        if not result.ok:
            log.error("audit chain verification failed: %s", result.reason)
        self.last, self.last_at = result, time.time()
        self.metrics.verify_success.set(1 if result.ok else 0)
        self.metrics.verify_time.set_to_current_time()
        return result.ok

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="audit-verifier", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the loop and wait for a verification under way (up to ``timeout``)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        while True:
            try:
                self.verify()
            except Exception:  # the store may be briefly unavailable; try again later
                log.exception("audit verification could not run")
            if self._stop.wait(self.interval):
                return
