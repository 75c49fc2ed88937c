"""Orchestrates a run: claims jobs for free slots, hands them to the pool, records the outcome.

One ``Runner`` serves ``transcribe`` (its own jobs, then exit), ``drain-queue`` (every queued job,
then exit) and ``watch`` (until stopped). It owns the signals (first Ctrl-C/SIGTERM warm: no new
files, running ones get ``JOZVESAZ_GRACE_S``; second or grace over: cold, running jobs go back to
queued without using an attempt), renews leases by heartbeat, asks the memory guard before every
start, and publishes a slot's staged outputs only while the job's lease is still held.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import FrameType
from typing import Any, Protocol

from jozvesaz_cli.audio import check_input_file
from jozvesaz_cli.config import Settings, host_name
from jozvesaz_cli.errors import TRANSIENT_REASONS, ExitCode, FailureReason, InputError
from jozvesaz_cli.job_store import JobOrigin, JobRecord, JobStatus, JobStore
from jozvesaz_cli.memory_guard import MemoryGuard, estimate_need_bytes
from jozvesaz_cli.pool import SlotEvent, SlotPool, TranscriberFactory, WorkItem
from jozvesaz_cli.storage import StorageLayout, fs_path, resolve_upload
from jozvesaz_cli.transcription import DecodeOptions
from jozvesaz_cli.writers import RenderOptions, commit_staged, discard_staged, result_base_name

logger = logging.getLogger(__name__)

LOOP_WAIT_S = 0.25


def recording_date(path: Path) -> str:
    """The day shown in the notes header: the recording file's modification day (UTC), which
    is when it was recorded or uploaded; empty when the file cannot be read."""
    try:
        stamp = path.stat().st_mtime
    except OSError:
        return ""
    return dt.datetime.fromtimestamp(stamp, tz=dt.timezone.utc).date().isoformat()


@dataclass(frozen=True, slots=True)
class FileResult:
    """How one input ended, for the summary, ``--json`` and the exit code.

    Attributes:
        path: the input as shown to the user.
        status: ``done``, ``skipped`` (already done), ``failed``, ``interrupted`` or ``queued``.
        job_id: the job row, when there is one.
        reason: the failure reason code (``FailureReason``), if failed.
        message: the human sentence for a failure, or a note.
        outputs: the result files.
        language: the language of the transcript.
        duration_s: the audio length.
        processing_s: wall time in the slot.
        warnings: warnings recorded on the job.
        attempts: attempts used.
    """

    path: str
    status: str
    job_id: int | None = None
    reason: str | None = None
    message: str | None = None
    outputs: tuple[str, ...] = ()
    language: str | None = None
    duration_s: float | None = None
    processing_s: float | None = None
    warnings: tuple[str, ...] = ()
    attempts: int = 0

    @classmethod
    def from_job(
        cls, job: JobRecord, path: str | None = None, status: str | None = None
    ) -> FileResult:
        """Summarise a job row."""
        return cls(
            path=path or job.source_path,
            status=status or job.status.value,
            job_id=job.id,
            reason=job.last_error_type if job.status is JobStatus.FAILED else None,
            message=job.last_error if job.status is JobStatus.FAILED else None,
            outputs=job.outputs,
            language=job.language,
            duration_s=job.audio_duration_s,
            processing_s=job.processing_s,
            warnings=job.warnings,
            attempts=job.attempts,
        )


@dataclass
class RunReport:
    """The outcome of a run."""

    results: list[FileResult] = field(default_factory=list)
    model_loads: int = 0
    elapsed_s: float = 0.0
    interrupted: bool = False

    @property
    def exit_code(self) -> ExitCode:
        if self.interrupted:
            return ExitCode.INTERRUPTED
        if any(result.status == "failed" for result in self.results):
            return ExitCode.PARTIAL
        return ExitCode.OK

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for result in self.results:
            counts[result.status] = counts.get(result.status, 0) + 1
        return counts

    def as_dict(self) -> dict[str, Any]:
        """The ``--json`` run summary."""
        return {
            "exit_code": int(self.exit_code),
            "counts": self.counts(),
            "model_loads": self.model_loads,
            "elapsed_s": round(self.elapsed_s, 3),
            "interrupted": self.interrupted,
            "files": [
                {
                    "path": r.path,
                    "status": r.status,
                    "job_id": r.job_id,
                    "reason": r.reason,
                    "error": r.message,
                    "outputs": list(r.outputs),
                    "language": r.language,
                    "duration_s": r.duration_s,
                    "processing_s": r.processing_s,
                    "warnings": list(r.warnings),
                    "attempts": r.attempts,
                }
                for r in self.results
            ],
        }


class RunObserver(Protocol):
    """What the console shows; the runner calls it from the main thread."""

    def job_started(self, slot: int, name: str, duration_s: float | None) -> None: ...
    def job_progress(self, slot: int, fraction: float) -> None: ...
    def job_finished(self, slot: int | None, result: FileResult) -> None: ...
    def note(self, text: str) -> None: ...


class SilentObserver:
    """An observer that only logs; used when nothing is shown."""

    def job_started(self, slot: int, name: str, duration_s: float | None) -> None:
        logger.info("slot %d started %s", slot, name)

    def job_progress(self, slot: int, fraction: float) -> None:
        return None

    def job_finished(self, slot: int | None, result: FileResult) -> None:
        logger.info("%s: %s", result.path, result.status)

    def note(self, text: str) -> None:
        logger.info("%s", text)


@dataclass
class _Running:
    job: JobRecord
    item: WorkItem
    owner: str
    started: float


class StopSignal:
    """Counts Ctrl-C/SIGTERM: first is warm, second is cold."""

    def __init__(self) -> None:
        self.count = 0
        self.first_at = 0.0
        self.event = threading.Event()

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.count += 1
        if self.count == 1:
            self.first_at = time.monotonic()
        self.event.set()


def _fewer_slots_for_less_work(
    settings: Settings, only_ids: Sequence[int] | None, max_jobs: int | None
) -> Settings:
    """No more slots than jobs the run can take, so no model is loaded for a slot left idle;
    the cores are then split among the slots that remain."""
    bounds = [len(only_ids)] if only_ids is not None else []
    bounds += [max_jobs] if max_jobs is not None else []
    most = min(bounds, default=settings.slots)
    if 0 < most < settings.slots:
        return settings.model_copy(update={"slots": most})
    return settings


class Runner:
    """Runs jobs from the store through the pool until the scope is finished or stopped."""

    def __init__(
        self,
        settings: Settings,
        store: JobStore,
        layout: StorageLayout,
        *,
        observer: RunObserver | None = None,
        origin: JobOrigin | None = JobOrigin.QUEUE,
        only_ids: Sequence[int] | None = None,
        display_names: dict[int, str] | None = None,
        max_jobs: int | None = None,
        max_runtime_s: float | None = None,
        until_stopped: bool = False,
        transcriber_factory: TranscriberFactory | None = None,
        guard: MemoryGuard | None = None,
        model_bytes: int = 0,
        on_idle: Callable[[], None] | None = None,
    ) -> None:
        self.settings = _fewer_slots_for_less_work(settings, only_ids, max_jobs)
        self.store = store
        self.layout = layout
        self.observer: RunObserver = observer or SilentObserver()
        self.origin = origin
        self.only_ids = list(only_ids) if only_ids is not None else None
        self.display_names = display_names or {}
        self.max_jobs = max_jobs
        self.max_runtime_s = max_runtime_s
        self.until_stopped = until_stopped
        self.factory = transcriber_factory
        self.guard = guard
        self.model_bytes = model_bytes
        self.on_idle = on_idle
        self.stop = StopSignal()
        self.report = RunReport()
        self._running: dict[int, _Running] = {}
        self._touched: dict[int, FileResult] = {}
        self._claimed = 0
        self._queue_empty = False
        self._held_reason = ""
        self._hold_until = 0.0
        self._options = DecodeOptions.from_settings(self.settings)
        self._render = RenderOptions(
            persian_digits=self.settings.persian_digits,
            normalize_persian=self.settings.normalize_persian,
            heading_every_s=self.settings.notes_heading_every_s,
        )

    # -- the loop ---------------------------------------------------------------------------
    def run(self, pool: SlotPool | None = None) -> RunReport:
        """Run to completion; installs SIGINT/SIGTERM handlers for the duration."""
        started = time.monotonic()
        previous = {sig: signal.signal(sig, self.stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        pool = pool or SlotPool(self.settings, transcriber_factory=self.factory)
        try:
            pool.start(stop=lambda: self.stop.count > 0)
            if self.stop.count == 0:
                self._loop(pool, started)
        finally:
            cold = self.stop.count > 0 and bool(self._running)
            self._interrupt_running(pool)
            pool.shutdown(cold=cold or self.stop.count > 1)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self.report.model_loads = pool.model_loads
            self.report.elapsed_s = time.monotonic() - started
            self.report.interrupted = self.stop.count > 0
            self.report.results = list(self._touched.values())
        return self.report

    def _loop(self, pool: SlotPool, started: float) -> None:
        last_beat = time.monotonic()
        beat_every = self.settings.lease_s / 3
        while True:
            now = time.monotonic()
            if self.stop.count >= 2 or (
                self.stop.count == 1 and now - self.stop.first_at > self.settings.grace_s
            ):
                if self._running:
                    self.observer.note("stopping now: running files go back to the queue")
                return
            if now - last_beat >= beat_every:
                self._heartbeat()
                last_beat = now
            if self.stop.count == 0 and not self._out_of_budget(started):
                self._fill_slots(pool)
            if not self._running and self._finished(started):
                return
            for event in pool.wait(LOOP_WAIT_S):
                self._handle(pool, event)
            if self.on_idle is not None and not self._running:
                self.on_idle()

    def _out_of_budget(self, started: float) -> bool:
        if self.max_jobs is not None and self._claimed >= self.max_jobs:
            return True
        runtime = self.max_runtime_s
        return runtime is not None and time.monotonic() - started >= runtime

    def _finished(self, started: float) -> bool:
        if self.stop.count > 0:
            return True
        if self.until_stopped:
            return False
        if self._out_of_budget(started):
            return True
        if time.monotonic() < self._hold_until:
            return False
        if self.only_ids is not None:
            return not self.store.has_queued(self.only_ids)
        pending = [job_id for job_id, result in self._touched.items() if result.status == "queued"]
        if pending and self.store.has_queued(pending):
            return False
        return self._queue_empty

    def _out_of_budget_now(self) -> bool:
        return self.max_jobs is not None and self._claimed >= self.max_jobs

    # -- claiming -------------------------------------------------------------------------
    def _fill_slots(self, pool: SlotPool) -> None:
        if time.monotonic() < self._hold_until:
            return
        for slot in pool.free_slots():
            if self._out_of_budget_now():
                return
            owner = f"{host_name()}:{os.getpid()}:{slot}"
            job = self.store.claim(
                owner,
                lease_s=self.settings.lease_s,
                max_attempts=self.settings.max_attempts,
                only_ids=self.only_ids,
                origin=self.origin,
            )
            self._queue_empty = job is None
            if job is None:
                return
            if not self._admitted(job):
                self.store.release(job.id, job.lease_token or "", note="waiting for memory")
                return
            self._claimed += 1
            item = self._work_item(job)
            if item is None:
                continue
            pool.submit(slot, item)
            pid = pool.pid(slot)
            if pid is not None:
                self.store.set_worker(job.id, item.token, pid, owner)
            self._running[job.id] = _Running(job, item, owner, time.monotonic())
            self.observer.job_started(slot, item.display_name, job.audio_duration_s)

    def _admitted(self, job: JobRecord) -> bool:
        if self.guard is None:
            return True
        need = 0
        if self._running:
            need = estimate_need_bytes(
                job.audio_duration_s or 0.0, model_bytes=self.model_bytes, model_loaded=True
            )
        admission = self.guard.admit(need)
        if admission.admitted:
            if self._held_reason:
                self.observer.note("memory freed; starting files again")
                self._held_reason = ""
            return True
        if admission.reason != self._held_reason:
            self.observer.note(f"holding the next file: {admission.reason}")
            self._held_reason = admission.reason
        self._hold_until = time.monotonic() + self.settings.memory_monitor_interval_s
        return False

    def _display(self, job: JobRecord) -> str:
        return self.display_names.get(job.id, job.source_path)

    def _work_item(self, job: JobRecord) -> WorkItem | None:
        token = job.lease_token or ""
        display = self._display(job)
        try:
            if job.origin == JobOrigin.QUEUE.value:
                source = resolve_upload(self.layout.uploads, job.source_path)
                dest = self.layout.results_dir_for(job.source_path)
            else:
                source = fs_path(job.source_path)
                dest = self.layout.results
            check_input_file(source)
            if job.job_key is None:
                identified = self._identify(job, source)
                if identified is None:
                    return None
                job = identified
        except InputError as exc:
            self._fail(job, token, exc.reason.value, f"{display}: {exc.detail}", retry=False)
            return None
        stored = job.settings
        formats = str(stored.get("formats") or self.settings.formats).split(",")
        replacements = stored.get("replacements") or {}
        return WorkItem(
            job_id=job.id,
            token=token,
            source=str(source),
            display_name=display,
            dest_dir=str(dest),
            base_name=result_base_name(Path(display).name, job.job_key or job.content_sha256 or ""),
            formats=tuple(formats),
            options=self._options.with_values(stored),
            render=replace(self._render, created_at=recording_date(source)),
            max_audio_s=self.settings.max_audio_s,
            replacements=tuple(sorted(replacements.items())),
        )

    def _identify(self, job: JobRecord, source: Path) -> JobRecord | None:
        """Fill identity for a row another program inserted with only ``source_path``."""
        from jozvesaz_cli.intake import output_settings, settings_fingerprint
        from jozvesaz_cli.job_store import sha256_text
        from jozvesaz_cli.storage import hash_file

        values = output_settings(self.settings)
        fingerprint = settings_fingerprint(values)
        content = hash_file(source)
        key = sha256_text(f"{content}:{fingerprint}")
        unique = self.store.update_source(
            job.id,
            job.lease_token or "",
            {
                "job_key": key,
                "content_sha256": content,
                "settings_fingerprint": fingerprint,
                "settings_json": json.dumps(values, sort_keys=True, ensure_ascii=False),
                "size_bytes": source.stat().st_size,
            },
        )
        if not unique:
            logger.info("%s is a duplicate of an existing job; cancelled", job.source_path)
            return None
        return self.store.get(job.id)

    # -- events ---------------------------------------------------------------------------
    def _handle(self, pool: SlotPool, event: SlotEvent) -> None:
        if event.kind == "progress":
            self.observer.job_progress(event.slot, float(event.payload.get("fraction", 0.0)))
            return
        if event.kind == "load_failed":
            from jozvesaz_cli.errors import ModelLoadError

            raise ModelLoadError(str(event.payload.get("message")))
        running = self._running.get(event.job_id or -1)
        if running is None:
            if event.kind == "done":
                discard_staged(_staged(event.payload))
            return
        if event.kind == "done":
            self._finish(running, event)
        elif event.kind == "failed":
            reason = str(event.payload.get("reason"))
            retry = FailureReason(reason) in TRANSIENT_REASONS
            self._fail(
                running.job,
                running.item.token,
                reason,
                f"{running.item.display_name}: {event.payload.get('message')}",
                retry=retry,
                traceback=event.payload.get("traceback"),
            )
            self._running.pop(running.job.id, None)
            self.observer.job_finished(event.slot, self._touched[running.job.id])
        elif event.kind == "lost":
            message = f"{running.item.display_name}: {event.payload.get('message')}"
            self._fail(
                running.job,
                running.item.token,
                FailureReason.WORKER_LOST.value,
                message,
                retry=True,
            )
            self._running.pop(running.job.id, None)
            self.observer.job_finished(event.slot, self._touched[running.job.id])

    def _finish(self, running: _Running, event: SlotEvent) -> None:
        payload = event.payload
        staged = _staged(payload)
        values = {
            "language": payload.get("language"),
            "language_probability": payload.get("language_probability"),
            "audio_duration_s": payload.get("duration_s"),
            "processing_s": payload.get("processing_s"),
            "model": self.settings.model_name,
            "device": payload.get("device"),
            "compute_type": payload.get("compute_type"),
            "source_sample_rate": payload.get("sample_rate"),
            "source_channels": payload.get("channels"),
            "warnings": json.dumps(payload.get("warnings", []), ensure_ascii=False),
        }
        stored = self.store.finish(
            running.job.id,
            running.item.token,
            values,
            lambda: [str(path) for path in _commit_and_sweep(staged)],
        )
        self._running.pop(running.job.id, None)
        if not stored:
            discard_staged(staged)
            logger.warning(
                "%s: the lease was lost (another worker took the job); result discarded",
                running.item.display_name,
            )
            return
        job = self.store.get(running.job.id)
        result = FileResult.from_job(job, running.item.display_name, "done")
        self._touched[job.id] = result
        self.observer.job_finished(event.slot, result)

    def _fail(
        self,
        job: JobRecord,
        token: str,
        reason: str,
        message: str,
        *,
        retry: bool,
        traceback: str | None = None,
    ) -> None:
        status = self.store.fail(
            job.id,
            token,
            reason=reason,
            message=message,
            traceback=traceback,
            retry=retry,
            max_attempts=self.settings.max_attempts,
        )
        display = self._display(job)
        if status is None:  # fenced: another worker holds the job now; its outcome counts
            logger.warning("%s: the lease was lost (another worker took the job)", display)
            return
        if status is JobStatus.QUEUED:
            logger.warning(
                "%s; retrying (attempt %d of %d)", message, job.attempts, self.settings.max_attempts
            )
            self._touched[job.id] = FileResult(
                display, "queued", job.id, reason, message, attempts=job.attempts
            )
        else:
            self._touched[job.id] = FileResult(
                display, "failed", job.id, reason, message, attempts=job.attempts
            )

    def _heartbeat(self) -> None:
        for job_id, running in list(self._running.items()):
            if not self.store.heartbeat(job_id, running.item.token, self.settings.lease_s):
                logger.warning(
                    "%s: lease lost; its result will be discarded", running.item.display_name
                )

    def _interrupt_running(self, pool: SlotPool) -> None:
        """Cold stop: kill busy slots, put their jobs back without using an attempt."""
        if not self._running:
            return
        for slot, item in pool.busy().items():
            pool.kill(slot)
            logger.debug("killed slot %d running %s", slot, item.display_name)
        for job_id, running in list(self._running.items()):
            self.store.release(
                job_id,
                running.item.token,
                note="interrupted before it finished; it runs again next time",
            )
            self._touched[job_id] = FileResult(running.item.display_name, "interrupted", job_id)
        self._running.clear()


def _commit_and_sweep(staged: Sequence[Any]) -> list[Path]:
    """Publish staged outputs, then remove stale temporary copies of the same results.

    Runs inside ``JobStore.finish`` while this worker holds the job's lease, so any other
    ``.<final name>.<token>.tmp`` beside a result belongs to a worker of the same job that lost
    its lease (a drain-queue killed between its slot staging and publishing) and can never be
    published.
    """
    from jozvesaz_cli.writers import is_temp_output

    paths = commit_staged(staged)
    prefixes: dict[Path, set[str]] = {}
    for path in paths:
        prefixes.setdefault(path.parent, set()).add(f".{path.name}.")
    for folder, names in prefixes.items():
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            if entry.name.startswith(tuple(names)) and is_temp_output(Path(entry.path)):
                try:
                    os.unlink(entry.path)
                except OSError:
                    pass
                else:
                    logger.info("removed stale temporary output %s", entry.path)
    return paths


def _staged(payload: dict[str, Any]) -> list[Any]:
    from jozvesaz_cli.writers import StagedFile

    return [StagedFile(Path(temp), Path(final)) for temp, final in payload.get("staged", [])]
