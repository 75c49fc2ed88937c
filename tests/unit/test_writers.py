"""Writers: golden files, subtitle rules, right-to-left marks, names and atomic writes."""

from __future__ import annotations

import itertools
import json
import os
import re
import unicodedata
from pathlib import Path

import pytest

from jozvesaz_cli.transcript import Segment, Transcript, Word
from jozvesaz_cli.writers import (
    OutputFormat,
    RenderOptions,
    StagedFile,
    commit_staged,
    discard_staged,
    is_temp_output,
    prepare_transcript,
    render,
    result_base_name,
    stage_outputs,
    write_outputs,
)
from tests.data.golden.cases import (
    CASES,
    GOLDEN_OPTIONS,
    english_lecture,
    golden_path,
    persian_lecture,
)

OPTS = RenderOptions()
DIRECTION_MARKS = re.compile("[\u200e\u200f\u061c\u202a-\u202e\u2066-\u2069]")
SRT_TIMING = re.compile(r"^(\d{2,}):[0-5]\d:[0-5]\d,\d{3} --> (\d{2,}):[0-5]\d:[0-5]\d,\d{3}$")


def _transcript(segments: tuple[Segment, ...], language: str = "en") -> Transcript:
    return Transcript(
        source_name="talk.mp3",
        segments=segments,
        language=language,
        language_probability=0.9,
        duration_s=100.0,
        model="base",
    )


def paragraph_direction(line: str, default: str = "ltr") -> str:
    """The direction a renderer lays out one subtitle line in, by the Unicode bidi rules.

    P2/P3: the first strong character (bidi class L, R or AL) decides, skipping text inside
    isolates (LRI/RLI/FSI ... PDI). Explicit embeddings and overrides (RLE/RLO, LRE/LRO) are not
    strong characters, so strict P2 skips them, but everything after them is laid out at the
    embedding's level (X2-X5); for a line wrapped in RLE…PDF that is right to left, so the helper
    reports the embedding's direction, which is what a reader sees. No strong character at all
    leaves the renderer's default.
    """
    isolates = 0
    for char in line:
        bidi = unicodedata.bidirectional(char)
        if bidi in ("LRI", "RLI", "FSI"):
            isolates += 1
        elif bidi == "PDI":
            isolates = max(0, isolates - 1)
        elif isolates:
            continue
        elif bidi in ("RLE", "RLO", "R", "AL"):
            return "rtl"
        elif bidi in ("LRE", "LRO", "L"):
            return "ltr"
    return default


def _cue_lines(subtitles: str) -> list[str]:
    """The text lines of every cue in an SRT or VTT file."""
    lines = []
    for block in subtitles.split("\n\n"):
        rows = block.strip("\n").split("\n")
        if "-->" in rows[0]:
            lines += rows[1:]
        elif len(rows) > 1 and "-->" in rows[1]:
            lines += rows[2:]
    return lines


def _cues(srt: str) -> list[tuple[int, str, list[str]]]:
    cues = []
    for block in srt.strip("\n").split("\n\n"):
        rows = block.split("\n")
        cues.append((int(rows[0]), rows[1], rows[2:]))
    return cues


# -- the bidi helper itself -----------------------------------------------------------------------


def test_paragraph_direction_helper_follows_first_strong_character() -> None:
    assert paragraph_direction("PyTorch یکی از کتابخانه‌هاست.") == "ltr"
    assert paragraph_direction("۱۳۹۸ سالی بود") == "rtl"
    assert paragraph_direction("1398 سالی بود") == "rtl"
    assert paragraph_direction("123 ...", default="ltr") == "ltr"
    assert paragraph_direction("\u200fPyTorch است") == "rtl"
    assert paragraph_direction("\u202bPyTorch است\u202c") == "rtl"
    assert paragraph_direction("\u2067PyTorch\u2069 است") == "rtl"  # isolate skipped


# -- golden files ---------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", list(OutputFormat), ids=lambda f: f.value)
@pytest.mark.parametrize("case", list(CASES))
def test_write_outputs_matches_golden_file(case: str, fmt: OutputFormat, tmp_path: Path) -> None:
    transcript = prepare_transcript(CASES[case](), GOLDEN_OPTIONS)
    [written] = write_outputs(transcript, [fmt], tmp_path, "out", GOLDEN_OPTIONS)
    expected = golden_path(case, fmt).read_bytes()
    assert written.read_bytes() == expected, (
        f"{written.name} differs from {golden_path(case, fmt)}; if the change is intended, run "
        "`.venv/bin/python tests/data/golden/regenerate.py` and review the diff"
    )


