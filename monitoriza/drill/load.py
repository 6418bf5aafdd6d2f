"""``monitoriza drill load``: drive one configured flow at a fixed rate with Locust, print a
table per step, judge the ``--slo`` and store the results as JSON (see docs/drills.md).

The load itself runs in a child process (:mod:`monitoriza.drill.loadgen`) because Locust
monkey-patches the standard library for gevent on import; this module never imports Locust,
so nothing else in Monitoriza is patched. Input is checked here first, so bad input gets one
line and exit 2 without starting any load.

Exit status: 0 when every objective is met (or none is given), 1 when one is missed, 2 on bad
input (unknown flow, bad ``--slo``, a configuration error) or when the load generator fails.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from monitoriza.config import load_config
from monitoriza.drill.slo import PERCENTILES, Slo, SloError, StepFigures, judge_slo, parse_slo
from monitoriza.exceptions import ConfigError

EXIT_OK = 0
EXIT_SLO_MISSED = 1
EXIT_BAD_INPUT = 2
PROGRESS_EVERY_SECONDS = 2.0


@dataclass(frozen=True, slots=True)
class LoadOptions:
    """What ``drill load`` was asked to do."""

    config: Path
    flow: str
    users: int
    rate: float  # flow runs per second, across all users
    duration: float  # seconds
    slo: str | None = None
    out: Path | None = None
    as_json: bool = False


def default_results_file(config: Path, flow: str, started_at: float) -> Path:
    """``drills/load-FLOW-YYYYmmddTHHMMSSZ.json`` beside the configuration file."""
    stamp = datetime.fromtimestamp(started_at, UTC).strftime("%Y%m%dT%H%M%SZ")
    return config.absolute().parent / "drills" / f"load-{flow}-{stamp}.json"


def step_figures(results: dict[str, Any]) -> list[StepFigures]:
    return [StepFigures(step["name"], step["requests"], step["percentiles_ms"])
            for step in results["steps"]]


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def format_table(results: dict[str, Any]) -> str:
    """The summary line, one row per step, and the SLO verdict (pure)."""
    runs, failed = results["runs"], results["failed_runs"]
    share = results["achieved_rate"] / results["target_rate"] * 100
    lines = [f"flow {results['flow']}: {runs} runs in {results['elapsed_seconds']:.1f}s by "
             f"{results['users']} users, {results['achieved_rate']:.2f}/s of "
             f"{results['target_rate']:g}/s target ({share:.1f}%), {failed} failed "
             f"({100 * failed / runs if runs else 0:.2f}%)"
             + (" — interrupted" if results["interrupted"] else "")]
    header = ["step", "requests", "failures", *(f"{name} ms" for name in PERCENTILES)]
    rows = [[step["name"], str(step["requests"]), str(step["failures"]),
             *(_ms(step["percentiles_ms"][name]) for name in PERCENTILES)]
            for step in results["steps"]]
    widths = [max(len(row[column]) for row in [header, *rows]) for column in range(len(header))]
    for row in [header, *rows]:
        lines.append("  ".join([row[0].ljust(widths[0]),
                                *(cell.rjust(width) for cell, width in zip(row[1:], widths[1:],
                                                                           strict=True))]))
    lines.extend(f"  {step['name']}: first failure: {step['first_failure']}"
                 for step in results["steps"] if step["first_failure"])
    slo = results.get("slo")
    if slo is not None:
        verdict = "met" if not slo["missed"] else "MISSED"
        lines.append(f"SLO {slo['objectives']}: {verdict}")
        lines.extend(f"  {miss}" for miss in slo["missed"])
    return "\n".join(lines)


def _generate(options: LoadOptions) -> dict[str, Any] | None:
    spec = {"config": str(options.config.absolute()), "flow": options.flow,
            "users": options.users, "rate": options.rate, "duration": options.duration,
            "progress_every": PROGRESS_EVERY_SECONDS}
    # stderr is inherited: the worker's progress lines reach the user as they come.
    with subprocess.Popen([sys.executable, "-m", "monitoriza.drill.loadgen",
                           json.dumps(spec)], stdout=subprocess.PIPE) as worker:
        while True:
            try:
                stdout, _ = worker.communicate()
                break
            except KeyboardInterrupt:
                continue  # the worker had the same Ctrl-C: it stops and reports what ran
    if worker.returncode != 0:
        return None
    result: dict[str, Any] = json.loads(stdout)
    return result


class _BadInput(Exception):  # noqa: N818 - private signal, each line reaches the user
    def __init__(self, lines: list[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines


def _check_input(options: LoadOptions) -> Slo | None:
    """The parsed ``--slo``; _BadInput when the duration, configuration, flow or SLO is bad."""
    if options.duration <= 0:
        raise _BadInput([f"--duration: must be more than 0, got {options.duration:g}s"])
    try:
        config = load_config(options.config)
    except ConfigError as exc:
        raise _BadInput([f"{options.config}: {message}" for message in exc.messages]) from None
    if options.flow not in config.flows:
        known = ", ".join(sorted(config.flows)) or "none"
        raise _BadInput([f"{options.config}: no flow named {options.flow!r} (flows: {known})"])
    if options.slo is None:
        return None
    try:
        return parse_slo(options.slo)
    except SloError as exc:
        raise _BadInput([f"--slo {options.slo!r}: {exc}"]) from None


def load_command(options: LoadOptions, *, out: TextIO, err: TextIO) -> int:
    """Run the drill; problems go to ``err``, one line each."""
    try:
        slo = _check_input(options)
    except _BadInput as exc:
        err.writelines(f"{line}\n" for line in exc.lines)
        return EXIT_BAD_INPUT
    results = _generate(options)
    if results is None:
        err.write("drill load: the load generator failed (its error is above)\n")
        return EXIT_BAD_INPUT
    results["config"] = str(options.config)
    misses: list[str] = []
    if slo is not None:
        misses = judge_slo(slo, step_figures(results), results["runs"], results["failed_runs"])
        results["slo"] = {"objectives": slo.describe(), "met": not misses, "missed": misses}
    path = options.out or default_results_file(options.config, options.flow,
                                                results["started_at"])
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    except OSError as exc:
        err.write(f"drill load: cannot write the results to {path}: {exc}\n")
        return EXIT_BAD_INPUT
    if options.as_json:
        json.dump(results, out, indent=2)
        out.write("\n")
    else:
        out.write(format_table(results) + f"\nresults: {path}\n")
    return EXIT_SLO_MISSED if misses else EXIT_OK
