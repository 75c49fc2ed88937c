"""The watcher's pure parts: which names it ignores, when a file has settled, which observer.

No observer, no database, no sleeping: the settle tracker takes every stamp and both clocks as
arguments, so each rule is one assertion (the real observer is in tests/integration).
"""

from __future__ import annotations

import errno
import os
import threading
from pathlib import Path

import pytest

from jozvesaz_cli.storage import StorageLayout
from jozvesaz_cli.watcher import (
    Arrival,
    FileStamp,
    SettleTracker,
    choose_observer,
    inotify_limit_message,
    is_candidate,
    read_stamp,
    rejection_reason,
)

ROOT = Path("/srv/store")
LAYOUT = StorageLayout(ROOT, ROOT / "uploads", ROOT / "results")
U = LAYOUT.uploads

# The bug bank's C09 junk list, plus the other partial-download names browsers and tools use.
JUNK = [
    "talk.wav.part", "lecture.mp3.crdownload", "clip.wav.tmp", "clip.wav.filepart", ".DS_Store",
    "._talk.wav", "~$notes.wav", ".talk.wav.swp", "notes.wav~", "Thumbs.db", "desktop.ini",
    "thumbs.db", "DESKTOP.INI", "x.m4a.partial", "x.mp3.download", ".hidden.wav",
    ".lecture.mp3.1a2b3c4d.tmp",
]  # fmt: skip


@pytest.mark.parametrize(
    "name", ["talk.wav", "جلسه ۱.mp3", "-rf.wav", "LECTURE.MP3", "a b.m4a", "video.mp4", "x.opus"]
)
def test_rejection_reason_accepts_recordings(name: str) -> None:
    assert rejection_reason(U / name, LAYOUT) is None
    assert is_candidate(U / "course" / "week 1" / name, LAYOUT)


@pytest.mark.parametrize("name", JUNK)
def test_rejection_reason_ignores_partial_and_junk_names(name: str) -> None:
    assert rejection_reason(U / name, LAYOUT) == "hidden, temporary, junk or unsupported name"
    assert not is_candidate(U / "sub" / name, LAYOUT)


@pytest.mark.parametrize(
    "name",
    [
        "notes.txt",
        "talk.srt",
        "talk.json",
        "talk",
        "x.sqlite3",
        "jozvesaz.sqlite3-wal",
        "cover.png",
    ],
)
def test_rejection_reason_ignores_unsupported_extensions(name: str) -> None:
    assert not is_candidate(U / name, LAYOUT)


def test_rejection_reason_ignores_hidden_folders_and_paths_outside_uploads() -> None:
    assert rejection_reason(U / ".sync" / "talk.wav", LAYOUT) == "inside a hidden folder"
    assert rejection_reason(U / "a" / ".trash" / "b" / "talk.wav", LAYOUT) == (
        "inside a hidden folder"
    )
    assert rejection_reason(LAYOUT.results / "talk.wav", LAYOUT) == "outside uploads/"
    assert rejection_reason(ROOT / "talk.wav", LAYOUT) == "outside uploads/"
    assert rejection_reason(U, LAYOUT) == "outside uploads/"


def test_rejection_reason_ignores_results_nested_inside_uploads() -> None:
    nested = StorageLayout(ROOT, U, U / "done")
    assert rejection_reason(U / "done" / "talk.wav", nested) == "inside results/"
    assert rejection_reason(U / "done" / "sub" / "talk.mp3", nested) == "inside results/"
    assert rejection_reason(U / "donetalk.wav", nested) is None
    # results == uploads cannot be told apart by folder; output names are never audio.
    same = StorageLayout(ROOT, U, U)
    assert rejection_reason(U / "talk.wav", same) is None
    assert not is_candidate(U / "talk-1a2b3c4d.srt", same)


def test_rejection_reason_ignores_the_database_files() -> None:
    database = U / "jobs.wav"  # a perverse name, to prove the rule is by path, not by extension
    assert rejection_reason(database, LAYOUT, {database}) == "a database file"
    assert rejection_reason(U / "other.wav", LAYOUT, {database}) is None


# -- settle tracker ------------------------------------------------------------------------
def stamp(size: int, mtime_s: float = 1000.0) -> FileStamp:
    return FileStamp(size, int(mtime_s * 1e9))


