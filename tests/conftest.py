"""Fixtures shared by the whole suite; real servers live in tests/support/."""

from __future__ import annotations

import pytest

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


#: The longest files: whole stacks waiting on real (scaled) timers. Collected first, so that
#: ``make unit`` (``-n 4 --dist loadfile``) starts them at once on separate workers instead
#: of last, after everything else; the order inside each file is kept.
SLOW_FILES_FIRST = ("test_stack_e2e.py", "test_drill_run_e2e.py", "test_drill_faults_e2e.py",
                    "test_drill_broken_e2e.py",
                    "test_wheel.py", "test_logs.py", "test_alertmanager.py",
                    "test_forecast_e2e.py", "test_cluster.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: position for position, name in enumerate(SLOW_FILES_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))
