"""The demo chat inbox as a page a person reads: newest message first, escaped.

The inbox stores what was posted as it came (Slack attachments from Alertmanager and the
responder, Alertmanager's webhook JSON for the dead-man's switch). :func:`summarize` turns each
payload into a title, a text and a colour; :func:`render_page` lays them out. Both are pure;
the server (:mod:`monitoriza.demo.server`) only chooses between this page and the JSON by the
request's ``Accept`` header (:func:`wants_html`).
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

REFRESH_SECONDS = 5
MAX_TEXT_CHARS = 2000  # of one message's body on the page (the JSON keeps it whole)
_COLOR = re.compile(r"#[0-9A-Fa-f]{3,8}")
_DEFAULT_COLOR = "#9e9e9e"
# Slack's named attachment colours (Alertmanager's template uses them).
_NAMED_COLORS = {"good": "#2e7d32", "warning": "#f57c00", "danger": "#d32f2f"}


@dataclass(frozen=True)
class ChatLine:
    """One message as the page shows it."""

    receiver: str
    received_at: float | None
    title: str
    text: str
    color: str
    fields: tuple[tuple[str, str], ...] = ()


def _q(part: str) -> float:
    """The ``q`` of one media range of an Accept header (1 when absent, 0 when bad)."""
    for parameter in part.split(";")[1:]:
        name, _, value = parameter.strip().partition("=")
        if name.strip().lower() == "q":
            try:
                return max(0.0, min(1.0, float(value)))
            except ValueError:
                return 0.0
    return 1.0


def wants_html(accept: str | None) -> bool:
    """Whether a client sending ``accept`` prefers HTML to JSON: it names ``text/html`` with
    a higher ``q`` than ``application/json``. ``*/*`` (curl, requests) and no header at all
    keep the JSON that scripts and tests read."""
    html_q = json_q = 0.0
    for part in (accept or "").split(","):
        media = part.split(";")[0].strip().lower()
        if media in ("text/html", "application/xhtml+xml"):
            html_q = max(html_q, _q(part))
        elif media == "application/json":
            json_q = max(json_q, _q(part))
    return html_q > json_q


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def summarize(entry: Mapping[str, Any]) -> ChatLine:
    """What the page shows of one stored entry (``receiver``, ``received_at``, ``payload``)."""
    payload = entry.get("payload")
    payload = payload if isinstance(payload, dict) else {}
    attachments = payload.get("attachments")
    first = attachments[0] if isinstance(attachments, list) and attachments \
        and isinstance(attachments[0], dict) else {}
    # Slack shows the attachment's title, else the message's text, as the headline.
    title = _text(first.get("title")) or _text(payload.get("text"))
    text = _text(first.get("text"))
    alerts = payload.get("alerts")
    if not title and isinstance(alerts, list):  # Alertmanager's webhook JSON
        names = sorted({str(alert.get("labels", {}).get("alertname", "?"))
                        for alert in alerts if isinstance(alert, dict)})
        title = f"[{str(payload.get('status', '')).upper()}] {', '.join(names)}"
        text = f"{len(alerts)} alert(s), group {payload.get('groupKey', '')}"
    if not title:
        title = "(no title)"
        text = json.dumps(payload, sort_keys=True)
    color = _text(first.get("color")).strip()
    color = _NAMED_COLORS.get(color, color)
    fields = first.get("fields")
    shown = tuple((_text(item.get("title")), _text(item.get("value")))
                  for item in (fields if isinstance(fields, list) else [])
                  if isinstance(item, dict))
    received = entry.get("received_at")
    return ChatLine(
        receiver=str(entry.get("receiver", "")),
        received_at=float(received) if isinstance(received, int | float) else None,
        title=title, text=text[:MAX_TEXT_CHARS],
        color=color if _COLOR.fullmatch(color) else _DEFAULT_COLOR, fields=shown)


def _time(moment: float | None) -> str:
    if moment is None:
        return "?"
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


_STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5rem;max-width:60rem;color:#212121}
h1{font-size:1.4rem;margin:0 0 .3rem} nav a{margin-right:.8rem} .empty{color:#757575}
article{border-left:6px solid;padding:.4rem .8rem;margin:.8rem 0;background:#fafafa}
header{font-size:.85rem;color:#616161} h2{font-size:1.05rem;margin:.2rem 0}
p{white-space:pre-wrap;margin:.2rem 0} dl{display:flex;flex-wrap:wrap;gap:.2rem 1rem;margin:0}
dt{font-weight:600;font-size:.85rem} dd{margin:0;font-size:.85rem}
"""


def render_page(entries: Sequence[Mapping[str, Any]], *, receiver: str | None,
                receivers: Sequence[str]) -> str:
    """The whole page: every entry of ``entries`` (oldest first, as stored) newest first;
    ``receiver`` is the filter in force, ``receivers`` every receiver that has posted."""
    lines = [summarize(entry) for entry in reversed(entries)]
    esc = html.escape
    nav = " ".join(
        ['<a href="/chat">all</a>'] +
        [f'<a href="/chat?receiver={esc(quote(name))}">{esc(name)}</a>' for name in receivers])
    showing = f" — {esc(receiver)}" if receiver is not None else ""
    body = "".join(
        f'<article style="border-color:{line.color}"><header>'
        f"<strong>{esc(line.receiver)}</strong> · <time>{esc(_time(line.received_at))}</time>"
        f"</header><h2>{esc(line.title)}</h2>"
        + (f"<p>{esc(line.text)}</p>" if line.text else "")
        + ("<dl>" + "".join(f"<dt>{esc(name)}</dt><dd>{esc(value)}</dd>"
                            for name, value in line.fields) + "</dl>" if line.fields else "")
        + "</article>"
        for line in lines) or '<p class="empty">No messages yet.</p>'
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="refresh" content="{REFRESH_SECONDS}">'
            f"<title>Demo chat inbox{showing}</title><style>{_STYLE}</style></head><body>"
            f"<h1>Demo chat inbox{showing}</h1>"
            f"<nav>{nav}</nav><p class=\"empty\">{len(lines)} message(s), newest first; "
            f"this page refreshes every {REFRESH_SECONDS} s. Scripts get JSON "
            f"(<code>Accept: application/json</code>).</p>{body}</body></html>")
