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
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jozvesaz_cli.config import Settings
from jozvesaz_cli.errors import FailureReason, InputError
from jozvesaz_cli.job_store import JobOrigin, JobRecord, JobStore, NewJob, sha256_text
from jozvesaz_cli.storage import (
    StorageLayout,
    check_regular_file,
    display_path,
    hash_file,
    relative_upload_name,
)

logger = logging.getLogger(__name__)

#: Name parts that mark partial downloads, editor and OS junk: never transcribed.
PARTIAL_SUFFIXES = (".part", ".partial", ".tmp", ".temp", ".crdownload", ".download",
                    ".filepart", ".swp", ".swx", ".lock", ".!ut", ".opdownload")
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


def _declared_duration(path: Path) -> tuple[float | None, InputError | None]:
    from jozvesaz_cli.audio import probe_audio

    try:
        info = probe_audio(path)
    except InputError as exc:
        return None, exc
    return info.declared_duration_s, None


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
    values = output_settings(settings) | (extra_settings or {})
    fingerprint = settings_fingerprint(values)
    if origin is JobOrigin.QUEUE:
        stored_name = relative_upload_name(layout.uploads, path) or shown
    else:
        stored_name = display_path(path.absolute())
    try:
        info = check_regular_file(path)
    except InputError as exc:
        base = NewJob(stored_name, origin, None, fingerprint, settings=values, profile=profile)
        return Intake(shown, store.record_failure(base, exc.reason.value, exc.message), True, exc)
    content = hash_file(path)
    duration, problem = (None, None)
    if info.st_size == 0:
        problem = InputError(shown, FailureReason.EMPTY_FILE, "empty file (0 bytes)")
    else:
        duration, problem = _declared_duration(path)
    job = NewJob(stored_name, origin, content, fingerprint, info.st_size, duration, values, profile)
    record, created = store.enqueue(job, force=force)
    if problem is not None and created:
        record = store.mark_input_failed(record.id, problem.reason.value, f"{shown}: {problem.detail}")
    return Intake(shown, record, created, problem)


def copy_into_uploads(source: Path, layout: StorageLayout) -> Path:
    """Copy a file from outside into uploads/ atomically (temporary name, then rename)."""
    target = layout.uploads / source.name
    if target.exists() and hash_file(target) == hash_file(source):
        return target
    stem, suffix, counter = target.stem, target.suffix, 1
    while target.exists():
        target = layout.uploads / f"{stem} ({counter}){suffix}"
        counter += 1
    handle, temp = tempfile.mkstemp(prefix=f".{source.name}.", suffix=".part", dir=layout.uploads)
    os.close(handle)
    try:
        shutil.copyfile(source, temp)
        os.replace(temp, target)
    finally:
        if os.path.exists(temp):
            os.unlink(temp)
    return target


def scan_uploads(layout: StorageLayout, known: set[str]) -> Iterator[Path]:
    """Files under uploads/ that look like recordings and have no job yet (by path)."""
    for folder, dirs, files in os.walk(layout.uploads):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            path = Path(folder) / name
            relative = relative_upload_name(layout.uploads, path)
            if relative is None or relative in known or not is_candidate_name(name):
                continue
            yield path
