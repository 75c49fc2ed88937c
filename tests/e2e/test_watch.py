"""`jozvesaz watch` end to end (issue 5's acceptance): the real CLI process with its inotify or
polling observer, the real two-slot pool with the real ``tiny.en`` model, real speech from the
corpus and a real SQLite file, read directly.

Each test starts ``watch`` as a subprocess, drops files into ``uploads/`` the way uploaders do
(slow chunked copies, write-then-rename, files present before the start, symlinks, FIFOs) and
checks the job rows and the result files. Every wait is bounded and every exit code is asserted.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.conftest import corpus_file
from tests.fixtures_audio import run_tool
from tests.polling import wait_for

pytestmark = [pytest.mark.model, pytest.mark.slow, pytest.mark.timeout(300)]

REPO = Path(__file__).resolve().parents[2]
RATE = 16000
INTERRUPTED = 130  # watch runs until a signal stops it; that is its normal exit code
#: Corpus clips (16 kHz mono after conversion) joined into longer recordings.
LONG_CLIPS = ("en/harvard.wav", "en/jfk.flac", "en/1272-128104-0000.flac")
SHORT_CLIPS = ("en/goforward.wav", "en/LDC93S1.wav")


# -- audio -------------------------------------------------------------------------------------
class Speech:
    """Builds WAVs of real corpus speech (16 kHz mono 16-bit) of any length.

    Each clip is converted once by sox into a cache folder outside every storage root.
    """

    def __init__(self, cache: Path) -> None:
        self.cache = cache
        self._frames: dict[str, bytes] = {}

    def _pcm(self, clip: str) -> bytes:
        if clip not in self._frames:
            converted = self.cache / (Path(clip).stem + ".16k.wav")
            run_tool("sox", corpus_file(clip), "-r", str(RATE), "-c", "1", "-b", "16", converted)
            with wave.open(os.fspath(converted), "rb") as handle:
                self._frames[clip] = handle.readframes(handle.getnframes())
        return self._frames[clip]

    def wav(
        self, path: Path, seconds: float, variant: int = 0, clips: tuple[str, ...] = LONG_CLIPS
    ) -> Path:
        """A WAV exactly ``seconds`` long, whose content is unique per ``variant``.

        The clips are joined (and repeated) until long enough; ``variant`` moves the start by
        10 ms steps, so that every variant is its own recording, hence its own job.
        """
        frames = b"".join(self._pcm(clip) for clip in clips)
        needed = int(seconds * RATE) * 2
        offset = (variant * RATE // 100) * 2 % len(frames)
        while len(frames) < needed + offset:
            frames += frames
        path.parent.mkdir(parents=True, exist_ok=True)
        with wave.open(os.fspath(path), "wb") as handle:
            handle.setnchannels(1)
            handle.setsampwidth(2)
            handle.setframerate(RATE)
            handle.writeframes(frames[offset : offset + needed])
        return path


@pytest.fixture(scope="session")
def speech(tmp_path_factory: pytest.TempPathFactory) -> Speech:
    return Speech(tmp_path_factory.mktemp("speech-clips"))


# -- the watch process -----------------------------------------------------------------------
def cli_env(storage: Path, **settings: str) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", str(storage)),
        "STORAGE_ROOT": str(storage),
        "HF_HUB_OFFLINE": "1",
        "TRANSCRIPTION_MODEL_NAME": "tiny.en",
        "JOZVESAZ_FORMATS": "txt,srt,json",
        **settings,
    }


class Watch:
    """``jozvesaz watch`` as a subprocess whose log is read from a file (never a full pipe)."""

    def __init__(self, storage: Path, logs: Path, args: list[str], env: dict[str, str]) -> None:
        self.storage = storage
        logs.mkdir(parents=True, exist_ok=True)
        number = len(list(logs.glob("watch-*.err")))
        self.err_path = logs / f"watch-{number}.err"
        self.out_path = logs / f"watch-{number}.out"
        self.args = args
        self.env = env
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Watch:
        with self.err_path.open("wb") as err, self.out_path.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "jozvesaz_cli", "watch", *self.args],
                env=self.env,
                stdout=out,
                stderr=err,
                cwd=REPO,
            )
        try:
            self.wait_log("startup scan of", 90)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        process = self.process
        if process is None or process.poll() is not None:
            return
        family = [psutil.Process(process.pid), *psutil.Process(process.pid).children(True)]
        for member in family:
            member.kill()
        psutil.wait_procs(family, timeout=10)
        process.wait(timeout=10)

    @property
    def log(self) -> str:
        return self.err_path.read_text(encoding="utf-8", errors="replace")

    def wait_log(self, text: str, timeout_s: float) -> None:
        def seen() -> bool:
            assert self.process is not None and self.process.poll() is None, self.log
            return text in self.log

        wait_for(seen, timeout_s, f"{text!r} in the watch log")

    def stop(self, timeout_s: float = 30.0) -> int:
        """SIGTERM, as systemd sends; returns the exit code."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout_s)


