"""Structural checks for SRT and WebVTT files (bug bank C04, C05, C19), as a library.

Written for these tests after the bank's ``check_subs.py`` recipe: the same rules, returned as a
list of problems instead of an exit status, plus the parsed cues for timing comparisons.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Cue", "parse_cues", "subtitle_problems"]

_SRT_TIMING = re.compile(
    r"^(\d{2,}):([0-5]\d):([0-5]\d),(\d{3}) --> (\d{2,}):([0-5]\d):([0-5]\d),(\d{3})$"
)
_VTT_TIMING = re.compile(
    r"^(?:(\d{2,}):)?([0-5]\d):([0-5]\d)\.(\d{3}) --> "
    r"(?:(\d{2,}):)?([0-5]\d):([0-5]\d)\.(\d{3})(?: .*)?$"
)


@dataclass(frozen=True, slots=True)
class Cue:
    """One subtitle cue.

    Attributes:
        line: the 1-based line number of its timing line.
        start: start in seconds.
        end: end in seconds.
        lines: its text lines.
    """

    line: int
    start: float
    end: float
    lines: tuple[str, ...]

    @property
    def text(self) -> str:
        return " ".join(self.lines)


def _seconds(hours: str | None, minutes: str, seconds: str, millis: str) -> float:
    return int(hours or 0) * 3600 + int(minutes) * 60 + int(seconds) + int(millis) / 1000


def _read(path: Path) -> tuple[list[str], list[str]]:
    problems: list[str] = []
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        return [], [f"not UTF-8: {exc}"]
    if "\ufffd" in text:
        problems.append("contains U+FFFD replacement characters")
    if text.startswith("\ufeff"):
        problems.append("starts with a byte-order mark")
        text = text[1:]
    return text.replace("\r\n", "\n").split("\n"), problems


def _parse(path: Path, lines: list[str], problems: list[str]) -> list[Cue]:
    vtt = path.suffix.lower() == ".vtt"
    pattern = _VTT_TIMING if vtt else _SRT_TIMING
    cues: list[Cue] = []
    expected_number = 1
    for index, line in enumerate(lines):
        if "-->" not in line:
            continue
        if not vtt:
            number = lines[index - 1].strip() if index else ""
            if number != str(expected_number):
                problems.append(f"line {index}: cue number {number!r}, expected {expected_number}")
            expected_number += 1
        match = pattern.match(line.strip())
        if match is None:
            problems.append(f"line {index + 1}: malformed timing line {line!r}")
            continue
        groups = match.groups()
        body: list[str] = []
        for text_line in lines[index + 1 :]:
            if not text_line.strip():
                break
            body.append(text_line)
        cues.append(Cue(index + 1, _seconds(*groups[:4]), _seconds(*groups[4:]), tuple(body)))
    return cues


def parse_cues(path: Path) -> list[Cue]:
    """The cues of an SRT or VTT file (malformed ones left out)."""
    lines, _ = _read(path)
    return _parse(path, lines, [])


def subtitle_problems(path: Path, duration_s: float | None = None) -> list[str]:
    """Everything structurally wrong with a subtitle file; empty when it is clean.

    Checks: UTF-8 without U+FFFD or a BOM; VTT starts with ``WEBVTT``; SRT cues numbered from 1;
    well-formed timing lines; no cue ending before it starts or starting before the previous
    one; no empty cue text; no cue ending more than 0.5 s after ``duration_s``.
    """
    lines, problems = _read(path)
    if not lines and problems:
        return problems
    if path.suffix.lower() == ".vtt" and not lines[0].startswith("WEBVTT"):
        problems.append("VTT file does not start with WEBVTT")
    previous_start = -1.0
    for cue in _parse(path, lines, problems):
        if cue.end < cue.start:
            problems.append(f"line {cue.line}: end {cue.end:.3f} before start {cue.start:.3f}")
        if cue.start < previous_start:
            problems.append(f"line {cue.line}: starts before the previous cue")
        if duration_s is not None and cue.end > duration_s + 0.5:
            problems.append(
                f"line {cue.line}: end {cue.end:.3f} s beyond the media's {duration_s:.3f} s"
            )
        if not cue.text.strip():
            problems.append(f"line {cue.line}: empty cue text")
        previous_start = cue.start
    return problems