@pytest.mark.parametrize("fmt", list(OutputFormat), ids=lambda f: f.value)
@pytest.mark.parametrize("case", list(CASES))
def test_golden_files_are_utf8_without_bom_with_lf(case: str, fmt: OutputFormat) -> None:
    data = golden_path(case, fmt).read_bytes()
    data.decode("utf-8")
    assert not data.startswith(b"\xef\xbb\xbf") and b"\r" not in data
    assert data == b"" or data.endswith(b"\n")
    text = data.decode()
    assert not any(0xFB50 <= ord(c) <= 0xFEFF for c in text)
    assert all(line == line.rstrip() for line in text.splitlines())


# -- subtitles ------------------------------------------------------------------------------------


def test_srt_timestamps_past_one_hundred_hours() -> None:
    segments = (Segment(3661.5, 3662.25, "One hour."), Segment(360_000.0, 360_001.0, "Hundred."))
    srt = render(OutputFormat.SRT, _transcript(segments), OPTS)
    assert "01:01:01,500 --> 01:01:02,250" in srt
    assert "100:00:00,000 --> 100:00:01,000" in srt
    assert all(SRT_TIMING.match(timing) for _, timing, _ in _cues(srt))


def test_vtt_header_and_timestamps() -> None:
    segments = (Segment(0.0, 1.5, "Hi."), Segment(360_000.0, 360_001.0, "Late."))
    vtt = render(OutputFormat.VTT, _transcript(segments), OPTS)
    assert vtt.startswith("WEBVTT\n\n00:00:00.000 --> 00:00:01.500\nHi.\n")
    assert "100:00:00.000 --> 100:00:01.000\nLate.\n" in vtt


def test_srt_numbers_from_one_and_skips_empty_segments() -> None:
    segments = (Segment(0, 1, "A."), Segment(1, 2, "   "), Segment(2, 3, ""), Segment(3, 4, "B."))
    cues = _cues(render(OutputFormat.SRT, _transcript(segments), OPTS))
    assert [(number, lines) for number, _, lines in cues] == [(1, ["A."]), (2, ["B."])]


def test_srt_end_never_before_start_and_negative_or_nan_times_clamp() -> None:
    segments = (
        Segment(5.0, 4.0, "Backwards."),
        Segment(-1.0, 0.5, "Negative."),
        Segment(float("nan"), 9.0, "Nan."),
    )
    for _, timing, _ in _cues(render(OutputFormat.SRT, _transcript(segments), OPTS)):
        start, end = timing.split(" --> ")
        assert end >= start


def test_srt_wraps_long_text_to_two_balanced_lines() -> None:
    text = "We take small steps in the direction where the loss decreases fastest."
    [(_, _, lines)] = _cues(render(OutputFormat.SRT, _transcript((Segment(0, 5, text),)), OPTS))
    assert len(lines) == 2 and all(len(line) <= 42 for line in lines)
    assert " ".join(lines) == text


def test_srt_splits_very_long_segment_into_consecutive_cues() -> None:
    text = " ".join(f"word{i:02d}" for i in range(60))
    srt = render(OutputFormat.SRT, _transcript((Segment(10.0, 40.0, text),)), OPTS)
    cues = _cues(srt)
    assert len(cues) > 1
    assert all(len(lines) <= 2 and all(len(x) <= 42 for x in lines) for _, _, lines in cues)
    assert " ".join(" ".join(lines) for _, _, lines in cues) == text
    timings = [timing.split(" --> ") for _, timing, _ in cues]
    assert timings[0][0] == "00:00:10,000" and timings[-1][1] == "00:00:40,000"
    assert all(a[1] == b[0] for a, b in itertools.pairwise(timings))  # contiguous
    lengths = [len(" ".join(lines)) for _, _, lines in cues]
    assert min(lengths) > max(lengths) / 2  # balanced, no one-word tail


