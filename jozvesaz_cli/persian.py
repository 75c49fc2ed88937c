"""Right-to-left language helpers and Persian text normalisation.

This is the only module that knows which languages are written right to left and how Persian text
should be spelled; writers and notes ask it instead of keeping their own lists.

Whisper writes Persian with the letter forms of Arabic (ي U+064A, ك U+0643), splits words that
Persian joins with a zero-width non-joiner (ZWNJ, U+200C) -- «می شود» instead of «می‌شود»,
«کتاب ها» instead of «کتاب‌ها» -- and mixes digit systems. ``normalize_persian`` repairs exactly
those, and nothing that needs a dictionary or a grammar:

* Letters: ي and ى become ی (U+06CC), ك becomes ک (U+06A9). Arabic text (``ar``) must never be
  passed here; callers decide by language.
* Prefixes: a standalone «می» or «نمی» followed by a space (or ZWNJ and space) and a Persian word
  of at least two letters that is not a common function word is joined to it with a ZWNJ. A word
  that the model wrote without any separator («میشود») is left alone: telling the verb prefix from
  «میز», «میوه» or «میلیون» needs a lexicon.
* Suffixes: «ها», «های», «هایی», «ترین», «تر» standing alone after a Persian word of at least two
  letters (not a preposition or conjunction such as «به», «از») are joined to it with a ZWNJ
  («کتاب ها» → «کتاب‌ها»), but only when the word's last letter joins to the next letter, which
  is where the ZWNJ changes what the reader sees. After a letter that never joins leftwards
  (ا آ د ذ ر ز ژ و ...) the pair is left as it is: a ZWNJ there would be invisible, and writing
  the suffix solid would be a guess that fuses real words when the model heard wrong (on the
  corpus, «هوا» misheard as «ها» after «امروز» would become «امروزها»). Known false positive,
  kept because it is rare in speech: «تر» meaning "wet" after a noun («لباس تر») becomes a
  comparative; likewise a poetic «می» meaning "wine" before a noun.
* ZWNJ already present is kept; runs of ZWNJ collapse to one and a ZWNJ next to a space (which
  can never be inside a word) is dropped.
* Persian punctuation (؟ ، ؛) is kept as it is.
* Digits follow a setting: ``keep``, ``persian`` (0-9 and Arabic-Indic ٠-٩ become ۰-۹, except
  digits inside a Latin token such as ``mp3``) or ``latin`` (۰-۹ and ٠-٩ become 0-9).
* Direction marks (RLM, LRM, embeddings, isolates) are removed: direction is the business of the
  subtitle writers, and text stored or shown elsewhere must not carry them.
* Runs of spaces collapse to one. Leading and trailing spaces are kept, because Whisper's word
  tokens carry a meaningful leading space.

The function is idempotent, so normalising twice is harmless.
"""

from __future__ import annotations

import re

__all__ = [
    "DIGIT_MODES",
    "RTL_LANGUAGES",
    "ZWNJ",
    "convert_digits",
    "is_persian",
    "is_rtl",
    "normalize_persian",
    "strip_direction_marks",
]

ZWNJ = "\u200c"

#: Values accepted by ``convert_digits`` and ``normalize_persian(digits=...)``.
DIGIT_MODES = ("keep", "persian", "latin")

#: Primary language subtags of languages written right to left (Whisper's codes, plus a few
#: common ones it lacks, so that a forced or profile language works too).
RTL_LANGUAGES = frozenset(
    {"ar", "arc", "ckb", "dv", "fa", "he", "iw", "ks", "ps", "sd", "syr", "ug", "ur", "yi"}
)
_RTL_SCRIPTS = frozenset({"arab", "hebr", "syrc", "thaa", "nkoo", "adlm", "rohg"})
_LTR_SCRIPTS = frozenset({"latn", "cyrl", "grek", "deva"})

# Arabic-script letters (not digits, not punctuation) and the combining marks that sit on them.
_LETTER = "\u0621-\u063a\u0641-\u064a\u066e\u066f\u0671-\u06d3\u06d5\u06ee\u06ef\u06fa-\u06fc\u06ff"
_MARK = "\u064b-\u065f\u0670\u06d6-\u06dc\u06df-\u06e4\u06e7\u06e8\u06ea-\u06ed"
_WORD_CHAR = f"{_LETTER}{_MARK}{ZWNJ}"

#: Letters that never join to the following letter; a ZWNJ after them is invisible.
_NON_JOINING = frozenset("اآأإٱدذرزژوؤۀةءڈڑ")

_LETTER_MAP = str.maketrans({"\u064a": "\u06cc", "\u0649": "\u06cc", "\u0643": "\u06a9"})

_DIRECTION_MARKS_RE = re.compile("[\u200e\u200f\u061c\u202a-\u202e\u2066-\u2069]")

# Words that follow «می» but are not verbs, and words that never take «ها»/«تر» as a suffix.
_NOT_A_VERB = frozenset(
    {"و", "که", "از", "به", "در", "را", "با", "تا", "این", "آن", "یک", "یا", "هم", "اما", "ولی"}
)
_NOT_A_STEM = frozenset(
    {
        "به",
        "از",
        "در",
        "که",
        "را",
        "با",
        "تا",
        "یا",
        "اگر",
        "چون",
        "برای",
        "هم",
        "نه",
        "بر",
        "پس",
        "اما",
        "ولی",
        "می",
        "نمی",
    }
)

