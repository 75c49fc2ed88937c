"""Unit tests for the memory guard: admission, waiting, monitoring and the system reader.

Readings are injected through a fake ``MemoryReader`` whose reading a test thread changes; psutil
and pynvml are never patched. Variants of pynvml (missing, present without a driver, a fake GPU)
are shim modules put at the front of ``sys.path``, as in bug-bank case C16.
"""

from __future__ import annotations

import logging
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from jozvesaz_cli.memory_guard import (
    AUDIO_PEAK_FACTOR,
    DECODED_AUDIO_BYTES_PER_S,
    FILE_WORKING_SET_BYTES,
    MONITOR_THREAD_NAME,
    Admission,
    GpuReading,
    MemoryGuard,
    MemoryReading,
    SystemMemoryReader,
    estimate_need_bytes,
)

GB = 1_000_000_000
LOGGER = "jozvesaz_cli.memory_guard"
#: Bound on every wait in these tests, so a bug fails the test instead of hanging it.
WAIT_S = 5.0


def ram(used_ratio: float, *gpus: GpuReading) -> MemoryReading:
    """A 10 GB machine with the given share of RAM in use."""
    return MemoryReading(
        ram_total_bytes=10 * GB,
        ram_available_bytes=round(10 * GB * (1 - used_ratio)),
        gpus=gpus,
    )


def gpu(index: int, used_ratio: float) -> GpuReading:
    """An 80 GB GPU with the given share in use."""
    return GpuReading(index=index, total_bytes=80 * GB, used_bytes=round(80 * GB * used_ratio))


class FakeReader:
    """A ``MemoryReader`` whose reading a test thread changes, and that counts reads."""

    def __init__(self, reading: MemoryReading) -> None:
        self._cond = threading.Condition()
        self._reading = reading
        self._error: Exception | None = None
        self.reads = 0

    def set(self, reading: MemoryReading, error: Exception | None = None) -> int:
        """Change what later reads return (or raise); returns the read count at that moment."""
        with self._cond:
            self._reading = reading
            self._error = error
            return self.reads

    def read(self) -> MemoryReading:
        with self._cond:
            self.reads += 1
            self._cond.notify_all()
            if self._error is not None:
                raise self._error
            return self._reading

    def wait_for_reads(self, count: int) -> None:
        """Block until ``count`` reads in total have happened."""
        with self._cond:
            assert self._cond.wait_for(lambda: self.reads >= count, timeout=WAIT_S), (
                f"only {self.reads} of {count} reads happened"
            )


def make_guard(
    reader: FakeReader, *, interval_s: float = 0.05, enabled: bool = True
) -> MemoryGuard:
    return MemoryGuard(
        ram_ratio=0.9, vram_ratio=0.9, interval_s=interval_s, reader=reader, enabled=enabled
    )


def guard_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == MONITOR_THREAD_NAME]


def messages(caplog: pytest.LogCaptureFixture, level: int, text: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == LOGGER and r.levelno == level and text in r.getMessage()
    ]


# -- admission ------------------------------------------------------------------------------


def test_admit_applies_the_ram_formula_at_the_boundary() -> None:
    guard = make_guard(FakeReader(ram(0.80)))

    assert guard.admit(need_ram_bytes=1 * GB) == Admission(admitted=True, reason="")
    refused = guard.admit(need_ram_bytes=1 * GB + 1_000_000)

    assert not refused.admitted
    assert refused.reason == (
        "RAM would reach 90.0% of 10.0 GB (> MEMORY_MONITOR_RAM_RATIO=0.90) "
        "with this file's estimated 1.0 GB"
    )


def test_admit_refuses_over_ratio_with_zero_need_and_says_so() -> None:
    guard = make_guard(FakeReader(ram(0.95)))

    admission = guard.admit(need_ram_bytes=0)

    assert not admission.admitted
    assert admission.reason == "RAM is at 95% of 10.0 GB (> MEMORY_MONITOR_RAM_RATIO=0.90)"
    assert guard.last_reading == ram(0.95)


def test_admit_checks_the_chosen_gpu_only_when_vram_is_needed() -> None:
    guard = make_guard(FakeReader(ram(0.5, gpu(0, 0.5), gpu(1, 0.89))))

    assert guard.admit(1 * GB, need_vram_bytes=0, gpu_index=1).admitted
    assert guard.admit(1 * GB, need_vram_bytes=8 * GB, gpu_index=0).admitted
    assert guard.admit(1 * GB, need_vram_bytes=8 * GB).admitted  # None: first monitored GPU
    refused = guard.admit(1 * GB, need_vram_bytes=8 * GB, gpu_index=1)
    assert not refused.admitted
    assert refused.reason.startswith("GPU 1 memory would reach 99% of 80.0 GB")
    assert "MEMORY_MONITOR_VRAM_RATIO=0.90" in refused.reason
    # A GPU missing from the reading cannot be judged; RAM alone decides.
    assert guard.admit(1 * GB, need_vram_bytes=8 * GB, gpu_index=7).admitted


