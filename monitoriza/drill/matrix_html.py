"""The fault-coverage matrix of a drill run as one self-contained HTML page.

Inline styles, no script, no external asset: the page opens offline and can be mailed. Each
cell says its state in words as well as in colour, so it reads in black and white too, and
links to its details (stages against their deadlines, reasons, canary, incidents) further
down the page. Every value from the results files is escaped. :func:`matrix_table`,
:func:`loads_section` and :data:`STYLE` are reused by ``monitoriza report``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from html import escape
from typing import Any

from monitoriza.drill.matrix import (
    CellState,
    Entry,
    LoadSummary,
    Matrix,
    MatrixCell,
    counts_text,
    seconds_text,
    summarize_load,
)

# One class per state; colours for the screen, the words for print and colour blindness.
STATE_CLASS: Mapping[CellState, str] = {
    "pass": "st-pass", "late": "st-late", "missed": "st-missed", "wrong": "st-wrong",
    "aborted": "st-aborted", "not run": "st-not-run", "never tested": "st-never",
    "n/a": "st-na"}
STATE_MEANING: Mapping[CellState, str] = {
    "pass": "every stage on time",
    "late": "every stage happened, one after its deadline",
    "missed": "a stage never happened (no alert, a receiver never reached, not healed)",
    "wrong": "something happened wrongly (severity, receiver, root cause, canary lost)",
    "aborted": "stopped before a verdict (steady state broke, time limit, kill switch)",
    "not run": "planned but refused before injecting (the reason says why)",
    "never tested": "planned, but the run neither ran nor refused it",
    "n/a": "the fault does not apply to this service"}

STYLE = """
.matrix td.cell{min-width:120px;font-size:13px}
.matrix .entry+.entry{border-top:1px dotted #98a2b3;margin-top:4px;padding-top:4px}
.matrix .state{font-weight:700;text-transform:uppercase;letter-spacing:.02em}
.matrix .small{font-size:12px;color:#344054}
.st-pass{background:#d3f4dc}.st-late{background:#fff1c2}.st-missed{background:#ffd6d6}
.st-wrong{background:#fbd3f0}.st-aborted{background:#d0d5dd}.st-not-run{background:#f2f4f7}
.st-never{background:#fde3cf}.st-na{color:#98a2b3;text-align:center}
.matrix td.st-never,.matrix td.st-not-run{border-style:dashed}
.outcome-on_time{color:#067647}.outcome-late{color:#b54708}.outcome-missed,.outcome-wrong
{color:#b42318;font-weight:600}.outcome-skipped{color:#5a6272}
.detail{border:1px solid #d0d5dd;padding:4px 14px;margin:12px 0}
.detail h3{margin:8px 0}table.facts th{width:190px}
"""

_PAGE_STYLE = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:24px;color:#1d2330;
max-width:1400px}
h1{margin-bottom:4px}h2{margin-top:32px;border-bottom:1px solid #d0d5dd;padding-bottom:4px}
.meta{color:#5a6272}table{border-collapse:collapse;margin:8px 0;font-size:14px}
th,td{border:1px solid #d0d5dd;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f2f4f7}td.num{text-align:right;font-variant-numeric:tabular-nums}
.bad{color:#b42318;font-weight:600}.good{color:#067647;font-weight:600}
.none{color:#5a6272;font-style:italic}a{color:inherit}
"""


def iso(moment: float | None) -> str:
    if moment is None:
        return "—"
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="seconds").replace(
        "+00:00", "Z")


def anchor(key: str) -> str:
    """The id of an experiment's details section."""
    return "cell-" + "".join(c if c.isalnum() or c in "-_" else "-" for c in key)


def _seconds(value: Any) -> str:
    """A number of seconds, or a Deadline's data (``{"seconds": ...}``), as text."""
    if isinstance(value, Mapping):
        value = value.get("seconds")
    return seconds_text(float(value)) if isinstance(value, int | float) \
        and not isinstance(value, bool) else "—"


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]], *,
           numeric: frozenset[int] = frozenset(), empty: str = "none") -> str:
    """A table of escaped text cells."""
    body = ["<tr>" + "".join(f'<td class="num">{escape(cell)}</td>' if column in numeric
                             else f"<td>{escape(cell)}</td>"
                             for column, cell in enumerate(row)) + "</tr>" for row in rows]
    if not body:
        return f'<p class="none">{escape(empty)}</p>'
    head = "".join(f"<th>{escape(header)}</th>" for header in headers)
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


# -- the matrix -----------------------------------------------------------------------------

def _entry_html(entry: Entry, *, link: bool) -> str:
    state = escape(entry.state)
    label = f'<a href="#{anchor(entry.key)}">{state}</a>' if link else state
    parts = [f'<span class="state">{label}</span>']
    if entry.target:
        parts.append(f" of {escape(entry.target)}")
    if entry.times_text():
        parts.append(f'<div class="small">{escape(entry.times_text())}</div>')
    if entry.state != "pass" and entry.reasons:
        parts.append(f'<div class="small">{escape(entry.reasons[0])}'
                     + (f" (+{len(entry.reasons) - 1} more)" if len(entry.reasons) > 1
                        else "") + "</div>")
    return f'<div class="entry">{"".join(parts)}</div>'


def _cell_html(cell: MatrixCell, *, link: bool) -> str:
    css = STATE_CLASS[cell.state]
    if not cell.entries:
        return f'<td class="cell {css}" title="the fault does not apply">n/a</td>'
    inner = "".join(_entry_html(entry, link=link) for entry in cell.entries)
    return f'<td class="cell {css}">{inner}</td>'


def matrix_table(matrix: Matrix, *, link: bool = True) -> str:
    """Service by fault kind, each cell its state in words (and colour), measured times and
    the first reason; ``link``: the states link to the details of :func:`cell_details`."""
    if not matrix.rows:
        return '<p class="none">the plan has no experiment</p>'
    head = "".join(f"<th>{escape(fault.replace('_', ' '))}</th>" for fault in matrix.faults)
    rows = "".join(f"<tr><th>{escape(row.service)}</th>"
                   + "".join(_cell_html(cell, link=link) for cell in row.cells) + "</tr>"
                   for row in matrix.rows)
    return f'<table class="matrix"><tr><th>service</th>{head}</tr>{rows}</table>'


def legend() -> str:
    """What each state means, in a line per state, styled like the cells."""
    rows = "".join(f'<tr><td class="{STATE_CLASS[state]}"><b>{escape(state.upper())}</b></td>'
                   f"<td>{escape(meaning)}</td></tr>" for state, meaning in STATE_MEANING.items())
    return f'<table class="matrix legend">{rows}</table>'


# -- details of each experiment -------------------------------------------------------------

def _stages(stages: Sequence[Mapping[str, Any]]) -> str:
    if not stages:
        return '<p class="none">no stage recorded</p>'
    rows = []
    for stage in stages:
        outcome = str(stage.get("outcome", ""))
        rows.append(
            f"<tr><td>{escape(str(stage.get('stage', '')))}</td>"
            f"<td>{escape(str(stage.get('what', '')))}</td>"
            f'<td class="num">{escape(_seconds(stage.get("seconds")))}</td>'
            f'<td class="num">{escape(_seconds(stage.get("deadline")))}</td>'
            f'<td class="outcome-{escape(outcome)}">{escape(outcome.replace("_", " "))}</td>'
            f"<td>{escape(str(stage.get('detail') or ''))}</td></tr>")
    return ("<table><tr><th>stage</th><th>what</th><th>seconds</th><th>deadline</th>"
            f"<th>outcome</th><th>detail</th></tr>{''.join(rows)}</table>")


def _text(value: Any) -> str:
    if isinstance(value, Mapping):
        return ", ".join(f"{k}: {_text(v)}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return "; ".join(_text(v) for v in value)
    return "—" if value is None else str(value)


def _facts(result: Mapping[str, Any]) -> str:
    items: list[tuple[str, str]] = [("injected at", iso(result.get("injected_at")))]
    if result.get("target"):
        items.append(("target", str(result["target"])))
    root = result.get("root_cause") or {}
    if root:
        items.append(("root cause", f"expected {root.get('expected') or '—'}, "
                                    f"named {root.get('named') or 'none'}"))
    behind = result.get("detect_vs_prometheus")
    if isinstance(behind, int | float):
        items.append(("detected after Prometheus",
                      f"{seconds_text(float(behind))} after activeAt + for"))
    heal = result.get("heal")
    if heal:
        text = f"{heal.get('playbook') or '—'}: {str(heal.get('outcome', '')).replace('_', ' ')}"
        items.append(("heal", text))
        if heal.get("audit"):
            items.append(("audit entries", _text(heal["audit"])))
    canary = result.get("canary")
    items.append(("canary", "none written" if not canary else _text(canary)))
    incidents = result.get("incidents") or []
    items.append(("incidents", ", ".join(f"#{i}" for i in incidents) or "none"))
    if result.get("drill_id"):
        items.append(("drill", str(result["drill_id"])))
    return '<table class="facts">' + "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td>"
                                             "</tr>" for k, v in items) + "</table>"


def cell_details(matrix: Matrix) -> str:
    """A section per planned experiment: state, reasons, times, stages, facts."""
    sections = []
    for entry in matrix.entries():
        css = STATE_CLASS[entry.state]
        parts = [f'<div class="detail" id="{anchor(entry.key)}">',
                 f'<h3>{escape(entry.key)}: <span class="{css} state">'
                 f"{escape(entry.state.upper())}</span></h3>"]
        if entry.reasons:
            parts.append("<ul>" + "".join(f"<li>{escape(r)}</li>" for r in entry.reasons)
                         + "</ul>")
        if entry.times_text():
            parts.append(f"<p>{escape(entry.times_text())} (seconds after the fault)</p>")
        if entry.result is not None:
            parts.append(_stages(entry.result.get("stages") or ()))
            parts.append(_facts(entry.result))
        elif entry.state == "never tested":
            parts.append('<p class="none">the run has no result and no refusal for it</p>')
        parts.append("</div>")
        sections.append("".join(parts))
    return "".join(sections)


# -- blind spots and load -------------------------------------------------------------------

def blind_spots_section(blind_spots: Sequence[Mapping[str, Any]]) -> str:
    """Flows that broke during a fault while no alert fired."""
    return _table(["flow", "during", "failed at", "services"],
                  [[str(b.get("flow", "")), str(b.get("key", "")), str(b.get("failed_at", "")),
                    ", ".join(map(str, b.get("services") or ()))] for b in blind_spots],
                  empty="none: every flow that broke during a fault had an alert")


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:g}"


def loads_section(loads: Sequence[LoadSummary]) -> str:
    """One row per flow (SLO, rates, runs), then each flow's steps with their percentiles."""
    if not loads:
        return '<p class="none">no load drill results (monitoriza drill load)</p>'
    rows = []
    for load in loads:
        share = load.rate_share
        rate = (f"{load.achieved_rate:.2f}/s of {load.target_rate:g}/s"
                + (f" ({share * 100:.1f} %)" if share is not None else ""))
        css = "none" if load.slo_met is None else "good" if load.slo_met else "bad"
        slo = escape(load.slo_text()) + "".join(f"<br>{escape(miss)}"
                                                 for miss in load.slo_missed)
        rows.append(f"<tr><td>{escape(load.flow)}</td><td>{escape(iso(load.started_at))}"
                    + (" (interrupted)" if load.interrupted else "") + "</td>"
                    f'<td class="{css}">{slo}</td><td class="num">{load.users}</td>'
                    f'<td class="num">{escape(rate)}</td>'
                    f'<td class="num">{load.runs}</td><td class="num">{load.failed_runs}</td>'
                    "</tr>")
    parts = ["<table><tr><th>flow</th><th>started</th><th>SLO</th><th>users</th>"
             "<th>achieved rate</th><th>runs</th><th>failed runs</th></tr>"
             + "".join(rows) + "</table>"]
    for load in loads:
        parts.append(f"<h3>{escape(load.flow)}: steps</h3>")
        parts.append(_table(["step", "requests", "failures", "p50 ms", "p95 ms", "p99 ms"],
                            [[s.name, str(s.requests), str(s.failures), _ms(s.p50_ms),
                              _ms(s.p95_ms), _ms(s.p99_ms)] for s in load.steps],
                            numeric=frozenset({1, 2, 3, 4, 5}), empty="no step"))
    return "".join(parts)


# -- the page -------------------------------------------------------------------------------

def render_html(run: Mapping[str, Any], matrix: Matrix,
                loads: Mapping[str, Mapping[str, Any]]) -> str:
    """The drill run's page: matrix, legend, details per experiment, blind spots, loads
    (``loads`` as :func:`monitoriza.drill.matrix.latest_loads` returns them)."""
    drill_id = str(run.get("drill_id", ""))
    summaries = [summarize_load(load) for _, load in sorted(loads.items())]
    return "".join([
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
        f"<title>Drill run {escape(drill_id)}</title>",
        f"<style>{_PAGE_STYLE}{STYLE}</style></head><body>",
        f"<h1>Drill run {escape(drill_id)}</h1>",
        f'<p class="meta">{escape(iso(run.get("started_at")))} → '
        f'{escape(iso(run.get("finished_at")))}, configuration '
        f'{escape(str(run.get("config", "")))}</p>',
        f"<p><b>{escape(counts_text(matrix))}</b></p>",
        "<h2>Fault coverage</h2>",
        "<p>Times are seconds after the fault was injected. A state links to its details.</p>",
        matrix_table(matrix),
        "<h3>What the states mean</h3>", legend(),
        "<h2>Blind spots</h2>", blind_spots_section(run.get("blind_spots") or ()),
        "<h2>Load and SLOs per flow</h2>", loads_section(summaries),
        "<h2>Each experiment</h2>", cell_details(matrix),
        "</body></html>\n"])
