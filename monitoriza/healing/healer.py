"""The healer: runs queued playbooks at most once, behind the policy's safety layers.

For each queued action the healer, in one write transaction, reads the facts (kill switch,
maintenance, budget, breaker, what else is running), asks the policy, and either records the
refusal or marks the action running and spends a budget slot. Only after that commit does it
touch the world (a restart, a command, an HTTP call), then verifies, rolls back on failure,
and records the outcome in a second transaction. A healer that dies mid-action leaves the
action "running": whoever finds it after the lease expires records it as interrupted and does
not run it again, because running a restart twice is worse than reporting it once.

Replicas on one PostgreSQL store share the queue. The lease is ``responder.lease``, and the
healer renews it while an action runs, so a long action is never taken for a dead one, while a
replica that really died is found out one lease later. Before it acts, a healer checks, with
the action's row locked, that its claim is still its own: a claim that expired while it was
busy with another action belongs to whoever took it over. Policy decisions are serialised
cluster-wide (an advisory transaction lock on PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite), so
budget, breaker, concurrency and blast-radius checks see each other's results: exactly one
replica gets a half-open trial, and no two spend the same budget slot.

The healer orchestrates; it decides nothing itself. The policy (:mod:`monitoriza.healing.policy`)
judges every action from the facts gathered here (whether the incident still fires, whether
the alert is still of its root cause, whether the allow-lists refuse a step, and the safety
state); the queue's SQL lives in :mod:`monitoriza.healing.repository`; verify
(:mod:`monitoriza.healing.verify`) waits the playbook's settle time, once. Time comes from the
injected ``clock``, ``monotonic`` and ``sleep``, so tests drive it with a fake clock.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from monitoriza.audit.appender import AuditAppender
from monitoriza.config.schema import Config, Playbook
from monitoriza.healing import repository
from monitoriza.healing.actions import ActionContext, ActionRefused, ActionResult, ActionRunner
from monitoriza.healing.breaker import acquire as breaker_acquire
from monitoriza.healing.breaker import breaker_key, log_transition
from monitoriza.healing.breaker import record as breaker_record
from monitoriza.healing.breaker import release as breaker_release
from monitoriza.healing.budget import budget_key, record_attempt
from monitoriza.healing.budget import check as budget_check
from monitoriza.healing.correlation import AlertEvent, is_symptom
from monitoriza.healing.estates import Estates
from monitoriza.healing.policy import Decision, Facts, decide, in_maintenance
from monitoriza.healing.sites import DEFAULT_SITE, stored_site
from monitoriza.healing.verify import verify
from monitoriza.logs import bound_incident, get_logger
from monitoriza.pipeline import worker_id
from monitoriza.store import reading, writing

log = logging.getLogger(__name__)
events = get_logger(__name__)

__all__ = ["KILL_SWITCH_SETTING", "ActionJob", "HealOutcome", "Healer", "Listener",
           "breaker_key", "budget_key"]

KILL_SWITCH_SETTING = "kill_switch"
INTERRUPTED = "interrupted: the healer stopped while running it; not repeated"
# The check name of a decision not to touch an action whose claim another healer took over.
LEASE_LOST = "lease"


@dataclass(frozen=True, slots=True)
class ActionJob:
    id: int
    incident_id: int
    service: str
    playbook: str
    alert: dict[str, Any]
    site: str = DEFAULT_SITE  # the target's site: its budget, breaker and blast radius


@dataclass(frozen=True, slots=True)
class HealOutcome:
    """What happened to one queued action, for metrics and chat."""

    job: ActionJob
    outcome: str  # success, failure, dry_run, blocked, skipped
    reason: str
    check: str = ""  # the policy check that refused it (blocked, dry_run, skipped); "" if it ran


Listener = Callable[[HealOutcome], None]


def _event(job: ActionJob) -> AlertEvent:
    """The alert the action was queued for. A row written by hand or by an older release may
    lack fields: then it counts as an alert of the action's own target, as it was queued."""
    try:
        return repository.queued_event(job.alert)
    except (KeyError, TypeError, ValueError):
        labels = job.alert.get("labels")
        return AlertEvent(fingerprint="", starts_at=0.0, status="firing",
                          alertname=str(job.alert.get("alertname", "")), service=job.service,
                          severity=None, labels=labels if isinstance(labels, dict) else {},
                          received_at=0.0)


