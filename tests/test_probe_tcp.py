"""The TCP probe against real local listeners."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from monitoriza.config.schema import TcpProbe
from monitoriza.exporter.probes import create_runner
from monitoriza.exporter.probes.base import Deadline, ProbeOutcome
from monitoriza.exporter.probes.tcp import create, run
from tests.support.binaries import free_port, unavailable, wait_until
from tests.support.http_targets import HttpTarget, HungTcpTarget

SLACK = 0.5


def tcp_spec(port: int, host: str = "127.0.0.1", timeout: str = "1s") -> TcpProbe:
    """A validated spec with the fields the loader would fill (name, interval, timeout)."""
    return TcpProbe.model_validate(
        {
            "kind": "tcp",
            "host": host,
            "port": port,
            "name": "port",
            "interval": "15s",
            "timeout": timeout,
        }
    )


def probe(spec: TcpProbe) -> tuple[ProbeOutcome, float]:
    """Run the probe with a deadline of ``spec.timeout``; return the outcome and the wall time."""
    assert spec.timeout is not None
    started = time.monotonic()
    outcome = create(spec)(Deadline.after(spec.timeout))
    return outcome, time.monotonic() - started


@pytest.fixture
def full_backlog() -> Iterator[int]:
    """A port whose listener never accepts and whose backlog is full, so SYNs go unanswered.

    Linux drops a SYN when the accept queue is full, and the client keeps retrying: the
    connection attempt hangs until its timeout, like a firewalled port.
    """
    listener = socket.create_server(("127.0.0.1", 0), backlog=0)
    port: int = listener.getsockname()[1]
    fillers: list[socket.socket] = []
    try:
        for _ in range(8):
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))
            fillers.append(filler)
        yield port
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


class TestTcpProbe:
    """Opening a TCP connection."""

    def test_open_port_succeeds(self, http_target: HttpTarget) -> None:
        """A port something listens on succeeds, with the connect time as latency."""
        outcome, elapsed = probe(tcp_spec(http_target.port))
        assert outcome.success, outcome.message
        assert outcome.failure_reason is None
        assert outcome.latency_seconds is not None
        assert 0 <= outcome.latency_seconds <= elapsed

    def test_refused_port_fails_with_connection(self) -> None:
        """A port nobody listens on fails with reason connection."""
        outcome, _ = probe(tcp_spec(free_port()))
        assert not outcome.success
        assert outcome.failure_reason == "connection"
        assert "refused" in outcome.message

    def test_hung_target_succeeds(self, hung_tcp_target: HungTcpTarget) -> None:
        """A listener that accepts but never answers passes: TCP checks only the connect.

        That is the point of the hung target for other tests: it is reachable, yet any protocol
        spoken to it (an HTTP probe, a scrape) waits for an answer that never comes.
        """
        outcome, _ = probe(tcp_spec(hung_tcp_target.port))
        assert outcome.success, outcome.message
        assert wait_until(lambda: hung_tcp_target.accepted == 1, timeout=2.0)

    def test_unanswered_syn_times_out_on_time(self, full_backlog: int) -> None:
        """A connect that gets no answer fails with reason timeout by the deadline."""
        outcome, elapsed = probe(tcp_spec(full_backlog, timeout="500ms"))
        if outcome.success:
            unavailable("this kernel answered the SYN despite the full backlog")
        assert outcome.failure_reason == "timeout", outcome.message
        assert elapsed < 0.5 + SLACK

    def test_expired_deadline_is_a_timeout(self, http_target: HttpTarget) -> None:
        """A run whose deadline has already passed does not connect and reports timeout."""
        outcome = run(tcp_spec(http_target.port), Deadline(time.monotonic() - 1.0))
        assert outcome.failure_reason == "timeout"

    def test_create_runner_picks_this_module(self, http_target: HttpTarget) -> None:
        """The probe registry builds a TCP runner from a tcp spec."""
        outcome = create_runner(tcp_spec(http_target.port))(Deadline.after(1.0))
        assert outcome.success, outcome.message
