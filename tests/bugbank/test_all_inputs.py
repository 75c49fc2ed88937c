"""Every generated input of the bug bank in one ``jozvesaz transcribe`` run.

The per-case modules check each behaviour; this one checks that the kinds do not interfere when
they share one batch and one pool: undecodable files (C02), silence, hiss and tones (C04),
channel layouts and rates (C05), awkward names (C06), the 3-hour file under a 1-hour limit
(C07) and Persian speech (C19). Every input ends done or failed with a documented reason, the
run exits 1, no row is left running and no temporary or partial result is left behind.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.bugbank.bank import (
    EXCEPTION_WORDS,
    documented_reasons,
    job_rows,
    result_files,
    run_cli,
)
from tests.bugbank.test_c02_undecodable import EXPECTED_REASONS

pytestmark = [pytest.mark.model, pytest.mark.slow]


@pytest.mark.timeout(900)
def test_every_bank_input_at_once_ends_done_or_failed_with_a_documented_reason(
    tiny_model_path: Path,
    speech: dict[str, Path],
    c02_inputs: dict[str, Path],
    c04_inputs: dict[str, Path],
    c05_inputs: dict[str, Path],
    c06_names: dict[str, Path],
    fa_speech: Path,
    long3h: Path,
    tmp_path: Path,
) -> None:
    inputs = [
        *speech.values(),
        *c02_inputs.values(),
        *c04_inputs.values(),
        *c05_inputs.values(),
        *c06_names.values(),
        fa_speech,
        long3h,
    ]
    storage = tmp_path / "storage"
    run = run_cli(
        ["transcribe", "--json", "--", *[str(path) for path in inputs]],
        storage,
        TRANSCRIPTION_MODEL_NAME="tiny.en",
        JOZVESAZ_MAX_AUDIO_SECONDS="3600",
        timeout_s=840,
    )
    assert run.returncode == 1, run.stderr
    entries = run.summary()["files"]
    assert len(entries) == len(inputs)
    reasons = documented_reasons()
    failed = {}
    for entry in entries:
        name = Path(entry["path"]).name
        if entry["status"] == "failed":
            assert entry["reason"] in reasons, entry
            assert name in entry["error"], entry
            assert not any(word in entry["error"] for word in EXCEPTION_WORDS), entry
            failed[name] = entry["reason"]
        elif entry["status"] == "skipped":  # a copy of a recording already in this batch
            assert "same recording as" in entry["error"], entry
        else:
            assert entry["status"] == "done", entry
    expected = {name: next(iter(options)) for name, options in EXPECTED_REASONS.items()}
    expected[long3h.name] = "too_long"
    assert set(failed) == set(expected), failed
    for name, reason in failed.items():
        assert reason in EXPECTED_REASONS.get(name, {expected[name]}), (name, reason)
    rows = job_rows(storage)
    assert [row for row in rows if row["status"] not in ("done", "failed")] == []
    for entry in entries:
        if entry["status"] == "done":
            assert entry["outputs"] and all(Path(p).is_file() for p in entry["outputs"]), entry
    for path in result_files(storage):
        assert not path.name.startswith("."), f"temporary output left behind: {path}"
    assert not [p for p in result_files(storage) if p.name.startswith(long3h.stem)]
