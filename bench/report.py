"""Writes a benchmark's results: the full JSON, a Markdown table and one throughput chart.

The JSON keeps every run of every round, so any number in the Markdown can be traced to the
measurements it came from. The Markdown is what people read and paste into issues; the chart is
what the README shows. Files are written under a temporary name and renamed, so an interrupted
run never leaves a half-written result beside complete ones.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.summary import JsonDict

TOOL_ORDER = ("jozvesaz", "direct-threads", "direct-procs", "direct-batched", "wct2")
TOOL_COLOURS = {
    "jozvesaz": "#1b9e77",
    "direct-threads": "#7570b3",
    "direct-procs": "#9e9ac8",
    "direct-batched": "#cbc9e2",
    "wct2": "#d95f02",
}
TOOL_LABELS = {
    "jozvesaz": "jozvesaz",
    "direct-threads": "faster-whisper: 1 process, all threads",
    "direct-procs": "faster-whisper: 1 process per core",
    "direct-batched": "faster-whisper: batched pipeline",
    "wct2": "whisper-ctranslate2",
}


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder."""
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)


def strip_local_paths(text: str, checkout: Path, home: Path) -> str:
    """The report names files relative to the checkout (``./``) and the home folder (``~/``),
    so a committed result says nothing about the machine's own folders."""
    text = text.replace(f"{checkout}/", "./").replace(f"{home}/", "~/")
    return re.sub(r"/tmp/tmp\w+", "/tmp/<temporary>", text)


def write_json(report: dict[str, object], path: Path) -> None:
    """The complete report, UTF-8, indented for diffs, without the machine's own paths."""
    text = json.dumps(report, ensure_ascii=False, indent=2, default=str) + "\n"
    text = strip_local_paths(text, Path(__file__).resolve().parents[1], Path.home())
    write_atomic(path, text.encode("utf-8"))


def _fmt(value: object, digits: int = 2, suffix: str = "") -> str:
    """A table cell: a rounded number, or an en dash when there is none."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}{suffix}"
    return f"{value}{suffix}"


def _languages(summary: JsonDict) -> list[tuple[str, str]]:
    """(language, metric) pairs scored anywhere, English first."""
    found: dict[str, str] = {}
    for set_summary in summary.values():
        for row in set_summary["tools"].values():
            for language, score in row["accuracy"].items():
                found[language] = score["metric"]
    return sorted(found.items(), key=lambda item: (item[0] != "en", item[0]))


def _ordered(tools: JsonDict) -> list[str]:
    """Tool names in the report's fixed order, unknown ones last."""
    return sorted(tools, key=lambda n: TOOL_ORDER.index(n) if n in TOOL_ORDER else len(TOOL_ORDER))


def _any_failed(summary: dict[str, Any]) -> bool:
    """Whether some tool failed every round on some set (its row carries ⚠)."""
    return any(
        row["errors"] and not row["rounds_ok"]
        for set_summary in summary.values()
        for row in set_summary["tools"].values()
    )


def results_table(summary: JsonDict) -> list[str]:
    """The main table: one row per tool and set."""
    languages = _languages(summary)
    header = ["tool", "set", "audio s", "wall s", "x real time", "ratio vs direct"]
    header += ["ratio vs wct2", "peak RSS MiB (process / total)", "loads", "first-file s"]
    header += [f"{language} {metric.upper()}" for language, metric in languages]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for set_name, set_summary in summary.items():
        for tool in _ordered(set_summary["tools"]):
            row = set_summary["tools"][tool]
            label = f"{tool} (direct)" if tool == set_summary["direct"] else tool
            if row["errors"] and not row["rounds_ok"]:
                label += " ⚠"
            elif row["files_failed"]:
                label += f" ({row['files_failed']} files without text)"
            rss = f"{_fmt(row['peak_rss_process_mb'], 0)} / {_fmt(row['peak_rss_total_mb'], 0)}"
            cells = [label, set_name, _fmt(row["audio_s"], 1), _fmt(row["wall_s"], 1)]
            cells += [_fmt(row["x_real_time"], 2, "×"), _fmt(row["ratio_vs_direct"], 2)]
            cells += [_fmt(row["ratio_vs_wct2"], 2), rss, _fmt(row["model_loads"], 0)]
            cells += [_fmt(row["first_file_s"], 1)]
            for language, _ in languages:
                score = row["accuracy"].get(language)
                cells.append(_fmt(score["value"], 3) if score else "–")
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def _targets_table(targets: Sequence[JsonDict]) -> list[str]:
    """The targets: measured value, target, met, gap; informational rows have no target."""
    lines = ["| target | measured | target | met | gap |", "|---|---|---|---|---|"]
    for row in targets:
        met = {True: "yes", False: "**no**", None: "not measured"}[row["met"]]
        if row.get("info"):
            met = "(for comparison)"
        cells = [row["name"], _fmt(row["measured"], 3), _fmt(row["target"], 2), met]
        cells.append(_fmt(row["gap"], 3))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _count(number: int, noun: str) -> str:
    """``1 file``, ``4 files``."""
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def _workload_line(name: str, described: JsonDict) -> str:
    """One sentence describing a set."""
    formats = ", ".join(f"{k} {v}" for k, v in sorted(described["formats"].items()))
    languages = ", ".join(f"{k} {v:.0f} s" for k, v in described["audio_s_by_language"].items())
    return (
        f"- **{name}**: {_count(described['files'], 'file')}, "
        f"{described['audio_s']:.1f} s of audio "
        f"({described['shortest_s']:.1f}-{described['longest_s']:.1f} s each; {formats}; "
        f"{languages})"
    )


