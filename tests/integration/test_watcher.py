"""The inbox watcher with a real watchdog observer (inotify and polling), a real SQLite job store
and real audio files; no model and no runner: the assertions are on the job rows it writes.

Files are written by the test thread while the watcher runs (watchfiles' ``write_soon`` idea),
every wait is bounded, and the conftest guard checks that no thread outlives a test.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from jozvesaz_cli.intake import offer_path, scan_uploads
from jozvesaz_cli.job_store import JobOrigin, JobRecord, JobStatus, JobStore
from jozvesaz_cli.storage import StorageLayout
from jozvesaz_cli.watcher import InboxWatcher, WatchError
from tests.fixtures_audio import make_noise_wav
from tests.polling import wait_for

SETTLE_S = 0.3
LINUX = sys.platform.startswith("linux")


@dataclass
class Inbox:
    settings: Any
    store: JobStore
    layout: StorageLayout

    @property
    def uploads(self) -> Path:
        return self.layout.uploads

    def watcher(self) -> InboxWatcher:
        return InboxWatcher(self.settings, self.store, self.layout)

    def jobs(self) -> list[JobRecord]:
        return sorted(self.store.list_jobs(), key=lambda job: job.id)

    def jobs_for(self, source: str) -> list[JobRecord]:
        return [job for job in self.jobs() if job.source_path == source]


@pytest.fixture(params=["inotify", "polling"])
def mode(request: pytest.FixtureRequest) -> str:
    if request.param == "inotify" and not LINUX:
        pytest.skip("inotify is Linux only")
    return str(request.param)


@pytest.fixture
def inbox(settings_factory: Callable[..., Any], tmp_path: Path) -> Callable[..., Inbox]:
    def make(**overrides: Any) -> Inbox:
        values: dict[str, Any] = {"settle_s": SETTLE_S, "rescan_s": 60.0}
        values.update(overrides)
        settings = settings_factory(**values)
        layout = StorageLayout(
            settings.resolved_storage_root, settings.uploads_dir, settings.results_dir
        )
        layout.ensure()
        return Inbox(settings, JobStore(settings.resolved_database_url), layout)

    return make


def audio(tmp_path: Path, name: str, seconds: float = 1.0, seed: int = 0) -> bytes:
    """Bytes of a distinct, decodable WAV (the seed makes the content, hence the job, unique)."""
    folder = tmp_path / "make"
    folder.mkdir(exist_ok=True)
    return make_noise_wav(folder / name, seconds, seed=seed).read_bytes()


def age(path: Path, seconds: float = 30.0) -> None:
    """Make a file look untouched for a while (as if it arrived while nothing was watching)."""
    then = time.time() - seconds
    os.utime(path, (then, then))


def quiet(seconds: float = 1.5) -> None:
    """Give the watcher time to (wrongly) act: a settle window, a poll and some margin."""
    time.sleep(seconds)


# -- arrival ---------------------------------------------------------------------------------
def test_watcher_queues_a_slow_copy_once_after_the_last_write(
    inbox: Callable[..., Inbox], mode: str, tmp_path: Path
) -> None:
    box = inbox(watch_polling=mode == "polling", settle_s=1.0)  # 5x the gap between writes
    data = audio(tmp_path, "slow.wav", seconds=4.0)
    chunk = len(data) // 12
    with box.watcher() as watcher, (box.uploads / "slow.wav").open("wb") as handle:
        for start in range(0, len(data), chunk):
            handle.write(data[start : start + chunk])
            handle.flush()
            time.sleep(0.2)
            assert box.jobs() == [], "queued before the upload finished"
        handle.close()
        [job] = wait_for(box.jobs, what="the job")
        quiet()
        watcher.check_health()
    assert len(box.jobs()) == 1
    assert job.source_path == "slow.wav" and job.status is JobStatus.QUEUED
    assert job.size_bytes == len(data)
    assert job.audio_duration_s == pytest.approx(4.0, abs=0.05)


@pytest.mark.skipif(not LINUX, reason="close-after-write comes from inotify")
def test_watcher_waits_for_close_after_write_while_the_writer_pauses(
    inbox: Callable[..., Inbox], tmp_path: Path
) -> None:
    box = inbox()
    data = audio(tmp_path, "paused.wav", seconds=2.0)
    with box.watcher(), (box.uploads / "paused.wav").open("wb") as handle:
        handle.write(data[: len(data) // 2])
        handle.flush()
        quiet(SETTLE_S * 5)  # stable, but still open: an upload that stalled
        assert box.jobs() == []
        handle.write(data[len(data) // 2 :])
        handle.close()
        [job] = wait_for(box.jobs, what="the job")
    assert job.size_bytes == len(data) and job.status is JobStatus.QUEUED


def test_watcher_picks_up_a_rename_into_place_once(
    inbox: Callable[..., Inbox], mode: str, tmp_path: Path
) -> None:
    """C09: ``lecture.mp3.part`` renamed to ``lecture.mp3`` arrives as one moved event only."""
    box = inbox(watch_polling=mode == "polling")
    with box.watcher():
        partial = box.uploads / "lecture.wav.part"
        partial.write_bytes(audio(tmp_path, "lecture.wav", seconds=1.5))
        quiet(SETTLE_S * 3)
        partial.rename(box.uploads / "lecture.wav")
        wait_for(box.jobs, what="the job")
        quiet()
    [job] = box.jobs()
    assert job.source_path == "lecture.wav" and job.status is JobStatus.QUEUED


def test_watcher_ignores_junk_and_temporary_names(
    inbox: Callable[..., Inbox], tmp_path: Path
) -> None:
    box = inbox()
    junk = [".DS_Store", "._talk.wav", "~$notes.wav", ".talk.wav.swp", "notes.wav~",
            "clip.wav.tmp", "Thumbs.db", "desktop.ini", "clip.wav.filepart", "x.mp3.crdownload",
            "notes.txt"]  # fmt: skip
    data = audio(tmp_path, "junk.wav")
    with box.watcher():
        for name in junk:
            (box.uploads / name).write_bytes(data)
        (box.uploads / ".hidden").mkdir()
        (box.uploads / ".hidden" / "inside.wav").write_bytes(data)
        (box.uploads / "sentinel.wav").write_bytes(audio(tmp_path, "s.wav", seed=1))
        wait_for(box.jobs, what="the sentinel's job")
        quiet()
    assert [job.source_path for job in box.jobs()] == ["sentinel.wav"]


def test_watcher_follows_a_folder_moved_in(
    inbox: Callable[..., Inbox], mode: str, tmp_path: Path
) -> None:
    box = inbox(watch_polling=mode == "polling")
    batch = tmp_path / "elsewhere" / "batch"
    (batch / "week 2").mkdir(parents=True)
    (batch / "a.wav").write_bytes(audio(tmp_path, "a.wav", seed=1))
    (batch / "week 2" / "b.wav").write_bytes(audio(tmp_path, "b.wav", seed=2))
    with box.watcher():
        batch.rename(box.uploads / "batch")
        wait_for(lambda: len(box.jobs()) == 2, what="two jobs")
        quiet()
    assert sorted(job.source_path for job in box.jobs()) == ["batch/a.wav", "batch/week 2/b.wav"]


def test_watcher_fails_an_empty_file_only_after_it_stayed_empty(
    inbox: Callable[..., Inbox], tmp_path: Path
) -> None:
    """C02 in watch mode: a new upload starts at 0 bytes and must not be failed for it."""
    box = inbox(settle_s=1.0)
    data = audio(tmp_path, "grow.wav", seconds=1.0)
    with box.watcher():
        growing = box.uploads / "grow.wav"
        growing.touch()
        (box.uploads / "empty.mp3").touch()
        time.sleep(0.5)
        growing.write_bytes(data)
        wait_for(lambda: len(box.jobs()) == 2, what="two rows")
        quiet(1.5)
    by_name = {job.source_path: job for job in box.jobs()}
    assert set(by_name) == {"grow.wav", "empty.mp3"}
    assert by_name["grow.wav"].status is JobStatus.QUEUED
    assert by_name["grow.wav"].size_bytes == len(data)
    assert by_name["empty.mp3"].status is JobStatus.FAILED
    assert by_name["empty.mp3"].last_error_type == "empty_file"


# -- duplicates and changes ----------------------------------------------------------------
def test_watcher_makes_one_job_from_duplicate_events(
    inbox: Callable[..., Inbox], tmp_path: Path
) -> None:
    """C10: cp, touch, cp again of the same content: one job."""
    box = inbox()
    source = tmp_path / "dup.wav"
    source.write_bytes(audio(tmp_path, "dup.wav", seconds=1.0))
    with box.watcher() as watcher:
        shutil.copyfile(source, box.uploads / "dup.wav")
        time.sleep(0.05)
        os.utime(box.uploads / "dup.wav")
        shutil.copyfile(source, box.uploads / "dup.wav")
        wait_for(box.jobs, what="the job")
        quiet()
        assert watcher.rescan() == 0
        os.utime(box.uploads / "dup.wav")  # much later, unchanged content
        assert watcher.rescan() == 0
        quiet()
    [job] = box.jobs()
    assert job.source_path == "dup.wav" and job.status is JobStatus.QUEUED


@pytest.mark.skipif(not LINUX, reason="uses inotify's write events")
def test_watcher_holds_a_queued_job_whose_file_changes_and_requeues_it(
    inbox: Callable[..., Inbox], tmp_path: Path
) -> None:
    """A file rewritten after its job was queued (before any slot took it) is checked again."""
    box = inbox()
    first = audio(tmp_path, "v1.wav", seconds=1.0, seed=1)
    second = audio(tmp_path, "v2.wav", seconds=2.0, seed=2)
    target = box.uploads / "talk.wav"
    with box.watcher() as watcher:
        target.write_bytes(first)
        [old] = wait_for(box.jobs, what="the first job")
        with target.open("wb") as handle:  # a new version arrives, slowly
            handle.write(second[: len(second) // 2])
            handle.flush()
            wait_for(lambda: box.store.get(old.id).status is JobStatus.CANCELLED, what="hold")
            handle.write(second[len(second) // 2 :])
        wait_for(lambda: len(box.jobs()) == 2, what="the new job")
        new = box.jobs()[1]
        assert new.status is JobStatus.QUEUED and new.size_bytes == len(second)
        # Same content again (a touch): the job is held, then put back, never duplicated.
        os.utime(target)
        watcher.rescan()
        quiet()
        wait_for(lambda: box.store.get(new.id).status is JobStatus.QUEUED, what="requeue")
    assert [job.status for job in box.jobs()] == [JobStatus.CANCELLED, JobStatus.QUEUED]
    assert [job.source_path for job in box.jobs()] == ["talk.wav", "talk.wav"]


def test_watcher_moves_a_queued_job_to_the_new_name_after_a_rename(
    inbox: Callable[..., Inbox], tmp_path: Path
) -> None:
    box = inbox()
    with box.watcher():
        (box.uploads / "draft.wav").write_bytes(audio(tmp_path, "draft.wav"))
        [job] = wait_for(box.jobs, what="the job")
        (box.uploads / "draft.wav").rename(box.uploads / "final.wav")
        wait_for(lambda: box.store.get(job.id).source_path == "final.wav", what="the rename")
        quiet()
    [renamed] = box.jobs()
    assert renamed.id == job.id and renamed.status is JobStatus.QUEUED


# -- scans -----------------------------------------------------------------------------------
def test_watcher_startup_scan_queues_what_arrived_while_down_and_restart_redoes_nothing(
    inbox: Callable[..., Inbox], mode: str, tmp_path: Path
) -> None:
    box = inbox(watch_polling=mode == "polling")
    for seed in range(5):
        path = box.uploads / ("sub" if seed % 2 else ".") / f"down{seed}.wav"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(audio(tmp_path, f"d{seed}.wav", seed=seed))
        age(path)
    with box.watcher():
        assert len(box.jobs()) == 5  # queued by start() itself: they were quiet for long
    first = box.jobs()
    with box.watcher() as again:
        assert again.rescan() == 0
        quiet()
    assert box.jobs() == first
    assert sorted(job.source_path for job in first) == [
        "down0.wav",
        "down2.wav",
        "down4.wav",
        "sub/down1.wav",
        "sub/down3.wav",
    ]


def test_rescan_counts_the_jobs_it_creates_and_leaves_fresh_files_to_settle(
    inbox: Callable[..., Inbox], tmp_path: Path
) -> None:
    box = inbox()
    for seed in range(3):
        age_path = box.uploads / f"old{seed}.wav"
        age_path.write_bytes(audio(tmp_path, f"o{seed}.wav", seed=seed))
        age(age_path)
    (box.uploads / "fresh.wav").write_bytes(audio(tmp_path, "fresh.wav", seed=9))
    watcher = box.watcher()  # not started: rescan() is a plain, synchronous full scan
    assert watcher.rescan() == 3
    assert watcher.rescan() == 0
    assert sorted(job.source_path for job in box.jobs()) == ["old0.wav", "old1.wav", "old2.wav"]


def test_scan_uploads_leaves_files_still_arriving_for_the_next_scan(
    inbox: Callable[..., Inbox], tmp_path: Path
) -> None:
    """drain-queue's scan (cron) must not queue a half-copied upload either."""
    box = inbox()
    old = box.uploads / "old.wav"
    old.write_bytes(audio(tmp_path, "old.wav"))
    age(old)
    (box.uploads / "arriving.wav").write_bytes(audio(tmp_path, "arriving.wav", seed=1))
    found = [p.name for p in scan_uploads(box.layout, set(), settle_s=2.0)]
    assert found == ["old.wav"]
    assert sorted(p.name for p in scan_uploads(box.layout, set())) == ["arriving.wav", "old.wav"]


