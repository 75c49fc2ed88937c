"""Course profiles: found by folder, validated, part of the job's settings and identity."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from jozvesaz_cli.errors import ConfigError
from jozvesaz_cli.intake import offer_path
from jozvesaz_cli.job_store import JobOrigin, JobStore
from jozvesaz_cli.profiles import apply_replacements, find_profile, load_profile
from jozvesaz_cli.storage import StorageLayout
from jozvesaz_cli.transcript import Segment, Transcript
from tests.fixtures_audio import make_noise_wav as make_wav

PROFILE = """
language = "fa"
glossary = ["PyTorch", "گرادیان"]
hotwords = "Adam"
formats = ["txt", "md"]
initial_prompt = "درس یادگیری ماشین"

[replacements]
"پای تورچ" = "PyTorch"
"""


def test_find_profile_nearest_folder_wins(tmp_path: Path) -> None:
    uploads = tmp_path / "uploads"
    deep = uploads / "course-a" / "week1"
    deep.mkdir(parents=True)
    (uploads / "jozvesaz.toml").write_text('language = "en"\n', encoding="utf-8")
    assert find_profile(uploads, deep) == uploads / "jozvesaz.toml"
    (uploads / "course-a" / "jozvesaz.toml").write_text(PROFILE, encoding="utf-8")
    assert find_profile(uploads, deep) == uploads / "course-a" / "jozvesaz.toml"
    assert find_profile(uploads, tmp_path) is None


def test_load_profile_maps_keys_to_settings(tmp_path: Path) -> None:
    path = tmp_path / "uploads" / "course-a" / "jozvesaz.toml"
    path.parent.mkdir(parents=True)
    path.write_text(PROFILE, encoding="utf-8")
    profile = load_profile(path, tmp_path / "uploads")
    assert profile.name.startswith("course-a/jozvesaz.toml@")
    assert profile.settings["language"] == "fa"
    assert profile.settings["hotwords"] == "Adam PyTorch گرادیان"
    assert profile.settings["formats"] == "txt,md"
    assert profile.replacements == {"پای تورچ": "PyTorch"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("langauge = 'fa'\n", "unknown key"),
        ("formats = ['txt', 'docx']\n", "unknown format"),
        ("language = 3\n", "must be a string"),
        ("language = \n", "not a valid profile"),
        ("language = 'farsi'\n", "language: farsi is not a Whisper language code"),
        ("language = 'fa,en'\n", "expected one language code"),
        ("allowed_languages = ['fa', 'xx']\n", "allowed_languages: xx is not a Whisper"),
    ],
)
def test_load_profile_rejects_mistakes(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "jozvesaz.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=message):
        load_profile(path, tmp_path)


def test_apply_replacements_whole_words_only() -> None:
    transcript = Transcript(
        "x", (Segment(0, 1, "با پای تورچ کار کنیم و پای تورچی نه"),), "fa", 1.0, 1.0, "base"
    )
    fixed = apply_replacements(transcript, {"پای تورچ": "PyTorch"})
    assert fixed.segments[0].text == "با PyTorch کار کنیم و پای تورچی نه"


def test_profile_changes_jobs_under_its_folder_only(settings_factory: Any, tmp_path: Path) -> None:
    settings = settings_factory()
    layout = StorageLayout(
        settings.resolved_storage_root, settings.uploads_dir, settings.results_dir
    )
    layout.ensure()
    store = JobStore(settings.resolved_database_url)
    course = layout.uploads / "course-a"
    course.mkdir()
    profile = course / "jozvesaz.toml"
    profile.write_text(PROFILE, encoding="utf-8")
    inside = make_wav(course / "lecture.wav", seed=1)
    outside = make_wav(layout.uploads / "lecture.wav", seed=1)  # same recording, other folder

    first = offer_path(store, settings, inside, origin=JobOrigin.QUEUE, layout=layout).job
    other = offer_path(store, settings, outside, origin=JobOrigin.QUEUE, layout=layout).job
    assert first is not None and other is not None
    assert first.settings["language"] == "fa" and first.profile
    assert other.settings["language"] is None and other.profile is None
    assert first.job_key != other.job_key

    again = offer_path(store, settings, inside, origin=JobOrigin.QUEUE, layout=layout)
    assert not again.created and again.job is not None and again.job.id == first.id

    profile.write_text(PROFILE.replace('"fa"', '"ar"'), encoding="utf-8")
    changed = offer_path(store, settings, inside, origin=JobOrigin.QUEUE, layout=layout)
    assert changed.created and changed.job is not None
    assert changed.job.id != first.id and changed.job.job_key != first.job_key
    assert changed.job.settings["language"] == "ar"
    store.close()
