"""Memory guard: decides whether RAM and GPU memory leave room to start another file.

Lecture batches run unattended, so the pool must never oversubscribe memory: the kernel's
out-of-memory killer takes a whole slot, and with it a file that may have been running for an
hour. The guard has two jobs:

* **Admission control.** Before a slot starts a file, the pool asks :meth:`MemoryGuard.admit`
  (or blocks in :meth:`MemoryGuard.wait_for_admission`) whether current use plus the file's
  estimated need (:func:`estimate_need_bytes`) stays under the configured ratios. A file that
  does not fit waits; it starts as soon as memory frees. Running work is never killed.
* **Monitoring.** A thread samples memory every ``interval_s`` and logs one WARNING per upward
  crossing of a ratio (and one INFO when use falls back), not one per sample, so that a machine
  sitting at 91 % for an hour produces one line, not 120.

Readings come through the :class:`MemoryReader` protocol so that tests inject scripted readings
instead of patching psutil or pynvml. :class:`SystemMemoryReader` is the real one: psutil for
RAM and, when it can be imported and initialised, NVML for GPU memory. NVML is optional; on a
CPU-only host, or where the ``nvidia-ml-py`` package is installed but the driver library is
not (guilbaults/slurm-job-exporter#10, which crashed with ``NVMLError_LibraryNotFound``), the
guard says so once and works on RAM alone.

Used RAM is ``total - available``, not psutil's ``used``: ``available`` counts page cache the
kernel will drop under pressure, which is the headroom a new file actually has.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import ModuleType, TracebackType
from typing import Protocol

import psutil

logger = logging.getLogger(__name__)

#: Name of the monitor thread; the thread-leak guard in the tests looks for it.
MONITOR_THREAD_NAME = "jozvesaz-memory-guard"

#: Names of the thresholds as users know them (the settings' environment aliases), used in the
#: reasons and warnings so that a user reading the log knows what to tune.
RAM_RATIO_NAME = "MEMORY_MONITOR_RAM_RATIO"
VRAM_RATIO_NAME = "MEMORY_MONITOR_VRAM_RATIO"

#: faster-whisper decodes every file to mono float32 at 16 kHz: 16 000 samples x 4 bytes.
DECODED_AUDIO_BYTES_PER_S = 16_000 * 4

#: Peak RAM of one file's audio, as a multiple of its decoded float32 size. faster-whisper keeps
#: the whole decoded array (1x) while it computes the log-mel features of the whole file at once
#: (``FeatureExtractor.__call__``): a padded copy, 400-sample STFT frames every 160 samples
#: (2.5x), the complex spectrum and its complex64 copy, then the magnitudes. Measured with
#: faster-whisper 1.2.1 and numpy 2.4 on 5-10 minutes of audio: tracemalloc peak 16x for the
#: feature extraction on top of the kept audio, resident-set growth 11.5x. 16x lies between the
#: two; decoding alone (PyAV frames into an int16 buffer, then float32) peaks at only 2.6x.
AUDIO_PEAK_FACTOR = 16

#: Per-file working set that does not grow with the audio: PyAV's decoder and resampler,
#: CTranslate2's encoder and decoder buffers for one 30-second window with beam search, VAD,
#: the segment and word lists.
FILE_WORKING_SET_BYTES = 150 * 1024 * 1024

#: A slot that still has to load its model needs more than the model's size on disk while it
#: loads: CTranslate2 reads the weights and converts them to the compute type, holding both
#: copies for a while.
MODEL_LOAD_FACTOR = 1.5

#: Once a ratio has been crossed, use must fall this far below it before the crossing counts as
#: over. Without the margin, use hovering around the threshold (90.1 %, 89.9 %, 90.2 %, ...)
#: would log a warning on every other sample.
REARM_MARGIN_RATIO = 0.02

_BYTES_PER_GB = 1_000_000_000
_BYTES_PER_MB = 1_000_000


@dataclass(frozen=True, slots=True)
class GpuReading:
    """Memory of one GPU at one moment.

    Attributes:
        index: NVML device index (PCI bus order; the same as CUDA's only with
            ``CUDA_DEVICE_ORDER=PCI_BUS_ID``).
        total_bytes: the device's memory.
        used_bytes: memory not free for a new allocation (``total - free``), including other
            processes' use.
    """

    index: int
    total_bytes: int
    used_bytes: int

    @property
    def used_ratio(self) -> float:
        """Share of the device's memory in use, 0-1 (0 when the total is unknown)."""
        return _ratio(self.used_bytes, self.total_bytes)


