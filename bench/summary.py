"""Turns the individual runs into the numbers the report shows: per tool, per set, and ratios.

Rules, each chosen for a shared, noisy 2-core machine:

- a tool's wall time on a set is the median over the rounds it completed; throughput (audio
  seconds per wall second, "x real time") is the set's audio seconds over that median;
- memory is the worst round (peaks are what must fit), model loads the highest count seen;
- accuracy comes from the first completed round (decoding is deterministic: beam search, same
  model, same input), and every round's scores stay in the JSON;
- "direct" on a set is the direct configuration with the highest throughput *on that set*: the
  batch of short files and the long recordings favour different configurations;
- ratios are throughput over throughput, measured in the same invocation, alternating tools.

The targets are jozvesaz's performance targets (base, int8, CPU, 2 cores); each says by how much
it is missed.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from bench.monitor import Measurement
from bench.scoring import LanguageScore
from bench.tools import Collected

SETS = ("batch", "long")
DIRECT_PREFIX = "direct-"
ACCURACY_TOLERANCE = 0.01

JsonDict = dict[str, Any]
"""A JSON object of the report; its shape is documented in ``bench/README.md``."""


@dataclass(frozen=True, slots=True)
class RunRecord:
    """One tool on one set in one round.

    Attributes:
        tool: the tool name (see ``bench.tools.TOOL_NAMES``).
        set_name: ``batch`` or ``long``.
        round_index: 0-based round.
        position: the tool's place in that round's order (tools rotate between rounds).
        audio_s: the set's audio seconds.
        measurement: what the monitor measured; None when the tool could not be planned.
        collected: what the tool's outputs said; None when it could not be planned.
        scores: accuracy per language.
        error: why the run is unusable, or None.
    """

    tool: str
    set_name: str
    round_index: int
    position: int
    audio_s: float
    measurement: Measurement | None
    collected: Collected | None
    scores: dict[str, LanguageScore]
    error: str | None

    @property
    def ok(self) -> bool:
        """Whether the run finished and produced a usable timing."""
        return self.error is None and self.measurement is not None

    @property
    def first_file_s(self) -> float | None:
        """Seconds to the first finished file: the tool's own report, else the folder watch."""
        reported = self.collected.first_file_s if self.collected else None
        watched = self.measurement.first_output_s if self.measurement else None
        return reported if reported is not None else watched

    def to_json(self) -> dict[str, object]:
        """Everything about the run, for the JSON report."""
        m, c = self.measurement, self.collected
        return {
            "tool": self.tool,
            "set": self.set_name,
            "round": self.round_index,
            "position": self.position,
            "ok": self.ok,
            "error": self.error,
            "audio_s": self.audio_s,
            "wall_s": m.wall_s if m else None,
            "x_real_time": round(self.audio_s / m.wall_s, 3) if m and m.wall_s else None,
            "cpu_s": m.cpu_s if m else None,
            "returncode": m.returncode if m else None,
            "peak_rss_process_mb": round(m.peak_process_rss_mb, 1) if m else None,
            "peak_rss_total_mb": m.peak_total_rss_mb if m else None,
            "peak_vram_mb": m.peak_vram_mb if m else None,
            "rss_samples": m.samples if m else 0,
            "processes": [asdict(p) for p in m.processes] if m else [],
            "first_file_s": self.first_file_s,
            "model_loads": c.model_loads if c else None,
            "files_transcribed": len(c.transcripts) if c else 0,
            "files_failed": list(c.failed) if c else [],
            "details": c.details if c else {},
            "accuracy": {lang: asdict(score) for lang, score in self.scores.items()},
        }


def _median(values: Sequence[float]) -> float | None:
    return round(statistics.median(values), 3) if values else None


