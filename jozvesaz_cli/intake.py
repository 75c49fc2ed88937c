"""Turns paths into job rows: checks, identity, insert-or-ignore.

Shared by ``transcribe`` (files anywhere), ``enqueue``, ``drain-queue``'s scan of uploads/ and
``watch``, so that every door into the queue applies the same identity. A job's identity is the
recording's content SHA-256 plus a fingerprint of the settings that change the output; the same
recording uploaded twice, renamed or re-scanned is one job.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jozvesaz_cli.audio import check_input_file
from jozvesaz_cli.config import Settings
from jozvesaz_cli.errors import FailureReason, InputError
from jozvesaz_cli.job_store import (
    JobOrigin,
    JobRecord,
    JobStatus,
    JobStore,
    NewJob,
    sha256_text,
)
from jozvesaz_cli.profiles import Profile, find_profile, load_profile
from jozvesaz_cli.storage import (
    StorageLayout,
    display_path,
    hash_file,
    relative_upload_name,
    resolve_upload,
)

logger = logging.getLogger(__name__)

#: Name parts that mark partial downloads, editor and OS junk: never transcribed.
PARTIAL_SUFFIXES = (
    ".part",
    ".partial",
    ".tmp",
    ".temp",
    ".crdownload",
    ".download",
    ".filepart",
    ".swp",
    ".swx",
    ".lock",
    ".!ut",
    ".opdownload",
)
JUNK_NAMES = frozenset({"thumbs.db", "desktop.ini", ".ds_store"})


@dataclass(frozen=True, slots=True)
class Intake:
    """The outcome of offering one path to the queue.

    Attributes:
        path: the name as shown to the user.
        job: the job row (None only when the row could not be written).
        created: True when this call created or reset the job.
        error: the input problem found before queueing, if any.
    """

    path: str
    job: JobRecord | None
    created: bool
    error: InputError | None = None


def output_settings(settings: Settings) -> dict[str, Any]:
    """The settings that change a job's output; stored on the job and fingerprinted."""
    return {
        "model": settings.model_name,
        "compute_type": settings.compute_type,
        "load_in_8bit": settings.load_in_8bit,
        "language": settings.language,
        "allowed_languages": settings.allowed_languages,
        "task": settings.task,
        "beam_size": settings.beam_size,
        "initial_prompt": settings.initial_prompt,
        "hotwords": settings.hotwords,
        "word_timestamps": settings.word_timestamps,
        "vad_filter": settings.vad_filter,
        "formats": settings.formats,
        "normalize_persian": settings.normalize_persian,
        "persian_digits": settings.persian_digits,
    }


def settings_fingerprint(values: dict[str, Any]) -> str:
    """A stable hash of the output-shaping settings."""
    return sha256_text(json.dumps(values, sort_keys=True, ensure_ascii=False))


def is_candidate_name(name: str) -> bool:
    """False for hidden files, partial downloads and OS/editor junk (never transcribed)."""
    from jozvesaz_cli.audio import is_supported_path

    lower = name.lower()
    if lower.startswith((".", "~$", "._")) or lower.endswith("~") or lower in JUNK_NAMES:
        return False
    if lower.endswith(PARTIAL_SUFFIXES):
        return False
    return is_supported_path(Path(name))


def check_outside_file(path: Path) -> InputError | None:
    """Why a recording from outside uploads/ cannot be queued, found before copying it in.

    The same checks a queued job would fail on (missing, empty, not audio, no audio stream),
    so an unusable file is reported at once and never lands in uploads/.
    """
    try:
        check_input_file(path)
    except InputError as exc:
        return exc
    return _declared_duration(path)[1]


def _declared_duration(path: Path) -> tuple[float | None, InputError | None]:
    from jozvesaz_cli.audio import probe_audio

    try:
        info = probe_audio(path)
    except InputError as exc:
        return None, exc
    return info.declared_duration_s, None


def _check_inside_uploads(path: Path, uploads: Path, shown: str) -> None:
    """Refuse a queue path whose real path leaves uploads/, before it is opened or hashed.

    A symlink in uploads/ may point anywhere; the real path decides, so nothing outside the
    storage is ever read through the queue.

    Raises:
        InputError: the real path is outside uploads/ (reason ``unsafe_path``).
    """
    if not path.resolve().is_relative_to(uploads.resolve()):
        raise InputError(
            shown,
            FailureReason.UNSAFE_PATH,
            "resolves outside the uploads folder (a symlink or '..'); refused",
        )


def offer_path(
    store: JobStore,
    settings: Settings,
    path: Path,
    *,
    origin: JobOrigin,
    layout: StorageLayout,
    force: bool = False,
    extra_settings: dict[str, Any] | None = None,
    profile: str | None = None,
) -> Intake:
    """Check ``path``, compute its identity and insert its job unless it exists.

    Inputs that are already known to be unusable (missing, a directory, empty, not audio) are
    recorded as failed jobs at once, with their reason, so that a batch reports them and a
    scan does not offer them again.
    """
    shown = display_path(path)
    if origin is JobOrigin.QUEUE and extra_settings is None:
        course = course_profile(layout, path)
        if course is not None:
            extra_settings, profile = course.settings, course.name
    values = output_settings(settings) | (extra_settings or {})
    fingerprint = settings_fingerprint(values)
    if origin is JobOrigin.QUEUE:
        stored_name = relative_upload_name(layout.uploads, path) or shown
    else:
        stored_name = display_path(path.absolute())
    try:
        if origin is JobOrigin.QUEUE:
            _check_inside_uploads(path, layout.uploads, shown)
        size = check_input_file(path)
    except InputError as exc:
        base = NewJob(stored_name, origin, None, fingerprint, settings=values, profile=profile)
        message = f"{shown}: {exc.detail}"
        return Intake(shown, store.record_failure(base, exc.reason.value, message), True, exc)
    content = hash_file(path)
    duration, problem = _declared_duration(path)
    job = NewJob(stored_name, origin, content, fingerprint, size, duration, values, profile)
    record, created = store.enqueue(job, force=force)
    if not created and origin is JobOrigin.QUEUE:
        record = _follow_rename(store, layout, record, stored_name)
    if problem is not None and record.status is JobStatus.QUEUED:
        # A queued job (new, or requeued by `jobs retry`) whose file is still unusable fails
        # now with its reason; left queued, no run would ever take it.
        record = store.mark_input_failed(
            record.id, problem.reason.value, f"{shown}: {problem.detail}"
        )
    return Intake(shown, record, created, problem)


