"""Runs one tool as a child process tree and measures it while it runs.

What is measured, and why this way:

- wall time from just before the process is started until it has exited: what a user waits,
  start-up and model loading included;
- resident memory of every process in the tree (the tool and all its descendants), polled with
  psutil every ``interval_s`` (0.1 s): jozvesaz and the ``procs`` configuration hold one model
  per process, so the peak *per process* is what the memory target is about, and the peak of
  the *sum* is what the machine must have. Polling can miss a spike shorter than the interval;
  a model stays resident for seconds, so the peaks that matter are seen;
- CPU seconds of the tree, from ``getrusage(RUSAGE_CHILDREN)`` before and after: exact, and less
  sensitive to a noisy shared machine than wall time;
- the first finished file, by watching the output folder for the first ``.json`` (for tools that
  cannot tell us; the direct helper reports its own timestamps);
- GPU memory, when ``nvidia-smi`` exists and was asked for: its ``memory.used`` summed over GPUs,
  polled in a thread, minus what was in use before the run started.
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

MB = 1024 * 1024
VRAM_INTERVAL_S = 0.2


@dataclass(frozen=True, slots=True)
class ProcessPeak:
    """The highest resident memory one process of the tree reached.

    Attributes:
        pid: its process id.
        command: a short form of its command line.
        peak_rss_mb: its highest sampled RSS, in MiB.
    """

    pid: int
    command: str
    peak_rss_mb: float


@dataclass(frozen=True, slots=True)
class Measurement:
    """What one monitored run measured.

    Attributes:
        returncode: the tool's exit status; None when it could not start or was killed.
        error: why it could not start or was stopped, else None.
        started_at: wall-clock time (epoch seconds) just before the start.
        wall_s: seconds from start to exit.
        cpu_s: user + system CPU seconds of the whole tree.
        processes: peak RSS of each process seen, largest first.
        peak_total_rss_mb: highest sampled sum of RSS over the tree, in MiB.
        first_output_s: seconds from start until the first ``.json`` appeared in the watched
            folder; None when nothing was watched or nothing appeared.
        peak_vram_mb: highest GPU memory in use minus the use before the start, in MiB; None
            when not measured.
        samples: how many memory samples were taken.
    """

    returncode: int | None
    error: str | None
    started_at: float
    wall_s: float
    cpu_s: float
    processes: tuple[ProcessPeak, ...]
    peak_total_rss_mb: float
    first_output_s: float | None
    peak_vram_mb: float | None
    samples: int

    @property
    def peak_process_rss_mb(self) -> float:
        """The largest single-process peak, in MiB (0 when nothing was sampled)."""
        return max((p.peak_rss_mb for p in self.processes), default=0.0)


def read_vram_used_mb() -> float | None:
    """GPU memory in use, summed over GPUs, in MiB; None without a working ``nvidia-smi``."""
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
        return float(sum(float(line) for line in out.split() if line.strip()))
    except (OSError, subprocess.SubprocessError, ValueError):
        return None


class VramPoller(threading.Thread):
    """Polls ``nvidia-smi`` in the background and keeps the highest reading."""

    def __init__(self) -> None:
        super().__init__(name="vram-poller", daemon=True)
        self.peak_mb: float | None = None
        self._stop_event = threading.Event()

    def run(self) -> None:
        """Poll until stopped; a failing ``nvidia-smi`` simply leaves no reading."""
        while not self._stop_event.is_set():
            used = read_vram_used_mb()
            if used is not None:
                self.peak_mb = used if self.peak_mb is None else max(self.peak_mb, used)
            self._stop_event.wait(VRAM_INTERVAL_S)

    def stop(self) -> None:
        """Stop polling and wait for the thread."""
        self._stop_event.set()
        self.join(timeout=15)


def find_first_json(folder: Path) -> bool:
    """Whether a finished ``.json`` output exists anywhere under ``folder``.

    Hidden files and names with temporary suffixes are ignored: tools that write atomically
    write a temporary name first.
    """
    for _root, _dirs, files in os.walk(folder):
        for name in files:
            if name.endswith(".json") and not name.startswith((".", "~")) and ".tmp" not in name:
                return True
    return False


def _command_of(process: psutil.Process) -> str:
    """A short, readable command line for the report."""
    try:
        parts = process.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return "?"
    shown = [Path(parts[0]).name, *parts[1:4]] if parts else ["?"]
    return " ".join(shown)[:120]


class TreeSampler:
    """Samples the RSS of a process and all its descendants."""

    def __init__(self, root: psutil.Process) -> None:
        self.root = root
        self.peaks: dict[int, float] = {}
        self.commands: dict[int, str] = {}
        self.peak_total_mb = 0.0
        self.samples = 0

    def sample(self) -> None:
        """Take one sample; processes that vanish mid-sample are skipped."""
        try:
            tree = [self.root, *self.root.children(recursive=True)]
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            return
        total = 0.0
        for process in tree:
            try:
                rss_mb = process.memory_info().rss / MB
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
            total += rss_mb
            if process.pid not in self.commands:
                self.commands[process.pid] = _command_of(process)
            self.peaks[process.pid] = max(self.peaks.get(process.pid, 0.0), rss_mb)
        self.peak_total_mb = max(self.peak_total_mb, total)
        self.samples += 1

    def process_peaks(self) -> tuple[ProcessPeak, ...]:
        """Every process's peak, largest first."""
        rows = [
            ProcessPeak(pid, self.commands.get(pid, "?"), round(peak, 1))
            for pid, peak in self.peaks.items()
        ]
        return tuple(sorted(rows, key=lambda row: row.peak_rss_mb, reverse=True))