def _max(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return max(present) if present else None


def summarize_tool(runs: Sequence[RunRecord]) -> dict[str, object]:
    """Aggregate one tool's rounds on one set (see the module docstring for the rules)."""
    ok = [run for run in runs if run.ok]
    walls = [run.measurement.wall_s for run in ok if run.measurement]
    audio_s = runs[0].audio_s if runs else 0.0
    wall_s = _median(walls)
    first = [run.first_file_s for run in ok if run.first_file_s is not None]
    loads = [run.collected.model_loads for run in ok if run.collected]
    accuracy = {lang: asdict(score) for lang, score in ok[0].scores.items()} if ok else {}
    return {
        "rounds": len(runs),
        "rounds_ok": len(ok),
        "audio_s": round(audio_s, 2),
        "wall_s": wall_s,
        "wall_s_rounds": walls,
        "x_real_time": round(audio_s / wall_s, 3) if wall_s else None,
        "cpu_s": _median([run.measurement.cpu_s for run in ok if run.measurement]),
        "peak_rss_process_mb": _max(
            [r.measurement.peak_process_rss_mb for r in ok if r.measurement]
        ),
        "peak_rss_total_mb": _max([r.measurement.peak_total_rss_mb for r in ok if r.measurement]),
        "peak_vram_mb": _max([r.measurement.peak_vram_mb for r in ok if r.measurement]),
        "model_loads": _max([float(n) for n in loads if n is not None]),
        "first_file_s": _median(first),
        "files_failed": max((len(r.collected.failed) for r in ok if r.collected), default=0),
        "accuracy": accuracy,
        "errors": sorted({run.error for run in runs if run.error}),
    }


def pick_direct(tools: dict[str, dict[str, object]]) -> str | None:
    """The direct configuration with the highest throughput among those that ran."""
    timed = {
        name: float(row["x_real_time"])  # type: ignore[arg-type]
        for name, row in tools.items()
        if name.startswith(DIRECT_PREFIX) and row.get("x_real_time")
    }
    return max(timed, key=timed.__getitem__) if timed else None


def ratio(tools: dict[str, dict[str, object]], tool: str, other: str | None) -> float | None:
    """Throughput of ``tool`` over that of ``other``; None when either is missing."""
    if other is None or tool not in tools or other not in tools:
        return None
    mine, theirs = tools[tool].get("x_real_time"), tools[other].get("x_real_time")
    if not mine or not theirs:
        return None
    return round(float(mine) / float(theirs), 3)  # type: ignore[arg-type]


def summarize_set(records: Sequence[RunRecord], set_name: str) -> dict[str, object]:
    """Per-tool summaries of one set, the chosen direct configuration and the ratios."""
    names = list(dict.fromkeys(r.tool for r in records if r.set_name == set_name))
    tools = {
        name: summarize_tool([r for r in records if r.set_name == set_name and r.tool == name])
        for name in names
    }
    direct = pick_direct(tools)
    for name, row in tools.items():
        row["ratio_vs_direct"] = ratio(tools, name, direct)
        row["ratio_vs_wct2"] = ratio(tools, name, "wct2")
    return {
        "direct": direct,
        "tools": tools,
        "ratios": {
            "jozvesaz/direct": ratio(tools, "jozvesaz", direct),
            "jozvesaz/wct2": ratio(tools, "jozvesaz", "wct2"),
            "jozvesaz/direct-threads": ratio(tools, "jozvesaz", "direct-threads"),
        },
    }


def summarize(records: Sequence[RunRecord]) -> dict[str, dict[str, object]]:
    """Summaries of every set that has runs."""
    return {s: summarize_set(records, s) for s in SETS if any(r.set_name == s for r in records)}


def _target(name: str, measured: float | None, target: float, higher_is_better: bool) -> JsonDict:
    """One target row: met or not, and the gap to close."""
    if measured is None:
        return {"name": name, "measured": None, "target": target, "met": None, "gap": None}
    met = measured >= target if higher_is_better else measured <= target
    gap = round(abs(target - measured), 3) if not met else 0.0
    return {"name": name, "measured": measured, "target": target, "met": met, "gap": gap}


def _tool_row(summary: JsonDict, set_name: str, tool: str | None) -> JsonDict:
    """A tool's row on a set, or an empty mapping."""
    if tool is None:
        return {}
    return summary.get(set_name, {}).get("tools", {}).get(tool, {})  # type: ignore[no-any-return]


def _rss_ratio(summary: JsonDict, bare_for: Callable[[str], str | None]) -> float | None:
    """The worst, over the sets, of jozvesaz's largest process over a bare process's largest."""
    ratios = []
    for set_name in SETS:
        mine = _tool_row(summary, set_name, "jozvesaz").get("peak_rss_process_mb")
        bare = _tool_row(summary, set_name, bare_for(set_name)).get("peak_rss_process_mb")
        if mine and bare:
            ratios.append(mine / bare)
    return round(max(ratios), 3) if ratios else None


def _rss_targets(summary: JsonDict) -> list[JsonDict]:
    """jozvesaz's largest process against a bare faster-whisper process, set by set.

    The target compares like with like: a slot against ``direct-batched``, a bare process
    running the pipeline jozvesaz runs (batched, VAD on) on the same files, so the ratio is
    jozvesaz's own overhead (pool, decoding, guards), whichever configuration was fastest. A
    second row, not a target, shows the cost of the pipeline itself against the plain
    sequential loop (``direct-procs``, one model per core).
    """
    same = _rss_ratio(summary, lambda s: "direct-batched")
    sequential = _rss_ratio(summary, lambda s: "direct-procs")
    name = "peak RSS per process / direct-batched (same pipeline) per process"
    rows = [_target(name, same, 1.15, False)]
    if sequential is not None:
        rows.append(
            _info("peak RSS per process / direct-procs (sequential loop) per process", sequential)
        )
    return rows


def _info(name: str, measured: float | None) -> JsonDict:
    """A row shown beside the targets for comparison; not a target."""
    return {"name": name, "measured": measured, "target": None, "met": None, "gap": None} | {
        "info": True
    }


def _accuracy_targets(summary: JsonDict) -> list[JsonDict]:
    """jozvesaz's error rate minus direct's, per language and set, where both were scored.

    Rows against the plain sequential loop (``direct-threads``) follow, not targets: they show
    what the batched pipeline itself costs in accuracy.
    """
    rows = []
    for reference, is_target in (("direct", True), ("sequential loop", False)):
        for set_name in SETS:
            other = summary.get(set_name, {}).get("direct") if is_target else "direct-threads"
            mine = _tool_row(summary, set_name, "jozvesaz").get("accuracy", {})
            theirs = _tool_row(summary, set_name, other).get("accuracy", {})
            for language in sorted(set(mine) & set(theirs)):
                delta = round(mine[language]["value"] - theirs[language]["value"], 4)
                metric = mine[language]["metric"].upper()
                name = f"{set_name}: {language} {metric} minus {reference} ({other})"
                if is_target:
                    rows.append(_target(name, delta, ACCURACY_TOLERANCE, False))
                else:
                    rows.append(_info(name, delta))
    return rows


def check_targets(summary: JsonDict, help_s: dict[str, dict[str, object]]) -> list[JsonDict]:
    """The performance targets, each measured in this run where possible."""
    batch = summary.get("batch", {}).get("ratios", {})
    long = summary.get("long", {}).get("ratios", {})
    help_median = help_s.get("jozvesaz", {}).get("median_s")
    return [
        _target("batch: jozvesaz / wct2 throughput", batch.get("jozvesaz/wct2"), 1.8, True),
        _target("batch: jozvesaz / direct throughput", batch.get("jozvesaz/direct"), 0.95, True),
        _target(
            "long: jozvesaz / direct-threads (sequential loop)",
            long.get("jozvesaz/direct-threads"),
            1.7,
            True,
        ),
        _target("jozvesaz --help seconds", help_median, 0.5, False),  # type: ignore[arg-type]
        *_rss_targets(summary),
        *_accuracy_targets(summary),
    ]
