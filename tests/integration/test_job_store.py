"""The job store on both backends (a SQLite file and a PostgreSQL schema): identity, claiming,
leases on the database clock, guarded transitions, retries and password masking.

The races use real spawned processes on one database, each with its own ``JobStore``, released
together by an event, as several cron runs or hosts would be.
"""

from __future__ import annotations

import datetime as dt
import multiprocessing
import time
import traceback
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from jozvesaz_cli.errors import StoreUnavailableError
from jozvesaz_cli.job_store import (
    BACKOFF_BASE_S,
    BACKOFF_CAP_S,
    JobOrigin,
    JobRow,
    JobStatus,
    JobStore,
    NewJob,
    backoff_s,
    db_now,
    mask_url,
    sha256_text,
)
from tests.polling import wait_for

CANARY = "S3cr3t-Canary"
FINGERPRINT = "f" * 64
RACE_TIMEOUT_S = 60.0
#: Two timestamps the database computed in one statement may differ by this much (PostgreSQL's
#: clock_timestamp() moves within a statement; SQLite's 'now' has millisecond text).
CLOCK_SLACK_S = 0.05


def new_job(n: int, *, name: str | None = None) -> NewJob:
    """A distinct queued job (its identity is derived from ``n``)."""
    return NewJob(
        source_path=name or f"rec{n}.wav",
        origin=JobOrigin.QUEUE,
        content_sha256=sha256_text(f"content {n}"),
        settings_fingerprint=FINGERPRINT,
        size_bytes=1000 + n,
    )


@pytest.fixture
def store(database_url: str) -> Iterator[JobStore]:
    job_store = JobStore(database_url)
    yield job_store
    job_store.close()


def db_clock(store: JobStore) -> dt.datetime:
    """The database's current time, through the same expression the store uses."""
    with store.engine.begin() as connection:
        value = connection.execute(sa.select(db_now())).scalar_one()
    assert isinstance(value, dt.datetime) and value.tzinfo is not None
    return value


def age_lease(store: JobStore, job_id: int, seconds_ago: float = 1.0) -> None:
    """Move a lease's expiry into the past, as if its worker had stopped renewing it."""
    with store.engine.begin() as connection:
        connection.execute(
            sa.update(JobRow)
            .where(JobRow.id == job_id)
            .values(lease_expires_at=db_now(-seconds_ago))
        )


def pass_backoff(store: JobStore, job_id: int) -> None:
    """Move a retry's ``run_after`` into the past, as if the backoff had elapsed."""
    with store.engine.begin() as connection:
        connection.execute(
            sa.update(JobRow).where(JobRow.id == job_id).values(run_after=db_now(-1))
        )


# -- identity ---------------------------------------------------------------------------------


def test_enqueue_is_insert_or_ignore_and_force_resets(store: JobStore) -> None:
    first, created = store.enqueue(new_job(1))
    assert created and first.status is JobStatus.QUEUED and first.attempts == 0
    again, created = store.enqueue(new_job(1, name="renamed.wav"))
    assert not created and again.id == first.id and again.source_path == "rec1.wav"
    claimed = store.claim("h:1:0", lease_s=30, max_attempts=3)
    assert claimed is not None
    assert store.finish(claimed.id, claimed.lease_token or "", {}, lambda: ["out.txt"])
    done, created = store.enqueue(new_job(1))
    assert not created and done.status is JobStatus.DONE
    forced, created = store.enqueue(new_job(1), force=True)
    assert created and forced.id == first.id
    assert forced.status is JobStatus.QUEUED and forced.attempts == 0
    assert store.count_by_status() == {"queued": 1}


def test_force_never_resets_a_live_job_but_does_reset_a_dead_one(store: JobStore) -> None:
    store.enqueue(new_job(1))
    job = store.claim("h:1:0", lease_s=30, max_attempts=3)
    assert job is not None
    record, created = store.enqueue(new_job(1), force=True)
    assert not created and record.status is JobStatus.RUNNING
    assert record.lease_token == job.lease_token
    age_lease(store, job.id)  # its worker died
    record, created = store.enqueue(new_job(1), force=True)
    assert created and record.status is JobStatus.QUEUED and record.attempts == 0
    assert not store.heartbeat(job.id, job.lease_token or "", 30)  # the dead worker is fenced