def _children_cpu_s() -> float:
    """User + system CPU seconds of all waited-for descendants of this process so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _kill_tree(root: psutil.Process) -> None:
    """Kill a process and every descendant (timeouts only), then reap the root."""
    try:
        victims = [*root.children(recursive=True), root]
    except psutil.NoSuchProcess:
        return
    for victim in victims:
        try:
            victim.kill()
        except psutil.NoSuchProcess:
            continue
    psutil.wait_procs(victims, timeout=10)


def run_measured(
    command: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: Path,
    log_dir: Path,
    watch_dir: Path | None,
    timeout_s: float,
    interval_s: float = 0.1,
    measure_vram: bool = False,
) -> Measurement:
    """Run ``command`` to completion while sampling it; never raises for the tool's failures.

    Args:
        command: the program and its arguments.
        env: the complete environment of the tool.
        cwd: its working folder.
        log_dir: ``stdout.txt`` and ``stderr.txt`` are written here (files, not pipes, so a
            chatty tool cannot block on a full pipe).
        watch_dir: folder to watch for the first ``.json`` output, or None.
        timeout_s: the tree is killed after this long and the run recorded as an error.
        interval_s: memory sampling interval.
        measure_vram: poll ``nvidia-smi`` during the run.

    Returns:
        The measurement; ``error`` says why when the tool could not start or timed out.
    """
    log_dir.mkdir(parents=True, exist_ok=True)
    baseline_vram = read_vram_used_mb() if measure_vram else None
    poller = VramPoller() if baseline_vram is not None else None
    cpu_before = _children_cpu_s()
    with (log_dir / "stdout.txt").open("wb") as out, (log_dir / "stderr.txt").open("wb") as err:
        started_at = time.time()
        started = time.perf_counter()
        try:
            root = psutil.Popen(list(command), env=dict(env), cwd=cwd, stdout=out, stderr=err)
        except OSError as exc:
            return _not_started(exc, started_at)
        if poller is not None:
            poller.start()
        sampler = TreeSampler(root)
        first_output_s, error = _watch(root, sampler, watch_dir, started, timeout_s, interval_s)
        wall_s = time.perf_counter() - started
        returncode = root.wait() if error is None else None
    if poller is not None:
        poller.stop()
    peak_vram = None
    if poller is not None and poller.peak_mb is not None and baseline_vram is not None:
        peak_vram = round(poller.peak_mb - baseline_vram, 1)
    return Measurement(
        returncode=returncode,
        error=error,
        started_at=started_at,
        wall_s=round(wall_s, 3),
        cpu_s=round(_children_cpu_s() - cpu_before, 2),
        processes=sampler.process_peaks(),
        peak_total_rss_mb=round(sampler.peak_total_mb, 1),
        first_output_s=first_output_s,
        peak_vram_mb=peak_vram,
        samples=sampler.samples,
    )


def _watch(
    root: psutil.Popen,
    sampler: TreeSampler,
    watch_dir: Path | None,
    started: float,
    timeout_s: float,
    interval_s: float,
) -> tuple[float | None, str | None]:
    """Sample until the root exits; return (first output seconds, timeout error or None)."""
    first_output_s: float | None = None
    while root.poll() is None:
        sampler.sample()
        if first_output_s is None and watch_dir is not None and find_first_json(watch_dir):
            first_output_s = round(time.perf_counter() - started, 3)
        if time.perf_counter() - started > timeout_s:
            _kill_tree(root)
            return first_output_s, f"timed out after {timeout_s:.0f} s; process tree killed"
        time.sleep(interval_s)
    if first_output_s is None and watch_dir is not None and find_first_json(watch_dir):
        # Finished between two polls: the exit time is the closest bound we have.
        first_output_s = round(time.perf_counter() - started, 3)
    return first_output_s, None


def _not_started(exc: OSError, started_at: float) -> Measurement:
    """The measurement of a tool that could not be started at all."""
    return Measurement(
        returncode=None,
        error=f"could not start: {exc}",
        started_at=started_at,
        wall_s=0.0,
        cpu_s=0.0,
        processes=(),
        peak_total_rss_mb=0.0,
        first_output_s=None,
        peak_vram_mb=None,
        samples=0,
    )