def test_srt_split_uses_word_timestamps_when_they_match_the_text() -> None:
    tokens = [f"token{i:02d}" for i in range(30)]
    words = tuple(Word(100.0 + i, 100.5 + i, " " + t, 0.9) for i, t in enumerate(tokens))
    segment = Segment(100.0, 130.0, " ".join(tokens), words=words)
    cues = _cues(render(OutputFormat.SRT, _transcript((segment,)), OPTS))
    first_words = [lines[0].split()[0] for _, _, lines in cues][1:]
    starts = [timing.split(" --> ")[0] for _, timing, _ in cues][1:]
    for word, start in zip(first_words, starts, strict=True):
        minutes, seconds = divmod(100 + tokens.index(word), 60)
        assert start == f"00:{minutes:02d}:{seconds:02d},000"


def test_subtitles_never_contain_a_timing_arrow_in_text() -> None:
    segment = Segment(0, 1, "a --> b")
    for fmt in (OutputFormat.SRT, OutputFormat.VTT):
        text = render(fmt, _transcript((segment,)), OPTS)
        assert text.count("-->") == 1


def test_vtt_escapes_markup_characters() -> None:
    segment = Segment(0, 1, "x < y & z > w")
    vtt = render(OutputFormat.VTT, _transcript((segment,)), OPTS)
    assert "x &lt; y &amp; z &gt; w" in vtt


# -- right to left --------------------------------------------------------------------------------

RTL_SEGMENTS = (
    Segment(0.0, 3.0, "PyTorch یکی از کتابخانه‌های اصلی است."),
    Segment(3.0, 6.0, "۱۳۹۸ سالی بود که شروع شد."),
    Segment(6.0, 9.0, "1402 پایان پروژه بود؟"),
    Segment(9.0, 12.0, "آیا کسی می‌داند؟"),
    Segment(
        12.0,
        30.0,
        "در این جلسه ابتدا مفهوم گرادیان را مرور می‌کنیم، سپس نشان می‌دهیم که چگونه نرخ "
        "یادگیری روی همگرایی اثر می‌گذارد و در پایان با یک مثال ساده در PyTorch کار را تمام "
        "می‌کنیم.",
    ),
    Segment(30.0, 32.0, "GPU"),
)


@pytest.mark.parametrize("language", ["fa", "ar", "he", "ur"])
@pytest.mark.parametrize("fmt", [OutputFormat.SRT, OutputFormat.VTT], ids=lambda f: f.value)
def test_rtl_cue_lines_resolve_right_to_left(language: str, fmt: OutputFormat) -> None:
    lines = _cue_lines(render(fmt, _transcript(RTL_SEGMENTS, language), OPTS))
    assert len(lines) >= len(RTL_SEGMENTS)
    for line in lines:
        assert paragraph_direction(line) == "rtl", line
    starts = [line.lstrip("\u200f") for line in lines]
    # The cases that need the mark: a Latin word or digits first, or no Persian at all.
    assert any(paragraph_direction(s) == "ltr" for s in starts)
    assert any(s.startswith("PyTorch") for s in starts) and any(s[0].isdigit() for s in starts)


@pytest.mark.parametrize("fmt", [OutputFormat.SRT, OutputFormat.VTT], ids=lambda f: f.value)
def test_rtl_mark_applied_identically_to_every_cue_line(fmt: OutputFormat) -> None:
    lines = _cue_lines(render(fmt, _transcript(RTL_SEGMENTS, "fa"), OPTS))
    assert all(line.startswith("\u200f") and line.count("\u200f") == 1 for line in lines)
    assert not any(re.search("[\u200e\u061c\u202a-\u202e\u2066-\u2069]", line) for line in lines)


@pytest.mark.parametrize(
    "fmt",
    [OutputFormat.TXT, OutputFormat.JSON, OutputFormat.MD, OutputFormat.HTML],
    ids=lambda f: f.value,
)
def test_rtl_marks_absent_outside_subtitles(fmt: OutputFormat) -> None:
    transcript = prepare_transcript(_transcript(RTL_SEGMENTS, "fa"), OPTS)
    assert not DIRECTION_MARKS.search(render(fmt, transcript, OPTS))


def test_ltr_subtitles_carry_no_marks() -> None:
    for fmt in (OutputFormat.SRT, OutputFormat.VTT):
        assert not DIRECTION_MARKS.search(render(fmt, english_lecture(), OPTS))