def test_watchers_scans_and_events_together_make_one_job_per_file(
    inbox: Callable[..., Inbox], tmp_path: Path
) -> None:
    """Two watchers on one database plus a drain-queue style scan: the database decides."""
    box = inbox()
    other_store = JobStore(box.settings.resolved_database_url)
    other = InboxWatcher(box.settings, other_store, box.layout)
    scanned: list[str] = []

    def drain_scan() -> None:
        store = JobStore(box.settings.resolved_database_url)
        for _ in range(10):
            for path in scan_uploads(box.layout, store.known_sources(), settle_s=SETTLE_S):
                offer_path(store, box.settings, path, origin=JobOrigin.QUEUE, layout=box.layout)
                scanned.append(path.name)
            time.sleep(0.1)

    with box.watcher() as watcher, other:
        scanner = threading.Thread(target=drain_scan)
        scanner.start()
        for seed in range(12):
            (box.uploads / f"f{seed:02d}.wav").write_bytes(
                audio(tmp_path, f"{seed}.wav", seed=seed)
            )
            time.sleep(0.03)
        wait_for(lambda: len(box.jobs()) >= 12, what="12 jobs")
        watcher.rescan()
        other.rescan()
        scanner.join(timeout=30)
        assert not scanner.is_alive()
        quiet()
    names = [job.source_path for job in box.jobs()]
    assert sorted(names) == [f"f{seed:02d}.wav" for seed in range(12)]
    assert {job.status for job in box.jobs()} == {JobStatus.QUEUED}


