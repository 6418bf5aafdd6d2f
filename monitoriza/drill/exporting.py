"""``monitoriza drill export --format chaostoolkit``: one Chaos Toolkit experiment file per
experiment of the plan, for ``chaos run`` (docs/drills.md, "Running a drill with chaos run").

Exit status: 0 files written; 2 an input or the selection is bad (nothing written).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TextIO

from monitoriza.drill.chaos import drills_dir
from monitoriza.drill.commands import (
    EXIT_BAD_INPUT,
    EXIT_OK,
    PLAN_INPUT_ERRORS,
    load_plan,
    plan_error_lines,
)
from monitoriza.drill.export import DrillSettings, to_chaostoolkit
from monitoriza.drill.run import RunInputError, new_drill_id, select, time_limit_of

CHAOS_FLAGS = "--hypothesis-strategy continuously --hypothesis-frequency 2 --fail-fast"


def file_name(key: str) -> str:
    """``redis:container_stop`` -> ``redis_container_stop.json`` (no colons in file names)."""
    return key.replace(":", "_") + ".json"


def export_command(config: Path, alertmanager: Path, rules: Path, prometheus: Path, *,
                   only: tuple[str, ...], out_dir: Path | None, time_limit: float | None,
                   max_fill_bytes: int, out: TextIO, err: TextIO) -> int:
    try:
        plan = load_plan(config, alertmanager, rules, prometheus)
        experiments = select(plan, only)
    except RunInputError as exc:
        err.write(f"{exc}\n")
        return EXIT_BAD_INPUT
    except PLAN_INPUT_ERRORS as exc:
        for line in plan_error_lines(exc, config, alertmanager):
            err.write(f"{line}\n")
        return EXIT_BAD_INPUT
    directory = out_dir or drills_dir(config) / "chaostoolkit"
    directory.mkdir(parents=True, exist_ok=True)
    drill_id = new_drill_id(time.time()).replace("drill-", "chaos-")
    for experiment in experiments:
        settings = DrillSettings(config, rules, alertmanager, prometheus, drill_id,
                                 time_limit_of(experiment, time_limit), max_fill_bytes)
        path = directory / file_name(experiment.key)
        path.write_text(json.dumps(to_chaostoolkit(experiment, settings), indent=2) + "\n",
                        encoding="utf-8")
        out.write(f"{path}\n")
    out.write(f"{len(experiments)} experiment(s) written; run one with: chaos run {CHAOS_FLAGS} "
              f"FILE (pip install chaostoolkit; this package must be importable there)\n")
    return EXIT_OK