def test_srt_vtt_txt_carry_the_same_persian_text() -> None:
    transcript = prepare_transcript(persian_lecture(), OPTS)

    def words(text: str) -> list[str]:
        return text.replace("\u200f", "").split()

    srt = " ".join(_cue_lines(render(OutputFormat.SRT, transcript, OPTS)))
    vtt = " ".join(_cue_lines(render(OutputFormat.VTT, transcript, OPTS)))
    txt = render(OutputFormat.TXT, transcript, OPTS)
    assert words(srt) == words(vtt) == words(txt)
    assert "\u200c" in txt and "؟" in txt  # ZWNJ and the Arabic question mark survive


def test_persian_text_stays_in_logical_order() -> None:
    transcript = prepare_transcript(persian_lecture(), OPTS)
    txt = render(OutputFormat.TXT, transcript, OPTS)
    for segment in transcript.segments:
        if segment.text:
            assert segment.text in txt


# -- txt and json ---------------------------------------------------------------------------------


def test_txt_paragraphs_without_timestamps() -> None:
    segments = (Segment(0, 2, "One."), Segment(2, 4, "Two."), Segment(10, 12, "Three."))
    assert render(OutputFormat.TXT, _transcript(segments), OPTS) == "One. Two.\n\nThree.\n"


def test_json_has_every_field() -> None:
    transcript = english_lecture()
    document = json.loads(render(OutputFormat.JSON, transcript, OPTS))
    assert list(document) == [
        "source",
        "language",
        "language_probability",
        "duration_s",
        "model",
        "device",
        "compute_type",
        "options",
        "warnings",
        "text",
        "segments",
    ]
    assert document["text"] == transcript.text
    first = document["segments"][0]
    assert list(first) == ["start", "end", "text", "words", "avg_logprob", "no_speech_prob"]
    assert list(first["words"][0]) == ["start", "end", "word", "probability"]
    assert document["options"]["beam_size"] == 5


def test_json_keeps_non_ascii_and_turns_non_finite_numbers_into_null() -> None:
    segment = Segment(0, 1, "سلام", avg_logprob=float("-inf"), no_speech_prob=float("nan"))
    transcript = _transcript((segment,), "fa")
    text = render(OutputFormat.JSON, transcript, OPTS)
    assert "سلام" in text and "\\u" not in text
    parsed = json.loads(text)["segments"][0]
    assert parsed["avg_logprob"] is None and parsed["no_speech_prob"] is None


def test_json_serialises_odd_option_values() -> None:
    transcript = Transcript(
        source_name="a.wav",
        segments=(),
        language="en",
        language_probability=1.0,
        duration_s=1.0,
        model="base",
        options={"path": Path("/x/y"), "langs": ("fa", "en"), "fmt": OutputFormat.SRT},
    )
    options = json.loads(render(OutputFormat.JSON, transcript, OPTS))["options"]
    assert options == {"path": "/x/y", "langs": ["fa", "en"], "fmt": "srt"}


@pytest.mark.parametrize("fmt", list(OutputFormat), ids=lambda f: f.value)
def test_zero_segments_give_valid_empty_files(fmt: OutputFormat) -> None:
    text = render(fmt, _transcript(()), OPTS)
    expected = {
        OutputFormat.TXT: "",
        OutputFormat.SRT: "",
        OutputFormat.VTT: "WEBVTT\n",
    }
    if fmt in expected:
        assert text == expected[fmt]
    elif fmt is OutputFormat.JSON:
        assert json.loads(text)["segments"] == []
    else:
        assert "No speech was detected" in text


def test_render_accepts_format_names_and_rejects_unknown() -> None:
    assert render("vtt", _transcript(()), OPTS) == "WEBVTT\n"
    with pytest.raises(ValueError):
        render("tsv", _transcript(()), OPTS)


def test_render_repairs_surrogate_escaped_source_name() -> None:
    raw = "جلسه ۱.wav".encode()
    escaped = raw.decode("ascii", "surrogateescape")  # how a C locale lists the name
    transcript = Transcript(escaped, (), "fa", 1.0, 1.0, "base")
    for fmt in OutputFormat:
        render(fmt, transcript, OPTS).encode("utf-8")
    assert json.loads(render(OutputFormat.JSON, transcript, OPTS))["source"] == "جلسه ۱.wav"


# -- prepare_transcript ---------------------------------------------------------------------------


