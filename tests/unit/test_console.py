"""Console output: tables keep every character of a cell, whatever the width."""

from __future__ import annotations

import pytest

from jozvesaz_cli.console import print_table


def test_print_table_wraps_a_long_path_instead_of_cutting_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = "/srv/lectures/uploads/2026-autumn/physics-101/week-07/" + "recording-" * 6 + "x.m4a"
    print_table([{"id": 7, "source": path, "error": ""}], ["id", "source", "error"])
    out = capsys.readouterr().out
    assert "…" not in out
    cells = "".join(line.split("│")[2].strip() for line in out.splitlines() if "│" in line)
    assert cells == path
