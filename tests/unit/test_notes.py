"""Notes: paragraphs, parts, and the Markdown and HTML renderings."""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser

from jozvesaz_cli.notes import (
    build_paragraphs,
    build_sections,
    escape_markdown,
    format_clock,
    format_duration,
    render_html,
    render_markdown,
)
from jozvesaz_cli.transcript import Segment, Transcript
from jozvesaz_cli.writers import RenderOptions
from tests.data.golden.cases import english_lecture, persian_lecture


def _transcript(segments: tuple[Segment, ...], language: str = "en", **kw: object) -> Transcript:
    return Transcript(
        source_name=str(kw.get("source_name", "talk.mp3")),
        segments=segments,
        language=language,
        language_probability=0.93,
        duration_s=float(kw.get("duration_s", 60.0)),  # type: ignore[arg-type]
        model="base",
    )


def test_build_paragraphs_splits_on_pause() -> None:
    segments = (Segment(0, 2, "One."), Segment(2.1, 4, "Two."), Segment(6.5, 8, "Three."))
    paragraphs = build_paragraphs(segments)
    assert [p.text for p in paragraphs] == ["One. Two.", "Three."]
    assert paragraphs[1].pause_before_s == 2.5
    assert (paragraphs[0].start, paragraphs[0].end) == (0, 4)


def test_build_paragraphs_joins_segments_cut_mid_sentence() -> None:
    # Whisper's 30 s window ends mid-sentence: no pause, no sentence end, so no break.
    segments = (
        Segment(0, 29.8, "Sentence one. Sentence two. Three. Four. Five. Six. And the"),
        Segment(29.8, 33, "window ended here."),
        Segment(33.2, 36, "Next."),
    )
    paragraphs = build_paragraphs(segments)
    assert paragraphs[0].text.endswith("And the window ended here.")
    assert [p.text for p in paragraphs][1:] == ["Next."]


def test_build_paragraphs_breaks_after_max_sentences_at_sentence_end() -> None:
    segments = tuple(Segment(i, i + 1, f"Sentence {i}.") for i in range(9))
    paragraphs = build_paragraphs(segments, max_sentences=3)
    assert [p.text.count(".") for p in paragraphs] == [3, 3, 3]


def test_build_paragraphs_counts_persian_question_mark_and_full_stop() -> None:
    segments = tuple(Segment(i, i + 1, "چرا؟ بله.") for i in range(4))
    assert len(build_paragraphs(segments, max_sentences=4)) == 2


def test_build_paragraphs_breaks_unpunctuated_text_eventually() -> None:
    segments = tuple(Segment(i, i + 1, "no punctuation at all") for i in range(30))
    paragraphs = build_paragraphs(segments, max_sentences=6)
    assert len(paragraphs) == 3


def test_build_paragraphs_skips_empty_segments_and_sorts() -> None:
    segments = (Segment(5, 6, "Later."), Segment(0, 1, "  "), Segment(1, 2, "First."))
    assert [p.text for p in build_paragraphs(segments)] == ["First.", "Later."]


def test_build_paragraphs_empty() -> None:
    assert build_paragraphs(()) == []


def test_build_sections_every_interval_and_after_long_pause() -> None:
    segments = (
        Segment(0, 150, "A."),
        Segment(152, 299, "B."),
        Segment(301, 305, "C."),
        Segment(306, 310, "D."),
        Segment(320, 325, "E."),
    )
    sections = build_sections(build_paragraphs(segments), every_s=300)
    assert [(s.number, s.start) for s in sections] == [(1, 0), (2, 301), (3, 320)]
    assert [len(s.paragraphs) for s in sections] == [2, 1, 1]
    assert sections[1].paragraphs[0].text == "C. D."


def test_build_sections_zero_interval_keeps_only_pause_headings() -> None:
    segments = (Segment(0, 5, "A."), Segment(1000, 1005, "B."), Segment(1006, 1010, "C."))
    sections = build_sections(build_paragraphs(segments), every_s=0, long_pause_s=8)
    assert [s.start for s in sections] == [0, 1000]


def test_format_clock_and_duration() -> None:
    assert format_clock(751.9) == "00:12:31"
    assert format_clock(360_000.0) == "100:00:00"
    assert format_clock(float("nan")) == "00:00:00"
    assert format_duration(5405.4) == "1:30:05"
    assert format_duration(42.0) == "0:00:42"


def test_escape_markdown_escapes_markup() -> None:
    assert escape_markdown("*a* _b_ [c](d) <e> `f` #g a|b ~h & \\") == (
        r"\*a\* \_b\_ \[c\](d) \<e\> \`f\` \#g a\|b \~h \& \\"
    )
    assert escape_markdown("two\nlines") == "two lines"