def test_settle_tracker_waits_for_the_window_then_settles() -> None:
    tracker = SettleTracker(2.0, trust_mtime=False)
    tracker.track("a", now=0.0)
    assert tracker.check("a", stamp(100), now=0.0, wall_now=5000.0) is Arrival.WAITING
    assert tracker.check("a", stamp(100), now=1.9, wall_now=5000.0) is Arrival.WAITING
    assert tracker.check("a", stamp(100), now=2.0, wall_now=5000.0) is Arrival.SETTLED


def test_settle_tracker_restarts_the_window_on_every_change() -> None:
    tracker = SettleTracker(2.0, trust_mtime=False)
    size, now = 0, 0.0
    for tick in range(10):  # a slow copy: 64 KB every 0.7 s
        size, now = size + 65536, tick * 0.7
        assert tracker.check("a", stamp(size, now), now, now) is Arrival.WAITING
    last = stamp(size, now)
    assert tracker.check("a", last, now=now + 1.9, wall_now=now + 1.9) is Arrival.WAITING
    assert tracker.check("a", last, now=now + 2.0, wall_now=now + 2.0) is Arrival.SETTLED


def test_settle_tracker_counts_an_mtime_change_without_a_size_change() -> None:
    tracker = SettleTracker(1.0, trust_mtime=False)
    assert tracker.check("a", stamp(10, 1.0), 0.0, 0.0) is Arrival.WAITING
    assert tracker.check("a", stamp(10, 2.0), 0.9, 0.0) is Arrival.WAITING
    assert tracker.check("a", stamp(10, 2.0), 1.5, 0.0) is Arrival.WAITING
    assert tracker.check("a", stamp(10, 2.0), 2.0, 0.0) is Arrival.SETTLED


def test_settle_tracker_offers_an_empty_file_only_after_it_stayed_empty() -> None:
    """C02 in watch mode: uploads start at 0 bytes, so 0 bytes alone proves nothing."""
    tracker = SettleTracker(2.0, trust_mtime=True)
    assert tracker.check("e", stamp(0, 100.0), now=0.0, wall_now=100.0) is Arrival.WAITING
    assert tracker.check("e", stamp(4096, 101.0), now=1.0, wall_now=101.0) is Arrival.WAITING
    assert tracker.check("e", stamp(4096, 101.0), now=3.0, wall_now=103.0) is Arrival.SETTLED
    assert tracker.check("z", stamp(0, 200.0), now=10.0, wall_now=200.0) is Arrival.WAITING
    assert tracker.check("z", stamp(0, 200.0), now=12.0, wall_now=202.0) is Arrival.SETTLED


def test_settle_tracker_trusts_an_old_local_mtime_at_once() -> None:
    """A file moved in (or present at startup) that nobody touched for the window is settled."""
    tracker = SettleTracker(2.0, trust_mtime=True)
    assert tracker.check("old", stamp(10, 100.0), now=50.0, wall_now=102.5) is Arrival.SETTLED
    assert tracker.check("new", stamp(10, 102.0), now=50.0, wall_now=102.5) is Arrival.WAITING


def test_settle_tracker_ignores_mtime_on_network_filesystems() -> None:
    tracker = SettleTracker(2.0, trust_mtime=False)
    assert tracker.check("old", stamp(10, 100.0), now=50.0, wall_now=9999.0) is Arrival.WAITING
    assert tracker.check("old", stamp(10, 100.0), now=52.0, wall_now=9999.0) is Arrival.SETTLED


def test_settle_tracker_holds_a_file_open_for_writing_until_it_is_closed() -> None:
    """Close-after-write: a paused upload (still open) is not offered even though it is stable."""
    tracker = SettleTracker(2.0, trust_mtime=True, open_timeout_s=60.0)
    tracker.track("w", 0.0, writing=True)
    assert tracker.check("w", stamp(500, 0.0), now=0.0, wall_now=0.0) is Arrival.WAITING
    assert tracker.check("w", stamp(500, 0.0), now=30.0, wall_now=30.0) is Arrival.WAITING
    tracker.track("w", 31.0, writing=False)  # closed: the normal window applies from the last write
    assert tracker.check("w", stamp(500, 0.0), now=31.0, wall_now=31.0) is Arrival.SETTLED


