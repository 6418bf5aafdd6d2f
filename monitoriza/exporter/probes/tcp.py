"""TCP probe: can a connection to ``host:port`` be opened, and how long does it take?

Success means only that something accepted the connection; the probe sends nothing. Each
address the name resolves to is tried in turn, every attempt with the time left before the
deadline, so a host with several unreachable addresses cannot multiply the timeout (which is
what :func:`socket.create_connection` with a fixed timeout would do). Name resolution itself
is not bounded by the deadline; the scheduler's overrun guard covers a hung resolver.
"""

from __future__ import annotations

import functools
import socket
import time

from monitoriza.config.schema import TcpProbe
from monitoriza.exporter.probes.base import Deadline, ProbeOutcome, ProbeRunner


def create(spec: TcpProbe) -> ProbeRunner:
    """Return a runner for ``spec``; the probe keeps no state between runs."""
    return functools.partial(run, spec)


def run(spec: TcpProbe, deadline: Deadline) -> ProbeOutcome:
    """Connect to ``spec.host:spec.port`` and close again; never raises for the target's fault."""
    target = f"{spec.host}:{spec.port}"
    try:
        addresses = socket.getaddrinfo(spec.host, spec.port, type=socket.SOCK_STREAM)
    except OSError as exc:  # socket.gaierror and friends
        return ProbeOutcome.failed("connection", f"cannot resolve {spec.host}: {exc}")
    if not addresses:
        return ProbeOutcome.failed("connection", f"{spec.host} resolves to no address")

    last_error: OSError | None = None
    for family, kind, proto, _, address in addresses:
        if deadline.expired():
            break
        started = time.monotonic()
        try:
            with socket.socket(family, kind, proto) as sock:
                sock.settimeout(deadline.remaining())
                sock.connect(address)
        except OSError as exc:
            last_error = exc
            continue
        return ProbeOutcome(
            success=True,
            message=f"connected to {target}",
            latency_seconds=time.monotonic() - started,
        )
    return _failure(target, last_error)


def _failure(target: str, error: OSError | None) -> ProbeOutcome:
    """The outcome for the last failed attempt (None: the deadline passed between attempts)."""
    if error is None or isinstance(error, TimeoutError):  # socket.timeout is TimeoutError
        return ProbeOutcome.failed("timeout", f"timed out connecting to {target}")
    if isinstance(error, ConnectionRefusedError):
        return ProbeOutcome.failed("connection", f"connection to {target} refused")
    return ProbeOutcome.failed("connection", f"cannot connect to {target}: {error}")
