"""Persian normalisation on real model output: the Persian files of ``../shared/corpus``.

For every Persian recording with a reference transcript, the real ``base`` model transcribes it
(CPU, int8, language forced to ``fa``, beam 5, VAD on: jozvesaz's defaults), and the text is
scored before and after ``prepare_transcript``. The acceptance of issue 8 asks that normalised
output has no Arabic ي/ك, keeps the ZWNJ in the words the references write with it, and has a
character error rate no worse than the raw output. Because a small model's Persian is often too
garbled to contain the reference's words at all, each reference is also normalised as is (every
ZWNJ word must survive) and after being spelled the way Whisper spells (ZWNJ as a space, Arabic
ي/ك), which counts how many ZWNJ words the rules restore. The per-file figures are printed (run with
``-s`` or ``-rA``) and written to ``tests/artifacts/persian_cer.tsv`` so they can be quoted.

The model comes from the ``base_model_path`` fixture (tests/conftest.py). The corpus lives next to
the checkout; without it the test skips with the reason.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from jozvesaz_cli.persian import normalize_persian
from jozvesaz_cli.transcript import Segment, Transcript
from jozvesaz_cli.writers import RenderOptions, prepare_transcript
from tests.scoring import cer, normalize_for_scoring

pytestmark = [pytest.mark.model, pytest.mark.timeout(900)]

CORPUS = Path(__file__).resolve().parents[3] / "shared" / "corpus"
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
ZWNJ = "\u200c"
ARABIC_YEH_KAF = ("\u064a", "\u0643")


def _persian_rows() -> list[dict[str, str]]:
    manifest = CORPUS / "manifest.tsv"
    if not manifest.is_file():
        return []
    with manifest.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    return [r for r in rows if r["language"] == "fa" and r["reference_transcript"].strip()]


ROWS = _persian_rows()
PARAMS = [pytest.param(row, id=row["file"]) for row in ROWS] or [
    pytest.param(None, marks=pytest.mark.skip(reason=f"no Persian corpus at {CORPUS}"))
]


@dataclass(frozen=True)
class FileScore:
    """One recording's figures, as reported to the lead."""

    file: str
    raw_cer: float
    normalised_cer: float
    ref_zwnj_words: int
    raw_zwnj_hits: int
    normalised_zwnj_hits: int
    simulated_zwnj_restored: int

    def row(self) -> str:
        return (
            f"{self.file}\t{self.raw_cer:.4f}\t{self.normalised_cer:.4f}\t"
            f"{self.ref_zwnj_words}\t{self.raw_zwnj_hits}\t{self.normalised_zwnj_hits}\t"
            f"{self.simulated_zwnj_restored}"
        )


@pytest.fixture(scope="module")
def model(base_model_path: Path) -> Any:
    from faster_whisper import WhisperModel

    return WhisperModel(str(base_model_path), device="cpu", compute_type="int8")


@pytest.fixture(scope="module")
def scores() -> Iterator[list[FileScore]]:
    collected: list[FileScore] = []
    yield collected
    if collected:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        header = (
            "file\traw_cer\tnormalised_cer\tref_zwnj_words\traw_zwnj_hits\tnorm_zwnj_hits\t"
            "simulated_zwnj_restored"
        )
        lines = [header, *(score.row() for score in collected)]
        (ARTIFACTS / "persian_cer.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
        print("\n" + "\n".join(lines))


def _transcribe(model: Any, path: Path) -> Transcript:
    segments, info = model.transcribe(str(path), language="fa", beam_size=5, vad_filter=True)
    ours = tuple(Segment(s.start, s.end, s.text.strip()) for s in segments)
    return Transcript(path.name, ours, "fa", info.language_probability, info.duration, "base")


def _zwnj_hits(reference: str, hypothesis: str) -> tuple[int, int]:
    """How many ZWNJ words the reference has, and how many the hypothesis spells the same way."""
    wanted = [w.strip(".،؛؟!") for w in reference.split() if ZWNJ in w]
    present = {w.strip(".،؛؟!") for w in hypothesis.split()}
    return len(wanted), sum(1 for w in wanted if w in present)


@pytest.mark.parametrize("row", PARAMS)
def test_persian_normalisation_improves_real_output(
    row: dict[str, str], model: Any, scores: list[FileScore]
) -> None:
    raw = _transcribe(model, CORPUS / row["file"])
    normalised = prepare_transcript(raw, RenderOptions())
    reference = row["reference_transcript"]

    ref_scored = normalize_for_scoring(reference, "fa")
    raw_cer = cer(ref_scored, normalize_for_scoring(raw.text, "fa"))
    norm_cer = cer(ref_scored, normalize_for_scoring(normalised.text, "fa"))
    ref_words, raw_hits = _zwnj_hits(reference, raw.text)
    _, norm_hits = _zwnj_hits(reference, normalised.text)
    # The reference spelled the way Whisper spells: ZWNJ split into spaces, Arabic ي/ك.
    simulated = reference.replace(ZWNJ, " ").replace("ی", "\u064a").replace("ک", "\u0643")
    restored = normalize_persian(simulated)
    _, simulated_hits = _zwnj_hits(reference, restored)
    score = FileScore(
        row["file"], raw_cer, norm_cer, ref_words, raw_hits, norm_hits, simulated_hits
    )
    scores.append(score)
    print(f"\n{score.row()}\n  raw:  {raw.text}\n  norm: {normalised.text}\n  ref:  {reference}")

    assert not any(char in normalised.text for char in ARABIC_YEH_KAF)
    assert norm_cer <= raw_cer + 1e-9
    assert normalised.text.count(ZWNJ) >= raw.text.count(ZWNJ)
    assert norm_hits >= raw_hits
    # Correct text survives normalisation: every ZWNJ word of the reference is kept.
    assert _zwnj_hits(reference, normalize_persian(reference)) == (ref_words, ref_words)
    assert not any(char in restored for char in ARABIC_YEH_KAF)
