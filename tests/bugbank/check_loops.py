"""A repetition-loop detector for transcripts (bug bank C04), as a library.

Written for these tests after the bank's ``check_loops.py`` recipe: identical consecutive lines,
one 4-word sequence repeated many times, or text that compresses far better than speech does.
"""

from __future__ import annotations

import collections
import itertools
import re
import zlib
from pathlib import Path

__all__ = ["loop_problems", "transcript_lines"]

#: gzip ratio above which faster-whisper itself calls a window repetitive.
MAX_COMPRESSION_RATIO = 2.4


def transcript_lines(path: Path) -> list[str]:
    """The text lines of a TXT, SRT or VTT file (numbers, timings and the header left out)."""
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip().lstrip("\u200f")
        if not line or line.isdigit() or "-->" in line or line.startswith("WEBVTT"):
            continue
        lines.append(line)
    return lines


def loop_problems(path: Path, max_repeat: int = 3) -> list[str]:
    """Signs of a decoding loop in a transcript file; empty when it reads like speech."""
    lines = transcript_lines(path)
    text = " ".join(lines)
    problems: list[str] = []
    run = best = 1
    for before, after in itertools.pairwise(lines):
        run = run + 1 if before.casefold() == after.casefold() else 1
        best = max(best, run)
    if best > max_repeat:
        problems.append(f"the same line {best} times in a row")
    words = re.findall(r"\w+", text.casefold())
    grams = collections.Counter(tuple(words[i : i + 4]) for i in range(len(words) - 3))
    if grams:
        gram, count = grams.most_common(1)[0]
        if count > max_repeat:
            problems.append(f"4-gram {' '.join(gram)!r} occurs {count} times")
    if len(text) > 200:
        data = text.encode("utf-8")
        ratio = len(data) / len(zlib.compress(data))
        if ratio > MAX_COMPRESSION_RATIO:
            problems.append(f"compression ratio {ratio:.2f} > {MAX_COMPRESSION_RATIO}")
    return problems
