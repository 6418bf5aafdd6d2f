"""``monitoriza forecast evaluate`` on CSVs written here: the frontier of each Monitoriza
estimate against predict_linear, the recommended estimate, the JSON, and the bad-input errors.

The command runs in-process through ``monitoriza.cli.main`` with the real model; no NAB file is
copied into tests/fixtures, so the histories are synthetic: a disk that fills at a known rate
and is emptied every 12 h (so its crossings are known), and a noisy flat line.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from monitoriza.cli import main

STEP = 300.0
HOUR = 3600.0
START = 1_399_939_200  # 2014-05-13T00:00:00Z
DAYS = 4


def write_csv(path: Path, values: np.ndarray, *, iso: bool = False) -> Path:
    """A ``timestamp,value`` CSV at 5 min, in unix seconds or NAB's ``2014-05-13 00:05:00``."""
    stamps = START + STEP * np.arange(values.size)
    lines = ["timestamp,value"]
    for stamp, value in zip(stamps, values, strict=True):
        moment = (np.datetime64(int(stamp), "s").astype(str).replace("T", " ") if iso
                  else f"{stamp:.0f}")
        lines.append(f"{moment},{value:.4f}")
    path.write_text("\n".join(lines) + "\n")
    return path


def filling(tmp_path: Path) -> Path:
    """10 units an hour from 0, emptied every 12 h: the 0.9 quantile (about 107) is crossed
    once in each of the 8 cycles, 10 h 45 min into it."""
    hours = STEP * np.arange(int(DAYS * 24 * HOUR / STEP)) / HOUR
    return write_csv(tmp_path / "filling.csv", 10.0 * (hours % 12.0), iso=True)


