"""Console output: tables keep every character of a cell, on a terminal and piped."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from jozvesaz_cli import console

PATH = "/srv/lectures/uploads/2026-autumn/physics-101/week-07/" + "recording-" * 6 + "x.m4a"
ROWS = [
    {"id": 7, "attempts": 0, "source": PATH, "error": "not_audio: x.m4a:\nnot audio"},
    {"id": 8, "attempts": None, "source": "b.wav", "error": ""},
]
COLUMNS = ["id", "attempts", "source", "error"]


def test_print_table_piped_is_tab_separated_whole_lines(
    capsys: pytest.CaptureFixture[str],
) -> None:
    console.print_table(ROWS, COLUMNS)
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        "id\tattempts\tsource\terror",
        f"7\t0\t{PATH}\tnot_audio: x.m4a: not audio",
        "8\t\tb.wav\t",
    ]


def test_print_table_on_a_narrow_terminal_wraps_cells_and_keeps_headers_whole(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    screen = io.StringIO()
    terminal = Console(file=screen, force_terminal=True, width=60, color_system=None)
    monkeypatch.setattr(console, "stdout_console", terminal)
    console.print_table(ROWS, COLUMNS)
    out = screen.getvalue()
    assert "…" not in out and "attempts" in out
    cells = "".join(line.split("│")[3].strip() for line in out.splitlines() if "│" in line)
    assert cells.startswith(PATH)
