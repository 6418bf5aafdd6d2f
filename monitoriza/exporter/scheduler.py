"""Runs every probe in the background on its own interval and keeps the latest results.

A scrape only reads :meth:`ProbeScheduler.snapshot`, so it never waits on a target. Each probe
runs at most once at a time: when a run is still going at its next due time, that run is
skipped (and counted) instead of piling up threads on a hung target. A watchdog records a
``timeout`` failure as soon as a run passes its deadline, even if the probe's own socket
timeouts fail to fire, and the late result is then discarded.

Flows (``flows:``, docs/flows.md) are jobs too, of kind ``flow``, run the same way.

All scheduling reads an injectable :class:`~monitoriza.exporter.clock.Clock`, so tests move
time by hand; the probes themselves keep real socket deadlines.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import zlib
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from monitoriza.exporter.clock import SYSTEM_CLOCK, Clock
from monitoriza.exporter.probes import create_runner
from monitoriza.exporter.probes.base import Deadline, ProbeOutcome, ProbeRunner
from monitoriza.exporter.state import ProbeJob, ProbeKey, ProbeState, next_state

log = logging.getLogger(__name__)

# A run that overruns its deadline by this much is declared timed out by the watchdog; the
# margin leaves room for the probe's own, more precise, timeout handling.
WATCHDOG_GRACE_SECONDS = 0.25
# The first run of each probe comes within this long of start-up (or a reload), so the first
# scrapes have data; later runs are spread evenly over each probe's whole interval, so that a
# large estate does not probe every target at once and scrapes never meet a burst of work.
MAX_FIRST_RUN_DELAY_SECONDS = 5.0


def phase(key: ProbeKey, span: float) -> float:
    """A stable offset in [0, span) derived from the probe's name, to spread runs out."""
    return (zlib.crc32("/".join(key).encode()) % 1000) / 1000 * span


