"""Course profiles and the language guard with the real `base` model (issue 8, acceptance 4)."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from tests.conftest import corpus_file
from tests.e2e.test_transcribe_cli import run_cli

pytestmark = [pytest.mark.model, pytest.mark.slow]


def test_profile_in_course_folder_applies_to_its_files_only(
    base_model_path: Path, tmp_path: Path
) -> None:
    storage = tmp_path / "storage"
    course = storage / "uploads" / "course-a"
    course.mkdir(parents=True)
    (course / "jozvesaz.toml").write_text(
        'language = "fa"\nglossary = ["پیاده‌روی"]\nformats = ["txt", "md"]\n'
        '[replacements]\n"خوبه" = "خوب است"\n',
        encoding="utf-8",
    )
    shutil.copy(corpus_file("fa/Ardalan01.mp3"), course / "Ardalan01.mp3")
    shutil.copy(corpus_file("en/goforward.wav"), storage / "uploads" / "goforward.wav")
    result = run_cli(["drain-queue"], storage, JOZVESAZ_SETTLE_S="0")
    assert result.returncode == 0, result.stderr
    with sqlite3.connect(storage / "jozvesaz.sqlite3") as db:
        db.row_factory = sqlite3.Row
        rows = {row["source_path"]: dict(row) for row in db.execute("SELECT * FROM jobs")}
    persian, english = rows["course-a/Ardalan01.mp3"], rows["goforward.wav"]
    assert persian["status"] == english["status"] == "done"
    assert persian["language"] == "fa" and persian["profile"].startswith("course-a/jozvesaz.toml@")
    assert json.loads(persian["settings_json"])["hotwords"] == "پیاده‌روی"
    assert english["profile"] is None and english["language"] == "en"
    persian_outputs = json.loads(persian["outputs"])
    assert sorted(Path(p).suffix for p in persian_outputs) == [".md", ".txt"]
    assert all(Path(p).parent == storage / "results" / "course-a" for p in persian_outputs)
    assert sorted(Path(p).suffix for p in json.loads(english["outputs"])) == [
        ".json",
        ".srt",
        ".txt",
        ".vtt",
    ]
    text = Path(next(p for p in persian_outputs if p.endswith(".txt"))).read_text("utf-8")
    assert "خوبه" not in text  # the profile's replacement dictionary applied
    notes = Path(next(p for p in persian_outputs if p.endswith(".md"))).read_text("utf-8")
    recorded = dt.datetime.fromtimestamp(
        (course / "Ardalan01.mp3").stat().st_mtime, tz=dt.timezone.utc
    ).date()
    # The header names the file (not its folder) and the recording's day.
    assert notes.startswith("# Ardalan01.mp3\n"), notes[:80]
    assert f"- **تاریخ:** {recorded.isoformat()}" in notes, notes[:300]


def test_language_guard_keeps_detection_inside_the_allowed_set(
    base_model_path: Path, tmp_path: Path
) -> None:
    storage = tmp_path / "storage"
    spanish = corpus_file("other/es_capitan_veneno.mp3")
    result = run_cli(
        ["transcribe", "--json", "--format", "json", "--allowed-languages", "fa,en", str(spanish)],
        storage,
    )
    assert result.returncode == 0, result.stderr
    [entry] = json.loads(result.stdout)["files"]
    assert entry["language"] in ("fa", "en")
    assert any("language guard: detected es" in w for w in entry["warnings"])
    data = json.loads(Path(entry["outputs"][0]).read_text("utf-8"))
    assert data["language"] == entry["language"]
