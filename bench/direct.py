"""faster-whisper called directly, in one of three configurations: the benchmark's reference.

The reference is the best a user could get from faster-whisper without jozvesaz, so the
benchmark tries the three shapes that matter on a CPU and keeps the fastest:

- ``threads``: one process, one model with every core as an intra-op thread, files in sequence
  (the plain loop most scripts write);
- ``procs``: one process per core, each with its own model and one thread, pulling files from a
  shared queue in the order given (``run.py`` passes them longest first, so no core idles at the
  end while another finishes a long file);
- ``batched``: one model behind ``BatchedInferencePipeline``, which cuts each recording at VAD
  boundaries and decodes the chunks in batches (it needs VAD, so VAD is on everywhere).

Each configuration runs as its own process tree, started by ``run.py``, so its peak RSS and wall
time are measured like any other tool's. This script reports what it does as JSON lines on
stdout: ``model_loaded`` each time a model is built (so model loads are counted, not assumed),
``done`` with a wall-clock timestamp for every finished file (time to first file), ``failed``
for files that raised. Each transcript is written to ``<out-dir>/<stem>.json`` with the keys
``text``, ``language``, ``segments``, like whisper-ctranslate2's JSON output.

Usage:
    python bench/direct.py --config procs --model DIR --out-dir OUT --procs 2 a.mp3 b.wav
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path

CONFIGS = ("threads", "procs", "batched")


@dataclass(frozen=True, slots=True)
class DirectSpec:
    """How each process builds its model and decodes; picklable for spawned workers.

    Attributes:
        model: path of a CTranslate2 Whisper model folder.
        device: ``cpu`` or ``cuda``.
        compute_type: CTranslate2 compute type, e.g. ``int8``.
        cpu_threads: intra-op threads of each model.
        beam_size: beam width, faster-whisper's default of 5.
        batched: use ``BatchedInferencePipeline``.
        batch_size: batch size of the batched pipeline.
    """

    model: str
    device: str
    compute_type: str
    cpu_threads: int
    beam_size: int
    batched: bool
    batch_size: int


_WORKER: dict[str, object] = {}


def emit(event: str, **fields: object) -> None:
    """Print one JSON event line; flushed at once so the parent sees it as it happens."""
    print(json.dumps({"event": event, "t": time.time(), "pid": os.getpid(), **fields}), flush=True)


def load_pipeline(spec: DirectSpec) -> object:
    """Build the model (and the batched pipeline around it) and announce the load."""
    from faster_whisper import BatchedInferencePipeline, WhisperModel

    started = time.perf_counter()
    model = WhisperModel(
        spec.model,
        device=spec.device,
        compute_type=spec.compute_type,
        cpu_threads=spec.cpu_threads,
    )
    emit("model_loaded", load_s=round(time.perf_counter() - started, 3))
    return BatchedInferencePipeline(model) if spec.batched else model


def transcribe(pipeline: object, spec: DirectSpec, path: str) -> dict[str, object]:
    """Transcribe one file fully (segments are lazy, so they are consumed here)."""
    options: dict[str, object] = {"beam_size": spec.beam_size, "vad_filter": True}
    if spec.batched:
        options["batch_size"] = spec.batch_size
    segments, info = pipeline.transcribe(path, **options)  # type: ignore[attr-defined]
    rows = [{"start": s.start, "end": s.end, "text": s.text.strip()} for s in segments]
    return {
        "text": " ".join(row["text"] for row in rows if row["text"]),
        "language": info.language,
        "duration_s": info.duration,
        "segments": rows,
    }


def write_result(out_dir: Path, path: str, result: dict[str, object]) -> Path:
    """Write one transcript as ``<stem>.json`` and return its path."""
    target = out_dir / f"{Path(path).stem}.json"
    target.write_text(json.dumps(result, ensure_ascii=False), encoding="utf-8")
    return target


def report(out_dir: Path, path: str, result: dict[str, object]) -> None:
    """Write a worker's result and emit ``done`` or ``failed``."""
    if "error" in result:
        emit("failed", file=path, error=result["error"])
        return
    output = write_result(out_dir, path, result)
    emit("done", file=path, output=str(output), language=result["language"])