def _follow_rename(
    store: JobStore, layout: StorageLayout, record: JobRecord, stored_name: str
) -> JobRecord:
    """A queued job whose recording was renamed inside uploads/ follows it to the new name.

    Without this the job would keep the old name and fail with ``not_found`` while the same
    recording sits in uploads/ under its new name (the identity found the job; the path is
    only where to read it). When both names exist, the job keeps its first one.
    """
    if (
        record.status is not JobStatus.QUEUED
        or record.origin != JobOrigin.QUEUE.value
        or record.source_path == stored_name
    ):
        return record
    try:
        if resolve_upload(layout.uploads, record.source_path).exists():
            return record
    except InputError:
        pass
    moved = store.relocate(record.id, record.source_path, stored_name)
    if moved is None:
        return record
    logger.info("%s was renamed to %s; its job follows", record.source_path, stored_name)
    return moved


def course_profile(layout: StorageLayout, path: Path) -> Profile | None:
    """The course profile that applies to an upload, if any.

    Raises:
        ConfigError: the profile is invalid (the file is not queued until it is fixed).
    """
    found = find_profile(layout.uploads, path.parent)
    return load_profile(found, layout.uploads) if found is not None else None


def job_of_outside_file(
    store: JobStore, settings: Settings, source: Path, layout: StorageLayout, digest: str
) -> JobRecord | None:
    """The job a recording from outside would join once copied into uploads/, if it has one.

    Checked before copying, so enqueueing a recording that is already queued or done (under
    any name) does not leave a second copy of it in uploads/.
    """
    course = course_profile(layout, layout.uploads / source.name)
    values = output_settings(settings) | (course.settings if course is not None else {})
    job = NewJob(source.name, JobOrigin.QUEUE, digest, settings_fingerprint(values))
    return store.find_by_key(job.job_key) if job.job_key is not None else None


def copy_into_uploads(source: Path, layout: StorageLayout, digest: str | None = None) -> Path:
    """Copy a file from outside into uploads/ atomically (temporary name, then rename).

    A file with the same name and content is reused, so concurrent ``enqueue`` calls of one
    recording make one copy; a different file of the same name is never overwritten (the copy
    gets a numbered name).
    """
    target = layout.uploads / source.name
    digest = digest or hash_file(source)
    if _same_content(target, digest):
        return target
    handle, temp = tempfile.mkstemp(prefix=f".{source.name}.", suffix=".part", dir=layout.uploads)
    os.close(handle)
    try:
        shutil.copyfile(source, temp)
        shutil.copymode(source, temp)  # not mkstemp's 0600: other hosts' workers read it
        stem, suffix, counter = target.stem, target.suffix, 1
        while True:
            if _publish_no_clobber(temp, target) or _same_content(target, digest):
                return target
            if target.exists():  # another file of that name: try the next free name
                target = layout.uploads / f"{stem} ({counter}){suffix}"
                counter += 1
    finally:
        if os.path.exists(temp):
            os.unlink(temp)


def _same_content(path: Path, digest: str) -> bool:
    try:
        return path.is_file() and hash_file(path) == digest
    except FileNotFoundError:
        return False


def _publish_no_clobber(temp: str, target: Path) -> bool:
    """Give the complete ``temp`` the name ``target`` unless that name exists; True if done."""
    try:
        os.link(temp, target)
    except FileExistsError:
        return False
    except OSError:  # no hard links on this filesystem (some network shares)
        if target.exists():
            return False
        os.replace(temp, target)
    return True


def scan_uploads(
    layout: StorageLayout, known: set[str], *, settle_s: float = 0.0
) -> Iterator[Path]:
    """Files under uploads/ that look like recordings and have no job yet (by path).

    Args:
        layout: the storage layout.
        known: relative names that already have a job (not hashed again).
        settle_s: skip files modified less than this many seconds ago: they may still be
            arriving, and a scan (cron's ``drain-queue``) must not queue a half-copied file;
            the next scan or the watcher picks them up once they are complete.
    """
    now = time.time()
    for folder, dirs, files in os.walk(layout.uploads):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            path = Path(folder) / name
            relative = relative_upload_name(layout.uploads, path)
            if relative is None or relative in known or not is_candidate_name(name):
                continue
            if settle_s > 0 and _modified_within(path, now, settle_s):
                logger.debug("%s is still changing; left for the next scan", relative)
                continue
            yield path


def _modified_within(path: Path, now: float, seconds: float) -> bool:
    try:
        mtime = os.lstat(path).st_mtime
    except OSError:
        return False
    return abs(now - mtime) < seconds
