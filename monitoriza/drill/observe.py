"""Watch the real pipeline during a drill: Prometheus's alerts, Alertmanager's routing and
the responder's incidents, actions and audit entries, polled in one cheap round.

:class:`Watcher` does the HTTP (one :class:`requests.Session`, short timeouts) and hands each
document to a :class:`~monitoriza.drill.timeline.Timeline`, which keeps the first moments a
verdict needs. A source that cannot be polled is recorded in the timeline's ``errors`` and
the round goes on: a drill must not stop watching because one API hiccupped. A round is 3
requests, plus one per open incident of the watched services and one for new audit entries,
so polling every 0.5 s is fine.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import requests

from monitoriza.drill.timeline import Timeline, TimelineDataError
from monitoriza.exceptions import MonitorizaError

__all__ = ["Endpoints", "Timeline", "Unreachable", "Watcher", "preflight"]

TIMEOUT_SECONDS = 2.0
INCIDENT_PAGE = 50
AUDIT_PAGE = 1000
#: An incident opened this long before the watcher started still counts: the responder's
#: clock and this host's may differ a little.
CLOCK_SLACK_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class Endpoints:
    """Base URLs of the pipeline and the responder's bearer token."""

    prometheus: str
    alertmanager: str
    responder: str
    token: str

    def __post_init__(self) -> None:
        for name in ("prometheus", "alertmanager", "responder"):
            url = getattr(self, name)
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"{name} URL must start with http:// or https://: {url!r}")
            object.__setattr__(self, name, url.rstrip("/"))


class Unreachable(MonitorizaError):  # noqa: N818 - the name drill-run.md gives run.py
    """A part of the pipeline the drill must watch does not answer; the message names it."""


class _SourceError(Exception):
    """One source failed this round; the message is what the timeline records."""


def preflight(endpoints: Endpoints, *, session: requests.Session | None = None) -> None:
    """Check that Prometheus and Alertmanager are ready and the responder is ready and takes
    the token; raise :class:`Unreachable` naming every part that is not."""
    http = session or requests.Session()
    problems = [problem for problem in (
        _check(http, "Prometheus", f"{endpoints.prometheus}/-/ready"),
        _check(http, "Alertmanager", f"{endpoints.alertmanager}/-/ready"),
        _check(http, "responder", f"{endpoints.responder}/readyz")
        or _check(http, "responder", f"{endpoints.responder}/api/v1/incidents?limit=1",
                  token=endpoints.token)) if problem]
    if problems:
        raise Unreachable("; ".join(problems))


def _check(http: requests.Session, name: str, url: str, *, token: str | None = None
           ) -> str | None:
    """What is wrong with ``url`` (None: it answered 200)."""
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    try:
        response = http.get(url, headers=headers, timeout=TIMEOUT_SECONDS)
    except requests.RequestException as exc:
        return f"{name} at {url} does not answer: {_short(exc)}"
    if response.status_code in {401, 403} and token is not None:
        return (f"{name} at {url} refused the token (HTTP {response.status_code}): "
                "check responder.token_file")
    if response.status_code != 200:
        return f"{name} at {url} is not ready: HTTP {response.status_code}"
    return None