@dataclass(frozen=True, slots=True)
class MemoryReading:
    """System memory at one moment.

    Attributes:
        ram_total_bytes: physical RAM.
        ram_available_bytes: RAM a new allocation can get without swapping (psutil's
            ``available``, which counts reclaimable page cache).
        gpus: one reading per monitored GPU; empty when GPU memory is not monitored.
    """

    ram_total_bytes: int
    ram_available_bytes: int
    gpus: tuple[GpuReading, ...] = ()

    @property
    def ram_used_bytes(self) -> int:
        """RAM in use, counted as ``total - available``."""
        return max(self.ram_total_bytes - self.ram_available_bytes, 0)

    @property
    def ram_used_ratio(self) -> float:
        """Share of RAM in use, 0-1 (0 when the total is unknown)."""
        return _ratio(self.ram_used_bytes, self.ram_total_bytes)


class MemoryReader(Protocol):
    """Where the guard's readings come from; tests inject a fake."""

    def read(self) -> MemoryReading:
        """Return a fresh reading.

        Returns:
            The current memory figures. May raise; the guard logs the error once and carries on.
        """
        ...


@dataclass(frozen=True, slots=True)
class Admission:
    """The guard's answer to "may the next file start now?".

    Attributes:
        admitted: True when current use plus the file's estimated need stays under the ratios.
        reason: ``""`` when admitted; otherwise one sentence with the figures and the name of the
            threshold, fit for a log line or a progress display.
    """

    admitted: bool
    reason: str


def estimate_need_bytes(audio_s: float, *, model_bytes: int, model_loaded: bool) -> int:
    """Estimate the extra RAM a slot needs to transcribe one file.

    faster-whisper decodes the whole file into memory and computes the features of the whole file
    at once, so the need grows linearly with the decoded length:
    ``audio_s x DECODED_AUDIO_BYTES_PER_S x AUDIO_PEAK_FACTOR + FILE_WORKING_SET_BYTES``, plus
    ``MODEL_LOAD_FACTOR x model_bytes`` when the slot has not loaded its model yet (once loaded,
    the model is already part of the used memory the reading shows). At the default factors a
    minute of audio needs about 61 MB and an hour about 3.7 GB.

    Args:
        audio_s: decoded length in seconds (the probed duration), >= 0.
        model_bytes: size of the model's weights in bytes, >= 0.
        model_loaded: whether the slot that will run the file already holds the model.

    Returns:
        Estimated peak extra RAM in bytes.

    Raises:
        ValueError: when ``audio_s`` is negative or not finite, or ``model_bytes`` is negative.
    """
    if not math.isfinite(audio_s) or audio_s < 0:
        raise ValueError(f"audio_s must be a finite number >= 0, got {audio_s!r}")
    if model_bytes < 0:
        raise ValueError(f"model_bytes must be >= 0, got {model_bytes!r}")
    need = audio_s * DECODED_AUDIO_BYTES_PER_S * AUDIO_PEAK_FACTOR + FILE_WORKING_SET_BYTES
    if not model_loaded:
        need += model_bytes * MODEL_LOAD_FACTOR
    return math.ceil(need)


