"""Bug bank C06: awkward file names, under a UTF-8 locale and under ``LC_ALL=C``.

whisper-asr-webservice #91 transcribed a Persian-named file and then failed to deliver the
result through a Latin-1-only channel. Here the channels are result file names, job rows, log
lines and stdout. The names (Persian, spaces/brackets/quotes, ``-rf.wav`` after ``--``,
decomposed accents, two 254-byte names sharing their first 120 letters, a Latin-1 byte) go
through the real CLI as ``cd names && jozvesaz transcribe -v -- *`` would pass them, once per
locale. Each name holds a different recording (see ``c06_names``), so each is its own job.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest

from tests.bugbank.bank import CliRun, base_env, job_rows, outputs_of, run_cli
from tests.bugbank.conftest import C06_NAMES

pytestmark = [pytest.mark.model, pytest.mark.slow]

C_LOCALE = {"LC_ALL": "C", "LANG": "C", "PYTHONCOERCECLOCALE": "0", "PYTHONUTF8": "0"}
LOCALES = {"utf8": {"LANG": "C.UTF-8"}, "c": C_LOCALE}
#: The stem each result file must start with (a leading "-" becomes "_"; NFD stays NFD).
EXPECTED_STEMS = {
    "persian": "جلسه ۱ - گزارش نهایی",
    "brackets": "my talk (final) [v2] 'draft'",
    "leading_dash": "_rf",
    "nfd": "cafe\u0301 re\u0301sume\u0301",
}
MOJIBAKE = ("Ø", "Ù", "Ã", "Û", "\ufffd", "\\udc")
FORMATS = (".txt", ".srt", ".vtt", ".json")


def _filesystem_encoding(env: dict[str, str]) -> str:
    probe = [sys.executable, "-c", "import sys; print(sys.getfilesystemencoding())"]
    return subprocess.run(probe, env=env, capture_output=True, text=True, check=True).stdout


@pytest.fixture(scope="module", params=sorted(LOCALES))
def names_run(
    request: pytest.FixtureRequest,
    tiny_model_path: Path,
    c06_names: dict[str, Path],
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[str, Path, CliRun]:
    locale: str = request.param
    storage = tmp_path_factory.mktemp(f"c06{locale}") / "storage"
    env = {"TRANSCRIPTION_MODEL_NAME": "tiny.en", **LOCALES[locale]}
    if locale == "c" and _filesystem_encoding(base_env(storage, **env)).strip() != "ascii":
        pytest.skip("this Python does not fall back to an ASCII file-system encoding under C")
    folder = c06_names["persian"].parent
    names = sorted(os.listdir(folder))
    run = run_cli(["transcribe", "-v", "--", *names], storage, cwd=folder, **env)
    return locale, storage, run


def _results(storage: Path) -> list[str]:
    return sorted(os.listdir(storage / "results"))


def test_c06_every_awkward_name_is_done_with_results_named_from_its_stem(
    names_run: tuple[str, Path, CliRun],
) -> None:
    """C06: all seven inputs are done, exit 0, under both locales. Result names come from the
    input's stem plus an 8-hex key: Persian stays Persian, spaces, brackets and quotes are
    kept, the leading dash becomes "_" (never an option), the NFD stem keeps its NFD bytes;
    each 254-byte name is shortened to fit 255 bytes with no "File name too long", and the two
    long names that share a prefix get different results.

    Before the fix, under LC_ALL=C the Persian, NFD and long names failed with
    "internal error (UnicodeEncodeError ...)" while their results were written."""
    locale, storage, run = names_run
    assert run.returncode == 0, run.stderr
    assert "File name too long" not in run.stderr and "Traceback" not in run.stderr
    assert "7 done" in run.stderr
    results = _results(storage)
    assert len(results) == 7 * len(FORMATS), results
    assert not [name for name in results if name.startswith(".")]
    for key, stem in EXPECTED_STEMS.items():
        pattern = re.escape(stem) + r"-[0-9a-f]{8}\.(txt|srt|vtt|json)"
        matching = [name for name in results if re.fullmatch(pattern, name)]
        assert len(matching) == len(FORMATS), (locale, key, results)
    long_results = {name for name in results if name.startswith("ب" * 100)}
    assert len(long_results) == 2 * len(FORMATS), long_results
    for name in long_results:
        assert len(name.encode("utf-8")) <= 255
        assert len(name.rsplit("-", 1)[0]) < 125  # shortened, at a character boundary
    assert len({name.rsplit("-", 1)[1] for name in long_results}) == 2 * len(FORMATS)


def test_c06_job_rows_and_output_show_every_name_as_it_is_on_disk(
    names_run: tuple[str, Path, CliRun],
) -> None:
    """C06: each job row stores the name exactly as on disk (the NFD form for the decomposed
    name, not a normalised one), done, with its outputs recorded; stdout prints every result
    path in real UTF-8 and the -v log names every input, with no surrogate escapes ("\\udc"),
    no U+FFFD and no mojibake, whatever the locale."""
    locale, storage, run = names_run
    rows = {Path(row["source_path"]).name: row for row in job_rows(storage)}
    on_disk = dict(C06_NAMES)
    on_disk["non_utf8"] = "caf\\xe9 latin1.wav"  # a byte that is not UTF-8, shown escaped
    assert set(rows) == set(on_disk.values()), sorted(rows)
    nfd_row = rows[C06_NAMES["nfd"]]
    assert unicodedata.is_normalized("NFD", nfd_row["source_path"])
    assert not unicodedata.is_normalized("NFC", nfd_row["source_path"])
    for name, row in rows.items():
        assert row["status"] == "done", (locale, name, row["last_error"])
        assert all(path.is_file() for path in outputs_of(row))
    printed = run.stdout.splitlines()
    assert len(printed) == 7 * len(FORMATS)
    assert all(Path(line).is_file() for line in printed), printed
    for stem in EXPECTED_STEMS.values():
        assert any(Path(line).name.startswith(stem + "-") for line in printed), stem
    for text in (run.stdout, run.stderr):
        assert not any(bad in text for bad in MOJIBAKE), (locale, text)
    for key in ("persian", "brackets", "leading_dash", "nfd", "long254"):
        assert C06_NAMES[key] in run.stderr, (locale, key)


def test_c06_result_names_are_the_same_under_every_locale(
    tiny_model_path: Path,
    c06_names: dict[str, Path],
    tmp_path: Path,
) -> None:
    """C06: the shortened long name (and every other result name) is derived deterministically:
    a second run in a fresh storage under the C locale names its results exactly as a run
    under UTF-8 does, byte for byte."""
    names: dict[str, list[str]] = {}
    long_input = c06_names["long254"]
    for locale, env in LOCALES.items():
        storage = tmp_path / locale / "storage"
        run = run_cli(
            ["transcribe", "--format", "txt", "--", long_input.name],
            storage,
            cwd=long_input.parent,
            TRANSCRIPTION_MODEL_NAME="tiny.en",
            **env,
        )
        assert run.returncode == 0, run.stderr
        names[locale] = [os.fsencode(name).hex() for name in _results(storage)]
    assert names["utf8"] == names["c"] and len(names["c"]) == 1


def test_c06_same_recording_under_two_names_is_reported_for_both(
    tiny_model_path: Path,
    speech: dict[str, Path],
    tmp_path: Path,
) -> None:
    """C06 (and acceptance 2: every input is accounted for): the same recording under two names
    in one batch is one job by design (identity is the content), but *both* inputs appear in
    the summary: one done, the other "skipped" naming the first. Before the fix the second
    name silently vanished from the summary ("1 done" for two inputs)."""
    folder = tmp_path / "in"
    folder.mkdir()
    first = folder / "جلسه.wav"
    second = folder / "-copy of جلسه.wav"
    shutil.copyfile(speech["speech.wav"], first)
    shutil.copyfile(speech["speech.wav"], second)
    storage = tmp_path / "storage"
    run = run_cli(
        ["transcribe", "--json", "--", first.name, second.name],
        storage,
        cwd=folder,
        TRANSCRIPTION_MODEL_NAME="tiny.en",
    )
    assert run.returncode == 0, run.stderr
    entries = run.by_name()
    assert set(entries) == {first.name, second.name}
    assert entries[first.name]["status"] == "done"
    assert entries[second.name]["status"] == "skipped"
    assert first.name in entries[second.name]["error"]
    assert entries[second.name]["outputs"] == entries[first.name]["outputs"]
    assert len(job_rows(storage)) == 1