def rows(storage: Path) -> list[dict[str, Any]]:
    database = storage / "jozvesaz.sqlite3"
    if not database.exists():
        return []
    with sqlite3.connect(database, timeout=30) as db:
        db.row_factory = sqlite3.Row
        return [dict(row) for row in db.execute("SELECT * FROM jobs ORDER BY id")]


def all_done(storage: Path, count: int) -> bool:
    found = rows(storage)
    return len(found) >= count and all(row["status"] == "done" for row in found)


def results(storage: Path) -> list[str]:
    folder = storage / "results"
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def _running(process: psutil.Process) -> bool:
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def db_time(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.timezone.utc)


@pytest.fixture(params=["inotify", "poll"])
def mode_args(request: pytest.FixtureRequest) -> list[str]:
    """Acceptance 7: tests 1-3 pass with the polling observer as well."""
    return ["--poll"] if request.param == "poll" else []


@pytest.fixture
def storage(tmp_path: Path, tiny_model_path: Path) -> Iterator[Path]:
    root = tmp_path / "storage"
    (root / "uploads").mkdir(parents=True)
    yield root


# -- acceptance 1 and 7 ----------------------------------------------------------------------
def test_watch_transcribes_a_slow_chunked_copy_once_after_the_last_write(
    storage: Path, tmp_path: Path, speech: Speech, mode_args: list[str]
) -> None:
    data = speech.wav(tmp_path / "audio" / "lecture.wav", 30.0).read_bytes()
    chunk = 64 * 1024
    gap_s = 10.0 / (len(data) // chunk + 1)  # the whole copy takes about 10 s
    with Watch(storage, tmp_path / "logs", mode_args, cli_env(storage)) as watch:
        with (storage / "uploads" / "lecture.wav").open("wb") as handle:
            for start in range(0, len(data), chunk):
                handle.write(data[start : start + chunk])
                handle.flush()
                last_write = dt.datetime.now(dt.timezone.utc)
                time.sleep(gap_s)
                assert rows(storage) == [], "queued before the copy finished"
        wait_for(lambda: all_done(storage, 1), 120, "the job to be done")
        time.sleep(3)  # a settle window and a poll: no second job may appear
        assert watch.stop() == INTERRUPTED, watch.log
    [row] = rows(storage)
    assert row["source_path"] == "lecture.wav" and row["status"] == "done"
    assert row["attempts"] == 1
    assert row["size_bytes"] == len(data)
    assert row["audio_duration_s"] == pytest.approx(30.0, abs=0.1)
    assert db_time(row["created_at"]) >= last_write - dt.timedelta(milliseconds=1)
    made = results(storage)
    assert len(made) == 3 and {Path(name).suffix for name in made} == {".txt", ".srt", ".json"}
    assert all(name.startswith("lecture-") for name in made)
    text = next(storage / "results" / n for n in made if n.endswith(".txt")).read_text("utf-8")
    assert "beer" in text.lower()  # harvard.wav: "The stale smell of old beer lingers."


# -- acceptance 2 and 7 ----------------------------------------------------------------------
def test_watch_picks_up_a_part_file_renamed_into_place_once(
    storage: Path, tmp_path: Path, speech: Speech, mode_args: list[str]
) -> None:
    wav = speech.wav(tmp_path / "audio" / "lecture.wav", 3.0, clips=SHORT_CLIPS)
    mp3 = tmp_path / "audio" / "lecture.mp3"
    run_tool("ffmpeg", "-nostdin", "-v", "error", "-y", "-i", wav, "-c:a", "libmp3lame", mp3)
    data = mp3.read_bytes()
    uploads = storage / "uploads"
    env = cli_env(storage, JOZVESAZ_SETTLE_S="1")
    with Watch(storage, tmp_path / "logs", mode_args, env) as watch:
        with (uploads / "lecture.mp3.part").open("wb") as handle:  # a browser's download
            for start in range(0, len(data), 8192):
                handle.write(data[start : start + 8192])
                handle.flush()
                time.sleep(0.1)
        time.sleep(1.5)  # the .part alone is older than a settle window
        assert rows(storage) == []
        (uploads / "lecture.mp3.part").rename(uploads / "lecture.mp3")
        wait_for(lambda: all_done(storage, 1), 90, "the job to be done")
        time.sleep(2.5)
        assert watch.stop() == INTERRUPTED, watch.log
    [row] = rows(storage)
    assert row["source_path"] == "lecture.mp3" and row["attempts"] == 1
    made = results(storage)
    assert len(made) == 3 and all(name.startswith("lecture-") for name in made)
    assert not any(".part" in name for name in made)


# -- acceptance 3 and 7 ----------------------------------------------------------------------
def test_watch_transcribes_files_dropped_while_stopped_and_a_restart_redoes_nothing(
    storage: Path, tmp_path: Path, speech: Speech, mode_args: list[str]
) -> None:
    uploads = storage / "uploads"
    (uploads / "week 1").mkdir()
    for variant in range(20):
        folder = uploads / "week 1" if variant % 4 == 0 else uploads
        speech.wav(folder / f"clip{variant:02d}.wav", 2.0, variant, SHORT_CLIPS)
    # The default rescan (300 s) is far away: only the startup scan can find these.
    env = cli_env(storage, JOZVESAZ_SETTLE_S="0.5")
    with Watch(storage, tmp_path / "logs", mode_args, env) as watch:
        wait_for(lambda: all_done(storage, 20), 150, "20 done jobs")
        assert watch.stop() == INTERRUPTED, watch.log
    first = rows(storage)
    made = results(storage)
    assert len(first) == 20 and {row["attempts"] for row in first} == {1}
    assert len(made) == 60 and sum(name.startswith("week 1/") for name in made) == 15
    with Watch(storage, tmp_path / "logs", mode_args, env) as again:
        assert "0 new file(s) queued, 0 waiting" in again.log
        time.sleep(2.5)  # a settle window and a couple of polls
        assert again.stop() == INTERRUPTED, again.log
    assert rows(storage) == first
    assert results(storage) == made


# -- acceptance 4 ------------------------------------------------------------------------------
def test_watch_and_two_drain_queue_runs_do_each_arriving_file_exactly_once(
    storage: Path, tmp_path: Path, speech: Speech
) -> None:
    names = [f"arrival{number:02d}.wav" for number in range(30)]
    staged = tmp_path / "staged"
    staged.mkdir()
    for number, name in enumerate(names):
        speech.wav(staged / name, 2.0, number + 100, SHORT_CLIPS)
    env = cli_env(storage, JOZVESAZ_SETTLE_S="1")
    drains: list[tuple[int, str]] = []
    arrived = threading.Event()

    def cron() -> None:  # drain-queue started again and again, as cron would
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline:
            if arrived.is_set() and all_done(storage, len(names)):
                return
            result = subprocess.run(
                [sys.executable, "-m", "jozvesaz_cli", "drain-queue", "--slots", "1"],
                env=env,
                cwd=REPO,
                capture_output=True,
                text=True,
                timeout=150,
                check=False,
            )
            drains.append((result.returncode, result.stderr[-2000:]))
            time.sleep(0.5)

    with Watch(storage, tmp_path / "logs", [], env) as watch:
        crons = [threading.Thread(target=cron, name=f"cron-{n}") for n in range(2)]
        for thread in crons:
            thread.start()
        for name in names:  # plain, non-atomic writes in two parts, 0.2 s apart per file
            data = (staged / name).read_bytes()
            with (storage / "uploads" / name).open("wb") as handle:
                handle.write(data[: len(data) // 2])
                handle.flush()
                time.sleep(0.05)
                handle.write(data[len(data) // 2 :])
            time.sleep(0.15)
        arrived.set()
        for thread in crons:
            thread.join(timeout=200)
        assert not any(thread.is_alive() for thread in crons)
        wait_for(lambda: all_done(storage, len(names)), 60, "30 done jobs")
        assert watch.stop() == INTERRUPTED, watch.log
    assert len(drains) >= 2
    assert [code for code, _ in drains] == [0] * len(drains), drains
    found = rows(storage)
    assert sorted(row["source_path"] for row in found) == names
    assert {row["status"] for row in found} == {"done"}
    assert {row["attempts"] for row in found} == {1}
    made = results(storage)
    assert len(made) == 90
    assert sorted({name.rsplit("-", 1)[0] for name in made}) == [n[:-4] for n in names]


# -- acceptance 5 ------------------------------------------------------------------------------
def test_watch_rejects_a_symlink_out_of_storage_and_a_fifo_and_writes_nothing_else(
    storage: Path, tmp_path: Path, speech: Speech
) -> None:
    secret = speech.wav(tmp_path / "outside" / "secret.wav", 2.0, clips=SHORT_CLIPS)
    env = cli_env(storage, JOZVESAZ_SETTLE_S="0.5")
    with Watch(storage, tmp_path / "logs", [], env) as watch:
        (storage / "uploads" / "secret.wav").symlink_to(secret)
        os.mkfifo(storage / "uploads" / "pipe.wav")
        wait_for(lambda: len(rows(storage)) >= 2, 30, "two rows")
        time.sleep(2.5)
        assert watch.process is not None and watch.process.poll() is None, watch.log
        assert watch.stop() == INTERRUPTED, watch.log
        log = watch.log
    found = {row["source_path"]: row for row in rows(storage)}
    assert set(found) == {"secret.wav", "pipe.wav"}
    assert found["secret.wav"]["status"] == "failed"
    assert found["secret.wav"]["last_error_type"] == "unsafe_path"
    assert found["pipe.wav"]["status"] == "failed"
    assert found["pipe.wav"]["last_error_type"] == "not_a_file"
    assert all(row["content_sha256"] is None and row["attempts"] == 0 for row in found.values())
    assert "rejected secret.wav" in log and "rejected pipe.wav" in log
    assert "Traceback" not in log
    assert results(storage) == []


# -- acceptance 6 ------------------------------------------------------------------------------
def test_watch_sigterm_with_two_files_running_exits_in_grace_and_leaves_nothing_behind(
    storage: Path, tmp_path: Path, speech: Speech
) -> None:
    grace_s, lease_s = 1.0, 3.0
    staged = tmp_path / "staged"
    staged.mkdir()
    env = cli_env(
        storage,
        JOZVESAZ_SETTLE_S="0.5",
        JOZVESAZ_GRACE_S=str(grace_s),
        JOZVESAZ_LEASE_S=str(lease_s),
    )
    with Watch(storage, tmp_path / "logs", [], env) as watch:
        assert watch.process is not None
        for variant in range(2):  # long enough to be mid-transcription when the signal comes
            made = speech.wav(staged / f"long{variant}.wav", 90.0, variant)
            made.rename(storage / "uploads" / made.name)
        wait_for(
            lambda: [row["status"] for row in rows(storage)] == ["running", "running"],
            90,
            "two running jobs",
        )
        children = psutil.Process(watch.process.pid).children(recursive=True)
        assert children, "the slots should be child processes"
        signalled = time.monotonic()
        code = watch.stop(timeout_s=grace_s + 10)
        elapsed = time.monotonic() - signalled
    assert code == INTERRUPTED, watch.log
    assert elapsed <= grace_s + 2.0, f"took {elapsed:.1f} s to exit after SIGTERM"
    _, alive = psutil.wait_procs(children, timeout=1)
    running = [child for child in alive if _running(child)]  # zombies await init, not us
    assert running == [], f"child processes left behind: {running}"
    time.sleep(lease_s)  # one lease later
    found = rows(storage)
    assert len(found) == 2 and "running" not in {row["status"] for row in found}
    for row in found:
        if row["status"] == "queued":  # interrupted: back in the queue without using an attempt
            assert row["attempts"] == 0 and row["lease_token"] is None
        else:
            assert row["status"] == "done"
