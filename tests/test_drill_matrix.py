"""The fault-coverage matrix of a drill run, and its HTML page.

Runs are built by hand as the dicts ``monitoriza drill run`` writes (docs/drills.md, "Results
file"), so every state of a cell is covered without injecting faults; the page is read back
with :mod:`html.parser` for what a user sees in each cell.
"""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from monitoriza.drill.matrix import (
    DrillResultsError,
    build_matrix,
    latest_loads,
    latest_run,
    load_run,
)
from monitoriza.drill.matrix_html import anchor, render_html

T0 = 1_780_000_000.0


def stage(name: str, seconds: float | None, deadline: float | dict[str, float] | None,
          outcome: str,
          detail: str = "") -> dict[str, Any]:
    return {"stage": name, "what": f"{name} stage", "seconds": seconds, "deadline": deadline,
            "outcome": outcome, "detail": detail}


def cell(key: str, verdict: str, *, reasons: tuple[str, ...] = (), detect: float | None = 21.5,
         notify: dict[str, float | None] | None = None, heal: float | None = 48.0,
         recover: float | None = 70.0, stages: list[dict[str, Any]] | None = None,
         canary: dict[str, Any] | None = None) -> dict[str, Any]:
    """One CellResult.as_data() + drill_id, as in the brief's section B."""
    service, fault, *rest = key.split(":")
    return {
        "key": key, "service": rest[0] if rest else service, "fault": fault,
        "target": rest[0] if rest else f"conecta-{service}",
        "root_cause": {"expected": rest[0] if rest else service,
                       "named": rest[0] if rest else service},
        "verdict": verdict, "reasons": list(reasons), "injected_at": T0,
        "stages": stages if stages is not None else [
            stage("detect", detect, 45.0, "on_time"), stage("heal", heal, 120.0, "on_time")],
        "times": {"detect": detect, "notify": notify if notify is not None else
                  {"oncall": 40.2, "team": 40.9}, "heal": heal, "recover": recover},
        "detect_vs_prometheus": 1.2,
        "heal": {"playbook": f"restart-{service}", "outcome": "healed", "audit": [41, 42]},
        "canary": canary, "incidents": [7], "drill_id": "d-1"}


def run_data(**changes: Any) -> dict[str, Any]:
    """A run over redis and backend: a pass, a late, a missed P2 route, a wrong canary, a
    refused process kill, an aborted pause, one dependency outage run and one never run."""
    data: dict[str, Any] = {
        "kind": "drill-run", "version": 1, "drill_id": "d-1", "started_at": T0 - 10,
        "finished_at": T0 + 900, "config": "/etc/monitoriza/conecta-plus.yml",
        "plan": ["redis:container_stop", "redis:container_kill", "redis:container_pause",
                 "redis:process_kill", "backend:container_stop", "backend:crash_loop",
                 "backend:dependency_outage:redis", "backend:dependency_outage:postgres",
                 "backend:disk_fill"],
        "cells": [
            cell("redis:container_stop", "pass"),
            cell("redis:container_kill", "wrong",
                 reasons=("canary lost: Redis runs with appendonly no and no save points: a "
                          "restart loses every write; set appendonly yes (appendfsync "
                          "everysec)",),
                 canary={"outcome": "lost", "detail": "key monitoriza:drill:canary:1 gone"}),
            cell("redis:container_pause", "aborted",
                 reasons=("steady state broke outside the blast radius: guardian",),
                 detect=None, heal=None, recover=None, notify={}),
            cell("backend:container_stop", "late", reasons=("detect 61.0s > 45s deadline",),
                 detect=61.0, stages=[stage("detect", 61.0, 45.0, "late", "ServiceDown P4"),
                                      stage("heal", 80.0, {"seconds": 120.0}, "on_time")]),
            cell("backend:crash_loop", "missed", reasons=("never reached oncall",),
                 notify={"oncall": None, "team": 40.0}),
            cell("backend:dependency_outage:redis", "pass", detect=19.0),
        ],
        "not_run": [{"key": "redis:process_kill", "service": "redis", "fault": "process_kill",
                     "reason": "redis has no playbook with a command step: a drill will not "
                               "kill what it cannot restart"}],
        "blind_spots": [{"flow": "check-in", "key": "backend:crash_loop",
                         "failed_at": "POST /visits", "services": ["backend", "nginx"]}],
    }
    data.update(changes)
    return data