def test_row_inserted_by_another_program_gets_defaults_and_is_claimable(store: JobStore) -> None:
    with store.engine.begin() as connection:
        connection.execute(sa.insert(JobRow).values(source_path="from-web/upload.mp3"))
    job = store.claim("h:1:0", lease_s=30, max_attempts=3)
    assert job is not None
    assert job.source_path == "from-web/upload.mp3" and job.origin == JobOrigin.QUEUE.value
    assert job.attempts == 1 and job.job_key is None
    assert job.created_at is not None and job.created_at.tzinfo is not None


def _enqueue_worker(url: str, go: Any, results: Any) -> None:
    try:
        store = JobStore(url)
        go.wait(RACE_TIMEOUT_S)
        record, created = store.enqueue(new_job(7))
        results.put((record.id, created))
        store.close()
    except BaseException:
        results.put(("error", traceback.format_exc()))


@pytest.mark.slow
def test_concurrent_enqueue_creates_exactly_one_job(database_url: str) -> None:
    JobStore(database_url).close()  # schema first: this race is about the insert
    outcomes = _race(_enqueue_worker, database_url, workers=6)
    assert len({job_id for job_id, _ in outcomes}) == 1
    assert sorted(created for _, created in outcomes) == [False] * 5 + [True]
    store = JobStore(database_url)
    assert len(store.list_jobs()) == 1
    store.close()


def _migrate_worker(url: str, go: Any, results: Any) -> None:
    try:
        go.wait(RACE_TIMEOUT_S)
        store = JobStore(url)
        store.enqueue(new_job(1))
        results.put((store.count_by_status().get("queued", 0), True))
        store.close()
    except BaseException:
        results.put(("error", traceback.format_exc()))


@pytest.mark.slow
def test_processes_starting_together_on_a_fresh_database_all_succeed(database_url: str) -> None:
    """Schema creation (Alembic) and WAL setup race safely: no "database is locked"."""
    outcomes = _race(_migrate_worker, database_url, workers=4)
    assert all(count == 1 for count, _ in outcomes)


# -- claiming ---------------------------------------------------------------------------------


def _claim_worker(url: str, go: Any, results: Any) -> None:
    try:
        store = JobStore(url, create=False)
        go.wait(RACE_TIMEOUT_S)
        claimed = []
        while (
            job := store.claim(
                f"h:{multiprocessing.current_process().pid}:0", lease_s=60, max_attempts=3
            )
        ) is not None:
            claimed.append((job.id, job.lease_token, job.attempts))
        results.put((claimed, True))
        store.close()
    except BaseException:
        results.put(("error", traceback.format_exc()))


class _Gate:
    """Released once every racer has reported ready, so that they really start together."""

    def __init__(self, context: Any) -> None:
        self.ready = context.Queue()
        self.go = context.Event()

    def wait(self, timeout: float) -> None:
        self.ready.put(True)
        self.go.wait(timeout)


def _race(target: Callable[..., None], url: str, *, workers: int) -> list[tuple[Any, Any]]:
    """Run ``target`` in ``workers`` spawned processes released together; their results."""
    context = multiprocessing.get_context("spawn")
    gate = _Gate(context)
    results = context.Queue()
    processes = [context.Process(target=target, args=(url, gate, results)) for _ in range(workers)]
    for process in processes:
        process.start()
    for _ in processes:
        gate.ready.get(timeout=RACE_TIMEOUT_S)
    gate.go.set()
    outcomes = [results.get(timeout=RACE_TIMEOUT_S) for _ in processes]
    for process in processes:
        process.join(RACE_TIMEOUT_S)
        assert process.exitcode == 0
    errors = [detail for kind, detail in outcomes if kind == "error"]
    assert not errors, errors[0]
    return outcomes