class SystemMemoryReader:
    """Reads RAM through psutil and, when NVML works, each GPU's memory.

    NVML is initialised once, in the constructor. When ``pynvml`` cannot be imported, or NVML
    cannot be initialised (no driver library, driver not loaded, no device), the reader works on
    RAM alone and logs one line saying why; it never raises for a missing GPU. Create one reader
    per process: the line is logged once per reader. Thread-safe: the guard's monitor thread and
    the pool may read at the same time.

    Attributes:
        gpu_monitoring: whether readings include GPU memory.
        gpu_unavailable_reason: why GPU memory is not monitored, or None when it is; lets the
            caller turn it into an error when CUDA was requested explicitly.
    """

    def __init__(self, *, gpu_indices: Sequence[int] | None = None) -> None:
        """Initialise NVML when available.

        Args:
            gpu_indices: NVML indices of the GPUs to monitor; None monitors every GPU. Indices
                that do not exist are left out with a warning.
        """
        self._lock = threading.Lock()
        self._nvml: ModuleType | None = None
        self._handles: tuple[tuple[int, object], ...] = ()
        self._failed_gpus: set[int] = set()
        self.gpu_monitoring = False
        self.gpu_unavailable_reason: str | None = None
        self._start_nvml(gpu_indices)

    def _start_nvml(self, gpu_indices: Sequence[int] | None) -> None:
        try:
            import pynvml
        except ImportError as exc:
            # The normal case on CPU-only hosts: nvidia-ml-py is the optional `gpu` extra.
            self._disable(f"pynvml cannot be imported: {exc}", logging.INFO)
            return
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as exc:
            expected = (pynvml.NVMLError_LibraryNotFound, pynvml.NVMLError_DriverNotLoaded)
            level = logging.INFO if isinstance(exc, expected) else logging.WARNING
            self._disable(f"NVML cannot be initialised: {exc}", level)
            return
        try:
            handles, missing = _open_devices(pynvml, gpu_indices)
        except pynvml.NVMLError as exc:
            _shutdown_nvml(pynvml)
            self._disable(f"NVML cannot list the GPUs: {exc}", logging.WARNING)
            return
        if missing:
            logger.warning(
                "GPU index %s not present; monitoring %s",
                ", ".join(str(index) for index in missing),
                ", ".join(str(index) for index, _ in handles) or "no GPU",
            )
        if not handles:
            _shutdown_nvml(pynvml)
            self._disable("no NVIDIA GPU found", logging.INFO)
            return
        self._nvml = pynvml
        self._handles = handles
        self.gpu_monitoring = True
        logger.info(
            "GPU memory monitoring on GPU %s",
            ", ".join(str(index) for index, _ in handles),
            extra={"action": "gpu_monitoring_on"},
        )

    def _disable(self, reason: str, level: int) -> None:
        self.gpu_unavailable_reason = reason
        logger.log(
            level,
            "GPU memory monitoring unavailable (%s); using system RAM only",
            reason,
            extra={"action": "gpu_monitoring_unavailable"},
        )

    def read(self) -> MemoryReading:
        """Read RAM and, when monitored, each GPU's memory.

        A GPU that cannot be read (for example after an Xid error) is left out of the reading,
        with one warning per GPU, rather than failing the whole reading.

        Returns:
            The current figures.
        """
        vm = psutil.virtual_memory()
        gpus: list[GpuReading] = []
        with self._lock:
            nvml = self._nvml
            if nvml is not None:
                for index, handle in self._handles:
                    try:
                        gpus.append(_read_gpu(nvml, index, handle))
                    except nvml.NVMLError as exc:
                        if index not in self._failed_gpus:
                            self._failed_gpus.add(index)
                            logger.warning(
                                "GPU %d memory cannot be read (%s); leaving it out", index, exc
                            )
        return MemoryReading(
            ram_total_bytes=int(vm.total),
            ram_available_bytes=int(vm.available),
            gpus=tuple(gpus),
        )

    def close(self) -> None:
        """Shut NVML down if this reader initialised it; later readings are RAM only."""
        with self._lock:
            nvml, self._nvml, self._handles = self._nvml, None, ()
            self.gpu_monitoring = False
            if nvml is not None:
                _shutdown_nvml(nvml)


