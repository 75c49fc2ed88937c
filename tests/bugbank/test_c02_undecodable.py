"""Bug bank C02: inputs with nothing decodable, mixed into one batch with good recordings.

faster-whisper #407 died with a bare "tuple index out of range"; openai/whisper #1682 stopped
a whole batch at the first bad file. Here every kind of undecodable input (0 bytes under five
extensions, a header-only WAV and WebM, a video without audio, an image and a text file named
as audio) goes through one real ``jozvesaz transcribe`` run with two good files placed between
and after them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.bugbank.bank import (
    EXCEPTION_WORDS,
    CliRun,
    documented_reasons,
    job_rows,
    result_files,
    run_cli,
)

pytestmark = [pytest.mark.model, pytest.mark.slow]

#: The reason each bad input must fail with (a set where the bank accepts either wording).
EXPECTED_REASONS: dict[str, set[str]] = {
    "empty.mp3": {"empty_file"},
    "empty.m4a": {"empty_file"},
    "empty.wav": {"empty_file"},
    "empty.webm": {"empty_file"},
    "empty.flac": {"empty_file"},
    "header_only.wav": {"no_samples"},
    "header_only.webm": {"undecodable"},
    "video_no_audio.mp4": {"no_audio_stream"},
    "image_named.mp3": {"no_audio_stream", "not_audio"},
    "text_named.wav": {"not_audio"},
}


@pytest.fixture(scope="module")
def c02_run(
    tiny_model_path: Path,
    c02_inputs: dict[str, Path],
    speech: dict[str, Path],
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, CliRun]:
    storage = tmp_path_factory.mktemp("c02run") / "storage"
    bad = [str(c02_inputs[name]) for name in EXPECTED_REASONS]
    # One good file in the middle of the bad ones, one at the end.
    args = [*bad[:5], str(speech["speech.mp3"]), *bad[5:], str(speech["speech.wav"])]
    run = run_cli(["transcribe", "--json", *args], storage, TRANSCRIPTION_MODEL_NAME="tiny.en")
    return storage, run


def test_c02_every_undecodable_kind_fails_cleanly_and_good_files_are_done(
    c02_run: tuple[Path, CliRun],
) -> None:
    """C02: each bad file is one clean failure with its own specific, documented reason and a
    sentence naming the file (never an exception class); both good files are done wherever
    they sit in the list; the summary says "2 done, 10 failed" and the exit code is 1.

    A naive build crashes on the first IndexError/OSError, stops the batch, or reports every
    bad file with one generic reason."""
    _, run = c02_run
    assert run.returncode == 1, run.stderr
    entries = run.by_name()
    assert entries["speech.wav"]["status"] == "done"
    assert entries["speech.mp3"]["status"] == "done"
    vocabulary = documented_reasons()
    for name, reasons in EXPECTED_REASONS.items():
        entry = entries[name]
        assert entry["status"] == "failed", (name, entry)
        assert entry["reason"] in reasons, (name, entry["reason"], entry["error"])
        assert entry["reason"] in vocabulary
        assert name in entry["error"], entry["error"]
        assert not any(word in entry["error"] for word in EXCEPTION_WORDS), entry["error"]
        assert entry["outputs"] == []
        assert name in run.stderr  # each failure is listed for the user
    assert not any(word in run.stderr for word in EXCEPTION_WORDS), run.stderr
    assert "2 done, 10 failed" in run.stderr


def test_c02_failed_inputs_leave_no_results_and_nothing_running(
    c02_run: tuple[Path, CliRun],
) -> None:
    """C02: one job row per input, none left ``running``, each failure stored with its reason
    and a sentence naming the file; results exist only for the two good files, and no hidden
    temporary file is left in results/ (a naive build writes an empty .txt/.srt for
    ``header_only.wav`` and calls it done)."""
    storage, _ = c02_run
    rows = job_rows(storage)
    assert len(rows) == len(EXPECTED_REASONS) + 2
    assert not [row for row in rows if row["status"] == "running"]
    for row in rows:
        name = Path(row["source_path"]).name
        if name in EXPECTED_REASONS:
            assert row["status"] == "failed"
            assert row["last_error_type"] in EXPECTED_REASONS[name]
            assert name in row["last_error"]
            assert row["attempts"] <= 1
        else:
            assert row["status"] == "done"
    stems = {path.name.rsplit("-", 1)[0] for path in result_files(storage)}
    assert stems == {"speech"}, stems
    assert not [p for p in result_files(storage) if p.name.startswith(".")]
    assert len(result_files(storage)) == 8  # txt, srt, vtt, json for each good file
