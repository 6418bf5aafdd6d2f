"""What the healing page shows, read from the store with the healer's own functions.

Breakers and budgets are the states the healer keeps in the store (:mod:`monitoriza.healing.
breaker`, :mod:`monitoriza.healing.budget`), judged here by the same pure functions the healer
uses (``remaining``, ``check``); operational memory is ranked by :func:`monitoriza.healing.
memory.rank`, as the journal step ranks candidate playbooks. Nothing is re-derived: a page that
disagreed with the healer would be worse than no page. :func:`read_healing` does the reading;
the rest is pure, and takes the time as a plain float.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, select

from monitoriza.config.schema import Config, Healing, MaintenanceWindow
from monitoriza.healing import repository
from monitoriza.healing.breaker import BREAKER_KEY_PREFIX, BreakerState, breaker_key
from monitoriza.healing.budget import BUDGET_KEY_PREFIX, BudgetState, budget_key, remaining
from monitoriza.healing.budget import check as budget_check
from monitoriza.healing.healer import KILL_SWITCH_SETTING
from monitoriza.healing.kill_switch import AUDIT_KIND
from monitoriza.healing.memory import (
    Outcomes,
    demoted,
    lower_bound,
    rank,
    success_ratio,
    with_pooled,
)
from monitoriza.healing.policy import in_maintenance
from monitoriza.store import audit


@dataclass(frozen=True, slots=True)
class BreakerRow:
    service: str
    action: str
    state: str  # closed, open, half_open
    consecutive_failures: int
    recent_failures: int
    recent: int
    next_trial_at: float | None  # when an open breaker lets its half-open trial through
    trial_in_flight: bool
    stored: bool  # False: never used, shown closed because it is configured


@dataclass(frozen=True, slots=True)
class BudgetRow:
    service: str
    remaining: int
    restarts: int
    allowed_now: bool
    reason: str  # the budget's own verdict, as the healer would give it now
    retry_at: float | None


@dataclass(frozen=True, slots=True)
class MemoryRow:
    site: str
    signature: str
    service: str
    action: str
    rank: int  # 1 is what the healer tries first for this site, signature and service
    successes: int  # at this site
    failures: int
    pooled_successes: int  # at the other sites, counted at pooled_weight in the ranking
    pooled_failures: int
    success_ratio: float  # the ranking's: local and weighted pooled evidence
    lower_bound: float
    demoted: bool


@dataclass(frozen=True, slots=True)
class WindowRow:
    services: tuple[str, ...]  # empty: every service
    start: str
    end: str
    active: bool


@dataclass(frozen=True, slots=True)
class KillSwitch:
    on: bool  # what the healer reads: the file or the stored setting
    by_file: bool
    setting: str | None  # "on", "off", or None when never set
    file: str
    last_change: dict[str, Any] | None  # the latest kill_switch audit entry: seq, ts, data


@dataclass(frozen=True, slots=True)
class HealingView:
    kill_switch: KillSwitch
    dry_run: bool
    dry_run_playbooks: tuple[tuple[str, str], ...]  # (service, playbook) in dry-run
    maintenance: tuple[WindowRow, ...]
    breakers: tuple[BreakerRow, ...]
    budgets: tuple[BudgetRow, ...]
    memory: tuple[MemoryRow, ...]


def configured_playbooks(config: Config) -> list[tuple[str, str]]:
    return [(name, book.name) for name, service in sorted(config.services.items())
            for book in service.healing]


def breaker_rows(stored: Mapping[str, Mapping[str, Any]], playbooks: Sequence[tuple[str, str]],
                 settings: Healing) -> list[BreakerRow]:
    """A row per configured (service, playbook) and per stored breaker, worst first."""
    keys = {breaker_key(service, book): (service, book) for service, book in playbooks}
    for key in stored:
        _, service, book = key.split(":", 2)
        keys.setdefault(key, (service, book))
    rows = []
    for key, (service, book) in keys.items():
        data = stored.get(key)
        state = (BreakerState.initial(settings.breaker) if data is None
                 else BreakerState.from_dict(data))
        next_trial = (None if state.state != "open" or state.opened_at is None
                      else state.opened_at + state.open_for)
        rows.append(BreakerRow(service, book, state.state, state.consecutive_failures,
                               state.recent.count(False), len(state.recent), next_trial,
                               state.trial_in_flight, data is not None))
    order = {"open": 0, "half_open": 1, "closed": 2}
    return sorted(rows, key=lambda row: (order[row.state], row.service, row.action))


def budget_rows(stored: Mapping[str, Mapping[str, Any]], services: Sequence[str],
                settings: Healing, now: float) -> list[BudgetRow]:
    """A row per service that heals and per stored budget, the least budget left first."""
    names = {budget_key(service): service for service in services}
    for key in stored:
        names.setdefault(key, key.removeprefix(BUDGET_KEY_PREFIX))
    rows = []
    for key, service in names.items():
        data = stored.get(key)
        state = BudgetState() if data is None else BudgetState.from_dict(data)
        verdict = budget_check(state, now, settings.budget)
        rows.append(BudgetRow(service, remaining(state, now, settings.budget),
                              settings.budget.restarts, verdict.allowed, verdict.reason,
                              verdict.retry_at))
    return sorted(rows, key=lambda row: (row.remaining, row.service))


def memory_rows(learned: Sequence[Mapping[str, Any]], weight: float) -> list[MemoryRow]:
    """Operational memory ranked per (site, signature, service) as the healer ranks
    candidates: each site's own outcomes, with the other sites' pooled at ``weight``."""
    local: dict[tuple[str, str, str], dict[str, Outcomes]] = defaultdict(dict)
    pooled: dict[tuple[str, str, str], dict[str, Outcomes]] = defaultdict(dict)
    for row in with_pooled(learned, weight):
        key = (str(row["site"]), str(row["signature"]), str(row["service"]))
        action = str(row["action"])
        local[key][action] = Outcomes(int(row["successes"]), int(row["failures"]))
        pooled[key][action] = Outcomes(int(row["pooled_successes"]),
                                       int(row["pooled_failures"]))
    rows = []
    for key, candidates in sorted(local.items(), key=lambda item: (
            item[0][0], item[0][2], item[0][1])):
        site, signature, service = key
        for position, action in enumerate(rank(candidates, pooled[key], weight), start=1):
            mine, away = candidates[action], pooled[key][action]
            rows.append(MemoryRow(site, signature, service, action, position, mine.successes,
                                  mine.failures, away.successes, away.failures,
                                  success_ratio(mine, away, weight),
                                  lower_bound(mine, pooled=away, weight=weight),
                                  demoted(mine, away, weight)))
    return rows


def window_rows(windows: Sequence[MaintenanceWindow], now: float) -> list[WindowRow]:
    """Each maintenance window, and whether the policy counts ``now`` inside it."""
    return [WindowRow(tuple(window.services), window.start, window.end,
                      in_maintenance([window], window.services[0] if window.services else "",
                                     now))
            for window in windows]


def last_kill_switch_change(conn: Connection) -> dict[str, Any] | None:
    row = conn.execute(select(audit.c.seq, audit.c.ts, audit.c.data)
                       .where(audit.c.kind == AUDIT_KIND)
                       .order_by(audit.c.seq.desc()).limit(1)).first()
    if row is None:
        return None
    return {"seq": int(row.seq), "ts": str(row.ts), "data": json.loads(row.data)}


def read_healing(conn: Connection, config: Config, kill_switch_on: bool,
                 now: float) -> HealingView:
    """Everything the healing page shows, in one read transaction ``conn``;
    ``kill_switch_on`` is the healer's own answer (:meth:`Healer.kill_switch_on`)."""
    settings = config.responder.healing
    playbooks = configured_playbooks(config)
    switch = KillSwitch(kill_switch_on, Path(settings.kill_switch_file).exists(),
                        repository.get_setting(conn, KILL_SWITCH_SETTING),
                        settings.kill_switch_file, last_kill_switch_change(conn))
    return HealingView(
        kill_switch=switch, dry_run=settings.dry_run,
        dry_run_playbooks=tuple((service, book.name)
                                for service, spec in sorted(config.services.items())
                                for book in spec.healing if book.dry_run),
        maintenance=tuple(window_rows(settings.maintenance, now)),
        breakers=tuple(breaker_rows(repository.all_states(conn, BREAKER_KEY_PREFIX),
                                    playbooks, settings)),
        budgets=tuple(budget_rows(repository.all_states(conn, BUDGET_KEY_PREFIX),
                                  sorted({service for service, _ in playbooks}), settings,
                                  now)),
        memory=tuple(memory_rows(
            repository.all_memory(conn, config.responder.default_site),
            settings.pooled_memory_weight)))
