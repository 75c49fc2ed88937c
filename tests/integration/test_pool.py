"""The real slot pool (spawned processes, real signals) driven by the real runner and job store,
with a scripted transcriber so that deaths and delays can be placed exactly."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest

from jozvesaz_cli.batch import Runner
from jozvesaz_cli.errors import ExitCode
from jozvesaz_cli.intake import offer_path
from jozvesaz_cli.job_store import JobOrigin, JobStatus, JobStore
from jozvesaz_cli.storage import StorageLayout
from tests.fakes import scripted_factory
from tests.fixtures_audio import make_noise_wav as make_wav
from tests.polling import wait_for

pytestmark = pytest.mark.slow


@pytest.fixture
def setup(settings_factory: Callable[..., Any], tmp_path: Path) -> Callable[..., Any]:
    def make(names: list[str], **overrides: Any) -> tuple[Any, JobStore, StorageLayout, list[int]]:
        settings = settings_factory(formats="txt,json", **overrides)
        layout = StorageLayout(
            settings.resolved_storage_root, settings.uploads_dir, settings.results_dir
        )
        layout.ensure()
        store = JobStore(settings.resolved_database_url)
        inputs = tmp_path / "in"
        inputs.mkdir(exist_ok=True)
        ids = []
        for seed, name in enumerate(names):
            path = make_wav(inputs / name, seed=seed)
            intake = offer_path(store, settings, path, origin=JobOrigin.CLI, layout=layout)
            assert intake.job is not None and intake.error is None
            ids.append(intake.job.id)
        return settings, store, layout, ids

    return make


def run(settings: Any, store: JobStore, layout: StorageLayout, ids: list[int]) -> Any:
    runner = Runner(
        settings, store, layout, origin=None, only_ids=ids, transcriber_factory=scripted_factory
    )
    return runner.run()


def test_pool_runs_two_slots_at_once(setup: Callable[..., Any]) -> None:
    settings, store, layout, ids = setup([f"slow{i}.wav" for i in range(4)])
    started = time.monotonic()
    report = run(settings, store, layout, ids)
    elapsed = time.monotonic() - started
    assert report.exit_code == ExitCode.OK
    assert report.model_loads == 2
    jobs = [store.get(i) for i in ids]
    assert {job.status for job in jobs} == {JobStatus.DONE}
    owners = {job.lease_owner.rsplit(":", 1)[-1] for job in jobs if job.lease_owner}
    assert owners == {"0", "1"}
    # four 3 s files on two slots: about 6 s of work, not 12 (generous bound, no tight timing)
    assert elapsed < 11


def test_pool_sigkill_mid_file_retries_and_finishes(setup: Callable[..., Any]) -> None:
    settings, store, layout, ids = setup([f"slow{i}.wav" for i in range(3)])
    victim: dict[str, int] = {}

    def killer() -> None:
        def running_with_pid() -> Any:
            for job in store.list_jobs(JobStatus.RUNNING):
                if job.worker_pid:
                    return job
            return None

        job = wait_for(running_with_pid, 30.0)
        time.sleep(0.5)  # in the middle of the file
        victim["job"] = job.id
        os.kill(job.worker_pid, signal.SIGKILL)

    thread = threading.Thread(target=killer)
    thread.start()
    report = run(settings, store, layout, ids)
    thread.join(timeout=30)
    assert report.exit_code == ExitCode.OK
    killed = store.get(victim["job"])
    assert killed.status is JobStatus.DONE and killed.attempts == 2
    others = [store.get(i) for i in ids if i != victim["job"]]
    assert all(job.status is JobStatus.DONE and job.attempts == 1 for job in others)
    assert report.model_loads == 3  # two slots plus the replacement
    alive = [
        c
        for c in psutil.Process().children(recursive=True)
        if "resource_tracker" not in " ".join(c.cmdline())
    ]
    assert not alive


def test_pool_poison_file_fails_after_max_attempts(setup: Callable[..., Any]) -> None:
    settings, store, layout, ids = setup(["poison.wav", "fine1.wav", "fine2.wav"], max_attempts=3)
    report = run(settings, store, layout, ids)
    assert report.exit_code == ExitCode.PARTIAL
    poison = store.get(ids[0])
    assert poison.status is JobStatus.FAILED
    assert poison.attempts == 3
    assert poison.last_error_type == "worker_lost"
    assert "signal 9" in (poison.last_error or "")
    assert [store.get(i).status for i in ids[1:]] == [JobStatus.DONE, JobStatus.DONE]


def test_pool_sigterm_is_warm_then_next_run_completes(setup: Callable[..., Any]) -> None:
    settings, store, layout, ids = setup([f"slow{i}.wav" for i in range(4)], grace_s=60)

    def terminate_when_busy() -> None:
        wait_for(lambda: len(store.list_jobs(JobStatus.RUNNING)) == 2, 30.0)
        os.kill(os.getpid(), signal.SIGTERM)

    thread = threading.Thread(target=terminate_when_busy)
    thread.start()
    report = run(settings, store, layout, ids)
    thread.join(timeout=30)
    assert report.exit_code == ExitCode.INTERRUPTED
    statuses = [store.get(i).status for i in ids]
    assert statuses.count(JobStatus.DONE) == 2
    assert statuses.count(JobStatus.QUEUED) == 2
    done_before = {
        i: store.get(i).finished_at for i in ids if store.get(i).status is JobStatus.DONE
    }

    second = run(settings, store, layout, ids)
    assert second.exit_code == ExitCode.OK
    assert all(store.get(i).status is JobStatus.DONE for i in ids)
    assert all(store.get(i).attempts == 1 for i in ids)
    assert {i: store.get(i).finished_at for i in done_before} == done_before


def test_pool_second_signal_is_cold_and_requeues_without_using_attempts(
    setup: Callable[..., Any],
) -> None:
    settings, store, layout, ids = setup(["slow0.wav", "slow1.wav"], grace_s=60)

    def terminate_twice() -> None:
        wait_for(lambda: len(store.list_jobs(JobStatus.RUNNING)) == 2, 30.0)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.3)
        os.kill(os.getpid(), signal.SIGINT)

    thread = threading.Thread(target=terminate_twice)
    thread.start()
    started = time.monotonic()
    report = run(settings, store, layout, ids)
    thread.join(timeout=30)
    assert time.monotonic() - started < 8
    assert report.exit_code == ExitCode.INTERRUPTED
    for job_id in ids:
        job = store.get(job_id)
        assert job.status is JobStatus.QUEUED
        assert job.attempts == 0
    assert {r.status for r in report.results} == {"interrupted"}


class SteppedReader:
    """Memory readings a test changes: RAM use as a ratio of 16 GB."""

    def __init__(self, used_ratio: float) -> None:
        self.used_ratio = used_ratio

    def read(self) -> Any:
        from jozvesaz_cli.memory_guard import MemoryReading

        total = 16 * 1024**3
        return MemoryReading(total, int(total * (1 - self.used_ratio)))


def test_runner_holds_files_while_memory_is_over_the_ratio(setup: Callable[..., Any]) -> None:
    from jozvesaz_cli.memory_guard import MemoryGuard

    settings, store, layout, ids = setup(["a.wav", "b.wav"], memory_monitor_interval_s=0.2)
    reader = SteppedReader(0.95)
    guard = MemoryGuard(ram_ratio=0.9, vram_ratio=0.9, interval_s=0.2, reader=reader)
    notes: list[str] = []

    class Notes:
        def job_started(self, slot: int, name: str, duration_s: float | None) -> None:
            notes.append(f"started {name}")

        def job_progress(self, slot: int, fraction: float) -> None:
            return None

        def job_finished(self, slot: int | None, result: Any) -> None:
            return None

        def note(self, text: str) -> None:
            notes.append(text)

    def release_memory() -> None:
        wait_for(lambda: any("holding" in n for n in notes), 30.0)
        time.sleep(1.0)
        assert not [n for n in notes if n.startswith("started")]  # held, not started
        reader.used_ratio = 0.5

    thread = threading.Thread(target=release_memory)
    thread.start()
    runner = Runner(
        settings,
        store,
        layout,
        origin=None,
        only_ids=ids,
        guard=guard,
        transcriber_factory=scripted_factory,
        observer=Notes(),
    )
    report = runner.run()
    thread.join(timeout=30)
    assert report.exit_code == ExitCode.OK
    holding = [n for n in notes if "holding" in n]
    assert len(holding) == 1 and "MEMORY_MONITOR_RAM_RATIO" in holding[0]
    assert all(store.get(i).status is JobStatus.DONE and store.get(i).attempts == 1 for i in ids)


@pytest.mark.parametrize(
    ("only", "max_jobs", "slots", "threads"),
    [
        (None, None, 2, 1),  # the queue's size is unknown: every slot
        ([1], None, 1, 2),  # one file: one slot on both cores
        ([1, 2, 3], None, 2, 1),
        (None, 1, 1, 2),  # --max-jobs 1
        (None, 0, 2, 1),  # --max-jobs 0 only scans; the pool is never used
    ],
)
def test_runner_starts_no_more_slots_than_it_can_fill(
    settings_factory: Callable[..., Any],
    tmp_path: Path,
    only: list[int] | None,
    max_jobs: int | None,
    slots: int,
    threads: int,
) -> None:
    settings = settings_factory(slots=2, cpu_threads=0)
    store = JobStore(f"sqlite:///{tmp_path / 'jobs.sqlite3'}")
    layout = StorageLayout(
        settings.resolved_storage_root, settings.uploads_dir, settings.results_dir
    )
    runner = Runner(settings, store, layout, only_ids=only, max_jobs=max_jobs)
    assert runner.settings.slots == slots
    assert runner.settings.threads_per_slot == max(1, (os.cpu_count() or 1) // slots)
    store.close()