def emptied_early(tmp_path: Path) -> Path:
    """The same fill, but every other cycle is emptied at 90, before the threshold: its rise
    looks like the crossing ones, so every estimate raises false alarms on it."""
    hours = STEP * np.arange(int(DAYS * 24 * HOUR / STEP)) / HOUR
    early = ((hours // 12).astype(np.int64) % 2 == 1) & (hours % 12.0 >= 9.0)
    return write_csv(tmp_path / "early.csv", np.where(early, 0.0, 10.0 * (hours % 12.0)))


def rows(out: str) -> dict[str, list[str]]:
    """The frontier table: the cells after the label of each ``ESTIMATE ≤ H`` row."""
    return {line.split(" ≤ H")[0]: line.split(" ≤ H")[1].split() for line in out.splitlines()
            if " ≤ H" in line}


def flat(tmp_path: Path) -> Path:
    """A level of 50 with independent noise: crossings of its top quantile are noise."""
    rng = np.random.default_rng(7)
    return write_csv(tmp_path / "flat.csv", 50.0 + rng.normal(0.0, 1.0, DAYS * 288))


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Exit status, stdout and stderr of ``monitoriza forecast evaluate ARGS``."""
    code = main(["forecast", "evaluate", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


class TestFrontierReport:
    """The printed frontier and recommendation."""

    def test_filling_series(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """Every estimate detects all 8 crossings of a steady fill without a false alarm;
        predict_linear tilts after each emptying and raises false alarms, so at no false
        alarms it detects nothing. Lower is recommended (ties go to the first listed)."""
        code, out, err = run(capsys, "--csv", str(filling(tmp_path)), "--threshold-quantile",
                             "0.9", "--target-false-alarms-per-day", "2")
        assert code == 0, err
        lines = out.splitlines()
        assert lines[0].startswith("1 series, ")
        assert lines[0].endswith(", 8 crossing events")
        table = rows(out)
        assert set(table) == {"lower", "median", "upper", "predict_linear"}
        for estimate in ("lower", "median", "upper"):
            assert table[estimate] == ["0.00", "8/8", "0", "0.00", "—", "0", "—"], estimate
        assert table["predict_linear"][1] == "8/8"
        assert float(table["predict_linear"][0]) > 1.0
        assert lines[-2] == ("recommended alert estimate for at most 2 false alarms per day: "
                             "lower (8 of 8 crossing events, 0.00 false alarms per day)")
        assert lines[-1].startswith("coverage: ") and "stated 80 %" in lines[-1]

    def test_flat_series_raises_no_trend_alarm(self, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
        """Noise around a level crosses its 0.9 quantile often, but no trend estimate (median,
        upper, predict_linear) alarms on it."""
        code, out, err = run(capsys, "--csv", str(flat(tmp_path)), "--threshold-quantile", "0.9")
        assert code == 0, err
        table = rows(out)
        for estimate in ("median", "upper", "predict_linear"):
            assert table[estimate][:2] == ["0.00", f"0/{table['median'][1].split('/')[1]}"]
        assert int(table["median"][1].split("/")[1]) > 10

    def test_target_nobody_meets(self, tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
        """Cycles emptied before the threshold give every estimate false alarms (fewer than
        predict_linear's); a target below all of them is said to be unmet. Two CSVs pool."""
        code, out, err = run(capsys, "--csv", str(emptied_early(tmp_path)), "--csv",
                             str(filling(tmp_path)), "--threshold-quantile", "0.9",
                             "--target-false-alarms-per-day", "0.5")
        assert code == 0, err
        table = rows(out)
        assert out.splitlines()[0].startswith("2 series, ")
        assert all(float(table[e][0]) > 0.5 for e in ("lower", "median", "upper"))
        assert float(table["median"][0]) < float(table["predict_linear"][0])
        assert out.splitlines()[-2].startswith(
            "no estimate meets the target of 0.5 false alarms per day (the quietest, ")


class TestDirectionAndStep:
    """``--direction below`` forecasts a falling series (free space) as ``above`` does its
    mirror image; ``--every`` sets how often the history is replayed."""

    def test_below_mirrors_above(self, tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
        """Free space 200 - fill (emptying the disk restores it) against its 0.1 quantile,
        from above, gives exactly the report of the fill against its 0.9 quantile."""
        hours = STEP * np.arange(int(DAYS * 24 * HOUR / STEP)) / HOUR
        free = write_csv(tmp_path / "free.csv", 200.0 - 10.0 * (hours % 12.0))
        code, above, err = run(capsys, "--csv", str(filling(tmp_path)),
                               "--threshold-quantile", "0.9", "--json")
        assert code == 0, err
        code, below, err = run(capsys, "--csv", str(free), "--threshold-quantile", "0.9",
                               "--direction", "below", "--json")
        assert code == 0, err
        mirrored, original = json.loads(below), json.loads(above)
        assert (mirrored["direction"], original["direction"]) == ("below", "above")
        assert mirrored["events"] == original["events"] == 8
        assert mirrored["estimates"] == original["estimates"]
        assert mirrored["coverage"] == original["coverage"]

    def test_every_sets_the_replay_step(self, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
        csv = str(filling(tmp_path))
        hourly = json.loads(run(capsys, "--csv", csv, "--json")[1])
        half_hourly = json.loads(run(capsys, "--csv", csv, "--every", "30m", "--json")[1])
        assert half_hourly["every_s"] == 1800.0
        assert abs(half_hourly["evaluated"] - 2 * hourly["evaluated"]) <= 2
        with pytest.raises(SystemExit):
            main(["forecast", "evaluate", "--csv", csv, "--every", "0s"])
        assert "must be longer than 0" in capsys.readouterr().err


class TestJson:
    """``--json``: one object with each estimate's matchup and predict_linear's curve."""

    def test_fields(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        code, out, err = run(capsys, "--csv", str(filling(tmp_path)), "--threshold-quantile",
                             "0.9", "--horizon", "4h", "--window", "6h", "--json")
        assert code == 0, err
        report = json.loads(out)
        assert report["threshold_quantile"] == 0.9
        assert (report["horizon_s"], report["window_s"]) == (4 * HOUR, 6 * HOUR)
        assert report["series"] == 1
        assert report["events"] == 8
        assert report["target_false_alarms_per_day"] == 1.0
        assert set(report["estimates"]) == {"lower", "median", "upper"}
        median = report["estimates"]["median"]
        assert median["ours"]["detected"] == 8
        assert median["ours"]["cutoff_s"] == 4 * HOUR
        assert median["baseline"]["false_alarms_per_day"] <= median["ours"][
            "false_alarms_per_day"]
        assert {"detection_ratio", "paired_events", "paired_median_lead_ratio"} <= set(median)
        curve = report["baseline_curve"]
        assert len(curve) == 24
        assert curve[-1] == report["predict_linear"]
        detected = [point["detected"] for point in curve]
        assert detected == sorted(detected)  # a later cutoff never detects less
        assert report["recommended"] in {"lower", "median", "upper", None}


class TestBadInput:
    """Exit 2 and one line naming the file."""

    def error(self, capsys: pytest.CaptureFixture[str], path: Path) -> str:
        code, out, err = run(capsys, "--csv", str(path))
        assert code == 2
        assert out == ""
        assert err.count("\n") == 1
        assert err.startswith("monitoriza forecast evaluate: ")
        assert str(path) in err
        return err

    def test_missing_file(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        assert "No such file" in self.error(capsys, tmp_path / "absent.csv")

    def test_not_a_csv(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        path = tmp_path / "disk.csv"
        path.write_bytes(b"timestamp,value\n\xff\xfe\x00garbage,\x81\n")
        self.error(capsys, path)

    def test_bad_timestamp(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        path = tmp_path / "disk.csv"
        path.write_text("timestamp,value\nyesterday,3\n")
        assert "not a timestamp" in self.error(capsys, path)

    def test_too_few_points(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        path = write_csv(tmp_path / "short.csv", np.array([1.0, 2.0, 3.0, 4.0]))
        assert "too few points" in self.error(capsys, path)

    def test_history_shorter_than_window_and_horizon(
            self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        path = write_csv(tmp_path / "day.csv", np.linspace(0.0, 10.0, 100))  # 8 h 15 min
        assert "too few points" in self.error(capsys, path)

    def test_quantile_out_of_range(self, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
        with pytest.raises(SystemExit) as exit_:
            main(["forecast", "evaluate", "--csv", str(filling(tmp_path)),
                  "--threshold-quantile", "1.5"])
        assert exit_.value.code == 2
        assert "not a quantile between 0 and 1" in capsys.readouterr().err
