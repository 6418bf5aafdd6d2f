"""Talking to a Docker engine: which URL, and a client that never leaks its socket.

One helper for the Docker probe (:mod:`monitoriza.exporter.probes.docker`) and the
``docker_restart`` healing action (:mod:`monitoriza.healing.executors`), so that both pick
the engine the same way and fail the same way when it is not there.
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
from collections.abc import Iterator

import docker

DEFAULT_DOCKER_URL = "unix:///var/run/docker.sock"


def engine_url(*configured: str | None) -> str:
    """The first configured URL that is set, else ``DOCKER_HOST`` like the docker CLI, else
    the default local socket. Read on every call, so a changed environment is picked up."""
    for url in configured:
        if url:
            return url
    return os.environ.get("DOCKER_HOST") or DEFAULT_DOCKER_URL


def unix_socket_path(url: str) -> str | None:
    """The socket path of a ``unix://`` engine URL (parsed like the SDK does), else None."""
    if not url.startswith("unix://"):
        return None
    path = url[len("unix://") :]
    return path if path.startswith("/") else f"/{path}"


def check_unix_socket(path: str, timeout: float) -> None:
    """Connect to the engine's socket once and close it; raise ``OSError`` when that fails.

    The SDK's unix connection does not close its socket when ``connect()`` fails, so every
    call against a stopped engine would leak a socket until the garbage collector finds it
    (a ``ResourceWarning``). Finding out first, with a socket we close ourselves, avoids that
    for the usual way an engine is unreachable: no socket file, or nobody listening on it.
    """
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(timeout)
        probe.connect(path)


@contextlib.contextmanager
def engine_client(url: str, timeout: float) -> Iterator[docker.DockerClient]:
    """A client of the engine at ``url`` whose calls may take ``timeout`` seconds, closed on
    exit. Raises ``OSError`` for a unix socket nobody listens on, before the SDK is involved;
    otherwise the SDK's own errors (``DockerException``, ``requests`` errors)."""
    socket_path = unix_socket_path(url)
    if socket_path is not None:
        check_unix_socket(socket_path, timeout)
    # The SDK wants whole seconds; rounding up keeps a sub-second timeout above zero.
    client = docker.DockerClient(base_url=url, timeout=max(math.ceil(timeout), 1))
    try:
        yield client
    finally:
        client.close()
