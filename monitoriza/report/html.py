"""The readiness report as one self-contained HTML page.

Charts are inline SVG (``svg.py``), styles are inline: the file opens anywhere, offline, and
can be mailed as is. Every value from Prometheus, the store or the configuration is escaped.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from html import escape

from monitoriza.drill.matrix import counts_text
from monitoriza.drill.matrix_html import STYLE as MATRIX_STYLE
from monitoriza.drill.matrix_html import blind_spots_section, legend, loads_section, matrix_table
from monitoriza.report.model import (
    DrillFacts,
    Facts,
    ServiceAvailability,
    human_duration,
    iso,
    percent,
)
from monitoriza.report.svg import Bar, Line, availability_bars, availability_lines

STYLE = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:24px;color:#1d2330;
max-width:1240px}
h1{margin-bottom:4px}h2{margin-top:32px;border-bottom:1px solid #d0d5dd;padding-bottom:4px}
.meta{color:#5a6272}table{border-collapse:collapse;margin:8px 0;font-size:14px}
th,td{border:1px solid #d0d5dd;padding:4px 10px;text-align:left;vertical-align:top}
th{background:#f2f4f7}td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.ready td:nth-child(2),tr.at-risk td:nth-child(2),tr.not-ready td:nth-child(2)
{white-space:nowrap}.ready{background:#d3f4dc}.at-risk{background:#fff1c2}.not-ready{background:#ffd6d6}
.bad{color:#b42318;font-weight:600}.good{color:#067647;font-weight:600}
.none{color:#5a6272;font-style:italic}svg{max-width:100%;height:auto;display:block}
"""


def availability_chart(entries: Sequence[ServiceAvailability]) -> str:
    """Bars of each service's availability against its target, as inline SVG."""
    return availability_bars([Bar(entry.service, entry.availability, entry.target)
                              for entry in entries if entry.availability is not None])


def timeline_chart(entries: Sequence[ServiceAvailability]) -> str:
    """Each service's availability per step over the period, as inline SVG."""
    return availability_lines([Line(entry.service, entry.series) for entry in entries])


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]], *,
           numeric: frozenset[int] = frozenset(), classes: Sequence[str] | None = None,
           empty: str = "none") -> str:
    body = []
    for index, row in enumerate(rows):
        css = f' class="{escape(classes[index])}"' if classes is not None else ""
        cells = "".join(f'<td class="num">{escape(cell)}</td>' if column in numeric
                        else f"<td>{escape(cell)}</td>" for column, cell in enumerate(row))
        body.append(f"<tr{css}>{cells}</tr>")
    if not body:
        return f'<p class="none">{escape(empty)}</p>'
    head = "".join(f"<th>{escape(header)}</th>" for header in headers)
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def drills_section(drills: DrillFacts) -> str:
    """The latest drill run's fault-coverage matrix, its blind spots, and the latest load
    drill of each flow."""
    parts = ["<h2>Fire drills</h2>"]
    if drills.matrix is None:
        parts.append(f'<p class="bad">no drill run to judge by: {escape(drills.missing or "")}'
                     "; every service is at risk until drilled</p>")
    else:
        page = f" (each experiment's stages: {drills.page_file})" if drills.page_file else ""
        parts.append(
            f'<p class="meta">latest run {escape(drills.drill_id or "")}: '
            f"{escape(iso(drills.started_at) or '?')} → {escape(iso(drills.finished_at) or '?')}"
            f", {escape(drills.run_file or '')}{escape(page)}</p>"
            f"<p><b>{escape(counts_text(drills.matrix))}</b>. Times are seconds after the "
            "fault was injected.</p>")
        parts.append(matrix_table(drills.matrix, link=False))
        parts.append("<details><summary>What the states mean</summary>"
                     f"{legend()}</details>")
        parts.append("<h3>Blind spots</h3>")
        parts.append(blind_spots_section(drills.blind_spots))
    parts.append("<h3>Load and SLOs per flow</h3>")
    parts.append(loads_section(drills.loads))
    parts.extend(f'<p class="bad">{escape(error)}</p>' for error in drills.load_errors)
    return "".join(parts)