def test_watcher_rescans_at_once_when_watchdog_reports_an_overflow(
    inbox: Callable[..., Inbox], caplog: pytest.LogCaptureFixture
) -> None:
    """C11 overflow: watchdog only logs IN_Q_OVERFLOW, so that record must trigger a rescan."""
    box = inbox(rescan_s=600.0)
    caplog.set_level(logging.INFO, logger="jozvesaz_cli.watcher")
    with box.watcher():
        logging.getLogger("watchdog.observers.inotify_c").warning(
            "Inotify queue overflowed; filesystem events were lost"
        )
        wait_for(lambda: "events were lost; rescanning" in caplog.text, what="the rescan")


# -- safety ------------------------------------------------------------------------------------
def test_watcher_rejects_a_symlink_out_of_storage_and_a_fifo_without_opening_them(
    inbox: Callable[..., Inbox], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    box = inbox()
    secret = tmp_path / "outside" / "secret.wav"
    secret.parent.mkdir()
    secret.write_bytes(audio(tmp_path, "secret.wav"))
    with box.watcher():
        (box.uploads / "link.wav").symlink_to(secret)
        os.mkfifo(box.uploads / "pipe.mp3")
        wait_for(lambda: len(box.jobs()) == 2, what="two rows")
        quiet()
    by_name = {job.source_path: job for job in box.jobs()}
    assert set(by_name) == {"link.wav", "pipe.mp3"}
    assert by_name["link.wav"].status is JobStatus.FAILED
    assert by_name["link.wav"].last_error_type == "unsafe_path"
    assert by_name["pipe.mp3"].status is JobStatus.FAILED
    assert by_name["pipe.mp3"].last_error_type == "not_a_file"
    assert all(job.content_sha256 is None for job in by_name.values()), "hashed (opened)"
    assert "rejected link.wav" in caplog.text and "rejected pipe.mp3" in caplog.text
    assert list(box.layout.results.iterdir()) == []


# -- health and limits ----------------------------------------------------------------------------
def test_check_health_raises_when_uploads_disappears(
    inbox: Callable[..., Inbox], mode: str
) -> None:
    box = inbox(watch_polling=mode == "polling")
    with box.watcher() as watcher:
        watcher.check_health()
        shutil.rmtree(box.uploads)

        def broken() -> bool:
            try:
                watcher.check_health()
            except WatchError:
                return True
            return False

        wait_for(broken, what="check_health to fail")
        with pytest.raises(WatchError, match="uploads"):
            watcher.check_health()


def test_watcher_refuses_to_start_without_uploads(inbox: Callable[..., Inbox]) -> None:
    box = inbox()
    box.uploads.rmdir()
    with pytest.raises(WatchError, match="missing"), box.watcher():
        pass


class InotifyHog:
    """Holds every free inotify instance of this user, in-process (bug bank hog_inotify.py).

    Other programs of the same user cannot create an instance while it holds them, so a test
    holds them only around the one call that needs them, and the fixture frees them anyway.
    """

    def __init__(self) -> None:
        self._libc = ctypes.CDLL(None, use_errno=True)
        self._held: list[int] = []

    def hold(self) -> None:
        for _ in range(1_000_000):
            fd = self._libc.inotify_init1(os.O_CLOEXEC)
            if fd < 0:
                assert ctypes.get_errno() in (errno.EMFILE, errno.ENFILE), ctypes.get_errno()
                return
            self._held.append(fd)

    def release(self) -> None:
        while self._held:
            os.close(self._held.pop())


@pytest.fixture
def inotify_hog() -> Iterator[InotifyHog]:
    hog = InotifyHog()
    try:
        yield hog
    finally:
        hog.release()


@pytest.mark.skipif(not LINUX, reason="inotify limits are Linux only")
def test_watcher_falls_back_to_polling_when_inotify_instances_run_out(
    inbox: Callable[..., Inbox],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    inotify_hog: InotifyHog,
) -> None:
    """C11: never a silent stall or a traceback: a warning that names the limit, then polling."""
    box = inbox()
    watcher = box.watcher()
    inotify_hog.hold()
    try:
        watcher.start()
    finally:
        inotify_hog.release()
    try:
        assert watcher.mode == "polling"
        [text] = [r.getMessage() for r in caplog.records if "inotify" in r.getMessage()]
        assert str(box.uploads) in text and "fs.inotify.max_user_instances" in text
        assert "--poll" in text and "sysctl" in text
        (box.uploads / "late.wav").write_bytes(audio(tmp_path, "late.wav"))
        [job] = wait_for(box.jobs, what="a job through polling")
        assert job.source_path == "late.wav"
        watcher.check_health()
    finally:
        watcher.stop()
