"""Healing state as metrics, read from the store at scrape time (right on every replica)."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Engine

from monitoriza.config.schema import Healing
from monitoriza.healing import repository
from monitoriza.healing.alert_poster import PostStats
from monitoriza.healing.breaker import STATES, BreakerState, parse_breaker_key
from monitoriza.healing.budget import BudgetState, parse_budget_key, remaining
from monitoriza.healing.chat import ChatStats
from monitoriza.healing.memory import Outcomes, success_ratio
from monitoriza.healing.sites import DEFAULT_SITE
from monitoriza.store import reading

INCIDENT_STATES = ("open", "healing", "resolved")


class HealingCollector(Collector):
    def __init__(self, engine: Engine, settings: Healing,
                 chat_stats: Callable[[], ChatStats],
                 escalation_stats: Callable[[], PostStats] | None = None,
                 notice_stats: Callable[[], PostStats] | None = None, *,
                 default_site: str = DEFAULT_SITE) -> None:
        """``default_site`` names the site of state kept without one (``site`` label)."""
        self.engine = engine
        self.default_site = default_site
        self.settings = settings
        self.chat_stats = chat_stats
        self.escalation_stats = escalation_stats or PostStats
        self.notice_stats = notice_stats or PostStats

    def collect(self) -> Iterator[Metric]:
        now = time.time()
        with reading(self.engine) as conn:
            breakers = repository.all_states(conn, "breaker:")
            budgets = repository.all_states(conn, "budget:")
            learned = repository.all_memory(conn, self.default_site)
            incident_counts = repository.incident_counts(conn)
        # Each site has its own breakers and budgets: the site is a label of both.
        playbooks_by_target: dict[tuple[str, str], set[str]] = defaultdict(set)
        state = GaugeMetricFamily("monitoriza_healing_breaker_state",
                                  "1 for the breaker's current state (closed, open, half_open)",
                                  labels=["service", "action", "site", "state"])
        for key, value in sorted(breakers.items()):
            service, playbook, keyed = parse_breaker_key(key)
            site = keyed or self.default_site
            playbooks_by_target[(site, service)].add(playbook)
            current = BreakerState.from_dict(value).state
            for name in STATES:
                state.add_metric([service, playbook, site, name],
                                 1.0 if name == current else 0.0)
        yield state
        # Every state always, so that a dashboard shows 0 rather than "no data".
        incidents = GaugeMetricFamily("monitoriza_incidents", "Incidents by state",
                                      labels=["state"])
        for incident_state in INCIDENT_STATES:
            incidents.add_metric([incident_state],
                                 float(incident_counts.get(incident_state, 0)))
        yield incidents
        budget = GaugeMetricFamily(
            "monitoriza_healing_budget_remaining",
            "Restarts the target may still get in the current budget window",
            labels=["service", "action", "site"])
        for key, value in sorted(budgets.items()):
            service, keyed = parse_budget_key(key)
            site = keyed or self.default_site
            left = remaining(BudgetState.from_dict(value), now, self.settings.budget)
            for playbook in sorted(playbooks_by_target.get((site, service), {"*"})):
                budget.add_metric([service, playbook, site], float(left))
        yield budget
        totals: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0, 0])
        for row in learned:
            total = totals[(row["service"], row["action"], row["site"])]
            total[0] += row["successes"]
            total[1] += row["failures"]
        ratio = GaugeMetricFamily(
            "monitoriza_healing_success_ratio",
            "What operational memory has learned at the site: posterior mean success of the "
            "action", labels=["service", "action", "site"])
        for (service, action, site), (ok, failed) in sorted(totals.items()):
            ratio.add_metric([service, action, site], success_ratio(Outcomes(ok, failed)))
        yield ratio
        stats = self.chat_stats()
        chat = CounterMetricFamily("monitoriza_chat_messages", "Chat messages by what became of "
                                   "them", labels=["result"])
        for result, count in (("sent", stats.sent), ("failed", stats.failed),
                              ("dropped_rate_limited", stats.dropped_rate_limited),
                              ("dropped_queue_full", stats.dropped_queue_full)):
            chat.add_metric([result], float(count))
        yield chat
        escalated = self.escalation_stats()
        escalations = CounterMetricFamily(
            "monitoriza_healing_escalations", "Refusals escalated to Alertmanager as "
            "MonitorizaHealingRefused, by what became of them", labels=["result"])
        for result, count in (("sent", escalated.sent), ("failed", escalated.failed),
                              ("dropped_queue_full", escalated.dropped_queue_full)):
            escalations.add_metric([result], float(count))
        yield escalations
        noticed = self.notice_stats()
        notices = CounterMetricFamily(
            "monitoriza_healing_notices", "Batches of incident notices (MonitorizaIncident) "
            "posted to Alertmanager, by what became of them", labels=["result"])
        for result, count in (("sent", noticed.sent), ("failed", noticed.failed),
                              ("dropped_queue_full", noticed.dropped_queue_full)):
            notices.add_metric([result], float(count))
        yield notices