def test_prepare_transcript_normalises_persian_segments_and_words() -> None:
    words = (Word(0, 0.5, " مي", 0.9), Word(0.5, 1, " شود", 0.9), Word(1, 2, " 12", 0.9))
    transcript = _transcript((Segment(0, 2, "مي شود 12", words=words),), "fa")
    prepared = prepare_transcript(transcript, RenderOptions(persian_digits="persian"))
    segment = prepared.segments[0]
    assert segment.text == "می\u200cشود ۱۲"
    assert [w.word for w in segment.words] == [" می", " شود", " ۱۲"]


def test_prepare_transcript_leaves_arabic_and_english_unchanged() -> None:
    arabic = _transcript((Segment(0, 1, "يكتب الكتاب مي شود"),), "ar")
    assert prepare_transcript(arabic, OPTS) is arabic
    english = english_lecture()
    assert prepare_transcript(english, OPTS) is english


def test_prepare_transcript_digits_only_when_normalisation_off() -> None:
    transcript = _transcript((Segment(0, 1, "كتاب 12"),), "fa")
    opts = RenderOptions(normalize_persian=False, persian_digits="persian")
    assert prepare_transcript(transcript, opts).segments[0].text == "كتاب ۱۲"
    off = RenderOptions(normalize_persian=False)
    assert prepare_transcript(transcript, off) is transcript


def test_render_options_validate() -> None:
    with pytest.raises(ValueError, match="persian_digits"):
        RenderOptions(persian_digits="arabic")
    with pytest.raises(ValueError, match="heading_every_s"):
        RenderOptions(heading_every_s=-1)


# -- names ----------------------------------------------------------------------------------------

KEY = "0123456789abcdef"


def test_result_base_name_keeps_persian_spaces_brackets_and_quotes() -> None:
    assert result_base_name("جلسه ۱ - گزارش نهایی.wav", KEY) == "جلسه ۱ - گزارش نهایی-01234567"
    assert (
        result_base_name("my talk (final) [v2] 'draft'.wav", KEY)
        == "my talk (final) [v2] 'draft'-01234567"
    )


def test_result_base_name_neutralises_leading_dash_and_dot() -> None:
    assert result_base_name("-rf.wav", KEY) == "_rf-01234567"
    assert result_base_name(".hidden", KEY) == "_hidden-01234567"


def test_result_base_name_replaces_separators_and_control_characters() -> None:
    assert result_base_name("a/b\\c\x00d\ne\x7f.mp3", KEY) == "a_b_c_d_e_-01234567"


def test_result_base_name_keeps_the_given_normalisation_form() -> None:
    nfd = unicodedata.normalize("NFD", "café résumé.wav")
    nfc = unicodedata.normalize("NFC", "café résumé.wav")
    assert result_base_name(nfd, KEY) == nfd[:-4] + "-01234567"
    assert result_base_name(nfc, KEY) == nfc[:-4] + "-01234567"


def test_result_base_name_is_deterministic_and_keyed() -> None:
    assert result_base_name("talk.mp3", KEY) == result_base_name("talk.mp3", KEY)
    assert result_base_name("talk.mp3", KEY) != result_base_name("talk.mp3", "fedcba9876543210")


def test_result_base_name_fits_long_names_in_255_bytes(tmp_path: Path) -> None:
    long_name = "ب" * 125 + ".mp3"  # 254 bytes
    base = result_base_name(long_name, KEY)
    longest = f".{base}.html.0123abcd.tmp"
    assert len(longest.encode()) <= 255
    assert base.endswith("-01234567") and base.startswith("ب" * 100)
    base.encode("utf-8")  # cut at a character boundary
    other = result_base_name("ب" * 125 + "x.mp3", "fedcba98")
    assert other != base
    written = write_outputs(_transcript(()), list(OutputFormat), tmp_path, base, OPTS)
    assert len(written) == len(OutputFormat)


def test_result_base_name_repairs_surrogates() -> None:
    escaped = "جلسه.wav".encode().decode("ascii", "surrogateescape")
    assert result_base_name(escaped, KEY) == "جلسه-01234567"
    lone = result_base_name("bad\udcffname.wav", KEY)
    lone.encode("utf-8")
    assert lone == "bad_name-01234567"


