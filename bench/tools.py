"""The tools under comparison: how each is started on a set, and how its results are read back.

Three tools, five runnable configurations:

- ``jozvesaz``: ``jozvesaz transcribe FILES --output-dir OUT --format json --json --force`` with
  default settings. Only the model name, the device and a fresh ``STORAGE_ROOT`` are set, every
  other ``JOZVESAZ_*``/``TRANSCRIPTION_*`` variable is removed, and it runs in an empty folder so
  no ``.env`` is read. Its ``--json`` summary gives model loads and per-file outputs.
- ``direct-threads``, ``direct-procs``, ``direct-batched``: ``bench/direct.py`` (faster-whisper
  called directly); the fastest of them on a set is that set's "direct" reference.
- ``wct2``: the whisper-ctranslate2 CLI with the same model folder, compute type and VAD filter,
  its other options at their defaults, as a user would run it.

A tool that is missing or fails is recorded with its error; nothing here raises for it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench.corpus import AudioItem
from bench.monitor import Measurement

BENCH_DIR = Path(__file__).resolve().parent
DIRECT_CONFIGS = ("threads", "procs", "batched")
TOOL_NAMES = ("jozvesaz", *(f"direct-{c}" for c in DIRECT_CONFIGS), "wct2")
# Variables that would change jozvesaz's settings away from its defaults.
SETTING_PREFIXES = ("JOZVESAZ_", "TRANSCRIPTION_", "MEMORY_MONITOR_")
SETTING_NAMES = ("STORAGE_ROOT", "DATABASE_URL", "ENABLE_MEMORY_MONITORING")


@dataclass(frozen=True, slots=True)
class RunSpec:
    """Everything a tool needs to run one set once.

    Attributes:
        items: the files of the set.
        work_dir: a fresh folder for this run (outputs, storage, logs).
        model: the model name as the user gave it (``base``).
        model_dir: the resolved model folder shared by all tools.
        device: ``cpu`` or ``cuda``.
        compute_type: compute type for the direct and whisper-ctranslate2 runs.
        beam_size: beam width (faster-whisper's and whisper-ctranslate2's default is 5).
        batch_size: batch size of the batched pipeline.
        procs: worker processes of ``direct-procs``.
    """

    items: tuple[AudioItem, ...]
    work_dir: Path
    model: str
    model_dir: Path
    device: str
    compute_type: str
    beam_size: int
    batch_size: int
    procs: int

    @property
    def out_dir(self) -> Path:
        """Where the tool writes its transcripts."""
        return self.work_dir / "out"


@dataclass(frozen=True, slots=True)
class Invocation:
    """A command ready to be measured.

    Attributes:
        command: program and arguments.
        env: the full environment.
        cwd: working folder.
        watch_dir: folder watched for the first ``.json``, or None when the tool reports it.
    """

    command: tuple[str, ...]
    env: dict[str, str]
    cwd: Path
    watch_dir: Path | None


@dataclass(frozen=True, slots=True)
class Collected:
    """What a tool's outputs say about a run.

    Attributes:
        transcripts: item name -> text, for files the tool transcribed.
        model_loads: models built during the run; None when unknown.
        first_file_s: seconds from start to the first finished file, when the tool reports it.
        failed: item names the tool reported as failed or left without output.
        error: why the run as a whole is unusable, else None.
        details: tool-specific extras kept in the JSON report (e.g. jozvesaz's own elapsed_s).
    """

    transcripts: dict[str, str]
    model_loads: int | None
    first_file_s: float | None
    failed: tuple[str, ...]
    error: str | None
    details: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Tool:
    """One runnable configuration.

    Attributes:
        name: ``jozvesaz``, ``direct-threads``, ``direct-procs``, ``direct-batched`` or ``wct2``.
        plan: builds the invocation for a run.
        collect: reads the results after the run.
    """

    name: str
    plan: Callable[[RunSpec], Invocation | str]
    collect: Callable[[RunSpec, Measurement], Collected]


def find_executable(name: str) -> Path | None:
    """The executable next to this Python (the venv's), else the one on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside
    found = shutil.which(name)
    return Path(found) if found else None


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without jozvesaz settings, plus ``extra``."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.upper().startswith(SETTING_PREFIXES) and key.upper() not in SETTING_NAMES
    }
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def read_log(spec: RunSpec, stream: str) -> str:
    """The tool's captured ``stdout`` or ``stderr``."""
    path = spec.work_dir / "logs" / f"{stream}.txt"
    return path.read_text(encoding="utf-8", errors="replace") if path.is_file() else ""


def tail(text: str, lines: int = 6) -> str:
    """The last lines of a log, for error messages in the report."""
    return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:])