def render_html(facts: Facts) -> str:
    """The report page for ``facts``."""
    responder = facts.responder
    no_data = f"no responder data: {responder.missing}" if responder.missing else ""
    parts = [
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">",
        "<title>Monitoriza readiness report</title>",
        f"<style>{STYLE}{MATRIX_STYLE}</style></head><body>",
        "<h1>Monitoriza readiness report</h1>",
        f'<p class="meta">{escape(iso(facts.start))} → {escape(iso(facts.end))} '
        f"({escape(human_duration(facts.end - facts.start))}), Prometheus "
        f"{escape(facts.prometheus_url)}</p>",
        "<h2>Verdicts</h2>",
        _table(["service", "verdict", "reasons"],
               [[v.service, v.verdict, "; ".join(v.reasons) or "—"] for v in facts.verdicts],
               classes=[v.verdict.replace(" ", "-") for v in facts.verdicts],
               empty="no services"),
        drills_section(facts.drills),
        "<h2>Availability</h2>",
        "<p>Share of the period's minutes in which every probe of the service succeeded.</p>",
        _table(["service", "tier", "availability", "target", "met"],
               [[a.service, a.tier, percent(a.availability, 3), percent(a.target, 1),
                 "—" if a.availability is None else
                 ("yes" if a.availability >= a.target else "no")]
                for a in facts.availability],
               numeric=frozenset({2, 3}), empty="no services"),
        availability_chart(facts.availability),
        timeline_chart(facts.availability),
        "<h2>Incidents</h2>",
    ]
    if no_data:
        parts.append(f'<p class="none">{escape(no_data)}</p>')
    else:
        parts.append(_table(
            ["#", "root service", "services", "alerts", "state", "first alert", "opened",
             "time to detect", "resolved", "time to recover", "caused by"],
            [[str(i.id), i.root_service or "—", ", ".join(i.services), ", ".join(i.alertnames),
              i.state, iso(i.first_alert_at) or "—", iso(i.opened_at),
              human_duration(i.time_to_detect), iso(i.resolved_at) or "—",
              human_duration(i.time_to_recover),
              f"drill {i.drill_id}" if i.drill_id else "—"] for i in responder.incidents],
            numeric=frozenset({0, 7, 9}), empty="no incidents in the period"))
    parts.append("<h2>Healing</h2>")
    if no_data:
        parts.append(f'<p class="none">{escape(no_data)}</p>')
    else:
        parts.append(_table(
            ["service", "playbook", "outcomes", "ran", "success ratio"],
            [[h.service, h.playbook, ", ".join(f"{k}: {n}" for k, n in h.outcomes.items()),
              str(h.ran), percent(h.success_ratio, 0)] for h in responder.healing],
            numeric=frozenset({3, 4}), empty="no healing actions in the period"))
        parts.append("<h3>Breaker openings</h3>")
        parts.append(_table(
            ["service", "playbook", "open until", "refusals while open"],
            [[b.service, b.playbook, iso(b.until) or "?", str(b.refusals)]
             for b in responder.breaker_openings],
            numeric=frozenset({3}), empty="no breaker opened in the period"))
        parts.append("<h3>Breakers not closed now</h3>")
        parts.append(_table(
            ["service", "playbook", "state", "opened"],
            [[b.service, b.playbook, b.state, iso(b.opened_at) or "—"]
             for b in responder.breakers_now], empty="every breaker is closed"))
    parts.append("<h2>Time to failure</h2>")
    parts.append(_table(
        ["service", "forecast", "series", "median time to failure", "horizon"],
        [[t.service, t.forecast, t.series or "—",
          "none within the horizon" if t.seconds is None else human_duration(t.seconds),
          human_duration(t.horizon)] for t in facts.time_to_failure],
        empty="no forecast published"))
    parts.append("<h2>Silent failures</h2><h3>Probes without a success</h3>")
    parts.append(_table(
        ["service", "probe", "longest time since a success"],
        [[s.service, s.probe, human_duration(s.max_staleness)] for s in facts.stale_probes],
        numeric=frozenset({2}), empty="no probe data"))
    parts.append("<h3>Components reported unknown</h3>")
    parts.append(_table(
        ["service", "component", "share of the period"],
        [[u.service, u.component, percent(u.fraction, 1)] for u in facts.unknown_components],
        numeric=frozenset({2}), empty="no component was unknown"))
    parts.append("<h2>Audit chain</h2>")
    if no_data:
        parts.append(f'<p class="none">{escape(no_data)}</p>')
    elif responder.audit is not None:
        audit = responder.audit
        css = "good" if audit.ok else "bad"
        verdict = "intact" if audit.ok else "BROKEN"
        parts.append(f'<p class="{css}">{escape(verdict)}: {audit.entries} entries, '
                     f"{audit.checkpoints} signed checkpoints; {escape(audit.reason)}</p>")
    parts.append("</body></html>\n")
    return "".join(parts)