@pytest.mark.slow
def test_claim_race_never_hands_one_job_to_two_processes(store: JobStore) -> None:
    ids = {store.enqueue(new_job(n))[0].id for n in range(40)}
    outcomes = _race(_claim_worker, store.url, workers=4)
    claimed = [entry for batch, _ in outcomes for entry in batch]
    claimed_ids = [job_id for job_id, _, _ in claimed]
    assert len(claimed_ids) == len(set(claimed_ids)), "a job was claimed twice"
    assert set(claimed_ids) == ids
    assert all(attempts == 1 for _, _, attempts in claimed)
    assert store.count_by_status() == {"running": 40}
    for job_id, token, _ in claimed:
        assert store.get(job_id).lease_token == token


def test_relocate_follows_a_rename_only_for_a_queued_job(store: JobStore) -> None:
    job, _ = store.enqueue(new_job(1, name="old.wav"))
    assert store.relocate(job.id, "other.wav", "new.wav") is None  # guarded by the old name
    moved = store.relocate(job.id, "old.wav", "new.wav")
    assert moved is not None and moved.source_path == "new.wav"
    assert store.relocate(job.id, "old.wav", "newer.wav") is None  # a second scan: no change
    claimed = store.claim("h:1:0", lease_s=30, max_attempts=3)
    assert claimed is not None
    assert store.relocate(job.id, "new.wav", "newest.wav") is None  # running: left alone


def test_claim_takes_only_what_is_claimable(store: JobStore) -> None:
    waiting, _ = store.enqueue(new_job(1))
    with store.engine.begin() as connection:
        connection.execute(
            sa.update(JobRow).where(JobRow.id == waiting.id).values(run_after=db_now(120))
        )
    cancelled, _ = store.enqueue(new_job(2))
    assert store.cancel(cancelled.id)
    assert store.claim("h:1:0", lease_s=30, max_attempts=3) is None
    assert not store.has_claimable(3)
    pass_backoff(store, waiting.id)
    assert store.has_claimable(3)
    job = store.claim("h:1:0", lease_s=30, max_attempts=3)
    assert job is not None and job.id == waiting.id


def test_lease_times_come_from_the_database_clock(store: JobStore) -> None:
    store.enqueue(new_job(1))
    before = db_clock(store)
    job = store.claim("h:1:0", lease_s=45, max_attempts=3)
    after = db_clock(store)
    assert job is not None
    assert job.claimed_at is not None and job.lease_expires_at is not None
    assert before - dt.timedelta(seconds=CLOCK_SLACK_S) <= job.claimed_at <= after
    lease = (job.lease_expires_at - job.claimed_at).total_seconds()
    assert abs(lease - 45) < CLOCK_SLACK_S
    assert (
        job.heartbeat_at is not None
        and abs((job.heartbeat_at - job.claimed_at).total_seconds()) < CLOCK_SLACK_S
    )
    time.sleep(0.2)
    assert store.heartbeat(job.id, job.lease_token or "", 45)
    renewed = store.get(job.id)
    assert renewed.heartbeat_at is not None and renewed.lease_expires_at is not None
    assert renewed.heartbeat_at > job.heartbeat_at
    assert abs((renewed.lease_expires_at - renewed.heartbeat_at).total_seconds() - 45) < (
        CLOCK_SLACK_S
    )
    # Another lease length through the same statement shape (the compiled SQL is cached).
    store.enqueue(new_job(2))
    other = store.claim("h:1:1", lease_s=7, max_attempts=3)
    assert other is not None and other.lease_expires_at is not None and other.claimed_at
    assert abs((other.lease_expires_at - other.claimed_at).total_seconds() - 7) < CLOCK_SLACK_S


