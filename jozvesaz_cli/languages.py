"""The language codes Whisper models know, checked where settings are read.

Kept here rather than imported from faster-whisper so that validating settings does not load
the inference stack (``jozvesaz --help`` and ``jobs list`` stay light); a test keeps the two
lists equal.
"""

from __future__ import annotations

#: Whisper's language codes, in faster-whisper's order.
WHISPER_LANGUAGES = (
    "af", "am", "ar", "as", "az", "ba", "be", "bg", "bn", "bo", "br", "bs", "ca", "cs", "cy",
    "da", "de", "el", "en", "es", "et", "eu", "fa", "fi", "fo", "fr", "gl", "gu", "ha", "haw",
    "he", "hi", "hr", "ht", "hu", "hy", "id", "is", "it", "ja", "jw", "ka", "kk", "km", "kn",
    "ko", "la", "lb", "ln", "lo", "lt", "lv", "mg", "mi", "mk", "ml", "mn", "mr", "ms", "mt",
    "my", "ne", "nl", "nn", "no", "oc", "pa", "pl", "ps", "pt", "ro", "ru", "sa", "sd", "si",
    "sk", "sl", "sn", "so", "sq", "sr", "su", "sv", "sw", "ta", "te", "tg", "th", "tk", "tl",
    "tr", "tt", "uk", "ur", "uz", "vi", "yi", "yo", "zh", "yue",
)  # fmt: skip


def normalize_codes(text: str) -> list[str]:
    """Split a comma list of language codes, lower-cased, in order, without repeats.

    Raises:
        ValueError: a code is not one of Whisper's; the message lists the valid codes.
    """
    codes = list(dict.fromkeys(part.strip().lower() for part in text.split(",") if part.strip()))
    unknown = [code for code in codes if code not in WHISPER_LANGUAGES]
    if unknown:
        raise ValueError(
            f"{', '.join(unknown)} {'is' if len(unknown) == 1 else 'are'} not a Whisper language "
            f"code; expected codes such as en, fa, ar, es (all: {', '.join(WHISPER_LANGUAGES)})"
        )
    return codes


def normalize_code(text: str) -> str:
    """Exactly one language code (``language``), lower-cased.

    Raises:
        ValueError: not one of Whisper's codes, or several of them.
    """
    codes = normalize_codes(text)
    if len(codes) != 1:
        raise ValueError("expected one language code (allowed_languages takes several)")
    return codes[0]