def _open_devices(
    nvml: ModuleType, gpu_indices: Sequence[int] | None
) -> tuple[tuple[tuple[int, object], ...], tuple[int, ...]]:
    """Return (index, handle) for each wanted GPU that exists, and the wanted ones that do not."""
    count = int(nvml.nvmlDeviceGetCount())
    wanted = range(count) if gpu_indices is None else gpu_indices
    handles: list[tuple[int, object]] = []
    missing: list[int] = []
    for index in wanted:
        if 0 <= index < count:
            handles.append((index, nvml.nvmlDeviceGetHandleByIndex(index)))
        else:
            missing.append(index)
    return tuple(handles), tuple(missing)


def _read_gpu(nvml: ModuleType, index: int, handle: object) -> GpuReading:
    info = nvml.nvmlDeviceGetMemoryInfo(handle)
    total = int(info.total)
    # total - free, not `used`: what matters is whether a new allocation fits, and newer drivers
    # leave reserved memory out of `used` although it is not free either.
    return GpuReading(index=index, total_bytes=total, used_bytes=total - int(info.free))


def _shutdown_nvml(nvml: ModuleType) -> None:
    try:
        nvml.nvmlShutdown()
    except nvml.NVMLError as exc:
        logger.debug("nvmlShutdown failed: %s", exc)