def test_render_markdown_header_and_timestamps() -> None:
    text = render_markdown(english_lecture(), RenderOptions(created_at="2025-03-14"))
    assert text.startswith("# Lecture 03 - Gradient Descent.mp3\n\n- **Date:** 2025-03-14\n")
    assert "- **Duration:** 0:12:22\n" in text
    assert "- **Language:** en (99%)\n" in text
    assert "- **Model:** base (cpu, int8)\n" in text
    assert "\n## Part 2 — 00:05:05\n" in text
    assert re.search(r"^\[00:00:27\] If the gradient", text, re.MULTILINE)
    assert r"\*exercises\*" in text and r"\[laughs\]" in text
    assert text.endswith("\n") and not text.endswith("\n\n")


def test_render_markdown_omits_date_when_not_given() -> None:
    assert "Date" not in render_markdown(english_lecture(), RenderOptions())


def test_render_markdown_single_part_has_no_heading() -> None:
    text = render_markdown(_transcript((Segment(0, 2, "Hello."),)), RenderOptions())
    assert "## " not in text
    assert "\n[00:00:00] Hello.\n" in text


def test_render_markdown_localises_labels_for_persian() -> None:
    text = render_markdown(persian_lecture(), RenderOptions())
    assert "- **مدت:** 0:15:05" in text
    assert "## بخش ۲ — 00:05:12" in text


def test_render_markdown_latin_part_numbers_when_asked() -> None:
    text = render_markdown(persian_lecture(), RenderOptions(persian_digits="latin"))
    assert "## بخش 2 — 00:05:12" in text


def test_render_markdown_no_speech_note() -> None:
    text = render_markdown(_transcript(()), RenderOptions())
    assert text.rstrip().endswith("_No speech was detected in this recording._")
    assert "[00:" not in text


class _Collector(HTMLParser):
    """Collects start tags and text, and proves the document parses."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _parse(document: str) -> _Collector:
    collector = _Collector()
    collector.feed(document)
    collector.close()
    return collector


def test_render_html_is_a_standalone_rtl_document_for_persian() -> None:
    document = render_html(persian_lecture(), RenderOptions(created_at="2025-03-14"))
    assert document.startswith("<!DOCTYPE html>\n")
    parsed = _parse(document)
    assert ("html", {"lang": "fa", "dir": "rtl"}) in parsed.tags
    assert ("meta", {"charset": "utf-8"}) in parsed.tags
    assert "Vazirmatn" in document and "Tahoma" in document and "max-width: 42em" in document
    assert not any(tag in ("script", "link", "img") for tag, _ in parsed.tags)


def test_render_html_is_ltr_for_english() -> None:
    parsed = _parse(render_html(english_lecture(), RenderOptions()))
    assert ("html", {"lang": "en", "dir": "ltr"}) in parsed.tags


def test_render_html_timestamps_are_links_to_paragraph_ids() -> None:
    segments = (Segment(751.9, 755, "Later point."),)
    document = render_html(_transcript(segments), RenderOptions())
    assert (
        '<p id="t=751"><a class="ts" href="#t=751" dir="ltr">[00:12:31]</a> Later point.</p>'
        in (document)
    )


def test_render_html_duplicate_second_gets_one_id() -> None:
    # Six sentences close a paragraph, so the next one starts within the same second.
    segments = (Segment(10.0, 10.3, "A. B. C. D. E. F."), Segment(10.4, 10.8, "G."))
    document = render_html(_transcript(segments), RenderOptions())
    assert document.count('id="t=10"') == 1
    assert document.count('href="#t=10"') == 2


def test_render_html_escapes_everything() -> None:
    segments = (Segment(0, 2, "<script>alert('x')</script> & \"q\""),)
    transcript = _transcript(segments, source_name="<b>name</b>.mp3")
    document = render_html(transcript, RenderOptions(created_at="<i>today</i>"))
    assert "<script>" not in document and "<b>" not in document and "<i>" not in document
    assert html.escape("<script>alert('x')</script> & \"q\"") in document


def test_render_html_parts_and_no_speech() -> None:
    document = render_html(english_lecture(), RenderOptions())
    assert '<h2 id="part-3">' in document
    empty = render_html(_transcript(()), RenderOptions())
    assert '<p class="empty">No speech was detected in this recording.</p>' in empty
    assert "<h2" not in empty


def test_notes_never_carry_direction_marks() -> None:
    for render in (render_html, render_markdown):
        text = render(persian_lecture(), RenderOptions())
        assert not re.search("[\u200e\u200f\u202a-\u202e\u2066-\u2069]", text)