_PREFIX_RE = re.compile(rf"(?<![{_WORD_CHAR}])(ن?می){ZWNJ}?[ ]+(?=(?P<next>[{_WORD_CHAR}]+))")
_SUFFIX_RE = re.compile(
    rf"(?<![{_WORD_CHAR}])(?P<stem>[{_WORD_CHAR}]+){ZWNJ}?[ ]+"
    rf"(?P<suffix>هایی|های|ها|ترین|تر)(?![{_WORD_CHAR}])"
)
_ZWNJ_RUN_RE = re.compile(f"{ZWNJ}{{2,}}")
_ZWNJ_BY_SPACE_RE = re.compile(f"{ZWNJ}+(?= )|(?<= ){ZWNJ}+")
_SPACES_RE = re.compile("[ \t]{2,}")
_LETTER_RE = re.compile(f"[{_LETTER}]")

_TO_PERSIAN_DIGITS = str.maketrans("0123456789٠١٢٣٤٥٦٧٨٩", "۰۱۲۳۴۵۶۷۸۹" * 2)
_TO_LATIN_DIGITS = str.maketrans("۰۱۲۳۴۵۶۷۸۹٠١٢٣٤٥٦٧٨٩", "0123456789" * 2)
# A run of digits that is not glued to an ASCII letter (``mp3``, ``H2O`` stay as they are).
_DIGIT_RUN_RE = re.compile(r"(?<![A-Za-z])[0-9٠-٩]+(?![A-Za-z])")


def is_rtl(language: str | None) -> bool:
    """Whether text in this language is written right to left.

    Args:
        language: a language code as Whisper reports it (``fa``), or a BCP 47 tag (``fa-IR``,
            ``az-Arab``); case does not matter. None or empty means unknown.

    Returns:
        True for Arabic, Persian, Hebrew, Urdu, Pashto, Sindhi, Yiddish and the like, or for any
        tag with a right-to-left script subtag; False otherwise, including for unknown languages.
    """
    if not language:
        return False
    parts = re.split(r"[-_]", language.strip().lower())
    scripts = {part for part in parts[1:] if len(part) == 4}
    if scripts & _RTL_SCRIPTS:
        return True
    if scripts & _LTR_SCRIPTS:
        return False
    return parts[0] in RTL_LANGUAGES


def is_persian(language: str | None) -> bool:
    """Whether the language code names Persian (``fa``, ``fa-IR``, ``FA``).

    This decides where ``normalize_persian`` applies. Whisper has no separate codes for Dari or
    Tajik, and Arabic (``ar``) must keep its own letter forms, so only ``fa`` counts.
    """
    if not language:
        return False
    return re.split(r"[-_]", language.strip().lower())[0] == "fa"


def strip_direction_marks(text: str) -> str:
    """Remove bidirectional control characters (LRM, RLM, ALM, embeddings, isolates).

    ZWNJ and ZWJ are not direction marks and are kept.
    """
    return _DIRECTION_MARKS_RE.sub("", text)


def convert_digits(text: str, digits: str = "keep") -> str:
    """Write the digits of Persian text in one system.

    Args:
        text: any text.
        digits: ``keep`` leaves digits alone; ``persian`` maps 0-9 and Arabic-Indic ٠-٩ to ۰-۹
            (digits glued to a Latin letter, as in ``mp3``, are left); ``latin`` maps ۰-۹ and
            ٠-٩ to 0-9.

    Raises:
        ValueError: ``digits`` is not one of ``DIGIT_MODES``.
    """
    if digits == "keep":
        return text
    if digits == "latin":
        return text.translate(_TO_LATIN_DIGITS)
    if digits == "persian":
        return _DIGIT_RUN_RE.sub(lambda m: m.group(0).translate(_TO_PERSIAN_DIGITS), text)
    raise ValueError(f"digits must be one of {', '.join(DIGIT_MODES)}, not {digits!r}")


def normalize_persian(text: str, digits: str = "keep") -> str:
    """Repair Persian spelling in Whisper output; see the module docstring for the exact rules.

    Args:
        text: Persian text (a segment, or one word token with its leading space).
        digits: ``keep``, ``persian`` or ``latin``; see ``convert_digits``.

    Returns:
        The normalised text, in logical order. Applying the function again changes nothing.

    Raises:
        ValueError: ``digits`` is not one of ``DIGIT_MODES``.
    """
    text = strip_direction_marks(text).translate(_LETTER_MAP)
    text = _join_prefixes(text)
    text = _join_suffixes(text)
    text = _ZWNJ_RUN_RE.sub(ZWNJ, text)
    text = _ZWNJ_BY_SPACE_RE.sub("", text)
    text = _SPACES_RE.sub(" ", text)
    return convert_digits(text, digits)


def _letter_count(word: str) -> int:
    return len(_LETTER_RE.findall(word))


def _join_prefixes(text: str) -> str:
    """«می شود» → «می‌شود»: join a standalone verb prefix to the verb that follows it."""

    def join(match: re.Match[str]) -> str:
        following = match.group("next")
        if _letter_count(following) < 2 or following in _NOT_A_VERB:
            return match.group(0)
        return match.group(1) + ZWNJ

    return _PREFIX_RE.sub(join, text)


def _join_suffixes(text: str) -> str:
    """«کتاب ها» → «کتاب‌ها»; repeated so that «بزرگ تر ها» becomes «بزرگ‌تر ها» then stops."""

    def join(match: re.Match[str]) -> str:
        stem, suffix = match.group("stem").rstrip(ZWNJ), match.group("suffix")
        if _letter_count(stem) < 2 or stem in _NOT_A_STEM:
            return match.group(0)
        if _LETTER_RE.findall(stem)[-1] in _NON_JOINING:
            return match.group(0)
        return stem + ZWNJ + suffix

    for _ in range(3):
        joined = _SUFFIX_RE.sub(join, text)
        if joined == text:
            break
        text = joined
    return text