def read_transcript(path: Path) -> str | None:
    """The text of a JSON transcript (``text``, else the segments' texts joined)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    if isinstance(data.get("text"), str):
        return str(data["text"])
    segments = data.get("segments")
    if isinstance(segments, list):
        return " ".join(str(s.get("text", "")).strip() for s in segments if isinstance(s, dict))
    return None


def transcripts_by_stem(items: Sequence[AudioItem], out_dir: Path) -> dict[str, str]:
    """Find ``<stem>.json`` (or ``<stem>-<hex id>.json``) for each item under ``out_dir``."""
    by_stem = {Path(item.name).stem: item.name for item in items}
    found: dict[str, str] = {}
    for path in sorted(out_dir.rglob("*.json")) if out_dir.is_dir() else []:
        stem = path.stem if path.stem in by_stem else re.sub(r"-[0-9a-f]{6,}$", "", path.stem)
        name = by_stem.get(stem)
        text = read_transcript(path) if name else None
        if name and name not in found and text is not None:
            found[name] = text
    return found


def exit_error(measurement: Measurement, spec: RunSpec, ok_codes: tuple[int, ...]) -> str | None:
    """An error message when the run did not finish with one of ``ok_codes``."""
    if measurement.error:
        return measurement.error
    if measurement.returncode not in ok_codes:
        return f"exit code {measurement.returncode}: {tail(read_log(spec, 'stderr'))}"
    return None


# -- jozvesaz ---------------------------------------------------------------------------------


def plan_jozvesaz(spec: RunSpec) -> Invocation | str:
    """``jozvesaz transcribe`` with default settings in a clean environment and folder."""
    executable = find_executable("jozvesaz")
    if executable is None:
        return "jozvesaz is not installed in this environment"
    storage = spec.work_dir / "storage"
    storage.mkdir(parents=True, exist_ok=True)
    env = clean_env(
        {
            "STORAGE_ROOT": str(storage),
            "TRANSCRIPTION_MODEL_NAME": spec.model,
            "JOZVESAZ_DEVICE": spec.device,
        }
    )
    files = [str(item.path) for item in spec.items]
    command: tuple[str, ...] = (str(executable), "transcribe", *files)
    command += ("--output-dir", str(spec.out_dir))
    command += ("--format", "json", "--json", "--force")
    return Invocation(command, env, spec.work_dir, spec.out_dir)


def parse_summary(stdout: str) -> dict[str, object] | None:
    """Find jozvesaz's ``--json`` run summary in its stdout.

    The whole stdout is tried first; then each line from the last, in case a log line slipped
    onto stdout; then the outermost braces.
    """
    candidates = [stdout.strip(), *reversed(stdout.strip().splitlines())]
    if "{" in stdout:
        candidates.append(stdout[stdout.index("{") : stdout.rindex("}") + 1])
    for candidate in candidates:
        try:
            data = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(data, dict) and isinstance(data.get("files"), list):
            return data
    return None


def _summary_transcripts(
    items: Sequence[AudioItem], summary: Mapping[str, object]
) -> tuple[dict[str, str], dict[str, str]]:
    """Texts of the files whose JSON output could be read, and why the others have none."""
    by_path = {str(item.path.resolve()): item.name for item in items}
    by_path.update({item.name: item.name for item in items})
    texts: dict[str, str] = {}
    problems: dict[str, str] = {}
    entries = summary.get("files")
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict):
            continue
        path = Path(str(entry.get("path", "")))
        name = by_path.get(str(path.resolve())) or by_path.get(path.name)
        if name is None:
            continue
        outputs = entry.get("outputs") or []
        jsons = [Path(str(o)) for o in outputs if str(o).endswith(".json")]
        text = next((t for t in map(read_transcript, jsons) if t is not None), None)
        if text is None:
            problems[name] = f"{entry.get('status')}: {entry.get('error') or 'no JSON output'}"
        else:
            texts[name] = text
    return texts, problems


def collect_jozvesaz(spec: RunSpec, measurement: Measurement) -> Collected:
    """Read the ``--json`` summary; fall back to the output folder if it cannot be parsed."""
    error = exit_error(measurement, spec, (0, 1))
    summary = parse_summary(read_log(spec, "stdout"))
    details: dict[str, object] = {"returncode": measurement.returncode}
    if summary is None:
        texts = transcripts_by_stem(spec.items, spec.out_dir)
        error = error or (
            f"no --json summary with a 'files' list on stdout (exit code "
            f"{measurement.returncode}): {tail(read_log(spec, 'stderr'), 2)}"
        )
        loads = None
    else:
        texts, details["file_problems"] = _summary_transcripts(spec.items, summary)
        raw_loads = summary.get("model_loads")
        loads = raw_loads if isinstance(raw_loads, int) else None
        details["elapsed_s"] = summary.get("elapsed_s")
        details["statuses"] = _status_counts(summary)
    failed = tuple(item.name for item in spec.items if item.name not in texts)
    return Collected(texts, loads, None, failed, error, details)


def _status_counts(summary: Mapping[str, object]) -> dict[str, int]:
    """How many files the summary lists under each status."""
    counts: dict[str, int] = {}
    entries = summary.get("files")
    for entry in entries if isinstance(entries, list) else []:
        status = str(entry.get("status")) if isinstance(entry, dict) else "?"
        counts[status] = counts.get(status, 0) + 1
    return counts


# -- faster-whisper directly -------------------------------------------------------------------


def plan_direct(config: str) -> Callable[[RunSpec], Invocation | str]:
    """The planner of one direct configuration."""

    def plan(spec: RunSpec) -> Invocation | str:
        items = list(spec.items)
        if config == "procs":
            # The queue is the schedule: longest first keeps every worker busy to the end.
            items.sort(key=lambda item: item.duration_s, reverse=True)
        command: tuple[str, ...] = (sys.executable, str(BENCH_DIR / "direct.py"))
        command += ("--config", config)
        command += ("--model", str(spec.model_dir), "--out-dir", str(spec.out_dir))
        command += ("--device", spec.device, "--compute-type", spec.compute_type)
        command += ("--beam-size", str(spec.beam_size), "--batch-size", str(spec.batch_size))
        command += ("--procs", str(spec.procs), *(str(item.path) for item in items))
        return Invocation(command, clean_env(), spec.work_dir, None)

    return plan


def read_events(stdout: str) -> list[dict[str, object]]:
    """The JSON event lines ``direct.py`` printed."""
    events = []
    for line in stdout.splitlines():
        if line.startswith("{"):
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict) and "event" in event:
                events.append(event)
    return events


def collect_direct(spec: RunSpec, measurement: Measurement) -> Collected:
    """Count model loads and read first-file time from the helper's events."""
    error = exit_error(measurement, spec, (0, 1))
    events = read_events(read_log(spec, "stdout"))
    loads = sum(1 for event in events if event["event"] == "model_loaded")
    done_times = [float(e["t"]) for e in events if e["event"] == "done"]  # type: ignore[arg-type]
    first = round(min(done_times) - measurement.started_at, 3) if done_times else None
    texts = transcripts_by_stem(spec.items, spec.out_dir)
    failed = tuple(item.name for item in spec.items if item.name not in texts)
    if not events and error is None:
        error = f"no events on stdout: {tail(read_log(spec, 'stderr'))}"
    problems = {
        Path(str(e.get("file"))).name: str(e.get("error")) for e in events if e["event"] == "failed"
    }
    details: dict[str, object] = {"file_problems": problems} if problems else {}
    return Collected(texts, loads if events else None, first, failed, error, details)