def load_data(flow: str, *, met: bool | None = True, started_at: float = T0) -> dict[str, Any]:
    """A ``drill load`` result as monitoriza/drill/load.py stores it."""
    data: dict[str, Any] = {
        "flow": flow, "users": 20, "target_rate": 10.0, "duration_seconds": 60.0,
        "started_at": started_at, "elapsed_seconds": 60.1, "interrupted": False,
        "runs": 598, "failed_runs": 3, "achieved_rate": 9.95,
        "run_percentiles_ms": {"p50": 80.0, "p95": 240.0, "p99": 400.0},
        "steps": [{"name": "login", "method": "POST", "requests": 598, "failures": 0,
                   "percentiles_ms": {"p50": 30.0, "p95": 95.0, "p99": 150.0},
                   "first_failure": None},
                  {"name": "check-in", "method": "POST", "requests": 598, "failures": 3,
                   "percentiles_ms": {"p50": 50.0, "p95": 340.0, "p99": 600.0},
                   "first_failure": "HTTP 503"}],
        "config": "conecta-plus.yml"}
    if met is not None:
        data["slo"] = {"objectives": "p95=300ms,errors=1%", "met": met,
                       "missed": [] if met else ["step check-in: p95 340ms > 300ms"]}
    return data


class Page(HTMLParser):
    """The text of each matrix cell by (row header, column header), and the details ids."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.cells: dict[tuple[str, str], str] = {}
        self.cell_classes: dict[tuple[str, str], str] = {}
        self.ids: set[str] = set()
        self.links: set[str] = set()
        self._in_matrix = False
        self._headers: list[str] = []
        self._row: list[str] = []
        self._row_classes: list[str] = []
        self._text: list[str] | None = None
        self._depth = 0
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if self._text is not None:  # a block inside a cell: its text is a separate word
            self._text.append(" ")
        if found.get("id"):
            self.ids.add(str(found["id"]))
        if tag == "a" and found.get("href", "").startswith("#"):  # type: ignore[union-attr]
            self.links.add(str(found["href"])[1:])
        if tag == "table":
            self._in_matrix = found.get("class") == "matrix"
        if self._in_matrix and tag in ("td", "th"):
            self._text = []
            self._row_classes.append(found.get("class") or "")
        if self._in_matrix and tag == "tr":
            self._row, self._row_classes = [], []

    def handle_endtag(self, tag: str) -> None:
        if not self._in_matrix:
            return
        if tag in ("td", "th") and self._text is not None:
            self._row.append(" ".join("".join(self._text).split()))
            self._text = None
        elif tag == "tr":
            if self._row and self._row[0] == "service":
                self._headers = self._row
            elif self._row:
                for column, text in zip(self._headers[1:], self._row[1:], strict=True):
                    self.cells[(self._row[0], column)] = text
                    self.cell_classes[(self._row[0], column)] = self._row_classes[
                        self._headers.index(column)]
        elif tag == "table":
            self._in_matrix = False

    def handle_data(self, data: str) -> None:
        if self._text is not None:
            self._text.append(data)


class TestBuildMatrix:
    """Rows, columns and the state of every cell."""

    def test_rows_in_plan_order_and_the_seven_fault_columns(self) -> None:
        matrix = build_matrix(run_data())
        assert matrix.services == ("redis", "backend")
        assert matrix.faults == ("container_stop", "container_kill", "container_pause",
                                 "crash_loop", "process_kill", "dependency_outage",
                                 "disk_fill")

    def test_each_cell_state(self) -> None:
        matrix = build_matrix(run_data())
        states = {(row.service, cell.fault): cell.state for row in matrix.rows
                  for cell in row.cells}
        assert states[("redis", "container_stop")] == "pass"
        assert states[("redis", "container_kill")] == "wrong"
        assert states[("redis", "container_pause")] == "aborted"
        assert states[("redis", "process_kill")] == "not run"
        assert states[("redis", "crash_loop")] == "n/a"
        assert states[("backend", "container_stop")] == "late"
        assert states[("backend", "crash_loop")] == "missed"
        assert states[("backend", "disk_fill")] == "never tested"

    def test_a_dependency_outage_cell_holds_one_entry_per_dependency(self) -> None:
        outage = build_matrix(run_data()).cell("backend", "dependency_outage")
        assert [(e.target, e.state) for e in outage.entries] == [
            ("redis", "pass"), ("postgres", "never tested")]
        assert outage.state == "never tested", "the worst entry shows"

    def test_times_and_reasons_are_carried(self) -> None:
        matrix = build_matrix(run_data())
        stop = matrix.cell("redis", "container_stop").entries[0]
        assert (stop.detect, dict(stop.notify), stop.heal, stop.recover) == (
            21.5, {"oncall": 40.2, "team": 40.9}, 48.0, 70.0)
        assert stop.times_text() == ("detect 21.5s, notify oncall 40.2s, notify team 40.9s, "
                                     "heal 48.0s, recover 70.0s")
        refused = matrix.cell("redis", "process_kill").entries[0]
        assert refused.reasons[0].startswith("redis has no playbook with a command step")
        assert refused.result is None

    def test_without_pass_lists_what_the_run_did_not_prove(self) -> None:
        matrix = build_matrix(run_data())
        assert [e.key for e in matrix.without_pass("redis")] == [
            "redis:container_kill", "redis:container_pause", "redis:process_kill"]
        assert matrix.counts() == {"missed": 1, "wrong": 1, "aborted": 1, "late": 1,
                                   "not run": 1, "never tested": 2, "pass": 2}

    def test_a_cell_outside_the_plan_is_still_shown(self) -> None:
        run = run_data(plan=["redis:container_stop"])
        assert "backend" in build_matrix(run).services

    def test_a_bad_key_is_an_error(self) -> None:
        with pytest.raises(DrillResultsError, match="unknown fault 'unplug'"):
            build_matrix(run_data(plan=["redis:unplug"]))


class TestFiles:
    """Reading the results files: clear errors that name the file."""

    def write(self, path: Path, data: Any) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data) if not isinstance(data, str) else data)
        return path

    def test_load_run_accepts_the_brief_shape(self, tmp_path: Path) -> None:
        path = self.write(tmp_path / "drill-run-20260101T000000Z.json", run_data())
        assert load_run(path)["drill_id"] == "d-1"

    @pytest.mark.parametrize(("content", "message"), [
        ("{", "not valid JSON"),
        ([1, 2], "not a drill run (kind 'list'"),
        ({"kind": "load"}, "not a drill run (kind 'load', expected 'drill-run')"),
        (run_data(version=2), "drill run version 2 is not supported"),
        (run_data(cells="x"), "'cells' must be a list, got str"),
        (run_data(cells=[{"key": "redis:container_stop", "verdict": "great"}]),
         "cells[0] has verdict 'great'"),
        (run_data(not_run=[{"key": "redis:container_stop"}]), "not_run[0] has no 'reason'"),
        (run_data(plan=["redis"]), "plan[0]: experiment key 'redis' is not SERVICE:FAULT"),
    ])
    def test_bad_run_files_are_named(self, tmp_path: Path, content: Any, message: str) -> None:
        path = self.write(tmp_path / "drill-run-20260101T000000Z.json", content)
        with pytest.raises(DrillResultsError) as caught:
            load_run(path)
        assert str(caught.value).startswith(f"{path}: ")
        assert message in str(caught.value)

    def test_unreadable_run_file_is_named(self, tmp_path: Path) -> None:
        with pytest.raises(DrillResultsError, match=r"absent\.json: cannot read"):
            load_run(tmp_path / "absent.json")

    def test_latest_run_is_the_newest_by_its_name(self, tmp_path: Path) -> None:
        assert latest_run(tmp_path / "none") is None
        for stamp in ("20260101T000000Z", "20261205T081500Z", "20261105T230000Z"):
            self.write(tmp_path / f"drill-run-{stamp}.json", run_data())
        self.write(tmp_path / "drill-run-latest.json", run_data())  # not a run file's name
        self.write(tmp_path / "drill-run-20261205T081500Z.html", "<html>")
        assert latest_run(tmp_path) == tmp_path / "drill-run-20261205T081500Z.json"

    def test_latest_loads_takes_the_newest_per_flow(self, tmp_path: Path) -> None:
        self.write(tmp_path / "load-check-in-20261201T000000Z.json",
                   load_data("check-in", met=False))
        self.write(tmp_path / "load-check-in-20261204T000000Z.json", load_data("check-in"))
        self.write(tmp_path / "load-ai-chat-20261203T000000Z.json",
                   load_data("ai-chat", met=None))
        loads = latest_loads(tmp_path)
        assert list(loads) == ["ai-chat", "check-in"]
        assert loads["check-in"]["slo"]["met"] is True
        assert latest_loads(tmp_path / "none") == {}

    def test_a_bad_load_file_is_named(self, tmp_path: Path) -> None:
        self.write(tmp_path / "load-x-20261201T000000Z.json", {"flow": "x"})
        with pytest.raises(DrillResultsError, match=r"load-x-20261201T000000Z.json: not a "
                                                    r"load drill result \(no users"):
            latest_loads(tmp_path)


class TestPage:
    """What a user sees on the drill run's page."""

    @pytest.fixture
    def html(self) -> str:
        run = run_data()
        return render_html(run, build_matrix(run), {"check-in": load_data("check-in",
                                                                          met=False)})

    def test_each_cell_says_its_state_in_words(self, html: str) -> None:
        page = Page(html)
        assert page.cells[("redis", "container stop")].startswith("pass detect 21.5s")
        assert "notify oncall 40.2s" in page.cells[("redis", "container stop")]
        assert page.cells[("redis", "container kill")].startswith("wrong")
        assert "canary lost" in page.cells[("redis", "container kill")]
        assert page.cells[("redis", "process kill")].startswith("not run redis has no playbook")
        assert page.cells[("redis", "crash loop")] == "n/a"
        assert page.cells[("backend", "container stop")].startswith("late detect 61.0s")
        assert "never reached oncall" in page.cells[("backend", "crash loop")]
        assert page.cells[("backend", "disk fill")] == "never tested"
        outage = page.cells[("backend", "dependency outage")]
        assert outage.startswith("pass of redis detect 19.0s")
        assert outage.endswith("never tested of postgres")

    def test_cells_are_coloured_by_their_worst_state(self, html: str) -> None:
        classes = Page(html).cell_classes
        assert "st-pass" in classes[("redis", "container stop")]
        assert "st-missed" in classes[("backend", "crash loop")]
        assert "st-never" in classes[("backend", "dependency outage")]

    def test_every_state_links_to_its_details(self, html: str) -> None:
        page = Page(html)
        keys = run_data()["plan"]
        assert {anchor(key) for key in keys} <= page.ids
        assert {anchor(key) for key in keys} == page.links

    def test_details_show_stages_against_deadlines_and_facts(self, html: str) -> None:
        late = html.split(f'id="{anchor("backend:container_stop")}"')[1].split(
            'class="detail"', maxsplit=1)[0]
        assert "<td>detect</td><td>detect stage</td>" in late
        assert '<td class="num">61.0s</td><td class="num">45.0s</td>' in late
        assert ">late</td><td>ServiceDown P4</td>" in late
        assert '<td class="num">80.0s</td><td class="num">120s</td>' in late, \
            "a deadline given as a Deadline's data shows its seconds"
        kill = html.split(f'id="{anchor("redis:container_kill")}"')[1].split(
            'class="detail"', maxsplit=1)[0]
        assert "outcome: lost, detail: key monitoriza:drill:canary:1 gone" in kill
        assert "set appendonly yes" in kill
        assert "#7" in kill and "restart-redis: healed" in kill

    def test_blind_spots_and_loads(self, html: str) -> None:
        assert "<td>check-in</td><td>backend:crash_loop</td><td>POST /visits</td>" in html
        assert "MISSED (p95=300ms,errors=1%)<br>step check-in: p95 340ms &gt; 300ms" in html
        assert "9.95/s of 10/s (99.5 %)" in html
        assert '<td>check-in</td><td class="num">598</td><td class="num">3</td>' in html

    def test_the_page_is_self_contained_and_escaped(self) -> None:
        run = run_data(drill_id="<script>x</script>")
        run["cells"][0]["reasons"] = ["<b>bold</b>"]
        run["cells"][0]["verdict"] = "late"
        html = render_html(run, build_matrix(run), {})
        assert "<script" not in html and "&lt;script&gt;" in html
        assert "&lt;b&gt;bold&lt;/b&gt;" in html
        assert "http://" not in html and "https://" not in html and "<link" not in html
        assert "no load drill results" in html
