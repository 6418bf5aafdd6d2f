"""A responder app on a temporary SQLite store, for tests that use Flask's test client."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from monitoriza.config import config_from_data
from monitoriza.config.schema import Config
from monitoriza.responder.app import create_app
from monitoriza.responder.state import Responder, responder_of
from monitoriza.store import journal, notifications

TOKEN = "test-token-0123456789"
FIXTURES = Path(__file__).parent.parent / "fixtures" / "alertmanager"


def responder_config(directory: Path, **responder: Any) -> Config:
    """A configuration whose responder keeps everything under ``directory``."""
    return config_from_data({"services": {}, "responder": {
        "store_url": f"sqlite:///{directory / 'responder.db'}",
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


def counts(state: Responder) -> tuple[int, int]:
    """(journal rows, notifications) in the store."""
    with state.journal.engine.connect() as conn:
        rows = conn.execute(select(func.count()).select_from(journal)).scalar_one()
        seen = conn.execute(select(func.count()).select_from(notifications)).scalar_one()
    return int(rows), int(seen)


AppFactory = Callable[..., Flask]


@pytest.fixture
def make_responder_app(tmp_path: Path) -> Iterator[AppFactory]:
    """Build responder apps whose worker the test drives (``state.worker.run_once()``)."""
    apps: list[Flask] = []

    def make(**responder: Any) -> Flask:
        app = create_app(responder_config(tmp_path, **responder), token=TOKEN,
                         start_worker=False)
        apps.append(app)
        return app

    yield make
    for app in apps:
        responder_of(app).journal.engine.dispose()
