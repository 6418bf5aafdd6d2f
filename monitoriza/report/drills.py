"""Reading the latest fire drill and load drills for the readiness report.

The files are those ``monitoriza drill run`` and ``monitoriza drill load`` write in
``drills/`` beside the configuration. Like a missing store, a missing or unreadable run is
not an error of the report: the drill section says why there is none, and every service is
then "never drilled" (at risk, see :func:`monitoriza.report.model.drill_reasons`).

The plan judged is the run file's own ``plan`` list, not one recomputed here: the report is
given only ``--config``, while a plan also needs the rule, Alertmanager and Prometheus files
the drill used; guessing them could judge the run against files that are not the estate's.
The run's list is the plan derived from the real files when the drill ran.
"""

from __future__ import annotations

from pathlib import Path

from monitoriza.drill.matrix import (
    DrillResultsError,
    build_matrix,
    latest_load_files,
    latest_run,
    load_load,
    load_run,
    summarize_load,
)
from monitoriza.report.model import DrillFacts


def drills_directory(config_path: Path) -> Path:
    """``drills/`` beside the configuration file, where the drill commands write."""
    return config_path.absolute().parent / "drills"


def collect_drills(directory: Path) -> DrillFacts:
    """The latest run's matrix and blind spots, and the latest load result of each flow."""
    loads, load_errors = [], []
    for path in latest_load_files(directory).values():
        try:
            loads.append(summarize_load(load_load(path)))
        except DrillResultsError as exc:
            load_errors.append(str(exc))
    run_path = latest_run(directory)
    if run_path is None:
        return DrillFacts(str(directory), missing=f"no drill run in {directory} "
                          "(monitoriza drill run writes drill-run-*.json there)",
                          loads=loads, load_errors=load_errors)
    try:
        run = load_run(run_path)
        matrix = build_matrix(run)
    except DrillResultsError as exc:
        return DrillFacts(str(directory), missing=str(exc), run_file=str(run_path),
                          loads=loads, load_errors=load_errors)
    started, finished = run.get("started_at"), run.get("finished_at")
    page = run_path.with_suffix(".html")
    return DrillFacts(
        str(directory), run_file=str(run_path),
        page_file=str(page) if page.is_file() else None,
        drill_id=str(run.get("drill_id", "")),
        started_at=float(started) if isinstance(started, int | float) else None,
        finished_at=float(finished) if isinstance(finished, int | float) else None,
        matrix=matrix, blind_spots=[dict(spot) for spot in run["blind_spots"]
                                    if isinstance(spot, dict)],
        loads=loads, load_errors=load_errors)
