"""The restore journal: the injections not yet restored, in a file that survives a crash.

A drill adds an injection *before* injecting it (``injected_at`` 0: it may or may not have
taken effect), updates it once done, and removes it once restored. The next drill run
restores whatever is still pending before it does anything else. Every change rewrites the
file atomically (temporary file, fsync, rename, fsync of the directory), so a crash leaves
either the old journal or the new one. A file that cannot be read is an error naming it,
never an empty journal: silently dropping it would leave a fault on the estate.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

from monitoriza.drill.injection import Injection
from monitoriza.exceptions import MonitorizaError

JOURNAL_KIND = "drill-restore-journal"
JOURNAL_VERSION = 1


class RestoreJournalError(MonitorizaError):
    """The restore journal cannot be read or written, or a change to it makes no sense."""


class RestoreJournal:
    """Pending injections by experiment key, kept in ``path`` (absent: none pending)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    def pending(self) -> list[Injection]:
        """The injections not yet restored, in the order they were added."""
        with self._lock:
            return list(self._read().values())

    def add(self, injection: Injection) -> None:
        """Record an injection before it is done; an error if its key is already pending."""
        with self._lock:
            entries = self._read()
            if injection.key in entries:
                raise RestoreJournalError(f"{self.path}: {injection.key} is already pending; "
                                          "restore it before injecting it again")
            entries[injection.key] = injection
            self._write(entries)

    def update(self, injection: Injection) -> None:
        """Replace the pending injection of the same key (e.g. once it took effect)."""
        with self._lock:
            entries = self._read()
            if injection.key not in entries:
                raise RestoreJournalError(f"{self.path}: {injection.key} is not pending; "
                                          "add it before injecting")
            entries[injection.key] = injection
            self._write(entries)

    def remove(self, key: str) -> None:
        """Forget an injection once restored; nothing happens when it is not pending."""
        with self._lock:
            entries = self._read()
            if entries.pop(key, None) is not None:
                self._write(entries)

    def _read(self) -> dict[str, Injection]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        except (OSError, UnicodeDecodeError) as exc:
            raise RestoreJournalError(f"{self.path}: cannot read the restore journal: "
                                      f"{exc}") from None
        try:
            return parse_journal(text)
        except ValueError as exc:
            raise RestoreJournalError(
                f"{self.path}: corrupt restore journal ({exc}); restore by hand what it "
                "lists, then delete it") from None

    def _write(self, entries: dict[str, Injection]) -> None:
        data = {"kind": JOURNAL_KIND, "version": JOURNAL_VERSION,
                "pending": [injection.as_data() for injection in entries.values()]}
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with temporary.open("w", encoding="utf-8") as handle:
                json.dump(data, handle, indent=2, sort_keys=True)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, self.path)
            directory = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(directory)  # the rename itself must survive a power cut
            finally:
                os.close(directory)
        except OSError as exc:
            temporary.unlink(missing_ok=True)
            raise RestoreJournalError(f"{self.path}: cannot write the restore journal: "
                                      f"{exc}") from None


def parse_journal(text: str) -> dict[str, Injection]:
    """The pending injections in a journal's text; ValueError saying what is wrong."""
    data = json.loads(text)  # json.JSONDecodeError is a ValueError
    if not isinstance(data, dict) or data.get("kind") != JOURNAL_KIND:
        raise ValueError(f"not a {JOURNAL_KIND} file")
    if data.get("version") != JOURNAL_VERSION:
        raise ValueError(f"version {data.get('version')!r}, expected {JOURNAL_VERSION}")
    pending = data.get("pending")
    if not isinstance(pending, list):
        raise ValueError("'pending' must be a list")
    entries: dict[str, Injection] = {}
    for index, item in enumerate(pending):
        try:
            injection = Injection.from_data(item)
        except ValueError as exc:
            raise ValueError(f"pending[{index}]: {exc}") from None
        entries[injection.key] = injection
    return entries