class ProbeScheduler:
    """Schedules probe runs on a thread pool and keeps the latest state of each probe."""

    def __init__(self, jobs: Iterable[ProbeJob], *, max_workers: int = 32,
                 errors_window: int = 20,
                 # Called with a job's spec, a ProbeBase or a Flow; typed Any so that a
                 # factory for probes only (a test's) still fits.
                 runner_factory: Callable[[Any], ProbeRunner] = create_runner,
                 clock: Clock = SYSTEM_CLOCK) -> None:
        self._runner_factory = runner_factory
        self._clock = clock
        self._errors_window = errors_window
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="probe")
        self._lock = threading.Condition()
        self._jobs: dict[ProbeKey, ProbeJob] = {}
        self._runners: dict[ProbeKey, ProbeRunner] = {}
        self._states: dict[ProbeKey, ProbeState] = {}
        self._in_flight: dict[ProbeKey, int] = {}  # key -> run id
        self._overdue: set[int] = set()  # run ids the watchdog already declared timed out
        self._events: list[tuple[float, int, str, ProbeKey, int]] = []
        self._sequence = itertools.count()
        self._skipped_runs = 0
        self._stopping = False
        self._thread = threading.Thread(target=self._dispatch, name="probe-scheduler",
                                        daemon=True)
        self.replace(jobs)

    # -- public API -------------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def stop(self, wait: bool = True) -> None:
        """Stop scheduling; running probes finish on their own deadlines."""
        with self._lock:
            self._stopping = True
            self._lock.notify_all()
        if self._thread.is_alive():
            self._thread.join()
        self._pool.shutdown(wait=wait, cancel_futures=True)

    def replace(self, jobs: Iterable[ProbeJob]) -> None:
        """Switch to a new set of probes (a config reload), keeping state of unchanged ones."""
        new_jobs = {job.key: job for job in jobs}
        runners = {}
        for key, job in new_jobs.items():
            same = self._jobs.get(key) == job
            runners[key] = self._runners[key] if same else self._runner_factory(job.spec)
        now = self._clock.monotonic()
        with self._lock:
            for key in list(self._states):
                if self._jobs.get(key) != new_jobs.get(key):
                    del self._states[key]
            added = [job for key, job in new_jobs.items() if self._jobs.get(key) != job]
            self._jobs = new_jobs
            self._runners = runners
            for job in added:
                first = now + phase(job.key, min(job.interval, MAX_FIRST_RUN_DELAY_SECONDS))
                self._push(first, "first", job.key, 0)
            self._lock.notify_all()

    def snapshot(self) -> dict[ProbeKey, ProbeState]:
        """The latest state of every probe that has finished at least one run."""
        with self._lock:
            return dict(self._states)

    def jobs(self) -> list[ProbeJob]:
        with self._lock:
            return list(self._jobs.values())

    @property
    def in_flight(self) -> int:
        with self._lock:
            return len(self._in_flight)

    @property
    def skipped_runs(self) -> int:
        """Runs not started because the previous run of the same probe was still going."""
        with self._lock:
            return self._skipped_runs

    # -- internals --------------------------------------------------------------------------

    def _push(self, due: float, kind: str, key: ProbeKey, run_id: int) -> None:
        heapq.heappush(self._events, (due, next(self._sequence), kind, key, run_id))

    def _dispatch(self) -> None:
        with self._lock:
            while not self._stopping:
                now = self._clock.monotonic()
                if not self._events:
                    self._clock.wait(self._lock, None)
                    continue
                due = self._events[0][0]
                if due > now:
                    self._clock.wait(self._lock, due - now)
                    continue
                _, _, kind, key, run_id = heapq.heappop(self._events)
                job = self._jobs.get(key)
                if job is None:
                    continue  # removed by a reload
                if kind in {"first", "run"}:
                    self._on_due(job, due, now, first=kind == "first")
                else:
                    self._on_deadline(job, run_id)

    def _on_due(self, job: ProbeJob, due: float, now: float, first: bool) -> None:
        if first:
            # From here on, run at this probe's own phase of its interval.
            next_due = due + phase(job.key, job.interval)
            if next_due - due < job.interval / 2:
                next_due += job.interval
        else:
            # Keep a fixed cadence, but never schedule into the past after a long stall.
            next_due = due + job.interval
            if next_due <= now:
                next_due = now + job.interval
        self._push(next_due, "run", job.key, 0)
        if job.key in self._in_flight:
            self._skipped_runs += 1
            return
        run_id = next(self._sequence)
        self._in_flight[job.key] = run_id
        self._pool.submit(self._execute, job, self._runners[job.key], run_id)

    def _on_deadline(self, job: ProbeJob, run_id: int) -> None:
        if self._in_flight.get(job.key) != run_id or run_id in self._overdue:
            return
        self._overdue.add(run_id)
        outcome = ProbeOutcome.failed(
            "timeout", f"probe did not finish within its {job.timeout:g}s deadline")
        self._record(job, outcome, job.timeout)

    def _execute(self, job: ProbeJob, runner: ProbeRunner, run_id: int) -> None:
        started = self._clock.monotonic()
        with self._lock:
            self._push(started + job.timeout + WATCHDOG_GRACE_SECONDS, "deadline", job.key,
                       run_id)
            self._lock.notify_all()
        try:
            outcome = runner(Deadline.after(job.timeout))  # real time: probes do real I/O
        except Exception as exc:  # a bug in a probe must not kill the worker or go unseen
            log.exception("probe %s/%s crashed", job.service, job.name)
            outcome = ProbeOutcome.failed("error", f"probe crashed: {exc!r}")
        duration = self._clock.monotonic() - started
        with self._lock:
            if self._in_flight.get(job.key) == run_id:
                del self._in_flight[job.key]
            if run_id in self._overdue:
                self._overdue.discard(run_id)
                return  # the watchdog already recorded this run as a timeout
            if self._jobs.get(job.key) != job:
                return  # the probe was changed or removed by a reload meanwhile
            self._record(job, outcome, duration)

    def _record(self, job: ProbeJob, outcome: ProbeOutcome, duration: float) -> None:
        previous = self._states.get(job.key)
        self._states[job.key] = next_state(previous, job, outcome, duration=duration,
                                           finished_at=self._clock.time(),
                                           window=self._errors_window)
        if not outcome.success:
            log.debug("probe %s/%s failed (%s): %s", job.service, job.name,
                      outcome.failure_reason, outcome.message)

