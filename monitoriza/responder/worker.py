"""The journal worker: claims rows with a lease and processes each exactly once."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError

from monitoriza.responder.journal import Journal, JournalRow
from monitoriza.responder.processing import Processor
from monitoriza.store import writing

log = logging.getLogger(__name__)


def worker_id() -> str:
    """Unique per worker: host, process and a random part (PIDs are reused after a crash)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class JournalWorker:
    """Claims pending journal rows and runs the processor on each, in its own transaction."""

    def __init__(self, journal: Journal, processor: Processor, *, lease: float,
                 batch: int = 20, idle_sleep: float = 0.2,
                 on_processed: Callable[[JournalRow, str], None] | None = None,
                 after_batch: Callable[[], None] | None = None) -> None:
        self.journal = journal
        self.processor = processor
        self.lease = lease
        self.batch = batch
        self.idle_sleep = idle_sleep
        self.owner = worker_id()
        self._on_processed = on_processed
        self._after_batch = after_batch
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> int:
        """Claim one batch and process it; return how many rows were processed."""
        rows = self.journal.claim(self.owner, self.lease, self.batch)
        done = self._process(rows) if rows else []
        if self._after_batch is not None:
            self._after_batch()
        for row, outcome in done:
            if self._on_processed is not None:
                self._on_processed(row, outcome)
        return len(done)

    def _process(self, rows: list[JournalRow]) -> list[tuple[JournalRow, str]]:
        """Process a claimed batch in one transaction: one commit (and fsync) per batch.

        Completing a row first makes the transaction hold it: a row whose lease was lost to
        another worker is skipped, and nothing of it is committed. If processing one row
        fails, the batch is rolled back and retried one row at a time, so that one bad row
        cannot hold up the others.
        """
        try:
            with writing(self.journal.engine) as conn:
                return [(row, outcome) for row in rows
                        if (outcome := self._process_row(conn, row)) is not None]
        except DBAPIError:
            raise
        except Exception:
            if len(rows) == 1:
                raise
            log.exception("processing a batch failed; retrying its rows one by one")
        done = []
        for row in rows:
            try:
                done += self._process([row])
            except Exception:
                log.exception("journal row %d failed; it stays leased and is retried", row.id)
        return done

    def _process_row(self, conn: Connection, row: JournalRow) -> str | None:
        if not Journal.complete(conn, row, self.owner, "processing"):
            log.warning("lease on journal row %d lost; another worker has it", row.id)
            return None
        outcome = self.processor(conn, row)
        Journal.complete_outcome(conn, row, outcome)
        return outcome

    def wake(self) -> None:
        """New rows were journaled: look now instead of after the idle sleep."""
        self._wake.set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="journal-worker", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                processed = self.run_once()
            except DBAPIError:
                log.exception("journal worker: store unavailable, retrying")
                processed = 0
                time.sleep(1.0)
            except Exception:  # a bug must not stop the worker; the row stays leased
                log.exception("journal worker: processing failed")
                processed = 0
                time.sleep(1.0)
            if processed == 0:
                self._wake.wait(self.idle_sleep)
                self._wake.clear()
