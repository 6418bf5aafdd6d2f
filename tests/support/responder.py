"""A responder app on a temporary store, for tests that use Flask's test client.

The store is the ``store_url`` fixture's: every test built on it runs twice, on an SQLite file
(``[sqlite]``) and on a fresh database of the session's PostgreSQL server (``[postgresql]``),
because the responder must behave the same on both.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine, func, select

from monitoriza.config import config_from_data
from monitoriza.config.schema import Config
from monitoriza.responder.app import create_app
from monitoriza.responder.state import Responder, responder_of
from monitoriza.store import create_store, journal, notifications
from tests.support.postgres_server import PostgresServer

TOKEN = "test-token-0123456789"
FIXTURES = Path(__file__).parent.parent / "fixtures" / "alertmanager"


STORE_BACKENDS = ["sqlite", "postgresql"]


def responder_config(directory: Path, store_url: str | None = None,
                     **responder: Any) -> Config:
    """A configuration whose responder keeps everything under ``directory``, its store at
    ``store_url`` (default: an SQLite file there)."""
    return config_from_data({"services": {}, "responder": {
        "store_url": store_url or f"sqlite:///{directory / 'responder.db'}",
        "token_file": str(directory / "token"),
        "audit": {"signing_key_file": str(directory / "signing.pem"),
                  "checkpoint_file": str(directory / "checkpoints.jsonl")},
        **responder,
    }})


def fixture_body(name: str) -> bytes:
    """A captured Alertmanager payload, byte for byte."""
    return (FIXTURES / name).read_bytes()


def fixture_json(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(fixture_body(name))
    return data


def post(client: FlaskClient, body: bytes | str, token: str | None = TOKEN,
         content_type: str = "application/json") -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return client.post("/api/v1/alerts", data=body, headers=headers, content_type=content_type)


_BUILT: list[Flask] = []


def closed_after_test(app: Flask) -> Flask:
    """``app``, whose store's connection pool is closed when the test ends (before a
    PostgreSQL test database is dropped)."""
    _BUILT.append(app)
    return app


@pytest.fixture(autouse=True)
def _close_built_apps() -> Iterator[None]:
    yield
    while _BUILT:
        responder_of(_BUILT.pop()).journal.engine.dispose()


def process(app: Flask) -> None:
    """Drive an app built with ``start_worker=False``: its journal worker until nothing is
    left to process, then its healer until no action is left to run."""
    state = responder_of(app)
    while state.worker.run_once():
        pass
    while state.healer.run_once():
        pass


def counts(state: Responder) -> tuple[int, int]:
    """(journal rows, notifications) in the store."""
    with state.journal.engine.connect() as conn:
        rows = conn.execute(select(func.count()).select_from(journal)).scalar_one()
        seen = conn.execute(select(func.count()).select_from(notifications)).scalar_one()
    return int(rows), int(seen)


AppFactory = Callable[..., Flask]


@pytest.fixture(scope="session")
def responder_template_database(postgres_server: PostgresServer) -> str:
    """A PostgreSQL database holding the responder's empty schema, to copy for each test:
    ``CREATE DATABASE ... TEMPLATE`` is quicker than creating the tables every time."""
    name = postgres_server.create_database("responder_template")
    create_store(postgres_server.database_url(name)).dispose()
    return name


@pytest.fixture(params=STORE_BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The responder's store: an SQLite file in ``tmp_path``, or a fresh PostgreSQL database
    with the empty schema (created for the test in the session's server, dropped after it)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/responder.db"
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    template: str = request.getfixturevalue("responder_template_database")
    with server.fresh_database("responder", template=template) as url:
        yield url


def is_postgres(url: str) -> bool:
    return url.startswith("postgres")


@contextmanager
def journal_locked(engine: Engine) -> Iterator[None]:
    """Another writer holds the lock the webhook needs, until the block ends: on SQLite the
    database's write lock (``BEGIN IMMEDIATE``), on PostgreSQL an exclusive lock on the
    journal table (reads go on; inserts wait)."""
    with engine.connect() as conn:
        transaction = conn.begin()
        try:
            if engine.dialect.name == "postgresql":
                conn.exec_driver_sql("LOCK TABLE journal IN EXCLUSIVE MODE")
            yield
        finally:
            transaction.rollback()


@pytest.fixture
def make_responder_app(tmp_path: Path, store_url: str) -> Iterator[AppFactory]:
    """Build responder apps on ``store_url`` whose worker the test drives
    (``state.worker.run_once()``)."""
    apps: list[Flask] = []

    def make(**responder: Any) -> Flask:
        app = create_app(responder_config(tmp_path, store_url, **responder), token=TOKEN,
                         start_worker=False)
        apps.append(app)
        return app

    yield make
    for app in apps:
        responder_of(app).journal.engine.dispose()