class Watcher:
    """Polls the pipeline for what happens to ``services`` (the experiment's service, root
    cause and blast radius; an empty set watches everything)."""

    def __init__(self, endpoints: Endpoints, services: set[str], *,
                 session: requests.Session | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.endpoints = endpoints
        self.session = session or requests.Session()
        self.clock = clock
        self._timeline = Timeline(tuple(sorted(services)))
        self._lock = threading.Lock()
        self._started_at: float | None = None
        self._incident_floor: int | None = None  # ids at or below it existed before
        self._audit_cursor: int | None = None
        self._details_at: dict[int, object] = {}  # incident id -> updated_at of the detail

    # -- the round ------------------------------------------------------------------------

    def poll(self) -> None:
        """One round over every source; failures are recorded in the timeline, never raised.
        Call it from one thread at a time; :meth:`timeline` may be called from any."""
        at = self.clock()
        if self._started_at is None:
            self._started_at = at
        with self._lock:
            self._timeline.mark_poll(at)
        self._guarded("prometheus", at, self._poll_prometheus)
        self._guarded("alertmanager", at, self._poll_alertmanager)
        self._guarded("responder", at, self._poll_responder)

    def timeline(self) -> Timeline:
        """A snapshot: later polls do not change it."""
        with self._lock:
            return Timeline.from_data(self._timeline.as_data())

    def _guarded(self, source: str, at: float, step: Callable[[float], None]) -> None:
        try:
            step(at)
        except (requests.RequestException, ValueError, _SourceError) as exc:
            # TimelineDataError and JSON decoding errors are ValueErrors.
            message = str(exc) if isinstance(exc, _SourceError | TimelineDataError) \
                else _short(exc)
            with self._lock:
                self._timeline.record_error(source, message, at)
        except (KeyError, TypeError, AttributeError) as exc:  # an answer of another shape
            message = f"{source}: unexpected answer ({type(exc).__name__}: {exc})"
            with self._lock:
                self._timeline.record_error(source, message, at)

    def _get(self, url: str, *, authorized: bool = False,
             params: Mapping[str, str | int] | None = None) -> Any:
        headers = {"Authorization": f"Bearer {self.endpoints.token}"} if authorized else {}
        response = self.session.get(url, params=params, headers=headers,
                                    timeout=TIMEOUT_SECONDS)
        if response.status_code != 200:
            raise _SourceError(f"GET {url} answered HTTP {response.status_code}")
        return response.json()

    # -- sources --------------------------------------------------------------------------

    def _poll_prometheus(self, at: float) -> None:
        document = self._get(f"{self.endpoints.prometheus}/api/v1/alerts")
        alerts = _dig(document, "data", "alerts", source="Prometheus /api/v1/alerts")
        with self._lock:
            self._timeline.observe_prometheus(alerts, at)

    def _poll_alertmanager(self, at: float) -> None:
        alerts = self._get(f"{self.endpoints.alertmanager}/api/v2/alerts")
        if not isinstance(alerts, list):
            raise _SourceError("Alertmanager /api/v2/alerts: not a list of alerts")
        with self._lock:
            self._timeline.observe_alertmanager(alerts, at)

    def _poll_responder(self, at: float) -> None:
        base = f"{self.endpoints.responder}/api/v1"
        for summary in self._new_incidents(base):
            with self._lock:
                self._timeline.observe_incident(summary)
            incident_id = int(summary["id"])
            known = self._timeline.incidents[incident_id]
            settled = known.state == "resolved" and all(
                action.finished_at is not None for action in known.actions)
            if self._details_at.get(incident_id, ()) == summary.get("updated_at") and settled:
                continue
            detail = self._get(f"{base}/incidents/{incident_id}", authorized=True)
            with self._lock:
                self._timeline.observe_incident(detail)
            self._details_at[incident_id] = detail.get("updated_at")
        self._poll_audit(base)

    def _new_incidents(self, base: str) -> list[Mapping[str, Any]]:
        """Summaries of the watched services' incidents opened since the watcher started,
        paging down (newest first) until an incident that existed before."""
        started = (self._started_at or 0.0) - CLOCK_SLACK_SECONDS
        new: list[Mapping[str, Any]] = []
        newest = 0
        after: int | None = None
        while True:
            params: dict[str, str | int] = {"limit": INCIDENT_PAGE}
            if after is not None:
                params["after"] = after
            page = self._get(f"{base}/incidents", authorized=True, params=params)
            reached_older = False
            for summary in _dig(page, "incidents", source="responder /api/v1/incidents"):
                incident_id = int(summary["id"])
                newest = max(newest, incident_id)
                if self._incident_floor is not None:
                    reached_older = incident_id <= self._incident_floor
                else:  # the first listing: only times can tell
                    reached_older = float(summary["opened_at"]) < started
                if reached_older:
                    break
                new.append(summary)
            after = page.get("next_after")
            if reached_older or after is None:
                break
        if self._incident_floor is None:
            # Ids only grow: from now on, anything above the floor is new.
            self._incident_floor = (min(int(s["id"]) for s in new) - 1) if new else newest
        return [summary for summary in new if self._timeline.tracks_incident(summary)]

    def _poll_audit(self, base: str) -> None:
        if self._audit_cursor is None:
            head = self._get(f"{base}/audit", authorized=True, params={"since": 0, "limit": 1})
            self._audit_cursor = int(_dig(head, "head", "seq", source="responder /api/v1/audit"))
            return
        while True:
            page = self._get(f"{base}/audit", authorized=True,
                             params={"since": self._audit_cursor, "limit": AUDIT_PAGE})
            entries = _dig(page, "entries", source="responder /api/v1/audit")
            with self._lock:
                self._timeline.observe_audit(entries)
            if not entries:
                return
            self._audit_cursor = int(entries[-1]["seq"])
            if len(entries) < AUDIT_PAGE:
                return


def _dig(document: Any, *keys: str, source: str) -> Any:
    for key in keys:
        if not isinstance(document, Mapping) or key not in document:
            raise _SourceError(f"{source}: no {'.'.join(keys)} in the answer")
        document = document[key]
    return document


def _short(exc: Exception) -> str:
    """A network error in one line: requests nests the cause deep inside its message."""
    reason: BaseException = exc
    while reason.__context__ is not None and not isinstance(reason, ConnectionRefusedError):
        reason = reason.__context__
    text = str(reason) or type(reason).__name__
    return f"{type(exc).__name__}: {text}"[:300]