def render_markdown(report: JsonDict, chart_name: str) -> str:
    """The human-readable report."""
    options, host = report["options"], report["host"]
    lines = [
        f"# jozvesaz benchmark: {report['date']}, {report['machine']}",
        "",
        f"Model `{options['model']}` ({options['model_source']}), device {options['device']}, "
        f"compute type {options['compute_type']}, beam {options['beam_size']}, VAD on, "
        f"batch size {options['batch_size']}; {options['rounds']} round(s), tools alternating "
        f"(order rotates every round){'; quick workload' if options['quick'] else ''}.",
        f"Machine: {host['cpu']}, {host['cores']} cores, {host['ram_gb']} GB RAM; load average "
        f"{host['load_before']} before, {host['load_after']} after. Versions: "
        + ", ".join(f"{k} {v}" for k, v in host["versions"].items())
        + ".",
        "",
        "## Workload",
        "",
        *[_workload_line(n, d) for n, d in report["workload"].items()],
        "",
        "## Results",
        "",
        *results_table(report["summary"]),
        "",
        "x real time = audio seconds per wall second (median wall time over rounds). "
        'Ratios divide throughputs. "(direct)" marks the fastest faster-whisper configuration '
        "on that set. Peak RSS: largest single process / largest sum over the process tree."
        + (" ⚠: every round failed (see Errors)." if _any_failed(report["summary"]) else ""),
        "",
        f"![throughput per tool]({chart_name})",
        "",
        "## Time to `--help` (median of runs)",
        "",
        "| tool | median s | runs (s) |",
        "|---|---|---|",
    ]
    for tool, timing in report["help_s"].items():
        samples = ", ".join(f"{s:.2f}" for s in timing["samples_s"]) or timing.get("error", "")
        lines.append(f"| {tool} | {_fmt(timing['median_s'], 3)} | {samples} |")
    if report["targets"]:
        lines += ["", "## Targets", ""]
        if options["quick"]:
            lines += [
                "Quick workload: start-up dominates, so these say nothing about the targets.",
                "",
            ]
        lines += _targets_table(report["targets"])
    errors = [run for run in report["runs"] if run["error"]]
    if errors:
        lines += ["", "## Errors", ""]
        lines += [
            f"- {r['tool']} on {r['set']}, round {r['round'] + 1}: {r['error']}" for r in errors
        ]
    return "\n".join(lines) + "\n"


def _draw_tool_bars(
    axes: Any, summary: JsonDict, sets: list[str], tool: str, offset: float, width: float
) -> None:
    """One tool's bars across the sets, each labelled with its throughput."""
    values = [summary[s]["tools"].get(tool, {}).get("x_real_time") for s in sets]
    bars = axes.bar(
        [index + offset for index in range(len(sets))],
        [value if value is not None else 0.0 for value in values],
        width * 0.92,
        label=TOOL_LABELS.get(tool, tool),
        color=TOOL_COLOURS.get(tool, "#999999"),
        edgecolor="black",
        linewidth=0.5,
    )
    for bar, value, set_name in zip(bars, values, sets, strict=True):
        star = " ★" if summary[set_name]["direct"] == tool else ""
        axes.annotate(
            "n/a" if value is None else f"{value:.1f}×{star}",
            (bar.get_x() + bar.get_width() / 2, bar.get_height()),
            xytext=(0, 3),
            textcoords="offset points",
            ha="center",
            va="bottom",
            fontsize=9,
            fontweight="bold" if tool == "jozvesaz" else "normal",
        )


def draw_chart(report: JsonDict, path: Path) -> None:
    """Grouped bars: throughput of every tool on the batch and on the long set."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary, options, workload = report["summary"], report["options"], report["workload"]
    sets = list(summary)
    tools = [t for t in TOOL_ORDER if any(t in summary[s]["tools"] for s in sets)]
    width = 0.8 / max(1, len(tools))
    figure, axes = plt.subplots(figsize=(10, 5.5), dpi=120)
    for index, tool in enumerate(tools):
        _draw_tool_bars(axes, summary, sets, tool, (index - (len(tools) - 1) / 2) * width, width)
    labels = [
        f"{s}\n{_count(workload[s]['files'], 'file')}, {workload[s]['audio_s']:.0f} s of audio"
        for s in sets
    ]
    axes.set_xticks(range(len(sets)), labels)
    axes.set_ylabel("audio seconds per wall second (× real time)")
    axes.set_title(
        f"Throughput, model {options['model']}, {options['device']}, {options['compute_type']}"
        f" — {report['machine']}, {report['date']}"
    )
    axes.margins(y=0.15)
    axes.grid(axis="y", alpha=0.3)
    axes.set_axisbelow(True)
    axes.legend(
        loc="upper center",
        bbox_to_anchor=(0.5, -0.14),
        ncol=3,
        fontsize=8,
        frameon=False,
        title='★ = fastest faster-whisper configuration on that set (the "direct" reference)',
        title_fontsize=8,
    )
    figure.tight_layout()
    temporary = path.with_name(path.name + ".tmp")
    figure.savefig(temporary, format="png")
    plt.close(figure)
    os.replace(temporary, path)


def write_report(report: JsonDict, out_dir: Path, stem: str) -> dict[str, Path]:
    """Write ``<stem>.json``, ``<stem>.md`` and ``<stem>.png`` into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {ext: out_dir / f"{stem}.{ext}" for ext in ("json", "md", "png")}
    write_json(report, paths["json"])
    render_files(report, paths)
    return paths


def render_files(report: JsonDict, paths: dict[str, Path]) -> None:
    """Write the Markdown and the chart of ``report`` (also used to re-render an old JSON)."""
    markdown = render_markdown(report, paths["png"].name)
    write_atomic(paths["md"], markdown.encode("utf-8"))
    draw_chart(report, paths["png"])