def run_sequential(spec: DirectSpec, files: list[str], out_dir: Path) -> None:
    """The ``threads`` and ``batched`` configurations: one model, files one after another."""
    pipeline = load_pipeline(spec)
    for path in files:
        report(out_dir, path, _safe_transcribe(pipeline, spec, path))


def _safe_transcribe(pipeline: object, spec: DirectSpec, path: str) -> dict[str, object]:
    """Transcribe, turning an exception into an ``error`` entry so the batch goes on."""
    try:
        return transcribe(pipeline, spec, path)
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}


def _init_worker(spec_fields: dict[str, object]) -> None:
    """Pool initializer: each worker process loads its own model once.

    A failed load is kept and reported per file: an initializer that raises makes the pool
    start replacement workers forever, and the run would hang until the benchmark's timeout.
    """
    spec = DirectSpec(**spec_fields)  # type: ignore[arg-type]
    _WORKER["spec"] = spec
    try:
        _WORKER["pipeline"] = load_pipeline(spec)
    except Exception as exc:
        _WORKER["load_error"] = f"model load failed: {type(exc).__name__}: {exc}"


def _work(path: str) -> tuple[str, dict[str, object]]:
    """Pool task: transcribe one file with this worker's model."""
    spec = _WORKER["spec"]
    assert isinstance(spec, DirectSpec)
    if "load_error" in _WORKER:
        return path, {"error": _WORKER["load_error"]}
    return path, _safe_transcribe(_WORKER["pipeline"], spec, path)


def run_processes(spec: DirectSpec, files: list[str], out_dir: Path, procs: int) -> None:
    """The ``procs`` configuration: ``procs`` spawned workers share one queue of files.

    ``imap_unordered`` with ``chunksize=1`` hands out one file at a time, so a worker that
    finishes early takes the next file: the files' order (longest first) is the schedule.
    """
    context = multiprocessing.get_context("spawn")
    with context.Pool(procs, initializer=_init_worker, initargs=(asdict(spec),)) as pool:
        for path, result in pool.imap_unordered(_work, files, chunksize=1):
            report(out_dir, path, result)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Read the command line (see the module docstring)."""
    cores = os.cpu_count() or 1
    parser = argparse.ArgumentParser(description="faster-whisper, called directly.")
    parser.add_argument("--config", choices=CONFIGS, required=True)
    parser.add_argument("--model", required=True, help="CTranslate2 model folder")
    parser.add_argument("--out-dir", type=Path, required=True)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--compute-type", default="int8")
    parser.add_argument("--threads", type=int, default=0, help="threads per model; 0: auto")
    parser.add_argument("--procs", type=int, default=cores, help="worker processes (procs)")
    parser.add_argument("--beam-size", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("files", nargs="+")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run one configuration over the files; exit 1 if any file failed."""
    args = parse_args(argv)
    cores = os.cpu_count() or 1
    # procs: the cores are split between the workers; otherwise one model gets them all.
    auto_threads = max(1, cores // args.procs) if args.config == "procs" else cores
    spec = DirectSpec(
        model=args.model,
        device=args.device,
        compute_type=args.compute_type,
        cpu_threads=args.threads or auto_threads,
        beam_size=args.beam_size,
        batched=args.config == "batched",
        batch_size=args.batch_size,
    )
    args.out_dir.mkdir(parents=True, exist_ok=True)
    emit("start", config=args.config, spec=asdict(spec), procs=args.procs, files=len(args.files))
    if args.config == "procs":
        run_processes(spec, args.files, args.out_dir, max(1, min(args.procs, len(args.files))))
    else:
        run_sequential(spec, args.files, args.out_dir)
    written = {p.stem for p in args.out_dir.iterdir() if p.suffix == ".json"}
    return 0 if written >= {Path(f).stem for f in args.files} else 1


if __name__ == "__main__":
    sys.exit(main())
