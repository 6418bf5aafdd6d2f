"""Which loopback port each part of the local stack listens on, and whether it is free.

Every port is an offset from one base (``--base-port``, default 9090), so the defaults are
the usual ones (Prometheus 9090, Alertmanager 9093, responder 9095, exporter 9108) and a
second stack, or a test, moves all of them at once with a single number.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Mapping
from dataclasses import dataclass

DEFAULT_BASE_PORT = 9090
DEMO_SERVICES_OFFSET = 8991  # 18081, 18082, ... with the default base
CHAT_OFFSET = 9000  # 18090
REDIS_OFFSET = 7289  # 16379


@dataclass(frozen=True)
class StackPorts:
    """The ports of one stack; ``demo_http`` is empty without ``--demo``."""

    host: str
    prometheus: int
    alertmanager: int
    responder: int
    exporter: int
    chat: int
    redis: int | None
    demo_http: tuple[int, ...]

    def named(self) -> dict[str, int]:
        """Every port with the name of what listens there, for messages."""
        ports = {"prometheus": self.prometheus, "alertmanager": self.alertmanager,
                 "responder": self.responder, "exporter": self.exporter,
                 "chat inbox": self.chat}
        if self.redis is not None:
            ports["redis"] = self.redis
        ports |= {f"demo service {index + 1}": port for index, port in enumerate(self.demo_http)}
        return ports


def ports_for(base: int, *, demo_services: int = 0, host: str = "127.0.0.1") -> StackPorts:
    """The stack's ports from ``base``; ValueError when one would fall outside 1..65535."""
    ports = StackPorts(
        host=host, prometheus=base, alertmanager=base + 3, responder=base + 5,
        exporter=base + 18, chat=base + CHAT_OFFSET,
        redis=base + REDIS_OFFSET if demo_services else None,
        demo_http=tuple(base + DEMO_SERVICES_OFFSET + index for index in range(demo_services)))
    highest = max(ports.named().values())
    if base < 1 or highest > 65535:
        raise ValueError(f"--base-port {base} puts ports outside 1..65535 (the highest would "
                         f"be {highest}); choose a base between 1 and {65535 - (highest - base)}")
    return ports


def busy_ports(host: str, named: Mapping[str, int]) -> list[str]:
    """One message per port something already listens on (checked by binding to it)."""
    problems = []
    for name, port in named.items():
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
            except OSError as exc:
                why = "in use" if exc.errno == errno.EADDRINUSE else exc.strerror
                problems.append(f"port {port} ({name}) on {host} is {why}")
    return problems