def test_admit_gives_both_reasons_when_ram_and_vram_are_short() -> None:
    guard = make_guard(FakeReader(ram(0.95, gpu(0, 0.95))))

    admission = guard.admit(1 * GB, need_vram_bytes=1 * GB, gpu_index=0)

    assert not admission.admitted
    assert "RAM would reach" in admission.reason
    assert "; GPU 0 memory would reach" in admission.reason


def test_admit_without_gpus_in_reading_ignores_vram_need() -> None:
    guard = make_guard(FakeReader(ram(0.5)))

    assert guard.admit(1 * GB, need_vram_bytes=100 * GB).admitted


def test_disabled_guard_always_admits_and_never_samples() -> None:
    reader = FakeReader(ram(0.99, gpu(0, 0.99)))
    guard = make_guard(reader, enabled=False)

    assert guard.admit(5 * GB, need_vram_bytes=5 * GB, gpu_index=0) == Admission(True, "")
    assert guard.wait_for_admission(5 * GB, 5 * GB, threading.Event())
    guard.start()
    assert guard_threads() == []
    guard.stop()
    assert reader.reads == 0


def test_admit_fails_open_when_the_reader_raises(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    reader = FakeReader(ram(0.99))
    reader.set(ram(0.99), error=OSError("no /proc"))
    guard = make_guard(reader)

    assert guard.admit(5 * GB).admitted
    assert guard.admit(5 * GB).admitted
    assert len(messages(caplog, logging.WARNING, "Memory reading failed (OSError: no /proc)")) == 1


def test_guard_rejects_out_of_range_settings() -> None:
    reader = FakeReader(ram(0.5))
    with pytest.raises(ValueError, match="ram_ratio"):
        MemoryGuard(ram_ratio=0, vram_ratio=0.9, interval_s=1, reader=reader)
    with pytest.raises(ValueError, match="vram_ratio"):
        MemoryGuard(ram_ratio=0.9, vram_ratio=1.5, interval_s=1, reader=reader)
    with pytest.raises(ValueError, match="interval_s"):
        MemoryGuard(ram_ratio=0.9, vram_ratio=0.9, interval_s=0, reader=reader)


# -- waiting --------------------------------------------------------------------------------


def test_wait_for_admission_holds_while_over_ratio_and_admits_within_one_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    interval_s = 0.1
    reader = FakeReader(ram(0.95))
    guard = make_guard(reader, interval_s=interval_s)
    waiting = threading.Event()
    reasons: list[str] = []
    result: list[bool] = []
    finished_at: list[float] = []

    def on_wait(reason: str) -> None:
        reasons.append(reason)
        waiting.set()

    def run() -> None:
        result.append(guard.wait_for_admission(1 * GB, 0, threading.Event(), on_wait=on_wait))
        finished_at.append(time.monotonic())

    worker = threading.Thread(target=run)
    worker.start()
    try:
        assert waiting.wait(WAIT_S)
        reader.wait_for_reads(4)  # still held after several re-reads
        assert result == []
        reads_at_drop = reader.set(ram(0.5))
        dropped_at = time.monotonic()
    finally:
        worker.join(WAIT_S)
    assert not worker.is_alive()

    assert result == [True]
    assert reader.reads == reads_at_drop + 1  # the first re-read after the drop admits
    assert finished_at[0] - dropped_at < interval_s + 1.0  # loose: CI machines stall
    assert reasons == [
        "RAM would reach 105% of 10.0 GB (> MEMORY_MONITOR_RAM_RATIO=0.90) "
        "with this file's estimated 1.0 GB"
    ]
    assert len(messages(caplog, logging.WARNING, "Holding the next file")) == 1
    assert len(messages(caplog, logging.INFO, "file admitted after waiting")) == 1


def test_wait_for_admission_returns_false_promptly_when_stopped() -> None:
    reader = FakeReader(ram(0.95))
    guard = make_guard(reader, interval_s=30.0)
    stop = threading.Event()
    waiting = threading.Event()
    result: list[bool] = []

    worker = threading.Thread(
        target=lambda: result.append(
            guard.wait_for_admission(0, 0, stop, on_wait=lambda _reason: waiting.set())
        )
    )
    worker.start()
    try:
        assert waiting.wait(WAIT_S)
        started = time.monotonic()
        stop.set()
    finally:
        worker.join(WAIT_S)

    assert result == [False]
    assert time.monotonic() - started < 2.0  # not the 30 s interval


def test_wait_for_admission_with_stop_already_set_starts_nothing() -> None:
    stop = threading.Event()
    stop.set()

    assert not make_guard(FakeReader(ram(0.1))).wait_for_admission(0, 0, stop)


# -- monitoring -----------------------------------------------------------------------------


def test_monitor_warns_once_per_crossing_not_per_sample(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    reader = FakeReader(ram(0.5, gpu(0, 0.5)))
    guard = make_guard(reader, interval_s=0.01)

    with guard:
        reader.wait_for_reads(3)
        reader.wait_for_reads(reader.set(ram(0.95, gpu(0, 0.5))) + 5)  # RAM crosses up
        reader.wait_for_reads(reader.set(ram(0.89, gpu(0, 0.5))) + 5)  # within the margin
        reader.wait_for_reads(reader.set(ram(0.93, gpu(0, 0.95))) + 5)  # GPU crosses up
        reader.wait_for_reads(reader.set(ram(0.50, gpu(0, 0.95))) + 5)  # RAM back to normal
        reader.wait_for_reads(reader.set(ram(0.97, gpu(0, 0.95))) + 5)  # RAM crosses again

    ram_warnings = messages(caplog, logging.WARNING, "RAM use is")
    assert ram_warnings == [
        "RAM use is 95% of 10.0 GB, above MEMORY_MONITOR_RAM_RATIO=0.90; "
        "new files wait until it drops",
        "RAM use is 97% of 10.0 GB, above MEMORY_MONITOR_RAM_RATIO=0.90; "
        "new files wait until it drops",
    ]
    assert messages(caplog, logging.INFO, "RAM use is back") == [
        "RAM use is back to 50% of 10.0 GB (MEMORY_MONITOR_RAM_RATIO=0.90)"
    ]
    gpu_warnings = messages(caplog, logging.WARNING, "GPU 0 memory use is")
    assert len(gpu_warnings) == 1
    assert "MEMORY_MONITOR_VRAM_RATIO=0.90" in gpu_warnings[0]
    assert guard.last_reading == ram(0.97, gpu(0, 0.95))


def test_monitor_survives_reader_errors_and_logs_them_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    reader = FakeReader(ram(0.5))
    guard = make_guard(reader, interval_s=0.01)

    with guard:
        reader.wait_for_reads(reader.set(ram(0.5), error=RuntimeError("boom")) + 5)
        assert len(guard_threads()) == 1
        reader.wait_for_reads(reader.set(ram(0.95)) + 3)

    assert len(messages(caplog, logging.WARNING, "Memory reading failed (RuntimeError: boom)")) == 1
    assert len(messages(caplog, logging.INFO, "Memory readings work again")) == 1
    assert len(messages(caplog, logging.WARNING, "RAM use is 95%")) == 1


def test_stop_joins_the_monitor_thread_promptly() -> None:
    reader = FakeReader(ram(0.5))
    guard = make_guard(reader, interval_s=30.0)

    guard.start()
    guard.start()  # idempotent: still one thread
    reader.wait_for_reads(1)
    assert [t.daemon for t in guard_threads()] == [False]
    started = time.monotonic()
    guard.stop()

    assert time.monotonic() - started < 2.0  # not the 30 s interval
    assert guard_threads() == []
    guard.stop()  # a second stop is harmless


# -- estimate -------------------------------------------------------------------------------


def test_estimate_need_bytes_grows_with_audio_length_and_model_loading() -> None:
    model_bytes = 145_000_000
    short = estimate_need_bytes(60, model_bytes=model_bytes, model_loaded=True)
    long = estimate_need_bytes(3600, model_bytes=model_bytes, model_loaded=True)
    loading = estimate_need_bytes(60, model_bytes=model_bytes, model_loaded=False)

    assert short == 60 * DECODED_AUDIO_BYTES_PER_S * AUDIO_PEAK_FACTOR + FILE_WORKING_SET_BYTES
    assert long > short
    assert loading > short
    assert loading - short == round(model_bytes * 1.5)
    assert estimate_need_bytes(0, model_bytes=0, model_loaded=False) == FILE_WORKING_SET_BYTES


@pytest.mark.parametrize("audio_s", [-1.0, float("nan"), float("inf")])
def test_estimate_need_bytes_rejects_impossible_lengths(audio_s: float) -> None:
    with pytest.raises(ValueError, match="audio_s"):
        estimate_need_bytes(audio_s, model_bytes=0, model_loaded=True)


# -- the system reader ----------------------------------------------------------------------


def test_system_memory_reader_reads_sane_ram() -> None:
    reader = SystemMemoryReader()
    try:
        reading = reader.read()
    finally:
        reader.close()

    assert reading.ram_total_bytes > 100_000_000
    assert 0 < reading.ram_available_bytes <= reading.ram_total_bytes
    assert 0 < reading.ram_used_ratio < 1


def test_system_memory_reader_without_nvml_is_ram_only_and_says_so_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    reader = SystemMemoryReader()
    try:
        if reader.gpu_monitoring:
            pytest.skip("NVML works on this host; the shim tests cover the RAM-only path")
        first, second = reader.read(), reader.read()
    finally:
        reader.close()

    assert reader.gpu_monitoring is False
    assert reader.gpu_unavailable_reason
    assert first.gpus == () and second.gpus == ()
    assert (
        len(messages(caplog, logging.INFO, "using system RAM only"))
        + len(messages(caplog, logging.WARNING, "using system RAM only"))
        == 1
    )


def shim(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str) -> None:
    """Make ``import pynvml`` load ``source`` for this test only (monkeypatch restores both)."""
    (tmp_path / "pynvml.py").write_text(textwrap.dedent(source), encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    # setitem first so that undo removes the shim even when pynvml was not imported before
    # (delitem alone records nothing for a missing key).
    monkeypatch.setitem(sys.modules, "pynvml", None)
    monkeypatch.delitem(sys.modules, "pynvml")


def test_system_memory_reader_without_pynvml_is_ram_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    shim(tmp_path, monkeypatch, 'raise ImportError("simulated: pynvml not installed")\n')

    reader = SystemMemoryReader()
    try:
        reading = reader.read()
    finally:
        reader.close()

    assert reader.gpu_monitoring is False
    assert reading.gpus == () and reading.ram_total_bytes > 0
    assert messages(caplog, logging.INFO, "using system RAM only") == [
        "GPU memory monitoring unavailable (pynvml cannot be imported: simulated: pynvml not "
        "installed); using system RAM only"
    ]


FAKE_NVML_ERRORS = """
    class NVMLError(Exception):
        pass
    class NVMLError_LibraryNotFound(NVMLError):
        pass
    class NVMLError_DriverNotLoaded(NVMLError):
        pass
    class NVMLError_GpuIsLost(NVMLError):
        pass
"""


def test_system_memory_reader_with_pynvml_but_no_driver_library_is_ram_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    shim(
        tmp_path,
        monkeypatch,
        FAKE_NVML_ERRORS
        + """
    def nvmlInit():
        raise NVMLError_LibraryNotFound("NVML Shared Library Not Found")
    """,
    )

    reader = SystemMemoryReader()
    reader.close()

    assert reader.gpu_monitoring is False
    assert messages(caplog, logging.INFO, "using system RAM only") == [
        "GPU memory monitoring unavailable (NVML cannot be initialised: NVML Shared Library Not "
        "Found); using system RAM only"
    ]


def test_system_memory_reader_reads_each_gpu_and_shuts_nvml_down(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    shim(
        tmp_path,
        monkeypatch,
        FAKE_NVML_ERRORS
        + """
    from types import SimpleNamespace
    calls = []
    lost = set()
    def nvmlInit():
        calls.append("init")
    def nvmlShutdown():
        calls.append("shutdown")
    def nvmlDeviceGetCount():
        return 2
    def nvmlDeviceGetHandleByIndex(index):
        return ("handle", index)
    def nvmlDeviceGetMemoryInfo(handle):
        if handle[1] in lost:
            raise NVMLError_GpuIsLost("GPU is lost")
        return SimpleNamespace(total=80 * 10**9, free=60 * 10**9, used=19 * 10**9)
    """,
    )
    import pynvml  # the shim

    reader = SystemMemoryReader(gpu_indices=[1, 3])
    try:
        assert reader.gpu_monitoring is True
        assert reader.read().gpus == (GpuReading(index=1, total_bytes=80 * GB, used_bytes=20 * GB),)
        pynvml.lost.add(1)
        assert reader.read().gpus == ()
        assert reader.read().gpus == ()
    finally:
        reader.close()
    reader.close()

    assert pynvml.calls == ["init", "shutdown"]
    assert reader.gpu_monitoring is False
    assert messages(caplog, logging.WARNING, "GPU index 3 not present") == [
        "GPU index 3 not present; monitoring 1"
    ]
    assert len(messages(caplog, logging.WARNING, "GPU 1 memory cannot be read")) == 1


def test_system_memory_reader_with_no_gpu_is_ram_only_and_shuts_nvml_down(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    shim(
        tmp_path,
        monkeypatch,
        FAKE_NVML_ERRORS
        + """
    calls = []
    def nvmlInit():
        calls.append("init")
    def nvmlShutdown():
        calls.append("shutdown")
    def nvmlDeviceGetCount():
        return 0
    """,
    )
    import pynvml  # the shim

    reader = SystemMemoryReader()
    reader.close()

    assert reader.gpu_monitoring is False
    assert pynvml.calls == ["init", "shutdown"]
    assert messages(caplog, logging.INFO, "using system RAM only") == [
        "GPU memory monitoring unavailable (no NVIDIA GPU found); using system RAM only"
    ]
