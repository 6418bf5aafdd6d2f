"""docker_restart heals a paused container (a drill's ``container_pause``, or a person's).

A paused container's processes are frozen, so ``docker restart`` alone cannot stop it; the
action unpauses it first. Runs against the private real Docker engine.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from monitoriza.healing.action_checks import PreparedRestart
from monitoriza.healing.executors import run_docker_restart
from tests.support.dockerd import DockerEngine


@pytest.fixture
def paused_container(docker_engine: DockerEngine) -> Iterator[Any]:
    created = docker_engine.run_container(f"mz-paused-{uuid.uuid4().hex[:10]}")
    created.pause()
    created.reload()
    assert created.status == "paused"
    yield created
    created.remove(force=True)


@pytest.mark.real_binary("dockerd")
class TestDockerRestartPaused:
    """docker_restart on a paused container."""

    def test_paused_container_is_restarted_and_running(
        self, docker_engine: DockerEngine, paused_container: Any
    ) -> None:
        """The container is unpaused, restarted (a new start time) and reported running."""
        started_before = paused_container.attrs["State"]["StartedAt"]
        ok, detail = run_docker_restart(
            PreparedRestart(paused_container.name, docker_engine.url, 1.0))
        assert ok, detail
        assert detail == f"container {paused_container.name} unpaused, restarted and running"
        paused_container.reload()
        assert paused_container.status == "running"
        assert paused_container.attrs["State"]["StartedAt"] != started_before

    def test_running_container_detail_does_not_mention_unpausing(
        self, docker_engine: DockerEngine
    ) -> None:
        """A container that was not paused is restarted as before, with the usual detail."""
        container = docker_engine.run_container(f"mz-running-{uuid.uuid4().hex[:10]}")
        try:
            ok, detail = run_docker_restart(
                PreparedRestart(container.name, docker_engine.url, 1.0))
            assert ok, detail
            assert detail == f"container {container.name} restarted and running"
        finally:
            container.remove(force=True)
