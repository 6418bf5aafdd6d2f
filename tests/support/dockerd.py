"""A real, private Docker engine for the Docker probe tests.

The tests never touch the machine's own engine (if there is one): ``docker_engine`` starts a
``dockerd`` of its own, with its socket, data, exec root and pid file in a fresh directory
under /tmp (short, because a unix socket path is limited to about 100 bytes). There is no
network access and no bridge, so containers run with ``network_mode="none"`` and the only
image is one built here from the host's static busybox and imported without a registry.

dockerd must run as root; without root (or without dockerd) the tests fail with the reason,
like every other real-binary fixture.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import docker.errors
import psutil
import pytest

from monitoriza.stack.busybox import BUSYBOX, busybox_rootfs
from tests.support.binaries import require_binary, unavailable

IMAGE_REPOSITORY = "monitoriza-busybox"
IMAGE_TAG = "test"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 20.0


@dataclass
class DockerEngine:
    """A running private dockerd, as the tests see it."""

    url: str
    client: Any  # docker.DockerClient; the SDK has no type hints
    image: str

    def run_container(self, name: str, **options: Any) -> Any:
        """Start ``sleep 3600`` detached in a container called ``name``.

        ``options`` go to ``containers.run`` (e.g. ``healthcheck=``). There is no bridge, so
        the container has no network.
        """
        return self.client.containers.run(
            self.image,
            ["sleep", "3600"],
            name=name,
            detach=True,
            network_mode="none",
            **options,
        )


def _log_tail(log_path: Path, lines: int = 30) -> str:
    try:
        text = log_path.read_text(errors="replace")
    except OSError:
        return "(no dockerd log)"
    return "\n".join(text.splitlines()[-lines:])


def _accepts_connections(socket_path: str) -> bool:
    """Whether something listens on the socket, checked with a socket we close ourselves.

    The SDK's unix connection leaks its socket when ``connect()`` fails, which pytest (with
    warnings as errors) reports as an unclosed-socket error in some later test.
    """
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(socket_path)
        except OSError:
            return False
    return True


def _wait_for_api(
    url: str, socket_path: str, process: subprocess.Popen[bytes], log_path: Path
) -> None:
    """Poll the API until it answers; fail with the log's tail when dockerd dies or hangs."""
    end = time.monotonic() + START_TIMEOUT
    last_error: Exception | None = None
    while time.monotonic() < end:
        if process.poll() is not None:
            pytest.fail(
                f"dockerd exited with status {process.returncode} while starting:\n"
                + _log_tail(log_path)
            )
        if not _accepts_connections(socket_path):
            time.sleep(0.1)
            continue
        client = None
        try:
            # The constructor already talks to the engine (API version negotiation).
            client = docker.DockerClient(base_url=url, timeout=2)
            if client.ping():
                return
        except docker.errors.DockerException as exc:
            last_error = exc
        finally:
            if client is not None:
                client.close()
        time.sleep(0.1)
    pytest.fail(
        f"dockerd did not answer on {url} within {START_TIMEOUT:.0f}s ({last_error}):\n"
        + _log_tail(log_path)
    )


def _descendants(pid: int) -> list[psutil.Process]:
    with contextlib.suppress(psutil.Error):
        return psutil.Process(pid).children(recursive=True)
    return []


def _own_processes(directory: str) -> list[psutil.Process]:
    """Processes started for this engine that dockerd may have left behind.

    containerd is dockerd's child, but the per-container shims detach from it; all of them
    name the engine's private directory on their command line, which no other process does.
    """
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info.get("cmdline") or []
        if any(directory in part for part in cmdline):
            found.append(proc)
    return found


def _stop(process: subprocess.Popen[bytes], directory: str) -> None:
    """SIGTERM dockerd and wait for it, then SIGKILL; then make sure its helpers are gone."""
    helpers = _descendants(process.pid)
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    leftovers = {proc.pid: proc for proc in [*helpers, *_own_processes(directory)]}
    # containerd shuts itself down when dockerd does; give it a moment before forcing it.
    _, alive = psutil.wait_procs(list(leftovers.values()), timeout=10)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(alive, timeout=5)


def _mounts_under(directory: str) -> list[str]:
    """Mount points inside ``directory``, deepest first (the order to unmount them in)."""
    points = []
    with open("/proc/self/mountinfo", encoding="utf-8") as mountinfo:
        for line in mountinfo:
            # Field 5 is the mount point, with spaces and the like octal-escaped.
            point = line.split()[4].encode().decode("unicode_escape")
            if point == directory or point.startswith(directory + "/"):
                points.append(point)
    return sorted(points, key=len, reverse=True)


def _remove_directory(directory: str) -> None:
    """Unmount what dockerd left mounted, then delete the directory.

    A clean dockerd shutdown unmounts everything; after a SIGKILL, overlay or shm mounts may
    remain. Deleting through a live mount would reach into the mounted filesystem, so a
    directory that still has mounts after a lazy unmount is left in place rather than forced.
    """
    umount = shutil.which("umount")
    for point in _mounts_under(directory):
        if umount is not None:
            subprocess.run([umount, "--lazy", point], check=False, capture_output=True)
    if _mounts_under(directory):
        return
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="session")
def docker_engine() -> Iterator[DockerEngine]:
    """A private dockerd with the busybox image imported; torn down after the session."""
    dockerd = require_binary("dockerd")
    if os.geteuid() != 0:
        unavailable("dockerd needs root to run")
    if not BUSYBOX.exists():
        unavailable(f"{BUSYBOX} is missing (install busybox-static)")

    directory = tempfile.mkdtemp(prefix="mz-docker-", dir="/tmp")
    socket_path = f"{directory}/docker.sock"
    url = f"unix://{socket_path}"
    log_path = Path(directory) / "dockerd.log"
    command = [
        dockerd,
        f"--host={url}",
        f"--data-root={directory}/data",
        f"--exec-root={directory}/exec",
        f"--pidfile={directory}/docker.pid",
        "--bridge=none",
        "--iptables=false",
        "--ip6tables=false",
        "--ip-masq=false",
    ]
    process: subprocess.Popen[bytes] | None = None
    client = None
    try:
        with log_path.open("wb") as log:
            # Its own session, so a Ctrl-C in the terminal does not kill it before teardown.
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        _wait_for_api(url, socket_path, process, log_path)
        client = docker.DockerClient(base_url=url, timeout=60)
        client.api.import_image_from_data(
            busybox_rootfs(), repository=IMAGE_REPOSITORY, tag=IMAGE_TAG
        )
        yield DockerEngine(url=url, client=client, image=f"{IMAGE_REPOSITORY}:{IMAGE_TAG}")
    finally:
        if client is not None:
            with contextlib.suppress(docker.errors.DockerException):
                for container in client.containers.list(all=True):
                    with contextlib.suppress(docker.errors.DockerException):
                        container.remove(force=True)
            client.close()
        if process is not None:
            _stop(process, directory)
        _remove_directory(directory)
