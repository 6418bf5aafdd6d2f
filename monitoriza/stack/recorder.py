"""The demo's real container: Guardian's recorder, a busybox loop in a private Docker engine
or the machine's own, whichever ``DOCKER_HOST`` (or ``--docker-host``) names."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import docker
import docker.errors

from monitoriza.stack.busybox import BUSYBOX, busybox_rootfs
from monitoriza.stack.demo_plan import RECORDER_COMMAND, RECORDER_CONTAINER, RECORDER_IMAGE

DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"


def reachable_engine(url: str | None) -> tuple[Any, str] | None:
    """(client, url) of a Docker engine that answers a ping, else None."""
    target = url or DEFAULT_DOCKER_HOST
    try:
        client = docker.DockerClient(base_url=target, timeout=10)
    except docker.errors.DockerException:
        return None
    try:
        client.ping()
    except docker.errors.DockerException:
        client.close()  # its connection pool would otherwise be left to the collector
        return None
    return client, target


def start_recorder(client: Any, fault_dir: Path) -> None:
    """Import the busybox image if needed and (re)create the recorder container.

    ``fault_dir`` is mounted at /fault: ``monitoriza demo fault guardian-recorder down``
    creates /fault/down there, and the loop exits at once, after every restart too.
    """
    if not BUSYBOX.exists():
        raise FileNotFoundError(f"{BUSYBOX} is missing (apt-get install busybox-static)")
    repository, tag = RECORDER_IMAGE.split(":")
    try:
        client.images.get(RECORDER_IMAGE)
    except docker.errors.ImageNotFound:
        client.api.import_image_from_data(busybox_rootfs(), repository=repository, tag=tag)
    remove_recorder(client)
    fault_dir.mkdir(parents=True, exist_ok=True)
    client.containers.run(
        RECORDER_IMAGE, RECORDER_COMMAND, name=RECORDER_CONTAINER, detach=True,
        network_mode="none",
        volumes={str(fault_dir): {"bind": "/fault", "mode": "ro"}})


def remove_recorder(client: Any) -> None:
    """Remove the recorder container if it exists."""
    with contextlib.suppress(docker.errors.NotFound):
        client.containers.get(RECORDER_CONTAINER).remove(force=True)