def test_result_base_name_rejects_empty_key_and_names_empty_stem() -> None:
    with pytest.raises(ValueError):
        result_base_name("talk.mp3", "")
    assert result_base_name("", KEY) == "audio-01234567"


# -- atomic writes --------------------------------------------------------------------------------


def _names(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


def test_write_outputs_creates_folder_and_leaves_no_temp_files(tmp_path: Path) -> None:
    dest = tmp_path / "results" / "deep"
    paths = write_outputs(english_lecture(), ["txt", "srt", "srt", "json"], dest, "talk-1", OPTS)
    assert [p.name for p in paths] == ["talk-1.txt", "talk-1.srt", "talk-1.json"]
    assert _names(dest) == {"talk-1.txt", "talk-1.srt", "talk-1.json"}
    assert paths[1].read_text(encoding="utf-8") == render(OutputFormat.SRT, english_lecture(), OPTS)


def test_stage_outputs_writes_hidden_temp_files_until_commit(tmp_path: Path) -> None:
    staged = stage_outputs(english_lecture(), ["srt", "vtt"], tmp_path, "talk-1", OPTS)
    assert all(s.temp_path.parent == tmp_path and s.temp_path.name.startswith(".") for s in staged)
    assert all(is_temp_output(s.temp_path) and s.temp_path.stat().st_size > 0 for s in staged)
    assert not any(s.final_path.exists() for s in staged)
    final = commit_staged(staged)
    assert _names(tmp_path) == {"talk-1.srt", "talk-1.vtt"}
    assert final == [tmp_path / "talk-1.srt", tmp_path / "talk-1.vtt"]


def test_commit_replaces_existing_file(tmp_path: Path) -> None:
    (tmp_path / "talk-1.txt").write_text("old", encoding="utf-8")
    write_outputs(english_lecture(), ["txt"], tmp_path, "talk-1", OPTS)
    assert (tmp_path / "talk-1.txt").read_text(encoding="utf-8").startswith("Welcome back")


def test_discard_staged_removes_temps_and_tolerates_missing(tmp_path: Path) -> None:
    staged = stage_outputs(english_lecture(), ["srt", "json"], tmp_path, "talk-1", OPTS)
    staged[0].temp_path.unlink()
    discard_staged(staged)
    discard_staged(staged)
    assert _names(tmp_path) == set()


def test_stage_outputs_removes_what_it_wrote_on_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_fsync = os.fsync
    calls = {"n": 0}

    def failing_fsync(fd: int) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(28, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="No space left"):
        stage_outputs(english_lecture(), ["txt", "srt", "vtt"], tmp_path, "talk-1", OPTS)
    assert _names(tmp_path) == set()


def test_commit_staged_failure_removes_uncommitted_temps(tmp_path: Path) -> None:
    (tmp_path / "talk-1.srt").mkdir()
    (tmp_path / "talk-1.srt" / "occupied").write_text("x", encoding="utf-8")
    staged = stage_outputs(english_lecture(), ["txt", "srt", "vtt"], tmp_path, "talk-1", OPTS)
    with pytest.raises(OSError):
        commit_staged(staged)
    assert not any(is_temp_output(tmp_path / name) for name in _names(tmp_path))
    assert (tmp_path / "talk-1.txt").is_file()


@pytest.mark.parametrize("base_name", ["", "a/b", "..", "x\x00y", "ب" * 120])
def test_stage_outputs_rejects_unusable_base_names(base_name: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        stage_outputs(english_lecture(), ["txt"], tmp_path, base_name, OPTS)
    assert _names(tmp_path) == set()


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (".talk-1.srt.0a1b2c3d.tmp", True),
        (".جلسه ۱-01234567.html.ffffffff.tmp", True),
        ("talk-1.srt", False),
        (".talk-1.srt.tmp", False),
        (".talk-1.srt.0A1B2C3D.tmp", False),
        (".talk-1.wav.0a1b2c3d.tmp", False),
        (".hidden", False),
    ],
)
def test_is_temp_output(name: str, expected: bool) -> None:
    assert is_temp_output(Path("/results") / name) is expected


def test_staged_file_is_a_frozen_value() -> None:
    item = StagedFile(Path("/a/.b.txt.00000000.tmp"), Path("/a/b.txt"))
    with pytest.raises(AttributeError):
        item.final_path = Path("/c")  # type: ignore[misc]