def test_expired_lease_makes_the_job_claimable_and_fences_the_old_worker(
    store: JobStore,
) -> None:
    store.enqueue(new_job(1))
    first = store.claim("h:1:0", lease_s=1, max_attempts=3)
    assert first is not None and first.lease_token
    assert store.claim("h:2:0", lease_s=30, max_attempts=3) is None  # the lease is live
    second = wait_for(lambda: store.claim("h:2:0", lease_s=30, max_attempts=3), 10.0)
    assert second.id == first.id and second.attempts == 2
    assert second.lease_token != first.lease_token and second.lease_owner == "h:2:0"
    published: list[str] = []

    def commit() -> list[str]:
        published.append("old")
        return ["old.txt"]

    assert not store.heartbeat(first.id, first.lease_token, 30)
    assert not store.finish(first.id, first.lease_token, {"language": "xx"}, commit)
    assert published == []
    assert (
        store.fail(
            first.id,
            first.lease_token,
            reason="internal",
            message="late",
            retry=True,
            max_attempts=3,
        )
        is None
    )
    assert not store.release(first.id, first.lease_token, note="late")
    assert store.finish(second.id, second.lease_token or "", {"language": "en"}, lambda: ["n"])
    final = store.get(first.id)
    assert final.status is JobStatus.DONE and final.language == "en"
    assert final.lease_owner == "h:2:0" and final.outputs == ("n",) and final.attempts == 2


@pytest.mark.slow
def test_a_renewed_lease_is_never_claimed(store: JobStore) -> None:
    store.enqueue(new_job(1))
    job = store.claim("h:1:0", lease_s=1.5, max_attempts=3)
    assert job is not None
    deadline = time.monotonic() + 4.0  # well past the first lease
    while time.monotonic() < deadline:
        assert store.heartbeat(job.id, job.lease_token or "", 1.5)
        assert store.claim("h:2:0", lease_s=30, max_attempts=3) is None
        time.sleep(0.4)
    assert store.get(job.id).attempts == 1


def test_fail_exhausted_fails_a_dead_job_after_its_last_attempt(store: JobStore) -> None:
    dead, _ = store.enqueue(new_job(1))
    alive, _ = store.enqueue(new_job(2))
    for attempt in (1, 2):
        job = store.claim("h:1:0", lease_s=30, max_attempts=2, only_ids=[dead.id])
        assert job is not None and job.attempts == attempt
        age_lease(store, dead.id)
    assert store.claim("h:1:0", lease_s=30, max_attempts=2, only_ids=[dead.id]) is None
    other = store.claim("h:1:0", lease_s=30, max_attempts=2, only_ids=[alive.id])
    assert other is not None
    age_lease(store, alive.id)  # expired too, but with an attempt left: retried, not failed
    failed = store.fail_exhausted(2)
    assert [job.id for job in failed] == [dead.id]
    record = store.get(dead.id)
    assert record.status is JobStatus.FAILED and record.attempts == 2
    assert record.last_error_type == "worker_lost" and record.finished_at is not None
    assert record.lease_token is None
    assert store.get(alive.id).status is JobStatus.RUNNING
    assert store.fail_exhausted(2) == []


def test_release_does_not_use_up_an_attempt(store: JobStore) -> None:
    store.enqueue(new_job(1))
    job = store.claim("h:1:0", lease_s=30, max_attempts=3)
    assert job is not None and job.attempts == 1
    assert store.release(job.id, job.lease_token or "", note="interrupted by SIGTERM")
    released = store.get(job.id)
    assert released.status is JobStatus.QUEUED and released.attempts == 0
    assert released.lease_token is None and released.last_error_type == "interrupted"
    assert not store.release(job.id, job.lease_token or "", note="twice")
    again = store.claim("h:1:0", lease_s=30, max_attempts=3)
    assert again is not None and again.attempts == 1


# -- failures and retries -----------------------------------------------------------------------


