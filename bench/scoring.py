"""Accuracy of a run: WER for English and other spaced scripts, CER for Persian and Arabic.

The benchmark exists to show that a speed-up is not bought with accuracy, so every tool's text is
scored against the same corpus references through the same normaliser. The normaliser removes
differences that are orthography, not recognition: case, punctuation, Persian versus Arabic
digits and letter forms (ی/ي, ک/ك, alef with hamza or madda), the zero-width non-joiner that
Persian writes inside words and Whisper often writes as a space or not at all, and the Arabic
diacritics that the references strip. Numbers are compared as written: "1234" and "one two three
four" stay different, because rewriting numbers needs a per-language number grammar and would
hide real errors.

Scores are corpus-level per language (total edits / total reference units over all files of that
language), so a 70-second file weighs more than a 3-second one, as it does for a listener. A file
that a tool failed to transcribe counts as an empty hypothesis: all deletions.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import jiwer

# Languages whose script does not mark word boundaries reliably for Whisper's output, so
# characters are the fair unit. Persian writes many words with a ZWNJ that Whisper may drop.
CER_LANGUAGES = frozenset({"fa", "ar", "zh", "ja", "th", "ko", "yue"})

_DIGITS = {ord(c): str(i) for i, c in enumerate("۰۱۲۳۴۵۶۷۸۹")} | {
    ord(c): str(i) for i, c in enumerate("٠١٢٣٤٥٦٧٨٩")
}
_LETTERS = {
    ord("ي"): "ی",  # Arabic yeh -> Persian yeh
    ord("ى"): "ی",  # alef maksura -> Persian yeh
    ord("ك"): "ک",  # Arabic kaf -> Persian keheh
    ord("أ"): "ا",  # hamza seats on alef are spelled inconsistently in MSA and by Whisper
    ord("إ"): "ا",
    ord("آ"): "ا",
    ord("ٱ"): "ا",
    ord("\u200c"): " ",  # ZWNJ -> space
    ord("\u200d"): None,  # ZWJ carries no letters
    ord("\u0640"): None,  # tatweel is only elongation
    ord("'"): None,  # "party's" and "partys" are the same word to a listener
    ord("’"): None,
}
# Arabic harakat, tanwin, shadda, sukun and the superscript alef: the references drop them.
_DIACRITICS = {cp: None for cp in range(0x064B, 0x0653)} | {0x0670: None}
_TABLE = _DIGITS | _LETTERS | _DIACRITICS


def normalize_text(text: str) -> str:
    """Return ``text`` folded to what the benchmark compares.

    Args:
        text: a reference or a hypothesis, in any of the corpus languages.

    Returns:
        Case-folded text with Persian/Arabic digits as ASCII digits, one form of yeh and kaf,
        no diacritics, punctuation and symbols replaced by spaces, and single spaces.
    """
    text = unicodedata.normalize("NFKC", text).casefold().translate(_TABLE)
    kept = [" " if unicodedata.category(ch)[0] in "PSZC" else ch for ch in text]
    return " ".join("".join(kept).split())


def metric_for(language: str) -> str:
    """Return ``"cer"`` for Persian, Arabic and other unspaced scripts, else ``"wer"``."""
    return "cer" if language.split("-")[0].lower() in CER_LANGUAGES else "wer"


@dataclass(frozen=True, slots=True)
class LanguageScore:
    """The accuracy of one tool on one language of one set.

    Attributes:
        language: the corpus language code (``en``, ``fa``, ``ar``, ``es``).
        metric: ``wer`` or ``cer``.
        value: edits / reference units over all files of the language; 0 is perfect, can exceed 1.
        files: how many files with a reference were scored.
        missing: how many of them had no transcript from the tool (scored as empty).
    """

    language: str
    metric: str
    value: float
    files: int
    missing: int


def score_language(
    language: str, references: Iterable[str], hypotheses: Iterable[str | None]
) -> LanguageScore | None:
    """Score one language's files, pairing ``references`` and ``hypotheses`` by position.

    Args:
        language: the corpus language code; picks WER or CER.
        references: reference transcripts.
        hypotheses: the tool's texts, ``None`` where the tool produced nothing.

    Returns:
        The score, or None when no reference has any text left after normalisation.
    """
    pairs = [
        (normalize_text(ref), normalize_text(hyp or ""), hyp is None)
        for ref, hyp in zip(references, hypotheses, strict=True)
    ]
    pairs = [pair for pair in pairs if pair[0]]
    if not pairs:
        return None
    refs = [ref for ref, _, _ in pairs]
    hyps = [hyp for _, hyp, _ in pairs]
    metric = metric_for(language)
    if metric == "cer":
        value = jiwer.process_characters(refs, hyps).cer
    else:
        value = jiwer.process_words(refs, hyps).wer
    missing = sum(1 for _, _, absent in pairs if absent)
    return LanguageScore(language, metric, float(value), len(pairs), missing)


def score_by_language(
    references: Mapping[str, tuple[str, str]], hypotheses: Mapping[str, str | None]
) -> dict[str, LanguageScore]:
    """Score a tool's transcripts of one set, one score per language.

    Args:
        references: file name -> (language, reference text), for the files that have one.
        hypotheses: file name -> the tool's text; absent or None when it produced none.

    Returns:
        Language code -> score, for every language with scorable references.
    """
    languages = sorted({language for language, _ in references.values()})
    scores: dict[str, LanguageScore] = {}
    for language in languages:
        names = [name for name, (lang, _) in references.items() if lang == language]
        score = score_language(
            language,
            [references[name][1] for name in names],
            [hypotheses.get(name) for name in names],
        )
        if score is not None:
            scores[language] = score
    return scores