def _context(job: ActionJob) -> ActionContext:
    """What the action's placeholders may use: the alert it was queued for."""
    return ActionContext(job.service, str(job.alert.get("alertname", "")),
                         dict(job.alert.get("labels", {})))


class Healer:
    """Claims queued actions and carries each through policy, action, verify and record."""

    def __init__(self, engine: Engine, config: Config, audit: AuditAppender, *,
                 runner: ActionRunner | None = None, lease: float | None = None,
                 listeners: list[Listener] | None = None,
                 clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        """``clock`` is the wall time recorded and compared with stored times; ``monotonic``
        and ``sleep`` time the verify step (its settle and retries)."""
        self.engine = engine
        self.config = config
        self.audit = audit
        self.settings = config.responder.healing
        self.estates = Estates(config)
        self.runner = runner or ActionRunner(self.settings.allowed_commands,
                                             [str(url) for url in self.settings.allowed_urls],
                                             config.exporter.docker_url)
        self.lease = config.responder.lease if lease is None else lease
        self.listeners = listeners or []
        self.clock = clock
        self.monotonic = monotonic
        self.sleep = sleep
        self.owner = worker_id()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    # -- the kill switch ---------------------------------------------------------------------

    def kill_switch_on(self, conn: Any) -> bool:
        """On when the kill-switch file exists or the API turned it on (checked per action)."""
        if Path(self.settings.kill_switch_file).exists():
            return True
        return repository.get_setting(conn, KILL_SWITCH_SETTING) == "on"

    # -- the loop ----------------------------------------------------------------------------

    def run_once(self) -> int:
        jobs = self._claim()
        for job in jobs:
            self.execute(job)
        return len(jobs)

    def _claim(self) -> list[ActionJob]:
        """Record the interrupted actions, then lease the claimable ones.

        Looked for first without a lock: the healer is woken after every processed batch and
        mostly finds nothing, and a cluster-wide lock taken for nothing would make every
        site's processing wait for it (PostgreSQL queues new shared requests behind it).
        """
        now = self.clock()
        with reading(self.engine) as conn:
            interrupted, claimable = repository.claimable(conn, now)
        if interrupted:
            self._record_interrupted(now)
        if not claimable:
            return []
        with writing(self.engine, serialized=False) as conn:  # SKIP LOCKED: safe side by side
            rows = repository.claim_actions(conn, self.owner, now, self.lease)
        return [ActionJob(r.id, r.incident_id, r.service, r.playbook, json.loads(r.alert),
                          stored_site(r.site, self.estates.default_site))
                for r in rows]

    def _record_interrupted(self, now: float) -> None:
        """Interrupted actions (running, lease expired) are never run again: recorded, under
        the cluster lock, since their breakers may be any site's."""
        with writing(self.engine) as conn:
            for row in repository.take_interrupted(conn, now, INTERRUPTED):
                # Counted as the failure it is recorded as: above all, a half-open trial that
                # died with its healer must not leave the breaker waiting for it forever.
                site = stored_site(row.site, self.estates.default_site)
                key = breaker_key(row.service, row.playbook, self.estates.key_site(site))
                breaker = repository.load_breaker(conn, key, self.settings.breaker)
                after = breaker_record(breaker, False, now, self.settings.breaker)
                repository.save_state(conn, key, after.to_dict())
                log_transition(row.service, row.playbook, breaker, after,
                               incident=row.incident_id, site=site)
                self.audit.append(conn, "action.interrupted", {
                    "action": row.id, "incident": row.incident_id, "service": row.service,
                    "playbook": row.playbook, "site": site,
                    "reason": "the healer stopped mid-action; it is not run twice"})

    def playbook(self, job: ActionJob) -> Playbook | None:
        """The job's playbook as its site has it (the site's steps, if it changes them)."""
        service = self.estates.services(job.site).get(job.service)
        return next((b for b in (service.healing if service else []) if b.name == job.playbook),
                    None)

    def execute(self, job: ActionJob) -> HealOutcome:
        # Every line logged while this action is handled (ours, the executors', verify's)
        # carries its incident and action ids.
        with bound_incident(job.incident_id, action=job.id):
            return self._execute(job)

    def _execute(self, job: ActionJob) -> HealOutcome:
        book = self.playbook(job)
        if book is None:
            return self._finish_refused(job, Decision(
                "skipped", f"playbook {job.playbook} is no longer configured", "config"))
        decision, trial = self._authorize(job, book)
        if decision.check == LEASE_LOST:
            # Another healer owns it now and carries it through; nothing to do or record here.
            log.warning("action %d: %s", job.id, decision.reason)
            return HealOutcome(job, "skipped", decision.reason)
        if decision.verdict != "act":
            return self._finish_refused(job, decision, book=book, trial=trial)
        context = _context(job)
        started = self.monotonic()
        events.info("action.started", incident=job.incident_id, action=job.id,
                    service=job.service, playbook=job.playbook, trial=trial,
                    steps=len(book.steps), reason=decision.reason)
        with self._renewing(job):
            results = self._run_steps(book.steps, context)
            ok = all(result.ok for result in results)
            verify_detail = ""
            if ok and book.verify is not None:
                # verify waits the settle time itself: here it would be waited twice.
                probe = self._probe_spec(job.site, job.service, book.verify.probe)
                checked = verify(book.verify, probe, self.config.exporter.prometheus_url,
                                 sleep=self.sleep, clock=self.monotonic)
                ok, verify_detail = checked.ok, checked.detail
            rollback: list[ActionResult] = []
            if not ok and book.rollback:
                rollback = self._run_steps(book.rollback, context)
        outcome = self._finish_ran(job, book, ok, results=results,
                                   verify_detail=verify_detail, rollback=rollback)
        events.info("action.finished", incident=job.incident_id, action=job.id,
                    service=job.service, playbook=job.playbook, outcome=outcome.outcome,
                    duration_seconds=round(self.monotonic() - started, 3),
                    reason=outcome.reason, verify=verify_detail or None,
                    failed_step=next((r.target for r in results if not r.ok), None),
                    rolled_back=bool(rollback))
        return outcome

    def _run_steps(self, steps: list[Any], context: ActionContext) -> list[ActionResult]:
        results = []
        for step in steps:
            result = self.runner.run(step, context)
            results.append(result)
            if not result.ok:
                break  # later steps assume the earlier ones worked
        return results

    def _probe_spec(self, site: str, service: str, probe: str | None) -> Any:
        """The probe that verifies, as ``site`` has it (its own URL, if it changes it)."""
        if probe is None:
            return None
        spec = self.estates.services(site)[service]
        return next((p for p in spec.probes if p.name == probe), None)

    @contextlib.contextmanager
    def _renewing(self, job: ActionJob) -> Iterator[None]:
        """Keep the running action's lease alive while this healer works on it.

        Renewed every third of the lease, so that only a healer that stopped (a crash, a
        kill -9, a lost host) lets it expire, and the action is then recorded as interrupted.
        """
        done = threading.Event()

        def renew() -> None:
            while not done.wait(self.lease / 3):
                try:
                    with writing(self.engine, serialized=False) as conn:  # its own row
                        repository.renew_lease(conn, job.id, self.owner,
                                               self.clock() + self.lease)
                except Exception:  # the store is down: the next renewal may work
                    log.exception("action %d: renewing the lease failed", job.id)

        thread = threading.Thread(target=renew, name=f"healer-lease-{job.id}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join(timeout=30)

    # -- the two transactions ----------------------------------------------------------------

    def _refused_step(self, book: Playbook, context: ActionContext) -> str | None:
        """Why the allow-lists refuse a step of ``book`` for this alert, or None."""
        for step in book.steps:
            try:
                self.runner.check(step, context)
            except ActionRefused as exc:
                return str(exc)
        return None

    def _authorize(self, job: ActionJob, book: Playbook) -> tuple[Decision, bool]:
        """Policy, and if it says act: spend the budget slot and mark the action running."""
        context = _context(job)
        # The site's lock: its budget, breaker and incident, against its own processing; the
        # policy lock: decisions take turns cluster-wide (max_concurrent_actions).
        with writing(self.engine, sites={job.site}) as conn:
            repository.lock_policy(conn)
            now = self.clock()  # after the lock: decisions are ordered as their times are
            if not repository.held_by(conn, job.id, self.owner, "claimed"):
                return Decision("skipped", "the claim expired and another healer took the "
                                "action over", LEASE_LOST), False
            default = self.estates.default_site
            incident = repository.load_incident(conn, job.incident_id, default)
            cause = incident.root_cause if incident is not None else None
            # Budget, breaker, one-per-target and blast radius are each site's own: a
            # restart at one condominium spends nothing of another's.
            keyed = self.estates.key_site(job.site)
            budget_state = repository.load_budget(conn, budget_key(job.service, keyed))
            verdict = budget_check(budget_state, now, self.settings.budget)
            breaker_state = repository.load_breaker(
                conn, breaker_key(job.service, job.playbook, keyed), self.settings.breaker)
            permit, breaker_after = breaker_acquire(breaker_state, now, self.settings.breaker)
            log_transition(job.service, job.playbook, breaker_state, breaker_after,
                           incident=job.incident_id, site=job.site)
            running = repository.running_by_target(conn, default)
            facts = Facts(
                alert_firing=incident is not None and incident.state != "resolved",
                is_symptom=incident is not None and is_symptom(_event(job), incident),
                kill_switch=self.kill_switch_on(conn),
                dry_run=self.settings.dry_run or book.dry_run,
                in_maintenance=in_maintenance(self.settings.maintenance, job.service, now,
                                              site=job.site),
                budget_allowed=verdict.allowed, budget_reason=verdict.reason,
                breaker_allowed=permit.allowed, breaker_reason=permit.reason,
                running_on_target=running.get((job.site, job.service), 0),
                running_total=sum(running.values()),
                max_concurrent=self.settings.max_concurrent_actions,
                recent_targets=repository.services_acted_on_since(
                    conn, now - self.settings.blast_radius_window, job.site, default),
                max_targets_per_minute=self.settings.max_targets_per_minute,
                blast_radius_window=self.settings.blast_radius_window,
                target=job.service,
                root_cause=cause.service if cause is not None else None,
                refused_step=self._refused_step(book, context))
            decision = decide(facts)
            if decision.verdict != "act":
                if permit.trial:
                    released = breaker_release(breaker_after)
                    log_transition(job.service, job.playbook, breaker_after, released,
                                   incident=job.incident_id, site=job.site)
                    breaker_after = released
                repository.save_state(conn, breaker_key(job.service, job.playbook, keyed),
                                      breaker_after.to_dict())
                return decision, permit.trial
            repository.save_state(conn, breaker_key(job.service, job.playbook, keyed),
                                  breaker_after.to_dict())
            repository.save_state(conn, budget_key(job.service, keyed),
                                  record_attempt(budget_state, now,
                                                 self.settings.budget).to_dict())
            repository.start_action(conn, job.id, now, now + self.lease)
            repository.set_incident_state(conn, job.incident_id, "healing", now)
            self.audit.append(conn, "action.started", {
                "action": job.id, "incident": job.incident_id, "service": job.service,
                "playbook": job.playbook, "site": job.site, "trial": permit.trial,
                "steps": [self.runner.describe(step, context) for step in book.steps]})
        return decision, permit.trial

    def _finish_refused(self, job: ActionJob, decision: Decision, *,
                        book: Playbook | None = None, trial: bool = False) -> HealOutcome:
        now = self.clock()
        outcome = decision.verdict if decision.verdict in {"dry_run", "skipped"} else "blocked"
        data: dict[str, Any] = {"action": job.id, "incident": job.incident_id,
                                "service": job.service, "playbook": job.playbook,
                                "site": job.site, "check": decision.check,
                                "reason": decision.reason}
        if outcome == "dry_run" and book is not None:
            context = _context(job)
            data["would_run"] = [self.runner.describe(step, context) for step in book.steps]
        with writing(self.engine, sites={job.site}) as conn:
            repository.finish_action(conn, job.id, outcome, now, decision.reason)
            self.audit.append(conn, f"action.{outcome}", data)
        events.info("healing.refused", incident=job.incident_id, action=job.id,
                    service=job.service, playbook=job.playbook, outcome=outcome,
                    check=decision.check, reason=decision.reason)
        result = HealOutcome(job, outcome, decision.reason, decision.check)
        self._tell(result)
        return result

    def _finish_ran(self, job: ActionJob, book: Playbook, ok: bool, *,
                    results: list[ActionResult], verify_detail: str,
                    rollback: list[ActionResult]) -> HealOutcome:
        now = self.clock()
        outcome = "success" if ok else "failure"
        failed = next((r for r in results if not r.ok), None)
        reason = ("healed" + (f"; {verify_detail}" if verify_detail else "") if ok
                  else failed.detail if failed is not None else f"verify failed: {verify_detail}")
        with writing(self.engine, sites={job.site}) as conn:
            # Recorded as interrupted meanwhile (this healer stalled past its lease): the
            # action did run once, so its real outcome is still recorded, marked late.
            late = not repository.held_by(conn, job.id, self.owner, "running")
            key = breaker_key(job.service, job.playbook, self.estates.key_site(job.site))
            state = repository.load_breaker(conn, key, self.settings.breaker)
            after = breaker_record(state, ok, now, self.settings.breaker)
            repository.save_state(conn, key, after.to_dict())
            log_transition(job.service, job.playbook, state, after, incident=job.incident_id,
                           site=job.site)
            repository.record_outcome(conn, repository.incident_signature(conn, job.incident_id),
                                      job.service, job.playbook, ok, site=job.site)
            repository.finish_action(conn, job.id, outcome, now, reason)
            self.audit.append(conn, f"action.{outcome}", {
                "action": job.id, "incident": job.incident_id, "service": job.service,
                "playbook": job.playbook, "site": job.site, "reason": reason,
                **({"late": True} if late else {}),
                "steps": [{"target": r.target, "ok": r.ok, "detail": r.detail,
                           "duration": round(r.duration, 3)} for r in results],
                "verify": verify_detail or None,
                "rollback": [{"target": r.target, "ok": r.ok, "detail": r.detail}
                             for r in rollback]})
        result = HealOutcome(job, outcome, reason)
        self._tell(result)
        return result

    def _tell(self, outcome: HealOutcome) -> None:
        for listener in self.listeners:
            try:
                listener(outcome)
            except Exception:  # a chat or metrics hiccup must never stop healing
                log.exception("healing listener failed")

    # -- thread ------------------------------------------------------------------------------

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="healer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                done = self.run_once()
            except Exception:
                log.exception("healer: run failed; retrying")
                done = 0
                self._stop.wait(1.0)
            if not done:
                self._wake.wait(0.5)
                self._wake.clear()
