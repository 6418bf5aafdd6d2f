"""Fixtures shared by the whole suite; real servers live in tests/support/."""

from __future__ import annotations

pytest_plugins = [
    "tests.support.http_targets",
    "tests.support.redis_server",
    "tests.support.postgres_server",
    "tests.support.dockerd",
    "tests.support.prometheus",
    "tests.support.alertmanager",
    "tests.support.responder",
    "tests.support.responder_process",
    "tests.support.stack",
]
