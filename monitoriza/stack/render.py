"""The Prometheus and Alertmanager configurations of a local stack (pure functions).

Both start from the project's own files, so that ``monitoriza up`` runs the routing, the
inhibition and the rules that production runs: only addresses, file paths and (for the demo)
timers change. Alertmanager's Slack receivers keep their templates and post to the stack's
chat inbox, which speaks just enough of Slack's incoming-webhook API to record them.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from monitoriza.durations import format_duration, parse_duration
from monitoriza.stack.ports import StackPorts

# Job names are part of the rules' contract (the silent-failure rules match on them).
JOB_EXPORTER = "monitoriza-exporter"
JOB_RESPONDER = "monitoriza-responder"
JOB_PROMETHEUS = "prometheus"
JOB_ALERTMANAGER = "alertmanager"
JOB_DEMO = "conecta-demo"
ROUTE_TIMERS = ("group_wait", "group_interval", "repeat_interval")
MIN_TIMER = 1.0  # Alertmanager timers below a second only make it busy


def prometheus_config(ports: StackPorts, *, rules_dir: Path, interval: float,
                      site: str = "local") -> dict[str, Any]:
    """Scrape the stack's four parts (and the demo services), evaluate ``rules_dir``."""
    host = ports.host

    def job(name: str, *ports_: int) -> dict[str, Any]:
        return {"job_name": name,
                "static_configs": [{"targets": [f"{host}:{port}" for port in ports_]}]}

    every = format_duration(interval)
    jobs = [job(JOB_EXPORTER, ports.exporter), job(JOB_RESPONDER, ports.responder),
            job(JOB_PROMETHEUS, ports.prometheus), job(JOB_ALERTMANAGER, ports.alertmanager)]
    if ports.demo_http:
        jobs.append(job(JOB_DEMO, *ports.demo_http))
    return {
        "global": {"scrape_interval": every, "evaluation_interval": every,
                   "external_labels": {"site": site}},
        "rule_files": [str(rules_dir / "*.yml")],
        "alerting": {"alertmanagers": [
            {"static_configs": [{"targets": [f"{host}:{ports.alertmanager}"]}]}]},
        "scrape_configs": jobs,
    }


def scale_timer(text: str, scale: float) -> str:
    """An Alertmanager timer times ``scale``, never below a second."""
    return format_duration(max(parse_duration(text) * scale, MIN_TIMER))


def _scale_route(route: dict[str, Any], scale: float) -> None:
    for key in ROUTE_TIMERS:
        if key in route:
            route[key] = scale_timer(str(route[key]), scale)
    for child in route.get("routes", []):
        _scale_route(child, scale)


def chat_channel(receiver: str, url_file: str | None) -> str:
    """The chat channel a Slack receiver posts to: named by its secret URL file
    (``team-slack-url`` is the team channel, whichever receiver uses it), else the receiver."""
    if url_file:
        return Path(url_file).name.removesuffix("-slack-url")
    return receiver


def alertmanager_config(canonical: Mapping[str, Any], *, templates_dir: Path,
                        responder_url: str, token_file: Path, chat_url: str,
                        scale: float = 1.0) -> dict[str, Any]:
    """``alertmanager/alertmanager.yml`` pointed at the local stack.

    Route tree and inhibition are kept as they are (with ``scale`` < 1 the route timers and
    ``resolve_timeout`` shrink like the rules); every webhook to the responder goes to
    ``responder_url`` with the bearer token read from ``token_file``; Slack receivers post to
    ``chat_url``/chat/CHANNEL (:func:`chat_channel`: ``team`` for both the ``team`` and the
    ``team-chat`` receivers, as they share a Slack URL); any other webhook (the dead-man's
    switch) to ``chat_url``/chat/RECEIVER as well, so that every notification can be seen.
    """
    config = copy.deepcopy(dict(canonical))
    config["templates"] = [str(templates_dir / "*.tmpl")]
    if scale != 1.0:
        _scale_route(config["route"], scale)
        glob = config.setdefault("global", {})
        glob["resolve_timeout"] = scale_timer(str(glob.get("resolve_timeout", "5m")), scale)
    for receiver in config.get("receivers", []):
        name = receiver["name"]
        for slack in receiver.get("slack_configs", []):
            secret = slack.pop("api_url_file", None)
            slack["api_url"] = f"{chat_url}/chat/{chat_channel(name, secret)}"
        for hook in receiver.get("webhook_configs", []):
            if "/api/v1/alerts" in str(hook.get("url", "")):
                hook["url"] = responder_url
                hook["http_config"] = {"authorization": {
                    "type": "Bearer", "credentials_file": str(token_file)}}
            else:
                hook["url"] = f"{chat_url}/chat/{name}"
    return config
