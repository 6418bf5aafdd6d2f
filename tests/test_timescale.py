"""``monitoriza rules render`` scales every duration of the rules, from the same sources."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from monitoriza.timescale import default_rules_dir, render_rules, scale_expr, scale_rule_file
from tests.support.binaries import require_binary


class TestScaleExpr:
    """Durations inside PromQL are scaled; everything else is left alone."""

    @pytest.mark.parametrize(("expr", "scaled"), [
        ("avg_over_time(x[5m])", "avg_over_time(x[6s])"),
        ("rate(x[1h]) offset 10m", "rate(x[1m12s]) offset 12s"),
        ("max_over_time(rate(x[5m])[1h:1m])", "max_over_time(rate(x[6s])[1m12s:1s200ms])"),
        ("min_over_time(x[1d:])", "min_over_time(x[28m48s:])"),
        ("x offset -5m", "x offset -6s"),
        ("time() - x > 3600", "time() - x > 3600"),
    ])
    def test_scaled(self, expr: str, scaled: str) -> None:
        """Range selectors, subqueries and offsets shrink by the scale; plain numbers stay."""
        assert scale_expr(expr, 0.02) == scaled

    def test_strings_untouched(self) -> None:
        """A label value or regex that looks like a range is not rewritten."""
        expr = 'count(x{path=~"/a[5m]", note="offset 5m"}[5m])'
        assert scale_expr(expr, 0.02) == 'count(x{path=~"/a[5m]", note="offset 5m"}[6s])'


class TestRender:
    """Rendering the project's rules."""

    def test_every_for_and_range_scaled(self, tmp_path: Path) -> None:
        """Each rule's `for` is the source's times the scale; nothing else changes."""
        written = render_rules(default_rules_dir(), tmp_path, 0.1)
        assert {path.name for path in written} == {
            path.name for path in default_rules_dir().glob("*.yml")}
        source = yaml.safe_load((default_rules_dir() / "service-alerts.yml").read_text())
        scaled = yaml.safe_load((tmp_path / "service-alerts.yml").read_text())
        assert scale_rule_file(source, 0.1) == scaled
        pairs = zip(source["groups"][0]["rules"], scaled["groups"][0]["rules"], strict=True)
        for original, copy in pairs:
            assert copy["labels"] == original["labels"]
            assert copy["annotations"] == original["annotations"]
        assert [r["for"] for r in scaled["groups"][0]["rules"]][:4] == ["30s", "3m", "30s",
                                                                         "12m"]

    def test_rendered_rules_pass_promtool(self, tmp_path: Path) -> None:
        """The scaled copies are valid rule files."""
        written = render_rules(default_rules_dir(), tmp_path, 0.02)
        result = subprocess.run([require_binary("promtool"), "check", "rules",
                                 *map(str, written)], capture_output=True, text=True,
                                check=False, timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr

    def test_command(self, tmp_path: Path) -> None:
        """The CLI writes the files and lists them; a bad scale is a usage error."""
        ok = subprocess.run([sys.executable, "-m", "monitoriza.cli", "rules", "render",
                             "--time-scale", "0.02", "--out", str(tmp_path / "out")],
                            capture_output=True, text=True, check=False, timeout=60)
        assert ok.returncode == 0, ok.stderr
        assert str(tmp_path / "out" / "recording.yml") in ok.stdout
        bad = subprocess.run([sys.executable, "-m", "monitoriza.cli", "rules", "render",
                              "--time-scale", "-1", "--out", str(tmp_path / "bad")],
                             capture_output=True, text=True, check=False, timeout=60)
        assert bad.returncode == 2
        assert "must be > 0" in bad.stderr
        empty = subprocess.run([sys.executable, "-m", "monitoriza.cli", "rules", "render",
                                "--time-scale", "1", "--out", str(tmp_path / "e"),
                                "--rules", str(tmp_path)],
                               capture_output=True, text=True, check=False, timeout=60)
        assert empty.returncode == 2
        assert "no rule files" in empty.stderr
