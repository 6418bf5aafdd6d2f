"""The audit chain's head as metrics, so that Prometheus keeps a witness of its history.

Checkpoints and the store's record of them live on the responder's host: someone who controls
that host can rewrite all three consistently. Prometheus, scraping the head every few seconds
and keeping what it saw for its retention, is a witness outside that host. ``monitoriza audit
verify --prometheus URL`` (:mod:`monitoriza.audit.witness`) compares the chain with it.

Both gauges come from one read of the head, so samples of one scrape form a consistent pair.
The hash is published as its first 48 bits: an integer below 2**53, which a float64 sample
holds exactly; a rewrite then goes unseen only with probability 2**-48 per head it covers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

HEAD_SEQ = "monitoriza_audit_head_seq"
HEAD_HASH_PREFIX = "monitoriza_audit_head_hash_prefix"
PREFIX_BITS = 48


def hash_prefix(digest: str) -> int:
    """The first 48 bits of a hex hash as an integer (exact in a float64)."""
    return int(digest[:PREFIX_BITS // 4], 16)


class AuditHeadCollector(Collector):
    """Publishes the committed head's seq and hash prefix, read at scrape time."""

    def __init__(self, head: Callable[[], tuple[int, str]]) -> None:
        self._head = head

    def collect(self) -> Iterator[Metric]:
        seq, digest = self._head()
        yield GaugeMetricFamily(HEAD_SEQ, "Seq of the last committed audit chain entry",
                                value=seq)
        yield GaugeMetricFamily(
            HEAD_HASH_PREFIX,
            "First 48 bits of the last audit chain entry's hash, as an integer",
            value=hash_prefix(digest))
