"""The ``monitoriza report`` command: collect, decide, write one HTML (or JSON) file."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TextIO

from monitoriza.config import load_config
from monitoriza.drill.matrix import counts_text
from monitoriza.exceptions import MonitorizaError
from monitoriza.report.collect import Progress, PrometheusReader, ReportError, collect
from monitoriza.report.drills import drills_directory
from monitoriza.report.html import render_html
from monitoriza.report.model import DrillFacts

FORMATS = ("html", "json")


def report_command(config: Path, since: float, *, out: Path | None, output_format: str,
                   prometheus_url: str | None, progress: TextIO) -> int:
    """Write the readiness report of the last ``since`` seconds to ``out`` (default
    ``report.html`` or ``report.json``; ``-`` is standard output); 0 on success, 1 when the
    configuration is bad or Prometheus cannot be queried (the reason goes to ``progress``).
    ``prometheus_url`` defaults to the configuration's ``exporter.prometheus_url``."""
    if output_format not in FORMATS:
        progress.write(f"report: unknown format {output_format!r} (html or json)\n")
        return 1
    if since <= 0:
        progress.write("report: --since must be a positive duration\n")
        return 1
    try:
        loaded = load_config(config)
    except MonitorizaError as exc:
        progress.write(f"report: {exc}\n")
        return 1
    url = prometheus_url or str(loaded.exporter.prometheus_url)
    try:
        facts = collect(loaded, PrometheusReader(url), since, Progress(progress),
                        drills_dir=drills_directory(config))
    except ReportError as exc:
        progress.write(f"report: error: {exc}\n")
        return 1
    if output_format == "json":
        text = json.dumps(facts.to_json(), indent=2, sort_keys=True) + "\n"
    else:
        text = render_html(facts)
    target = out if out is not None else Path(f"report.{output_format}")
    if str(target) == "-":
        sys.stdout.write(text)
    else:
        target.write_text(text, encoding="utf-8")
        progress.write(f"report: wrote {target}\n")
    for line in drill_summary(facts.drills):
        progress.write(f"report: {line}\n")
    counts = {name: sum(1 for v in facts.verdicts if v.verdict == name)
              for name in ("ready", "at risk", "not ready")}
    progress.write("report: " + ", ".join(f"{n} {name}" for name, n in counts.items()) + "\n")
    return 0


def drill_summary(drills: DrillFacts) -> list[str]:
    """The drill and load results in a few lines for the terminal."""
    if drills.matrix is None:
        lines = [f"drills: {drills.missing}"]
    else:
        lines = [f"drills: latest run {drills.drill_id} ({drills.run_file}): "
                 f"{counts_text(drills.matrix)}"]
        lines.extend(f"drills: {entry.key} {entry.state}" for entry in drills.matrix.entries()
                     if entry.state != "pass")
    for load in drills.loads:
        lines.append(f"load {load.flow}: SLO {load.slo_text()}, {load.achieved_rate:.2f}/s of "
                     f"{load.target_rate:g}/s, {load.failed_runs} of {load.runs} runs failed")
    lines.extend(f"load: {error}" for error in drills.load_errors)
    return lines
