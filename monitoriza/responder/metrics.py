"""The responder's own metrics, served at /metrics.

Counters live in this process (the responder runs one process with many threads; replicas
are separate scrape targets). Journal depth and the audit chain's length are read from the
store at scrape time, so they are right whichever replica did the work.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from monitoriza import __version__
from monitoriza.responder.journal import Journal
from monitoriza.store import LOCK_HOLDS


class StoreCollector(Collector):
    """Journal depth, the oldest pending alert's age, dead letters, the audit chain length,
    the entries waiting for the sequencer, and how long this process held the store's locks."""

    def __init__(self, journal: Journal, audit_entries: Callable[[], int],
                 audit_pending: Callable[[], tuple[int, float | None]] | None = None) -> None:
        self._journal = journal
        self._audit_entries = audit_entries
        self._audit_pending = audit_pending

    def collect(self) -> Iterator[Metric]:
        depth, oldest = self._journal.depth()
        yield GaugeMetricFamily("monitoriza_responder_journal_depth",
                                "Journaled alerts not yet processed", value=depth)
        yield GaugeMetricFamily(
            "monitoriza_responder_journal_oldest_pending_age_seconds",
            "Age of the oldest journaled alert not yet processed (0 when none)",
            value=0.0 if oldest is None else max(0.0, time.time() - oldest))
        yield GaugeMetricFamily(
            "monitoriza_responder_journal_dead_letters",
            "Journaled alerts given up after failing every attempt, until replayed",
            value=self._journal.dead_letter_count())
        yield GaugeMetricFamily("monitoriza_audit_entries",
                                "Length of the audit chain (it only grows)",
                                value=self._audit_entries())
        if self._audit_pending is not None:
            waiting, oldest = self._audit_pending()
            yield GaugeMetricFamily(
                "monitoriza_audit_pending_entries",
                "Audit entries committed by processing, waiting for the sequencer",
                value=waiting)
            yield GaugeMetricFamily(
                "monitoriza_audit_pending_oldest_age_seconds",
                "Age of the oldest audit entry waiting for the sequencer (0 when none)",
                value=0.0 if oldest is None else max(0.0, time.time() - oldest))
        held = LOCK_HOLDS.snapshot()
        seconds = CounterMetricFamily(
            "monitoriza_store_lock_hold_seconds",
            "Time this process held a store lock, by lock (cluster: every writer waits; "
            "site: writers of the same site wait; chain: the audit sequencer)", labels=["lock"])
        times = CounterMetricFamily("monitoriza_store_lock_holds",
                                    "Transactions of this process that held a store lock",
                                    labels=["lock"])
        for lock, (count, total) in sorted(held.items()):
            seconds.add_metric([lock], total)
            times.add_metric([lock], count)
        yield seconds
        yield times


class ResponderMetrics:
    """Every metric of one responder process, in its own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("monitoriza_responder_requests", "HTTP requests answered",
                                ["endpoint", "status"], registry=self.registry)
        self.intake_duration = Histogram(
            "monitoriza_responder_intake_duration_seconds",
            "Time from receiving a notification to acknowledging it (journal commit included)",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=self.registry)
        self.alerts_received = Counter("monitoriza_responder_alerts_received",
                                       "Alerts in accepted notifications", registry=self.registry)
        self.duplicates = Counter(
            "monitoriza_responder_duplicate_alerts",
            "Alerts already journaled (repeats, retries, HA duplicates)", registry=self.registry)
        self.truncated = Counter(
            "monitoriza_responder_truncated_alerts",
            "Alerts Alertmanager left out of notifications (truncatedAlerts)",
            registry=self.registry)
        self.processed = Counter("monitoriza_responder_alerts_processed",
                                 "Journaled alerts processed, by outcome", ["outcome"],
                                 registry=self.registry)
        self.dead_letters = Counter(
            "monitoriza_responder_journal_dead_letters",
            "Journal rows dead-lettered by this process, by reason (the error's class)",
            ["reason"], registry=self.registry)
        self.verify_success = Gauge("monitoriza_audit_last_verify_success",
                                    "1 when the last audit chain verification passed",
                                    registry=self.registry)
        self.verify_time = Gauge("monitoriza_audit_last_verify_timestamp_seconds",
                                 "When the audit chain was last verified",
                                 registry=self.registry)
        Info("monitoriza_responder_build", "Monitoriza version", registry=self.registry).info(
            {"version": __version__})

        self.console_logins = Counter(
            "monitoriza_console_logins", "Console logins, by result (success, failure)",
            ["result"], registry=self.registry)
        self.healing_actions = Counter(
            "monitoriza_healing_actions", "Healing actions by outcome",
            ["service", "action", "outcome"], registry=self.registry)

    def watch_store(self, journal: Journal, audit_entries: Callable[[], int],
                    audit_pending: Callable[[], tuple[int, float | None]] | None = None
                    ) -> None:
        self.registry.register(StoreCollector(journal, audit_entries, audit_pending))

    def watch_healing(self, collector: Collector) -> None:
        self.registry.register(collector)
