"""Prometheus as a witness of the audit chain: the heads it scraped, compared with the chain.

The responder publishes its committed head (:mod:`monitoriza.audit.metrics`); Prometheus keeps
every sample for its retention, on other storage and usually another host. A head seq
Prometheus once saw that the store no longer holds is a rollback or a truncation; a
``(seq, hash prefix)`` pair it saw that differs from the stored entry at that seq is a
rewrite. Checkpoints cannot show either when whoever changed the store could also re-sign the
checkpoint file and edit the store's record of it; Prometheus's history they cannot reach.

The history is read as raw samples (``metric[lookback]``), so every scraped head counts, and
it is compared with the store as it is *after* the query: a head scraped after the chain was
verified is then already in the store, never a false rollback.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import requests
from prometheus_api_client.exceptions import PrometheusApiClientException
from prometheus_api_client.prometheus_connect import PrometheusConnect
from urllib3.util.retry import Retry

from monitoriza.audit.chain import AuditError
from monitoriza.audit.metrics import HEAD_HASH_PREFIX, HEAD_SEQ, hash_prefix


class WitnessError(AuditError):
    """Prometheus could not be asked, or holds no history of the chain's head."""


@dataclass(frozen=True, slots=True)
class Observation:
    """One scrape of the head: its seq, hash prefix (None if that sample is missing), when."""

    seq: int
    prefix: int | None
    at: float  # Unix seconds, as Prometheus timestamped the scrape
    series: str  # the target's labels, for messages


@dataclass(frozen=True, slots=True)
class Finding:
    """What the witness contradicts: ``seq`` is the first entry concerned."""

    seq: int
    reason: str


def when(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _series(labels: Mapping[str, str]) -> str:
    return "{" + ",".join(f'{name}="{value}"' for name, value in sorted(labels.items())
                          if name != "__name__") + "}"


def parse_history(seq_result: Iterable[Mapping[str, Any]],
                  prefix_result: Iterable[Mapping[str, Any]]) -> list[Observation]:
    """Pair the raw samples of the two gauges (matrix results) by target and timestamp."""
    prefixes: dict[tuple[str, float], int] = {}
    for series in prefix_result:
        name = _series(series["metric"])
        for moment, value in series["values"]:
            prefixes[(name, float(moment))] = int(float(value))
    observations = []
    for series in seq_result:
        name = _series(series["metric"])
        for moment, value in series["values"]:
            key = (name, float(moment))
            observations.append(Observation(int(float(value)), prefixes.get(key), key[1], name))
    return observations


def compare(observations: Iterable[Observation], hashes: Mapping[int, str],
            head_seq: int) -> Finding | None:
    """The first contradiction between what Prometheus saw and the store's ``hashes``
    (seq → hash of every observed seq the store holds; ``head_seq`` is the store's head).

    A seq the store lacks is a rollback (the highest such seq is named, with when Prometheus
    first saw it); otherwise a pair whose hash prefix differs is a rewrite (the lowest seq).
    """
    seen = [observation for observation in observations if observation.seq >= 1]
    missing = [observation for observation in seen if observation.seq not in hashes]
    if missing:
        top = max(observation.seq for observation in missing)
        first = min((observation for observation in missing if observation.seq == top),
                    key=lambda observation: observation.at)
        return Finding(head_seq + 1, (
            f"entry {head_seq + 1}: missing, but Prometheus saw head seq {top} at "
            f"{when(first.at)} (target {first.series}); the log was rolled back or truncated "
            f"after seq {head_seq}"))
    differing = sorted((observation for observation in seen
                        if observation.prefix is not None
                        and hash_prefix(hashes[observation.seq]) != observation.prefix),
                       key=lambda observation: (observation.seq, observation.at))
    if differing:
        first = differing[0]
        return Finding(first.seq, (
            f"entry {first.seq}: hash differs from the head Prometheus saw at {when(first.at)} "
            f"(target {first.series}: hash prefix {first.prefix:012x}, the chain's "
            f"{hash_prefix(hashes[first.seq]):012x}); the log was rewritten at or before seq "
            f"{first.seq}"))
    return None


def fetch_history(url: str, lookback: float, selector: str = "", *,
                  timeout: float = 60.0) -> list[Observation]:
    """Every head sample Prometheus at ``url`` holds from the last ``lookback`` seconds.

    ``selector`` is label matchers (``job="responder"``) narrowing which targets count.
    """
    client = PrometheusConnect(url=url.rstrip("/"), disable_ssl=True, retry=Retry(total=0),
                               timeout=int(timeout))
    matchers = "{" + selector.strip().strip("{}") + "}" if selector.strip() else ""
    window = f"[{max(1, round(lookback))}s]"
    results = []
    for metric in (HEAD_SEQ, HEAD_HASH_PREFIX):
        query = metric + matchers + window
        try:
            results.append(client.custom_query(query))
        except (PrometheusApiClientException, requests.RequestException, ValueError) as exc:
            raise WitnessError(f"cannot query Prometheus at {url} ({query}): {exc}") from None
    try:
        observations = parse_history(results[0], results[1])
    except (KeyError, TypeError, ValueError) as exc:
        raise WitnessError(f"unexpected answer from Prometheus at {url}: {exc}") from None
    if not observations:
        raise WitnessError(f"Prometheus at {url} holds no samples of {HEAD_SEQ}{matchers} "
                           f"from the last {window[1:-1]}: is it scraping the responder?")
    return observations