class MemoryGuard:
    """Admission control and monitoring of RAM and GPU memory.

    A file is admitted iff ``(ram_used + need_ram) / ram_total <= ram_ratio`` and, when the reading
    has GPUs and ``need_vram > 0``, ``(gpu_used + need_vram) / gpu_total <= vram_ratio`` on the
    chosen GPU. The guard only sees memory, not the pool: a file whose need alone exceeds the
    budget would be held forever on an idle machine. The pool therefore passes a need of 0 when
    no other slot is busy, so the file is admitted whenever current use is under the ratio and a
    single huge file still runs. A reader error never blocks work: admission fails open.

    Attributes:
        ram_ratio: RAM use (0-1] above which files wait and a warning is logged.
        vram_ratio: GPU memory use (0-1] above which files wait and a warning is logged.
        interval_s: seconds between samples of the monitor and re-reads while a file waits.
        enabled: False turns the guard off: everything is admitted, nothing is monitored.
        last_reading: the most recent successful reading, from admission or the monitor.
    """

    def __init__(
        self,
        *,
        ram_ratio: float,
        vram_ratio: float,
        interval_s: float,
        reader: MemoryReader,
        enabled: bool = True,
    ) -> None:
        """Create a guard; the monitor thread starts with :meth:`start`.

        Args:
            ram_ratio: RAM threshold, 0 < ratio <= 1.
            vram_ratio: GPU memory threshold, 0 < ratio <= 1.
            interval_s: sampling interval in seconds, > 0.
            reader: where readings come from.
            enabled: False makes the guard admit everything and never sample.

        Raises:
            ValueError: when a ratio or the interval is out of range.
        """
        for name, ratio in (("ram_ratio", ram_ratio), ("vram_ratio", vram_ratio)):
            if not 0 < ratio <= 1:
                raise ValueError(f"{name} must be in (0, 1], got {ratio!r}")
        if not interval_s > 0:
            raise ValueError(f"interval_s must be > 0, got {interval_s!r}")
        self.ram_ratio = ram_ratio
        self.vram_ratio = vram_ratio
        self.interval_s = interval_s
        self.enabled = enabled
        self.last_reading: MemoryReading | None = None
        self._reader = reader
        self._error_lock = threading.Lock()
        self._read_failing = False
        self._stop_event = threading.Event()
        self._thread: threading.Thread | None = None
        # Keys ("ram", "gpu0", ...) currently over their ratio; touched by the monitor thread only.
        self._over: set[str] = set()

    # -- admission --------------------------------------------------------------------------

    def admit(
        self, need_ram_bytes: int, need_vram_bytes: int = 0, gpu_index: int | None = None
    ) -> Admission:
        """Decide from a fresh reading whether a file with this need may start now.

        Args:
            need_ram_bytes: the file's estimated RAM need (:func:`estimate_need_bytes`); 0 when no
                other slot is busy (see the class docstring).
            need_vram_bytes: the file's estimated GPU memory need; 0 skips the GPU check.
            gpu_index: NVML index of the GPU the file will run on; None means the first
                monitored GPU. A GPU missing from the reading is not checked.

        Returns:
            The admission; always admitted when the guard is disabled or the reading fails.
        """
        if not self.enabled:
            return Admission(admitted=True, reason="")
        reading = self._read()
        if reading is None:
            return Admission(admitted=True, reason="")
        return self._decide(reading, need_ram_bytes, need_vram_bytes, gpu_index)

    def _decide(
        self,
        reading: MemoryReading,
        need_ram_bytes: int,
        need_vram_bytes: int,
        gpu_index: int | None,
    ) -> Admission:
        reasons: list[str] = []
        if reading.ram_total_bytes > 0:
            ratio = (reading.ram_used_bytes + need_ram_bytes) / reading.ram_total_bytes
            if ratio > self.ram_ratio:
                reasons.append(
                    _refusal(
                        "RAM",
                        ratio,
                        reading.ram_total_bytes,
                        RAM_RATIO_NAME,
                        self.ram_ratio,
                        need_ram_bytes,
                    )
                )
        gpu = _pick_gpu(reading.gpus, gpu_index) if need_vram_bytes > 0 else None
        if gpu is not None and gpu.total_bytes > 0:
            ratio = (gpu.used_bytes + need_vram_bytes) / gpu.total_bytes
            if ratio > self.vram_ratio:
                reasons.append(
                    _refusal(
                        f"GPU {gpu.index} memory",
                        ratio,
                        gpu.total_bytes,
                        VRAM_RATIO_NAME,
                        self.vram_ratio,
                        need_vram_bytes,
                    )
                )
        return Admission(admitted=not reasons, reason="; ".join(reasons))

    def wait_for_admission(
        self,
        need_ram_bytes: int,
        need_vram_bytes: int,
        stop: threading.Event,
        *,
        on_wait: Callable[[str], None] | None = None,
        gpu_index: int | None = None,
    ) -> bool:
        """Block until the file is admitted or ``stop`` is set.

        Re-reads every ``interval_s``, and wakes at once when ``stop`` is set. Logs one line when
        the file starts waiting and one when it is admitted after waiting, not one per re-read.

        Args:
            need_ram_bytes: as for :meth:`admit`.
            need_vram_bytes: as for :meth:`admit`.
            stop: set by the pool on shutdown; a waiting file then does not start.
            on_wait: called once with the reason when the file starts waiting (for the progress
                display).
            gpu_index: as for :meth:`admit`.

        Returns:
            True when admitted, False when ``stop`` was set first.
        """
        waited_since: float | None = None
        while not stop.is_set():
            admission = self.admit(need_ram_bytes, need_vram_bytes, gpu_index)
            if admission.admitted:
                if waited_since is not None:
                    logger.info(
                        "Memory freed; file admitted after waiting %.1f s",
                        time.monotonic() - waited_since,
                        extra={"action": "memory_admit"},
                    )
                return True
            if waited_since is None:
                waited_since = time.monotonic()
                logger.warning(
                    "Holding the next file until memory frees: %s",
                    admission.reason,
                    extra={"action": "memory_hold"},
                )
                if on_wait is not None:
                    on_wait(admission.reason)
            stop.wait(self.interval_s)
        return False

    # -- monitoring -------------------------------------------------------------------------

    def start(self) -> None:
        """Start the monitor thread (a no-op when disabled or already running).

        The thread is not a daemon: :meth:`stop` joins it, and a forgotten guard shows up in the
        tests' thread-leak check instead of dying silently at exit.
        """
        if not self.enabled or (self._thread is not None and self._thread.is_alive()):
            return
        self._stop_event.clear()
        self._thread = threading.Thread(
            target=self._monitor, name=MONITOR_THREAD_NAME, daemon=False
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop the monitor thread and join it; returns within one reading, not one interval."""
        self._stop_event.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join()

    def __enter__(self) -> MemoryGuard:
        """Start monitoring for the duration of a ``with`` block."""
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop and join the monitor thread."""
        self.stop()

    def _monitor(self) -> None:
        while True:
            self._sample()
            if self._stop_event.wait(self.interval_s):
                return

    def _sample(self) -> None:
        reading = self._read()
        if reading is None:
            return
        self._track(
            "ram",
            "RAM",
            reading.ram_used_ratio,
            reading.ram_total_bytes,
            RAM_RATIO_NAME,
            self.ram_ratio,
        )
        for gpu in reading.gpus:
            self._track(
                f"gpu{gpu.index}",
                f"GPU {gpu.index} memory",
                gpu.used_ratio,
                gpu.total_bytes,
                VRAM_RATIO_NAME,
                self.vram_ratio,
            )

    def _track(
        self, key: str, what: str, ratio: float, total_bytes: int, name: str, threshold: float
    ) -> None:
        if key not in self._over and ratio > threshold:
            self._over.add(key)
            logger.warning(
                "%s use is %s of %s, above %s=%.2f; new files wait until it drops",
                what,
                _format_ratio(ratio, threshold),
                _format_bytes(total_bytes),
                name,
                threshold,
                extra={"action": "memory_high"},
            )
        elif key in self._over and ratio <= threshold - REARM_MARGIN_RATIO:
            self._over.discard(key)
            logger.info(
                "%s use is back to %.0f%% of %s (%s=%.2f)",
                what,
                ratio * 100,
                _format_bytes(total_bytes),
                name,
                threshold,
                extra={"action": "memory_normal"},
            )

    def _read(self) -> MemoryReading | None:
        """Read once; on error log once per run of failures and return None."""
        try:
            reading = self._reader.read()
        except Exception as exc:
            # The guard is advisory: a broken reader must not stop the batch or kill the thread.
            with self._error_lock:
                first, self._read_failing = not self._read_failing, True
            if first:
                logger.warning(
                    "Memory reading failed (%s: %s); admitting files unchecked until it works",
                    type(exc).__name__,
                    exc,
                    extra={"action": "memory_read_failed"},
                )
            return None
        with self._error_lock:
            recovered, self._read_failing = self._read_failing, False
        if recovered:
            logger.info("Memory readings work again", extra={"action": "memory_read_ok"})
        self.last_reading = reading
        return reading


def _pick_gpu(gpus: tuple[GpuReading, ...], gpu_index: int | None) -> GpuReading | None:
    if gpu_index is None:
        return gpus[0] if gpus else None
    return next((gpu for gpu in gpus if gpu.index == gpu_index), None)


def _refusal(
    what: str, ratio: float, total_bytes: int, name: str, threshold: float, need_bytes: int
) -> str:
    figures = f"{_format_ratio(ratio, threshold)} of {_format_bytes(total_bytes)}"
    limit = f"(> {name}={threshold:.2f})"
    if need_bytes > 0:
        return (
            f"{what} would reach {figures} {limit} "
            f"with this file's estimated {_format_bytes(need_bytes)}"
        )
    return f"{what} is at {figures} {limit}"


def _ratio(part: int, total: int) -> float:
    return part / total if total > 0 else 0.0


def _format_ratio(ratio: float, threshold: float) -> str:
    """Percent, with a decimal when whole percents would hide that the ratio is over."""
    whole = f"{ratio:.0%}"
    return whole if round(ratio, 2) > threshold else f"{ratio:.1%}"


def _format_bytes(n_bytes: int) -> str:
    if n_bytes >= _BYTES_PER_GB:
        return f"{n_bytes / _BYTES_PER_GB:.1f} GB"
    return f"{n_bytes / _BYTES_PER_MB:.0f} MB"
