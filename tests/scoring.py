"""Accuracy scoring for tests and benchmarks: a text normaliser, character and word error rates.

The normaliser removes differences a reader would not call errors, so that an error rate measures
recognition, not spelling conventions: case, punctuation (Latin and Arabic-script), the digit
system (Persian ۰-۹ and Arabic-Indic ٠-٩ count as 0-9), Arabic-script diacritics and tatweel,
compatibility forms (NFKC), and the ZWNJ, which counts as a space, so «می‌شود», «می شود» score
alike. It deliberately does *not* unify Arabic ي/ك with Persian ی/ک: those are different letters
to a Persian reader, and the Persian normaliser's job is to fix them, which the scores must show.
"""

from __future__ import annotations

import re
import unicodedata

import jiwer

__all__ = ["cer", "normalize_for_scoring", "wer"]

_DIGITS = str.maketrans("۰۱۲۳۴۵۶۷۸۹٠١٢٣٤٥٦٧٨٩", "0123456789" * 2)
_ARABIC_DIACRITICS_RE = re.compile("[\u064b-\u065f\u0670\u0640\u06d6-\u06ed]")
_INVISIBLE_RE = re.compile("[\u200b\u200e\u200f\u061c\u202a-\u202e\u2066-\u2069\ufeff]")
_APOSTROPHES_RE = re.compile("['’ʼ`]")
_WHITESPACE_RE = re.compile(r"\s+")


def normalize_for_scoring(text: str, language: str | None = None) -> str:
    """Reduce a transcript to what an error rate should compare.

    Args:
        text: a reference or a hypothesis.
        language: the language code; the rules are the same for every language today, and the
            argument keeps call sites honest if a language-specific rule is added.

    Returns:
        Case-folded text with punctuation removed, digits unified, ZWNJ as a space, and single
        spaces between words.
    """
    del language
    text = unicodedata.normalize("NFKC", text).casefold()
    text = _INVISIBLE_RE.sub("", text)
    text = text.replace("\u200c", " ").replace("\u200d", "")
    text = _ARABIC_DIACRITICS_RE.sub("", text).translate(_DIGITS)
    text = _APOSTROPHES_RE.sub("", text)
    text = "".join(" " if unicodedata.category(c).startswith("P") else c for c in text)
    return _WHITESPACE_RE.sub(" ", text).strip()


def cer(reference: str, hypothesis: str) -> float:
    """Character error rate of ``hypothesis`` against ``reference`` (both already normalised).

    An empty reference scores 0 against an empty hypothesis and 1 against anything else.
    """
    if not reference:
        return 0.0 if not hypothesis else 1.0
    return float(jiwer.cer(reference, hypothesis))


def wer(reference: str, hypothesis: str) -> float:
    """Word error rate of ``hypothesis`` against ``reference`` (both already normalised).

    An empty reference scores 0 against an empty hypothesis and 1 against anything else.
    """
    if not reference:
        return 0.0 if not hypothesis else 1.0
    return float(jiwer.wer(reference, hypothesis))
