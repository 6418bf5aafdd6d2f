"""Persistence canaries: write a value into a store before a fault, read it back after.

A Redis canary is the key ``monitoriza:drill:canary:<uuid>`` (expiring after a day, so one
left behind by a crash goes away); a PostgreSQL canary is a committed row of the table
``monitoriza_drill_canary``. Reading removes the canary. A lost canary comes with advice read
from the server's own settings (Redis ``CONFIG GET appendonly``/``appendfsync``/``save``,
PostgreSQL ``fsync``/``synchronous_commit``). The connections are opened like the probes'
(same URL, ``password_file`` read by the same helper) and closed after each call.

A drill kills processes and containers, not the host: a write that reached the kernel
survives it, so no wait is needed between writing a canary and the fault (Redis writes its
append-only file before it replies, whatever ``appendfsync`` says; ``everysec`` only matters
when the host itself goes down).
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Literal

import psycopg
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from monitoriza.config.schema import PostgresProbe, RedisProbe, Service
from monitoriza.exceptions import MonitorizaError
from monitoriza.exporter.probes.common import read_password, redact

Store = Literal["redis", "postgres"]
Outcome = Literal["survived", "lost", "unreadable"]
StoreProbe = RedisProbe | PostgresProbe

REDIS_PREFIX = "monitoriza:drill:canary:"
REDIS_TTL_SECONDS = 86400
TABLE = "monitoriza_drill_canary"
TIMEOUT_SECONDS = 5.0


class CanaryError(MonitorizaError):
    """A canary could not be written (the store is down, the password file unreadable)."""


@dataclass(frozen=True, slots=True)
class Canary:
    """A value written into a store: the Redis key, or the PostgreSQL row's id."""

    store: Store
    service: str
    key: str
    value: str
    written_at: float

    def as_data(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_data(cls, data: Mapping[str, object]) -> Canary:
        store = data.get("store")
        if store not in ("redis", "postgres"):
            raise ValueError(f"canary store must be redis or postgres, not {store!r}")
        fields = {name: data.get(name) for name in ("service", "key", "value")}
        for name, value in fields.items():
            if not isinstance(value, str) or not value:
                raise ValueError(f"canary field {name!r} must be a non-empty string")
        written_at = data.get("written_at")
        if isinstance(written_at, bool) or not isinstance(written_at, int | float):
            raise ValueError("canary field 'written_at' must be a number")
        return cls(store, str(fields["service"]), str(fields["key"]),
                   str(fields["value"]), float(written_at))


@dataclass(frozen=True, slots=True)
class CanaryResult:
    """What reading a canary back found; ``advice`` is set when it was lost."""

    canary: Canary
    outcome: Outcome
    detail: str
    advice: str = ""

    def as_data(self) -> dict[str, object]:
        return {"canary": self.canary.as_data(), "outcome": self.outcome,
                "detail": self.detail, "advice": self.advice or None}


def stores_of(service: Service) -> list[StoreProbe]:
    """The service's Redis and PostgreSQL probes: where its canaries go."""
    return [p for p in service.probes if isinstance(p, RedisProbe | PostgresProbe)]


def write_canary(service_name: str, probe: StoreProbe) -> Canary:
    """Write a fresh canary through ``probe``'s connection; CanaryError when it cannot."""
    token = uuid.uuid4().hex
    value = f"{service_name}:{token}"
    try:
        if isinstance(probe, RedisProbe):
            key = REDIS_PREFIX + token
            with _redis(probe) as client:
                client.set(key, value, ex=REDIS_TTL_SECONDS)
            return Canary("redis", service_name, key, value, time.time())
        with _postgres(probe) as conn:
            conn.execute(f"CREATE TABLE IF NOT EXISTS {TABLE} (id text PRIMARY KEY, "
                         "value text NOT NULL, written_at timestamptz NOT NULL)")
            conn.execute(f"INSERT INTO {TABLE} (id, value, written_at) VALUES (%s, %s, now())",
                         (token, value))
        return Canary("postgres", service_name, token, value, time.time())
    except (OSError, UnicodeDecodeError, redis.RedisError, psycopg.Error) as exc:
        raise CanaryError(f"{service_name}: cannot write a canary to {redact(probe.url)}: "
                          f"{_one_line(exc)}") from None


def read_canary(probe: StoreProbe, canary: Canary) -> CanaryResult:
    """Read ``canary`` back and remove it; never raises for the store's fault."""
    try:
        if isinstance(probe, RedisProbe):
            return _read_redis(probe, canary)
        return _read_postgres(probe, canary)
    except (OSError, UnicodeDecodeError, redis.RedisError, psycopg.Error) as exc:
        return CanaryResult(canary, "unreadable",
                            f"cannot read the canary from {redact(probe.url)}: {_one_line(exc)}")


def _read_redis(probe: RedisProbe, canary: Canary) -> CanaryResult:
    with _redis(probe) as client:
        found = client.get(canary.key)
        client.delete(canary.key)
        if found is not None and found.decode("utf-8", "replace") == canary.value:
            return CanaryResult(canary, "survived", f"key {canary.key} read back intact")
        detail = (f"key {canary.key} is gone" if found is None
                  else f"key {canary.key} holds another value")
        try:
            settings = {**client.config_get("appendonly"), **client.config_get("appendfsync"),
                        **client.config_get("save")}
        except redis.ResponseError as exc:  # managed services often forbid CONFIG
            return CanaryResult(canary, "lost", detail, f"CONFIG GET refused ({exc}): check "
                                "the server's appendonly and save settings")
    return CanaryResult(canary, "lost", detail, redis_loss_advice(_texts(settings)))


def _read_postgres(probe: PostgresProbe, canary: Canary) -> CanaryResult:
    with _postgres(probe) as conn:
        try:
            row = conn.execute(f"DELETE FROM {TABLE} WHERE id = %s RETURNING value",
                               (canary.key,)).fetchone()
        except psycopg.errors.UndefinedTable:
            row = None
        if row is not None and row[0] == canary.value:
            return CanaryResult(canary, "survived", f"row {canary.key} of {TABLE} read back "
                                "intact")
        detail = (f"row {canary.key} of {TABLE} is gone" if row is None
                  else f"row {canary.key} of {TABLE} holds another value")
        settings = {name: str(conn.execute(f"SHOW {name}").fetchone()[0])  # type: ignore[index]
                    for name in ("fsync", "synchronous_commit")}
    return CanaryResult(canary, "lost", detail, postgres_loss_advice(settings))


def redis_loss_advice(settings: Mapping[str, str]) -> str:
    """Why a Redis with these settings loses writes on a restart, and the fix (pure)."""
    appendonly = settings.get("appendonly", "")
    save = settings.get("save", "").strip()
    if appendonly != "yes":
        if not save:
            return ("Redis runs with appendonly no and no save points: a restart loses every "
                    "write; set appendonly yes (appendfsync everysec)")
        return (f"Redis runs with appendonly no and save points {save!r}: a restart loses "
                "every write since the last snapshot; set appendonly yes (appendfsync "
                "everysec)")
    fsync = settings.get("appendfsync", "")
    if fsync == "no":
        return ("Redis runs with appendonly yes but appendfsync no: the kernel decides when "
                "writes reach the disk; set appendfsync everysec")
    return (f"Redis runs with appendonly yes (appendfsync {fsync or 'unknown'}) yet lost a "
            "write: check that the append-only file is on a persistent volume")


def postgres_loss_advice(settings: Mapping[str, str]) -> str:
    """Why a PostgreSQL with these settings lost a committed row, and the fix (pure)."""
    if settings.get("fsync") == "off":
        return ("PostgreSQL runs with fsync off: a crash loses committed data (and may "
                "corrupt the cluster); set fsync on")
    if settings.get("synchronous_commit") == "off":
        return ("PostgreSQL runs with synchronous_commit off: a crash loses the last "
                "commits; set synchronous_commit on")
    return ("PostgreSQL lost a committed row with fsync and synchronous_commit on: check "
            "that the data directory is on a persistent volume")


def _texts(settings: Mapping[object, object]) -> dict[str, str]:
    return {_text(key): _text(value) for key, value in settings.items()}


def _text(value: object) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _redis(probe: RedisProbe) -> redis.Redis:
    """A client like the Redis probe's: no retries, bounded timeouts, password from file."""
    return redis.Redis.from_url(probe.url, socket_timeout=TIMEOUT_SECONDS,
                                socket_connect_timeout=TIMEOUT_SECONDS,
                                retry=Retry(NoBackoff(), 0),
                                password=read_password(probe.password_file))


def _postgres(probe: PostgresProbe) -> psycopg.Connection[tuple[object, ...]]:
    """An autocommit connection: each statement is committed when it returns."""
    return psycopg.connect(probe.url, autocommit=True,
                           connect_timeout=max(2, math.ceil(TIMEOUT_SECONDS)),
                           password=read_password(probe.password_file))