def test_transient_failure_retries_with_growing_backoff_on_the_db_clock(store: JobStore) -> None:
    job, _ = store.enqueue(new_job(1))
    delays = []
    for attempt in (1, 2):
        claimed = store.claim("h:1:0", lease_s=30, max_attempts=3)
        assert claimed is not None and claimed.attempts == attempt
        before = db_clock(store)
        status = store.fail(
            claimed.id,
            claimed.lease_token or "",
            reason="worker_lost",
            message="killed by signal 9",
            retry=True,
            max_attempts=3,
        )
        after = db_clock(store)
        assert status is JobStatus.QUEUED
        record = store.get(job.id)
        assert record.status is JobStatus.QUEUED and record.run_after is not None
        assert record.last_error_type == "worker_lost" and record.lease_token is None
        base = BACKOFF_BASE_S * 2 ** (attempt - 1)
        assert before + dt.timedelta(seconds=base - CLOCK_SLACK_S) <= record.run_after
        assert record.run_after <= after + dt.timedelta(seconds=base * 1.25 + CLOCK_SLACK_S)
        delays.append((record.run_after - before).total_seconds())
        assert store.claim("h:1:0", lease_s=30, max_attempts=3) is None  # backing off
        pass_backoff(store, job.id)
    assert delays[1] > delays[0]
    last = store.claim("h:1:0", lease_s=30, max_attempts=3)
    assert last is not None and last.attempts == 3
    status = store.fail(
        last.id,
        last.lease_token or "",
        reason="worker_lost",
        message="killed again",
        retry=True,
        max_attempts=3,
    )
    assert status is JobStatus.FAILED
    record = store.get(job.id)
    assert record.status is JobStatus.FAILED and record.attempts == 3
    assert record.finished_at is not None


def test_record_failure_fails_the_requeued_job_of_the_same_input(store: JobStore) -> None:
    """An input that fails before it has content (missing, empty) and whose failed job was
    requeued by `jobs retry` fails that job again, rather than leaving it queued beside a new
    failed row."""
    missing = NewJob("/in/nope.wav", JobOrigin.CLI, None, FINGERPRINT)
    first = store.record_failure(missing, "not_found", "nope.wav: no such file")
    assert store.retry(first.id) == 1
    again = store.record_failure(missing, "not_found", "nope.wav: no such file")
    assert (again.id, again.status, again.last_error_type) == (
        first.id,
        JobStatus.FAILED,
        "not_found",
    )
    assert [job.id for job in store.list_jobs()] == [first.id]


def test_record_failure_refreshes_the_failed_row_of_the_same_unusable_input(
    store: JobStore,
) -> None:
    """Giving the same missing path again keeps one failed row with the latest reason, rather
    than a row per attempt; another path, or other settings, still get their own row."""
    missing = NewJob("/in/nope.wav", JobOrigin.CLI, None, FINGERPRINT)
    first = store.record_failure(missing, "not_found", "nope.wav: no such file")
    again = store.record_failure(missing, "not_a_file", "nope.wav: a directory, not a file")
    assert (again.id, again.status) == (first.id, JobStatus.FAILED)
    assert (again.last_error_type, again.last_error) == (
        "not_a_file",
        "nope.wav: a directory, not a file",
    )
    other_path = store.record_failure(
        NewJob("/in/other.wav", JobOrigin.CLI, None, FINGERPRINT), "not_found", "other.wav"
    )
    other_settings = store.record_failure(
        NewJob("/in/nope.wav", JobOrigin.CLI, None, "e" * 64), "not_found", "nope.wav"
    )
    ids = {job.id for job in store.list_jobs()}
    assert ids == {first.id, other_path.id, other_settings.id} and len(ids) == 3


def test_backoff_grows_exponentially_with_jitter_and_is_capped() -> None:
    for attempt in range(1, 12):
        base = min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** (attempt - 1))
        for _ in range(20):
            assert base <= backoff_s(attempt) <= base * 1.25
    assert backoff_s(50) <= BACKOFF_CAP_S * 1.25


