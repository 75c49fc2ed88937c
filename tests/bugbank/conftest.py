"""Inputs of the bug bank (``../shared/bug-bank.md``), built once per test session.

Every recipe runs at test time through ``tests/fixtures_audio.py`` (sox, ffmpeg, espeak-ng); the
folders are session-scoped so that the modules of this package share one build (about ten
seconds, the 3-hour Opus file included: it is stream-copied, not encoded).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.fixtures_audio import (
    make_c02_inputs,
    make_c04_inputs,
    make_c05_inputs,
    make_fa_speech,
    make_long_opus,
    make_speech,
    make_speech_mp3,
    run_tool,
)


@pytest.fixture(scope="session")
def bank_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder every bank input is built in."""
    return tmp_path_factory.mktemp("bank")


@pytest.fixture(scope="session")
def speech(bank_dir: Path) -> dict[str, Path]:
    """``speech.wav`` (9.96 s, 16 kHz mono) and the same speech as ``speech.mp3``."""
    return {"speech.wav": make_speech(bank_dir), "speech.mp3": make_speech_mp3(bank_dir)}


@pytest.fixture(scope="session")
def c02_inputs(bank_dir: Path) -> dict[str, Path]:
    """C02: 0-byte files of five extensions, header-only WAV and WebM, video without audio,
    a PNG named .mp3 and a text file named .wav."""
    return make_c02_inputs(bank_dir / "c02")


@pytest.fixture(scope="session")
def c04_inputs(bank_dir: Path, speech: dict[str, Path]) -> dict[str, Path]:
    """C04: silence (mono and stereo 44.1 kHz), hiss, a 90 s tone, speech then the tone."""
    folder = bank_dir / "c04"
    folder.mkdir(exist_ok=True)
    shutil.copyfile(speech["speech.wav"], folder / "speech.wav")
    return make_c04_inputs(folder)


@pytest.fixture(scope="session")
def c05_inputs(bank_dir: Path, speech: dict[str, Path]) -> dict[str, Path]:
    """C05: centre-only 5.1 (.m4a, .mkv), 8 kHz µ-law, 96 kHz 24-bit, 11.025 kHz, stereo with
    one silent channel, and the 16 kHz reference ``speech.wav``."""
    folder = bank_dir / "c05"
    folder.mkdir(exist_ok=True)
    shutil.copyfile(speech["speech.wav"], folder / "speech.wav")
    return make_c05_inputs(folder)


@pytest.fixture(scope="session")
def fa_speech(bank_dir: Path) -> Path:
    """C19: Persian espeak-ng speech saying «می‌شود» and ending in «؟» (7.5 s)."""
    return make_fa_speech(bank_dir / "c19")


@pytest.fixture(scope="session")
def long3h(bank_dir: Path) -> Path:
    """C07: a 3-hour 16 kb/s Opus file (about 20 MB), stream-copied from a short encode."""
    return make_long_opus(bank_dir / "c07", 10800)


#: C06 names, keyed by a short label. Two long names share their first 120 letters so that
#: shortening them to fit a 255-byte result name leaves the same stem for both; the last name
#: holds a Latin-1 byte that is not UTF-8 (Python shows it as a surrogate escape).
C06_NAMES = {
    "persian": "جلسه ۱ - گزارش نهایی.wav",
    "brackets": "my talk (final) [v2] 'draft'.wav",
    "leading_dash": "-rf.wav",
    "nfd": "cafe\u0301 re\u0301sume\u0301.wav",
    "long254": "ب" * 125 + ".mp3",
    "long254_twin": "ب" * 120 + "پ" * 5 + ".mp3",
    "non_utf8": os.fsdecode(b"caf\xe9 latin1.wav"),
}


@pytest.fixture(scope="session")
def c06_names(bank_dir: Path, speech: dict[str, Path]) -> dict[str, Path]:
    """C06: the bank's awkward names, each a *different* recording of the same speech.

    Each copy gets its own length of trailing silence, so each is its own job (jozvesaz keys a
    job on the recording's content; identical copies are one job by design, see
    ``test_c06_names``). The long names hold MP3 audio, as in the bank's recipe.
    """
    folder = bank_dir / "c06" / "names"
    folder.mkdir(parents=True, exist_ok=True)
    made: dict[str, Path] = {}
    for index, (key, name) in enumerate(C06_NAMES.items(), start=1):
        target = folder / name
        padded = bank_dir / "c06" / f"padded{index}.wav"
        run_tool("sox", speech["speech.wav"], padded, "pad", "0", f"{0.05 * index:.2f}")
        if name.endswith(".mp3"):
            run_tool(
                "ffmpeg", "-nostdin", "-v", "error", "-y", "-i", padded,
                "-c:a", "libmp3lame", "-b:a", "64k", target,
            )  # fmt: skip
            padded.unlink()
        else:
            padded.rename(target)
        made[key] = target
    assert len(made["long254"].name.encode("utf-8")) == 254
    return made