def test_settle_tracker_close_does_not_shorten_the_window() -> None:
    tracker = SettleTracker(2.0, trust_mtime=True)
    tracker.track("w", 0.0, writing=True)
    assert tracker.check("w", stamp(500, 10.0), now=0.0, wall_now=10.0) is Arrival.WAITING
    tracker.track("w", 0.5, writing=False)
    assert tracker.check("w", stamp(500, 10.0), now=0.5, wall_now=10.5) is Arrival.WAITING
    assert tracker.check("w", stamp(500, 10.0), now=2.0, wall_now=12.0) is Arrival.SETTLED


def test_settle_tracker_gives_up_on_a_writer_that_never_closes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    tracker = SettleTracker(2.0, open_timeout_s=60.0)
    tracker.track("w", 0.0, writing=True)
    assert tracker.check("w", stamp(500), now=0.0, wall_now=0.0) is Arrival.WAITING
    assert tracker.check("w", stamp(500), now=59.0, wall_now=59.0) is Arrival.WAITING
    assert tracker.check("w", stamp(500), now=60.0, wall_now=60.0) is Arrival.SETTLED
    assert "still open for writing" in caplog.text


def test_settle_tracker_reports_gone_and_forgets() -> None:
    tracker = SettleTracker(2.0)
    tracker.track("/u/a/x.wav", 0.0)
    tracker.track("/u/a/y.wav", 0.0)
    tracker.track("/u/ab.wav", 0.0)
    tracker.track("/u/gone.wav", 0.0)
    assert tracker.check("/u/gone.wav", None, 1.0, 1.0) is Arrival.GONE
    assert "/u/gone.wav" not in tracker
    tracker.forget_under("/u/a")
    assert tracker.keys() == ["/u/ab.wav"]
    tracker.forget("/u/ab.wav")
    assert len(tracker) == 0


def test_settle_tracker_with_zero_window_settles_on_first_look() -> None:
    tracker = SettleTracker(0.0, trust_mtime=False)
    assert tracker.check("a", stamp(1), 0.0, 0.0) is Arrival.SETTLED


# -- stamps --------------------------------------------------------------------------------
def test_read_stamp_never_opens_a_fifo(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.wav"
    os.mkfifo(fifo)
    result: list[FileStamp | None] = []
    reader = threading.Thread(target=lambda: result.append(read_stamp(fifo)))
    reader.start()
    reader.join(timeout=5)
    assert not reader.is_alive(), "read_stamp blocked on a FIFO"
    assert result == [FileStamp(0, os.stat(fifo).st_mtime_ns)]


def test_read_stamp_of_missing_and_dangling_paths(tmp_path: Path) -> None:
    assert read_stamp(tmp_path / "nothing.wav") is None
    link = tmp_path / "dangling.wav"
    link.symlink_to(tmp_path / "nowhere.wav")
    assert read_stamp(link) == FileStamp(os.lstat(link).st_size, os.lstat(link).st_mtime_ns)
    real = tmp_path / "real.wav"
    real.write_bytes(b"1234")
    assert read_stamp(real) == FileStamp(4, real.stat().st_mtime_ns)


# -- observer choice and the inotify limit message --------------------------------------------
def test_choose_observer_native_on_a_local_disk() -> None:
    choice = choose_observer(False, None)
    assert not choice.polling and not choice.network and not choice.warn


def test_choose_observer_polls_when_asked() -> None:
    choice = choose_observer(True, None)
    assert choice.polling and not choice.warn and "--poll" in choice.reason


@pytest.mark.parametrize("fs_type", ["nfs4", "cifs", "fuse.sshfs"])
def test_choose_observer_polls_and_warns_on_a_network_filesystem(fs_type: str) -> None:
    choice = choose_observer(False, fs_type)
    assert choice.polling and choice.network and choice.warn
    assert fs_type in choice.reason and "inotify" in choice.reason
    assert choose_observer(True, fs_type).network


def test_inotify_limit_message_names_folder_limit_and_fix() -> None:
    folder = Path("/srv/store/uploads")
    instances = inotify_limit_message(
        OSError(errno.EMFILE, "inotify instance limit reached"), folder
    )
    assert "/srv/store/uploads" in instances
    assert "fs.inotify.max_user_instances" in instances and "sysctl" in instances
    assert "--poll" in instances
    watches = inotify_limit_message(OSError(errno.ENOSPC, "inotify watch limit reached"), folder)
    assert "fs.inotify.max_user_watches" in watches and "subfolder" in watches
    assert "--poll" in watches