def test_permanent_failure_fails_at_once_and_retry_requeues(store: JobStore) -> None:
    job, _ = store.enqueue(new_job(1))
    claimed = store.claim("h:1:0", lease_s=30, max_attempts=3)
    assert claimed is not None
    status = store.fail(
        claimed.id,
        claimed.lease_token or "",
        reason="not_audio",
        message="rec1.wav: not an audio file",
        retry=False,
        max_attempts=3,
    )
    assert status is JobStatus.FAILED
    failed = store.get(job.id)
    assert failed.status is JobStatus.FAILED and failed.attempts == 1
    assert failed.last_error_type == "not_audio" and "not an audio file" in (
        failed.last_error or ""
    )
    assert store.claim("h:1:0", lease_s=30, max_attempts=3) is None
    assert store.retry(job.id) == 1
    requeued = store.get(job.id)
    assert requeued.status is JobStatus.QUEUED and requeued.attempts == 0
    assert requeued.finished_at is None and requeued.run_after is None
    assert store.retry(job.id) == 0  # only failed or cancelled jobs are requeued


def test_guarded_transitions_refuse_the_wrong_state(store: JobStore) -> None:
    job, _ = store.enqueue(new_job(1))
    assert not store.finish(job.id, "not-a-token", {}, lambda: ["x"])
    assert (
        store.fail(
            job.id, "not-a-token", reason="internal", message="m", retry=False, max_attempts=3
        )
        is None
    )
    claimed = store.claim("h:1:0", lease_s=30, max_attempts=3)
    assert claimed is not None
    assert not store.cancel(job.id)  # a running job finishes first
    assert store.finish(claimed.id, claimed.lease_token or "", {}, lambda: ["x"])
    assert not store.finish(claimed.id, claimed.lease_token or "", {}, lambda: ["y"])
    assert store.get(job.id).outputs == ("x",)


# -- passwords ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql+psycopg://u:{CANARY}@db.example:5432/jobs",
        f"postgresql+psycopg://u:{CANARY}@db.example/jobs?sslmode=require",
        "postgresql://u:S3cr3t%2DCanary@db.example/jobs",  # percent-encoded in the URL
    ],
)
def test_mask_url_hides_the_password(url: str) -> None:
    masked = mask_url(url)
    assert CANARY not in masked and "S3cr3t" not in masked
    assert "***" in masked and "db.example" in masked and "u:" in masked


def test_mask_url_of_an_unparsable_url_reveals_nothing() -> None:
    assert mask_url(f"not a url {CANARY}") == "<invalid database URL>"
    assert mask_url("sqlite:////tmp/jobs.sqlite3") == "sqlite:////tmp/jobs.sqlite3"


def test_unreachable_database_error_never_contains_the_password() -> None:
    url = f"postgresql+psycopg://u:{CANARY}@127.0.0.1:1/db"
    with pytest.raises(StoreUnavailableError) as caught:
        JobStore(url)
    rendered = "".join(traceback.format_exception(caught.value))
    assert CANARY not in rendered and CANARY not in str(caught.value.hint)
    assert "u:***@127.0.0.1:1/db" in caught.value.message


def test_stored_errors_are_scrubbed_of_the_password(store: JobStore) -> None:
    scrubbing = JobStore(f"postgresql+psycopg://u:{CANARY}@127.0.0.1:1/db", create=False)
    assert CANARY not in scrubbing.scrub(f"could not connect with password {CANARY}")
    assert CANARY not in scrubbing.masked_url
    store._secret = CANARY  # as if the store's own URL carried it
    job, _ = store.enqueue(new_job(1))
    claimed = store.claim("h:1:0", lease_s=30, max_attempts=3)
    assert claimed is not None
    store.fail(
        claimed.id,
        claimed.lease_token or "",
        reason="internal",
        message=f"boom {CANARY}",
        traceback=f"Traceback: {CANARY}",
        retry=False,
        max_attempts=3,
    )
    record = store.get(job.id)
    assert CANARY not in (record.last_error or "")
    with store.engine.begin() as connection:
        stored = connection.execute(sa.select(JobRow.error_traceback)).scalar_one()
    assert CANARY not in stored
