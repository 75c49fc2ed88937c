"""The benchmark in one command: build the workload, run every tool alternately, write the report.

    .venv/bin/python bench/run.py [--quick] [--device cpu|cuda] [--model base] [--out bench/results]

Machines are shared and noisy, so the tools are compared inside one invocation: for each set
(the batch, then the long set) and each round, every tool runs once, and the order rotates from
round to round so no tool always runs first (cold caches) or last (a neighbour's job starting).
Every number in the report is measured in this invocation, the workload's durations included.
See ``bench/README.md`` for what each number means.

Exit status: 0 every run succeeded; 1 the report was written but some runs failed (their errors
are in it); 2 bad arguments; 3 the corpus or the model cannot be found.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):
    # Run as a script (``python bench/run.py``): make ``bench`` importable as a package.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psutil

from bench.corpus import AudioItem, Workload, build_workload, describe_items
from bench.model import ModelNotFoundError, ModelSource, resolve_model
from bench.monitor import run_measured
from bench.report import render_files, results_table, write_report
from bench.scoring import score_by_language
from bench.summary import RunRecord, check_targets, summarize
from bench.tools import (
    DIRECT_CONFIGS,
    TOOLS,
    RunSpec,
    Tool,
    clean_env,
    find_executable,
    read_log,
    tail,
)

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
HELP_TOOLS = ("jozvesaz", "whisper-ctranslate2")
VERSIONED = ("jozvesaz", "faster-whisper", "ctranslate2", "whisper-ctranslate2", "av")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Read the command line; ``--help`` lists every option."""
    parser = argparse.ArgumentParser(
        description="Benchmark jozvesaz against faster-whisper and whisper-ctranslate2.",
    )
    parser.add_argument("--quick", action="store_true", help="tiny workload, for tests")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--model", default="base", help="model name, or a model folder")
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "results", help="results folder")
    parser.add_argument("--corpus", type=Path, default=REPO_DIR.parent / "shared" / "corpus")
    parser.add_argument(
        "--workload-dir", type=Path, default=BENCH_DIR / "workload", help="scratch (git-ignored)"
    )
    parser.add_argument("--rounds", type=int, default=2, help="runs of each tool on each set")
    parser.add_argument("--tools", default="jozvesaz,direct,wct2", help="jozvesaz,direct,wct2")
    parser.add_argument("--direct-configs", default=",".join(DIRECT_CONFIGS))
    parser.add_argument("--sets", default="batch,long", help="batch,long")
    parser.add_argument("--machine", help="machine name in the file names (default: host name)")
    parser.add_argument("--compute-type", help="default: int8 on cpu, float16 on cuda")
    parser.add_argument("--procs", type=int, help="direct-procs workers (default: cores; cuda 2)")
    parser.add_argument("--beam-size", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--help-runs", type=int, default=5, help="runs of each --help timing")
    parser.add_argument("--timeout-s", type=float, default=3600.0, help="limit of one tool run")
    parser.add_argument("--keep-outputs", action="store_true", help="keep every run's folder")
    parser.add_argument(
        "--render", type=Path, metavar="JSON", help="only redraw the .md and .png of a result"
    )
    args = parser.parse_args(argv)
    try:
        args.tool_names = select_tools(args.tools, args.direct_configs)
        args.set_names = select_names(args.sets, ("batch", "long"), "--sets")
    except ValueError as exc:
        parser.error(str(exc))
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if args.render is not None and not args.render.is_file():
        parser.error(f"--render {args.render}: no such result file")
    args.compute_type = args.compute_type or ("int8" if args.device == "cpu" else "float16")
    args.procs = args.procs or ((os.cpu_count() or 1) if args.device == "cpu" else 2)
    return args


def select_names(given: str, allowed: Sequence[str], option: str) -> list[str]:
    """Split a comma list and check every name is allowed (order kept, duplicates dropped)."""
    names = list(dict.fromkeys(n.strip() for n in given.split(",") if n.strip()))
    unknown = [name for name in names if name not in allowed]
    if unknown or not names:
        raise ValueError(f"{option}: expected names from {', '.join(allowed)}, got {given!r}")
    return names


def select_tools(tools: str, direct_configs: str) -> list[str]:
    """Expand ``--tools`` (``direct`` = every configuration in ``--direct-configs``)."""
    chosen = select_names(tools, ("jozvesaz", "direct", "wct2"), "--tools")
    configs = select_names(direct_configs, DIRECT_CONFIGS, "--direct-configs")
    names: list[str] = []
    for name in chosen:
        names += [f"direct-{c}" for c in configs] if name == "direct" else [name]
    return names


def describe_host() -> dict[str, object]:
    """The machine and software the numbers were measured on."""
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        models = re.findall(r"^model name\s*:\s*(.+)$", cpuinfo.read_text(), re.MULTILINE)
        cpu = models[0].strip() if models else cpu
    versions = {}
    for name in VERSIONED:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return {
        "hostname": socket.gethostname(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "physical_cores": psutil.cpu_count(logical=False),
        "ram_gb": round(psutil.virtual_memory().total / 1024**3, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": versions,
        "load_before": _load_average(),
    }


def _load_average() -> str:
    """The 1, 5 and 15-minute load averages, as a short string."""
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def time_help(runs: int, cwd: Path) -> dict[str, dict[str, object]]:
    """Seconds from start to exit of ``TOOL --help``, tools alternating, median of ``runs``."""
    executables = {name: find_executable(name) for name in HELP_TOOLS}
    samples: dict[str, list[float]] = {name: [] for name in HELP_TOOLS}
    errors: dict[str, str] = {}
    for _ in range(runs):
        for name, executable in executables.items():
            if executable is None:
                errors[name] = "not installed"
                continue
            if name in errors:
                continue
            started = time.perf_counter()
            done = subprocess.run(
                [str(executable), "--help"],
                capture_output=True,
                env=clean_env(),
                cwd=cwd,
                timeout=120,
                check=False,
            )
            elapsed = time.perf_counter() - started
            if done.returncode != 0:
                errors[name] = f"exit code {done.returncode}: {_last_line(done.stderr)}"
                continue
            samples[name].append(round(elapsed, 4))
    return {
        name: {
            "median_s": round(statistics.median(samples[name]), 4) if samples[name] else None,
            "samples_s": samples[name],
            **({"error": errors[name]} if name in errors else {}),
        }
        for name in HELP_TOOLS
    }


def _last_line(output: bytes) -> str:
    """The last non-empty line of a tool's error output."""
    lines = [line for line in output.decode(errors="replace").splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


def warm_page_cache(folder: Path) -> None:
    """Read the model files once, so the first tool of round 1 does not pay the cold disk."""
    for path in folder.iterdir():
        if path.is_file():
            with path.open("rb") as handle:
                while handle.read(16 * 1024 * 1024):
                    pass


def run_once(
    tool: Tool, set_name: str, round_index: int, position: int, spec: RunSpec, timeout_s: float
) -> RunRecord:
    """Run one tool on one set once, measure it, read and score its transcripts."""
    audio_s = round(sum(item.duration_s for item in spec.items), 3)
    invocation = tool.plan(spec)
    if isinstance(invocation, str):
        return RunRecord(
            tool.name, set_name, round_index, position, audio_s, None, None, {}, invocation
        )
    measurement = run_measured(
        invocation.command,
        env=invocation.env,
        cwd=invocation.cwd,
        log_dir=spec.work_dir / "logs",
        watch_dir=invocation.watch_dir,
        timeout_s=timeout_s,
        measure_vram=spec.device == "cuda",
    )
    collected = tool.collect(spec, measurement)
    references = {item.name: (item.language, item.reference) for item in spec.items}
    scores = score_by_language(references, collected.transcripts)
    error = collected.error
    if error is None and spec.items and not collected.transcripts:
        # A run that transcribed nothing has no meaningful speed, whatever its exit code.
        error = f"no transcript produced: {tail(read_log(spec, 'stderr'))}"
    return RunRecord(
        tool.name, set_name, round_index, position, audio_s, measurement, collected, scores, error
    )


def rotate(names: Sequence[str], round_index: int) -> list[str]:
    """The tools' order in a round: shifted by one every round."""
    shift = round_index % len(names)
    return [*names[shift:], *names[:shift]]


def make_spec(
    args: argparse.Namespace, items: tuple[AudioItem, ...], work_dir: Path, model: ModelSource
) -> RunSpec:
    """The options shared by every tool, for one run in ``work_dir``."""
    return RunSpec(
        items=items,
        work_dir=work_dir,
        model=args.model,
        model_dir=model.path,
        device=args.device,
        compute_type=args.compute_type,
        beam_size=args.beam_size,
        batch_size=args.batch_size,
        procs=args.procs,
    )


def run_rounds(args: argparse.Namespace, workload: Workload, model: ModelSource) -> list[RunRecord]:
    """Every set, every round, every tool (alternating); progress goes to stderr."""
    records = []
    runs_dir = args.workload_dir / "runs"
    for set_name in args.set_names:
        items: tuple[AudioItem, ...] = workload.set_items(set_name)
        for round_index in range(args.rounds):
            for position, name in enumerate(rotate(args.tool_names, round_index)):
                work_dir = runs_dir / f"{set_name}-{name}-r{round_index + 1}"
                shutil.rmtree(work_dir, ignore_errors=True)
                work_dir.mkdir(parents=True)
                spec = make_spec(args, items, work_dir, model)
                record = run_once(
                    TOOLS[name], set_name, round_index, position, spec, args.timeout_s
                )
                records.append(record)
                log_progress(record, args.rounds)
                if record.ok and not args.keep_outputs:
                    shutil.rmtree(work_dir, ignore_errors=True)
    return records


def log_progress(record: RunRecord, rounds: int) -> None:
    """One line per run on stderr, so a long benchmark shows where it is."""
    head = f"[{record.set_name} round {record.round_index + 1}/{rounds}] {record.tool:15}"
    m = record.measurement
    if record.ok and m is not None:
        speed = record.audio_s / m.wall_s if m.wall_s else 0.0
        print(f"{head} {m.wall_s:8.1f} s wall  {speed:6.2f}x real time", file=sys.stderr)
    else:
        print(f"{head} FAILED: {record.error}", file=sys.stderr)


def build_report(
    args: argparse.Namespace,
    host: dict[str, object],
    workload: Workload,
    model: ModelSource,
    help_s: dict[str, dict[str, object]],
    records: Sequence[RunRecord],
) -> dict[str, object]:
    """Everything measured, in the shape ``bench/README.md`` documents."""
    summary = summarize(records)
    targets = check_targets(summary, help_s) if args.device == "cpu" else []
    return {
        "schema": 1,
        "date": args.date,
        "machine": args.machine_name,
        "host": host,
        "options": {
            "quick": args.quick,
            "model": args.model,
            "model_dir": str(model.path),
            "model_source": model.how,
            "device": args.device,
            "compute_type": args.compute_type,
            "beam_size": args.beam_size,
            "batch_size": args.batch_size,
            "vad_filter": True,
            "procs": args.procs,
            "rounds": args.rounds,
            "tools": args.tool_names,
            "sets": args.set_names,
        },
        "workload": {name: describe_items(workload.set_items(name)) for name in args.set_names},
        "help_s": help_s,
        "summary": summary,
        "targets": targets,
        "runs": [record.to_json() for record in records],
    }


def machine_name(given: str | None) -> str:
    """The machine part of the file names: ``--machine`` or the host name, made file-safe."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", given or socket.gethostname()).strip("-") or "machine"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; see the module docstring for the exit status."""
    args = parse_args(argv)
    if args.render:
        report = json.loads(args.render.read_text(encoding="utf-8"))
        render_files(report, {ext: args.render.with_suffix(f".{ext}") for ext in ("md", "png")})
        return 0
    args.date = datetime.date.today().isoformat()
    args.machine_name = machine_name(args.machine)
    args.workload_dir = args.workload_dir / ("quick" if args.quick else "full")
    args.workload_dir.mkdir(parents=True, exist_ok=True)
    host = describe_host()
    if not (args.corpus / "manifest.tsv").is_file():
        missing = f"no speech corpus at {args.corpus} (manifest.tsv)"
        print(f"bench: cannot run: {missing}", file=sys.stderr)
        return 3
    try:
        workload = build_workload(args.corpus, args.workload_dir, quick=args.quick)
        model = resolve_model(args.model, find_executable("jozvesaz"))
    except (OSError, ValueError, ModelNotFoundError) as exc:
        print(f"bench: cannot run: {exc}", file=sys.stderr)
        return 3
    print(f"bench: model {model.path} ({model.how})", file=sys.stderr)
    warm_page_cache(model.path)
    help_s = time_help(args.help_runs, args.workload_dir)
    records = run_rounds(args, workload, model)
    host["load_after"] = _load_average()
    report = build_report(args, host, workload, model, help_s, records)
    paths = write_report(report, args.out, f"{args.date}-{args.machine_name}")
    print("\n".join(results_table(report["summary"])))  # type: ignore[arg-type]
    print("\n" + "\n".join(f"wrote {path}" for path in paths.values()))
    return 0 if all(record.ok for record in records) else 1


if __name__ == "__main__":
    sys.exit(main())