# -- whisper-ctranslate2 -----------------------------------------------------------------------


def plan_wct2(spec: RunSpec) -> Invocation | str:
    """whisper-ctranslate2 on all files in one process, same model, compute type and VAD."""
    executable = find_executable("whisper-ctranslate2")
    if executable is None:
        return "whisper-ctranslate2 is not installed in this environment"
    command: tuple[str, ...] = (str(executable), *(str(item.path) for item in spec.items))
    command += ("--model_directory", str(spec.model_dir), "--compute_type", spec.compute_type)
    command += ("--device", spec.device, "--vad_filter", "True", "--beam_size", str(spec.beam_size))
    command += ("--output_format", "json", "--output_dir", str(spec.out_dir))
    return Invocation(command, clean_env(), spec.work_dir, spec.out_dir)


def collect_wct2(spec: RunSpec, measurement: Measurement) -> Collected:
    """Read ``<stem>.json`` outputs; whisper-ctranslate2 exits 0 even when files fail."""
    error = exit_error(measurement, spec, (0,))
    texts = transcripts_by_stem(spec.items, spec.out_dir)
    failed = tuple(item.name for item in spec.items if item.name not in texts)
    # One model per invocation by design (whisper_ctranslate2.py builds one Transcribe).
    loads = 1 if error is None else None
    return Collected(texts, loads, None, failed, error)


TOOLS: dict[str, Tool] = {
    "jozvesaz": Tool("jozvesaz", plan_jozvesaz, collect_jozvesaz),
    **{
        f"direct-{config}": Tool(f"direct-{config}", plan_direct(config), collect_direct)
        for config in DIRECT_CONFIGS
    },
    "wct2": Tool("wct2", plan_wct2, collect_wct2),
}
