"""One test per Persian normalisation rule, with the false positives each rule must avoid."""

from __future__ import annotations

import pytest

from jozvesaz_cli.persian import (
    ZWNJ,
    convert_digits,
    is_persian,
    is_rtl,
    normalize_persian,
    strip_direction_marks,
)


@pytest.mark.parametrize(
    "language", ["fa", "ar", "he", "ur", "ps", "sd", "yi", "FA", "fa-IR", "ar_EG", "az-Arab"]
)
def test_is_rtl_true_for_right_to_left_languages(language: str) -> None:
    assert is_rtl(language)


@pytest.mark.parametrize("language", ["en", "de", "tr", "", None, "az-Latn", "ku", "xx"])
def test_is_rtl_false_for_left_to_right_and_unknown(language: str | None) -> None:
    assert not is_rtl(language)


def test_is_persian_only_for_fa() -> None:
    assert is_persian("fa") and is_persian("fa-IR") and is_persian("FA")
    assert not is_persian("ar") and not is_persian("") and not is_persian(None)


def test_normalize_persian_maps_arabic_yeh_and_kaf() -> None:
    assert normalize_persian("يك كتاب") == "یک کتاب"
    assert "\u064a" not in normalize_persian("علي") and "\u0643" not in normalize_persian("كار")


def test_normalize_persian_maps_alef_maksura_to_persian_yeh() -> None:
    assert normalize_persian("مصطفى") == "مصطفی"


def test_normalize_persian_keeps_existing_zwnj() -> None:
    assert normalize_persian(f"می{ZWNJ}شود") == f"می{ZWNJ}شود"
    assert normalize_persian(f"شبکه{ZWNJ}های عمیق{ZWNJ}تر") == f"شبکه{ZWNJ}های عمیق{ZWNJ}تر"


def test_normalize_persian_joins_mi_prefix_with_zwnj() -> None:
    assert normalize_persian("این کار می شود.") == f"این کار می{ZWNJ}شود."


def test_normalize_persian_joins_nemi_prefix_with_zwnj() -> None:
    assert normalize_persian("نمی خواهم") == f"نمی{ZWNJ}خواهم"


def test_normalize_persian_repairs_zwnj_followed_by_space() -> None:
    assert normalize_persian(f"می{ZWNJ} شود") == f"می{ZWNJ}شود"


@pytest.mark.parametrize(
    "text",
    [
        "میز بزرگ",  # «میز» (table) starts with می but is one word
        "میوه و میلیون",  # likewise «میوه», «میلیون»
        "می و",  # the next word is a conjunction, not a verb
        "می ک",  # the next word has a single letter
        "جامی شود",  # «می» is not a standalone word here
        "می PyTorch",  # the next word is not in Persian script
    ],
)
def test_normalize_persian_prefix_rule_leaves_non_verbs(text: str) -> None:
    assert ZWNJ not in normalize_persian(text)


def test_normalize_persian_leaves_unspaced_prefix_alone() -> None:
    # Without a lexicon «میشود» cannot be told from «میز»; it is left as the model wrote it.
    assert normalize_persian("میشود") == "میشود"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("کتاب ها", f"کتاب{ZWNJ}ها"),
        ("سال های", f"سال{ZWNJ}های"),
        ("کتاب هایی", f"کتاب{ZWNJ}هایی"),
        ("بزرگ ترین", f"بزرگ{ZWNJ}ترین"),
        ("بزرگ تر", f"بزرگ{ZWNJ}تر"),
        ("پروژه های", f"پروژه{ZWNJ}های"),
    ],
)
def test_normalize_persian_joins_suffixes_with_zwnj(raw: str, expected: str) -> None:
    assert normalize_persian(raw) == expected


@pytest.mark.parametrize("text", ["ترنسفورمر ها", "دیوار ها", "دور تر", "امروز ها بخیدی"])
def test_normalize_persian_leaves_suffix_after_non_joining_letter(text: str) -> None:
    # A ZWNJ after ر/ز/و/د/ا is invisible, and joining solid would fuse misheard words
    # (real base-model output: «امروز ها» for «امروز هوا»).
    assert normalize_persian(text) == text


def test_normalize_persian_joins_chained_suffixes_until_a_non_joining_letter() -> None:
    assert normalize_persian("بزرگ تر ها") == f"بزرگ{ZWNJ}تر ها"
    assert normalize_persian("کوچک ترین ها") == f"کوچک{ZWNJ}ترین{ZWNJ}ها"


@pytest.mark.parametrize(
    "text",
    [
        "به تر",  # a preposition never takes a suffix
        "از ها",
        "و ها",  # a one-letter word
        "PyTorch ها",  # not Persian script
        "کتاب هادی",  # «هادی» is a name, not the suffix
        "کار ترکیبی",  # «ترکیبی» starts with تر but is a word
    ],
)
def test_normalize_persian_suffix_rule_leaves_non_suffixes(text: str) -> None:
    assert normalize_persian(text) == text


def test_normalize_persian_keeps_persian_punctuation() -> None:
    text = "چرا؟ اول، دوم؛ سوم."
    assert normalize_persian(text) == text


def test_normalize_persian_collapses_doubled_spaces_but_keeps_leading_space() -> None:
    assert normalize_persian("این   دو  کلمه") == "این دو کلمه"
    assert normalize_persian(" شود") == " شود"  # a Whisper word token keeps its leading space


def test_normalize_persian_removes_direction_marks() -> None:
    assert normalize_persian("\u200fسلام\u200e \u202bدنیا\u202c") == "سلام دنیا"


def test_normalize_persian_is_idempotent() -> None:
    raw = "مي خواهم كتاب ها را بخوانم.  سال 1398 بزرگ تر ها"
    once = normalize_persian(raw, "persian")
    assert normalize_persian(once, "persian") == once


def test_normalize_persian_keeps_logical_order_and_no_presentation_forms() -> None:
    result = normalize_persian("سلام دنيا")
    assert result == "سلام دنیا"
    assert not any(0xFB50 <= ord(c) <= 0xFEFF for c in result)


def test_convert_digits_persian_maps_latin_and_arabic_indic() -> None:
    assert convert_digits("سال 1398 و ٢٠", "persian") == "سال ۱۳۹۸ و ۲۰"


def test_convert_digits_persian_leaves_digits_inside_latin_tokens() -> None:
    assert convert_digits("فایل mp3 و H2O و 5", "persian") == "فایل mp3 و H2O و ۵"


def test_convert_digits_latin_maps_persian_and_arabic_indic() -> None:
    assert convert_digits("۱۴۰۲ و ٣", "latin") == "1402 و 3"


def test_convert_digits_keep_changes_nothing() -> None:
    assert convert_digits("۱۴۰۲ و 3 و ٣", "keep") == "۱۴۰۲ و 3 و ٣"


def test_normalize_persian_applies_digit_setting() -> None:
    assert normalize_persian("سال 1398", "persian") == "سال ۱۳۹۸"
    assert normalize_persian("سال ۱۳۹۸", "latin") == "سال 1398"


def test_convert_digits_rejects_unknown_mode() -> None:
    with pytest.raises(ValueError, match="digits must be one of"):
        convert_digits("1", "roman")


def test_strip_direction_marks_keeps_zwnj_and_zwj() -> None:
    assert strip_direction_marks(f"\u200fمی{ZWNJ}شود\u200d\u2067x\u2069") == f"می{ZWNJ}شود\u200dx"
