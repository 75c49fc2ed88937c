"""`jozvesaz transcribe` end to end: the real CLI process, the real models, real speech from the
corpus, a real SQLite file."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import corpus_file, read_manifest
from tests.scoring import normalize_for_scoring, wer

pytestmark = [pytest.mark.model, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]


def run_cli(args: list[str], storage: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", str(storage)),
        "STORAGE_ROOT": str(storage),
        "HF_HUB_OFFLINE": "1",
        **env,
    }
    return subprocess.run(
        [sys.executable, "-m", "jozvesaz_cli", *args],
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        cwd=REPO,
    )


def rows(storage: Path) -> list[dict[str, Any]]:
    with sqlite3.connect(storage / "jozvesaz.sqlite3") as db:
        db.row_factory = sqlite3.Row
        return [dict(row) for row in db.execute("SELECT * FROM jobs ORDER BY id")]


def test_transcribe_jfk_offline_writes_every_format_and_a_done_row(
    base_model_path: Path, tmp_path: Path
) -> None:
    storage = tmp_path / "storage"
    jfk = corpus_file("en/jfk.flac")
    result = run_cli(["transcribe", str(jfk)], storage)
    assert result.returncode == 0, result.stderr
    printed = result.stdout.split()
    assert sorted(Path(p).suffix for p in printed) == [".json", ".srt", ".txt", ".vtt"]
    assert all(Path(p).parent == storage / "results" for p in printed)
    reference = next(r for r in read_manifest() if r["file"] == "en/jfk.flac")
    text = Path(next(p for p in printed if p.endswith(".txt"))).read_text(encoding="utf-8")
    assert (
        wer(normalize_for_scoring(reference["reference_transcript"]), normalize_for_scoring(text))
        <= 0.05
    )
    data = json.loads(Path(next(p for p in printed if p.endswith(".json"))).read_text("utf-8"))
    assert data["language"] == "en" and data["model"] == "base" and data["segments"]
    srt = Path(next(p for p in printed if p.endswith(".srt"))).read_text(encoding="utf-8")
    assert srt.startswith("1\n00:00:00,")
    [row] = rows(storage)
    assert row["status"] == "done" and row["model"] == "base"
    assert row["device"] == "cpu" and row["compute_type"] == "int8"
    assert row["language"] == "en" and abs(row["audio_duration_s"] - 11.0) < 0.05
    assert len(row["content_sha256"]) == 64
    assert row["created_at"] and row["finished_at"]

    again = run_cli(["transcribe", str(jfk), "--json"], storage)
    assert again.returncode == 0, again.stderr
    summary = json.loads(again.stdout)
    assert [f["status"] for f in summary["files"]] == ["skipped"]
    assert summary["model_loads"] == 0
    assert len(rows(storage)) == 1
    # One file to do takes one slot: the second slot's model is never loaded.
    forced = run_cli(["transcribe", str(jfk), "--json", "--force"], storage)
    assert forced.returncode == 0, forced.stderr
    summary = json.loads(forced.stdout)
    assert [f["status"] for f in summary["files"]] == ["done"]
    assert summary["model_loads"] == 1


def make_bad_inputs(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    good = folder / "good.flac"
    shutil.copy(corpus_file("en/jfk.flac"), good)
    corrupt = folder / "corrupt.wav"
    header = bytearray(corpus_file("en/goforward.wav").read_bytes()[:44])
    header[20:22] = (0x99, 0x99)  # an audio format code no decoder knows
    corrupt.write_bytes(bytes(header) + os.urandom(32000))
    empty = folder / "empty.wav"
    empty.write_bytes(b"")
    notaudio = folder / "notaudio.mp3"
    notaudio.write_text("meeting notes, not audio\n", encoding="utf-8")
    return {
        "good": good,
        "corrupt": corrupt,
        "empty": empty,
        "notaudio": notaudio,
        "missing": folder / "missing.wav",
    }


def test_transcribe_bad_inputs_fail_one_by_one(tiny_model_path: Path, tmp_path: Path) -> None:
    storage = tmp_path / "storage"
    files = make_bad_inputs(tmp_path / "in")
    order = ["good", "corrupt", "empty", "notaudio", "missing"]
    result = run_cli(
        ["transcribe", "--json", *[str(files[name]) for name in order]],
        storage,
        TRANSCRIPTION_MODEL_NAME="tiny.en",
    )
    assert result.returncode == 1, result.stderr
    summary = json.loads(result.stdout)
    by_name = {Path(f["path"]).name: f for f in summary["files"]}
    assert by_name["good.flac"]["status"] == "done"
    failed = {name: by_name[f"{name}{files[name].suffix}"] for name in order[1:]}
    assert all(f["status"] == "failed" for f in failed.values())
    reasons = {name: f["reason"] for name, f in failed.items()}
    assert len(set(reasons.values())) == 4, reasons
    assert reasons["empty"] == "empty_file" and reasons["missing"] == "not_found"
    for name, entry in failed.items():
        assert files[name].name in entry["error"]
        assert "Error" not in entry["error"]  # a sentence, not an exception class
        assert files[name].name in result.stderr
    assert "4 failed" in result.stderr and "1 done" in result.stderr
    statuses = [row["status"] for row in rows(storage)]
    assert "running" not in statuses and statuses.count("failed") == 4
    results = storage / "results"
    assert sorted(p.name.split("-")[0] for p in results.iterdir()) == ["good"] * 4
    assert not [p for p in results.iterdir() if p.name.startswith(".")]


def test_transcribe_fails_a_retried_unusable_file_again_instead_of_leaving_it_queued(
    tiny_model_path: Path, tmp_path: Path
) -> None:
    """`jobs retry` requeues a failed job; giving `transcribe` the still-unusable file again
    fails that same job with its reason (exit 1), rather than reporting it queued forever."""
    storage = tmp_path / "storage"
    notaudio = make_bad_inputs(tmp_path / "in")["notaudio"]
    first = run_cli(["transcribe", str(notaudio)], storage, TRANSCRIPTION_MODEL_NAME="tiny.en")
    assert first.returncode == 1, first.stderr
    [job] = rows(storage)
    retried = run_cli(["jobs", "retry", str(job["id"])], storage)
    assert retried.returncode == 0, retried.stderr
    assert "run when that command is given the file again" in retried.stderr
    assert [row["status"] for row in rows(storage)] == ["queued"]
    twice = run_cli(["jobs", "retry", str(job["id"])], storage)
    assert twice.returncode == 1, twice.stderr  # nothing was requeued
    assert f"job {job['id']} is queued: only failed or cancelled jobs are requeued" in twice.stderr
    again = run_cli(
        ["transcribe", "--json", str(notaudio)], storage, TRANSCRIPTION_MODEL_NAME="tiny.en"
    )
    assert again.returncode == 1, again.stderr
    [entry] = json.loads(again.stdout)["files"]
    assert (entry["status"], entry["reason"]) == ("failed", job["last_error_type"])
    assert [(row["id"], row["status"]) for row in rows(storage)] == [(job["id"], "failed")]


def test_usage_mistakes_exit_2_and_name_what_the_user_typed(tmp_path: Path) -> None:
    """An unknown job id or a bad flag value is the user's mistake (exit 2), named as typed;
    neither is reported as a broken environment (exit 3)."""
    storage = tmp_path / "storage"
    for args in (["jobs", "show", "999"], ["jobs", "retry", "999"], ["jobs", "cancel", "999"]):
        result = run_cli(args, storage)
        assert result.returncode == 2, (args, result.stderr)
        assert "no job with id 999" in result.stderr and "jobs list" in result.stderr
    for args in (
        ["jobs", "list", "--limit", "-1"],
        ["drain-queue", "--max-runtime", "-5"],
        ["jobs", "retry", "3", "--all-failed"],
    ):
        result = run_cli(args, storage)
        assert result.returncode == 2, (args, result.stderr)
        assert "Invalid value" in result.stderr
    version = run_cli(["--version"], storage)
    assert version.returncode == 0 and version.stdout.startswith("jozvesaz ")
    assert run_cli(["-h"], storage).stdout == run_cli(["--help"], storage).stdout
    recording = corpus_file("en/LDC93S1.wav")
    bad_format = run_cli(["transcribe", "--format", "xyz", str(recording)], storage)
    assert bad_format.returncode == 2, bad_format.stderr
    assert "--format='xyz' is not valid" in bad_format.stderr
    assert "--formats" not in bad_format.stderr
    assert not (storage / "results").exists() or not any((storage / "results").iterdir())


def test_transcribe_two_slots_load_twice_and_match_one_slot(
    tiny_model_path: Path, tmp_path: Path
) -> None:
    names = [
        "en/goforward.wav",
        "en/LDC93S1.wav",
        "en/1272-128104-0000.flac",
        "en/sense_and_sensibility_01_austen_64kb-0890.wav",
        "en/vosk_test_10001-90210-01803.wav",
        "phone/LDC93S1_pcms16le_1_8000.wav",
    ]
    paths = [str(corpus_file(name)) for name in names]
    texts: dict[int, dict[str, str]] = {}
    for slots in (2, 1):
        storage = tmp_path / f"storage{slots}"
        result = run_cli(
            ["transcribe", "--json", "--format", "json", "-v", *paths],
            storage,
            TRANSCRIPTION_MODEL_NAME="tiny.en",
            JOZVESAZ_SLOTS=str(slots),
        )
        assert result.returncode == 0, result.stderr
        summary = json.loads(result.stdout)
        assert summary["model_loads"] == slots
        texts[slots] = {
            Path(f["path"]).name: json.loads(Path(f["outputs"][0]).read_text("utf-8"))["text"]
            for f in summary["files"]
        }
        owners = {row["lease_owner"].rsplit(":", 1)[-1] for row in rows(storage)}
        assert owners == {str(i) for i in range(slots)}
        assert "slot 0 started" in result.stderr
        if slots == 2:
            assert "slot 1 started" in result.stderr
    assert texts[2] == texts[1]


def test_transcribe_wer_equals_direct_faster_whisper(
    base_model_path: Path, tmp_path: Path, record_property: pytest.RecordProperty
) -> None:
    from faster_whisper import WhisperModel

    english = [
        r
        for r in read_manifest()
        if r["language"] == "en" and r["reference_transcript"] and r["file"].startswith("en/")
    ]
    paths = [str(corpus_file(r["file"])) for r in english]
    storage = tmp_path / "storage"
    result = run_cli(["transcribe", "--json", "--format", "json", *paths], storage)
    assert result.returncode == 0, result.stderr
    ours = {
        Path(f["path"]).name: json.loads(Path(f["outputs"][0]).read_text("utf-8"))["text"]
        for f in json.loads(result.stdout)["files"]
    }
    model = WhisperModel(str(base_model_path), device="cpu", compute_type="int8", cpu_threads=2)
    direct = {}
    for path in paths:
        segments, _ = model.transcribe(path, beam_size=5, vad_filter=True)
        direct[Path(path).name] = " ".join(s.text.strip() for s in segments)
    refs = [normalize_for_scoring(r["reference_transcript"]) for r in english]
    names = [Path(r["file"]).name for r in english]
    ours_wer = wer(refs, [normalize_for_scoring(ours[n]) for n in names])
    direct_wer = wer(refs, [normalize_for_scoring(direct[n]) for n in names])
    print(f"English corpus WER: jozvesaz {ours_wer:.4f}, faster-whisper direct {direct_wer:.4f}")
    record_property("en_wer_jozvesaz", round(ours_wer, 4))
    record_property("en_wer_direct", round(direct_wer, 4))
    assert abs(ours_wer - direct_wer) <= 0.01
