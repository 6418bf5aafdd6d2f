"""Running a checked healing action: a command, an HTTP call, or a container restart.

Executors take only :data:`monitoriza.healing.action_checks.Prepared` actions (rendered and
checked against the allow-lists) and return ``(ok, detail)``; they never raise for a failing
target.

``command``
    The argv runs directly (``shell=False``), with ``stdin`` from ``/dev/null``, a minimal
    environment (:data:`COMMAND_ENV`), ``/`` as working directory, in a new session. Output
    goes to temporary files, not pipes, so a command that starts a daemon (which keeps its
    inherited descriptors) does not keep the action waiting. On timeout the whole process
    group is killed with SIGKILL. ``ok`` iff the exit status is 0.
``http``
    The request does not follow redirects, ignores proxy and ``.netrc`` settings from the
    environment, and sends no body. ``ok`` iff the status is 2xx.
``docker_restart``
    Through :func:`monitoriza.docker_engine.engine_client`, as the Docker probe does. The
    action's ``timeout`` is the grace period Docker gives the container to stop before
    killing it. A paused container is unpaused first, so that its processes get the stop
    signal and its grace period (some engines refuse to stop a paused container outright).
    ``ok`` iff the restart call returned and the container is running afterwards.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import subprocess
import tempfile
from typing import IO

import docker.errors
import requests

from monitoriza.docker_engine import engine_client
from monitoriza.healing.action_checks import (
    Prepared,
    PreparedCommand,
    PreparedHttp,
    PreparedRestart,
)

# The whole environment a command gets: nothing of the responder's (tokens, proxies) leaks.
COMMAND_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8",
}
# Seconds the Docker API may take on top of the stop grace period of a restart.
DOCKER_API_TIMEOUT = 30
# Most output of a command kept in a result's detail (the end of stderr, else of stdout).
OUTPUT_TAIL_CHARS = 500
# Seconds to wait for a killed command to be reaped.
_KILL_WAIT = 5.0


def execute(prepared: Prepared) -> tuple[bool, str]:
    """Run ``prepared``; whether it worked, and what happened."""
    if isinstance(prepared, PreparedCommand):
        return run_command(prepared)
    if isinstance(prepared, PreparedHttp):
        return run_http(prepared)
    return run_docker_restart(prepared)


def _output_tail(stdout: IO[bytes], stderr: IO[bytes]) -> str:
    """The end of what a command wrote (stderr preferred), for a result's detail."""
    for stream in (stderr, stdout):
        stream.seek(0, os.SEEK_END)
        size = stream.tell()
        stream.seek(max(size - OUTPUT_TAIL_CHARS * 4, 0))
        text = stream.read().decode("utf-8", errors="replace").strip()
        if text:
            return text[-OUTPUT_TAIL_CHARS:]
    return ""


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def run_command(command: PreparedCommand) -> tuple[bool, str]:
    with (
        tempfile.TemporaryFile() as stdout,
        tempfile.TemporaryFile() as stderr,
    ):
        try:
            process = subprocess.Popen(
                command.argv,
                shell=False,
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
                env=COMMAND_ENV,
                cwd="/",
                start_new_session=True,
            )
        except (OSError, ValueError) as exc:
            return False, f"cannot start {command.argv[0]}: {exc}"
        try:
            code = process.wait(timeout=command.timeout)
        except subprocess.TimeoutExpired:
            # The command leads its own session and process group: kill all of it.
            _kill_group(process.pid)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=_KILL_WAIT)
            tail = _output_tail(stdout, stderr)
            detail = f"timed out after {command.timeout:g}s; process group killed"
            return False, f"{detail}: {tail}" if tail else detail
        tail = _output_tail(stdout, stderr)
    if code == 0:
        detail = "exit status 0"
    elif code < 0:
        detail = f"killed by signal {-code}"
    else:
        detail = f"exit status {code}"
    return code == 0, f"{detail}: {tail}" if tail else detail


def run_http(call: PreparedHttp) -> tuple[bool, str]:
    try:
        with requests.Session() as session:
            session.trust_env = False  # no proxies or .netrc credentials from the environment
            with session.request(
                call.method, call.url, timeout=call.timeout, allow_redirects=False, stream=True
            ) as response:
                status = response.status_code
                reason = response.reason or ""
    except requests.RequestException as exc:
        return False, f"{call.method} {call.url} failed: {exc}"
    ok = 200 <= status < 300
    return ok, f"HTTP {status} {reason}".strip()


def run_docker_restart(restart: PreparedRestart) -> tuple[bool, str]:
    name, url = restart.container, restart.docker_url
    grace = max(math.ceil(restart.timeout), 0)
    try:
        with engine_client(url, DOCKER_API_TIMEOUT) as client:
            container = client.containers.get(name)
            unpaused = container.status == "paused"
            if unpaused:
                container.unpause()
            container.restart(timeout=grace)
            container.reload()
            status = str(container.status)
    except docker.errors.NotFound:
        return False, f"container {name} does not exist on {url}"
    except (docker.errors.DockerException, requests.RequestException, OSError) as exc:
        return False, f"cannot restart container {name} on {url}: {exc}"
    if status != "running":
        return False, f"container {name} is {status} after the restart"
    done = "unpaused, restarted" if unpaused else "restarted"
    return True, f"container {name} {done} and running"
