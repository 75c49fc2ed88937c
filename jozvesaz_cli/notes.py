"""The "jozve": a transcript laid out as notes a student would read, in Markdown or HTML.

Whisper cuts audio into windows of up to 30 seconds, and its segments follow those windows rather
than the speaker's sentences, so the notes regroup segments into paragraphs: a paragraph ends at a
pause (``pause_s``, about two seconds, the gap at which a listener hears a new thought) or after a
handful of sentences, and only where a sentence ends. Paragraphs are grouped into parts with a
heading every ``heading_every_s`` seconds or after a long pause (``LONG_PAUSE_S``), so a 90-minute
lecture can be skimmed by its headings. Each paragraph is led by its start time, ``[00:12:31]``;
in HTML that is a link to ``#t=751``, which is also the paragraph's id, so the time can be shared
and jumped to.

The HTML is one standalone file: no scripts, no web fonts fetched, the CSS embedded. Right-to-left
languages get ``<html dir="rtl">`` and a font stack that starts with the fonts Persian readers
expect (Vazirmatn, then Tahoma, then fonts found on most systems); timestamps are isolated as
left-to-right runs so their digits and brackets never reorder. Labels are in Persian or Arabic
for those languages, English otherwise. The plain-text writer reuses ``build_paragraphs``.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from jozvesaz_cli.persian import convert_digits, is_persian, is_rtl

if TYPE_CHECKING:
    from jozvesaz_cli.transcript import Segment, Transcript
    from jozvesaz_cli.writers import RenderOptions

__all__ = [
    "LONG_PAUSE_S",
    "Paragraph",
    "Section",
    "build_paragraphs",
    "build_sections",
    "escape_markdown",
    "format_clock",
    "format_duration",
    "render_html",
    "render_markdown",
]

#: A pause at least this long starts a new part with its own heading.
LONG_PAUSE_S = 8.0

# A sentence ends with . ? ! ؟ ۔ or an ellipsis, possibly followed by closing quotes or brackets,
# then a space or the end of the text (so "3.5" and "e.g.x" do not count).
_SENTENCE_END = r"[.?!؟۔…]+[\"'»”’)\]]*"
_SENTENCE_END_RE = re.compile(_SENTENCE_END + r"(?=\s|$)")
_ENDS_SENTENCE_RE = re.compile(_SENTENCE_END + r"\s*$")
_WHITESPACE_RE = re.compile(r"\s+")
_MARKDOWN_SPECIAL_RE = re.compile(r"([\\`*_\[\]<>|~#&])")


@dataclass(frozen=True, slots=True)
class Paragraph:
    """Consecutive segments read as one paragraph.

    Attributes:
        start: start of the first segment, in seconds.
        end: latest end of its segments, in seconds.
        text: the segment texts joined by single spaces.
        pause_before_s: silence between the previous paragraph's end (or the start of the
            recording) and this paragraph's start, in seconds.
    """

    start: float
    end: float
    text: str
    pause_before_s: float


@dataclass(frozen=True, slots=True)
class Section:
    """A part of the notes, introduced by a heading.

    Attributes:
        number: 1 for the first part.
        start: start of its first paragraph, in seconds.
        paragraphs: the paragraphs, in time order.
    """

    number: int
    start: float
    paragraphs: tuple[Paragraph, ...]


@dataclass(frozen=True, slots=True)
class _Labels:
    date: str
    duration: str
    language: str
    model: str
    warnings: str
    part: str
    notes: str
    no_speech: str


_ENGLISH = _Labels(
    date="Date",
    duration="Duration",
    language="Language",
    model="Model",
    warnings="Warnings",
    part="Part",
    notes="notes",
    no_speech="No speech was detected in this recording.",
)
_LABELS = {
    "fa": _Labels(
        date="تاریخ",
        duration="مدت",
        language="زبان",
        model="مدل",
        warnings="هشدارها",
        part="بخش",
        notes="جزوه",
        no_speech="در این فایل گفتاری شنیده نشد.",
    ),
    "ar": _Labels(
        date="التاريخ",
        duration="المدة",
        language="اللغة",
        model="النموذج",
        warnings="تحذيرات",
        part="الجزء",
        notes="ملاحظات",
        no_speech="لم يُكتشف أي كلام في هذا التسجيل.",
    ),
}


def build_paragraphs(
    segments: Sequence[Segment], *, pause_s: float = 2.0, max_sentences: int = 6
) -> list[Paragraph]:
    """Group segments into paragraphs at pauses and sentence ends.

    A paragraph ends before a segment that starts at least ``pause_s`` after the previous one
    ended, or once it holds ``max_sentences`` sentences and its last segment ends a sentence.
    Text without punctuation would otherwise never break, so a paragraph also ends after
    ``2 * max_sentences`` segments. Segments with empty text are skipped.

    Args:
        segments: the transcript's segments (sorted by start here, so order does not matter).
        pause_s: the silence, in seconds, that always starts a new paragraph.
        max_sentences: sentences after which the next sentence end closes the paragraph.

    Returns:
        The paragraphs in time order; empty when no segment has text.
    """
    spoken = sorted((s for s in segments if s.text.strip()), key=lambda s: s.start)
    paragraphs: list[Paragraph] = []
    current: list[Segment] = []
    sentences = 0
    last_end = 0.0
    pause_before = 0.0
    for segment in spoken:
        gap = segment.start - last_end
        if current and (
            gap >= pause_s
            or (sentences >= max_sentences and _ENDS_SENTENCE_RE.search(current[-1].text))
            or len(current) >= 2 * max_sentences
        ):
            paragraphs.append(_make_paragraph(current, pause_before))
            current, sentences = [], 0
        if not current:
            pause_before = max(0.0, gap)
        current.append(segment)
        sentences += len(_SENTENCE_END_RE.findall(segment.text.strip()))
        last_end = max(last_end, segment.end)
    if current:
        paragraphs.append(_make_paragraph(current, pause_before))
    return paragraphs


def _make_paragraph(segments: list[Segment], pause_before_s: float) -> Paragraph:
    text = " ".join(_WHITESPACE_RE.sub(" ", s.text).strip() for s in segments)
    return Paragraph(
        start=segments[0].start,
        end=max(s.end for s in segments),
        text=text,
        pause_before_s=pause_before_s,
    )


def build_sections(
    paragraphs: Sequence[Paragraph], *, every_s: float, long_pause_s: float = LONG_PAUSE_S
) -> list[Section]:
    """Group paragraphs into parts: a new part every ``every_s`` seconds or after a long pause.

    Args:
        paragraphs: paragraphs in time order.
        every_s: a paragraph starting at least this many seconds after the current part's start
            opens a new part; 0 turns time-based parts off.
        long_pause_s: a pause at least this long before a paragraph opens a new part.

    Returns:
        The parts, numbered from 1; empty when there are no paragraphs.
    """
    sections: list[Section] = []
    current: list[Paragraph] = []
    for paragraph in paragraphs:
        if current and (
            paragraph.pause_before_s >= long_pause_s
            or (every_s > 0 and paragraph.start - current[0].start >= every_s)
        ):
            sections.append(Section(len(sections) + 1, current[0].start, tuple(current)))
            current = []
        current.append(paragraph)
    if current:
        sections.append(Section(len(sections) + 1, current[0].start, tuple(current)))
    return sections


def format_clock(seconds: float) -> str:
    """``HH:MM:SS`` (hours grow past 99), rounded down so a jump lands before the words."""
    total = int(seconds) if math.isfinite(seconds) and seconds > 0 else 0
    hours, rest = divmod(total, 3600)
    return f"{hours:02d}:{rest // 60:02d}:{rest % 60:02d}"


def format_duration(seconds: float) -> str:
    """``H:MM:SS`` for a length, rounded to the nearest second."""
    total = round(seconds) if math.isfinite(seconds) and seconds > 0 else 0
    hours, rest = divmod(total, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"


def _labels_for(language: str) -> _Labels:
    primary = re.split(r"[-_]", language.strip().lower())[0] if language else ""
    return _LABELS.get(primary, _ENGLISH)


def _part_title(labels: _Labels, section: Section, transcript: Transcript, digits: str) -> str:
    number = str(section.number)
    if is_persian(transcript.language) and digits != "latin":
        number = convert_digits(number, "persian")
    return f"{labels.part} {number}"


def _title(transcript: Transcript) -> str:
    """The recording's file name: notes are shared, and the folder it came from is nobody's
    business (nor readable in a heading)."""
    return transcript.source_name.rsplit("/", 1)[-1] or transcript.source_name


def _header_rows(transcript: Transcript, opts: RenderOptions) -> list[tuple[str, str]]:
    labels = _labels_for(transcript.language)
    rows: list[tuple[str, str]] = []
    if opts.created_at:
        rows.append((labels.date, opts.created_at))
    rows.append((labels.duration, format_duration(transcript.duration_s)))
    probability = transcript.language_probability
    language = transcript.language or "?"
    if math.isfinite(probability):
        language = f"{language} ({round(probability * 100)}%)"
    rows.append((labels.language, language))
    rows.append(
        (labels.model, f"{transcript.model} ({transcript.device}, {transcript.compute_type})")
    )
    if transcript.warnings:
        rows.append((labels.warnings, "; ".join(transcript.warnings)))
    return rows


def _sections(transcript: Transcript, opts: RenderOptions) -> list[Section]:
    return build_sections(build_paragraphs(transcript.segments), every_s=opts.heading_every_s)


def escape_markdown(text: str) -> str:
    """Backslash-escape the characters Markdown would read as markup, and collapse newlines.

    Every ASCII punctuation character may be escaped in CommonMark, so the result renders as
    the literal text on any CommonMark or GitHub renderer.
    """
    return _MARKDOWN_SPECIAL_RE.sub(r"\\\1", _WHITESPACE_RE.sub(" ", text).strip())


def render_markdown(transcript: Transcript, opts: RenderOptions) -> str:
    """Render the notes as Markdown.

    Args:
        transcript: a prepared transcript (see ``writers.prepare_transcript``).
        opts: rendering options; ``created_at`` and ``heading_every_s`` are used here.

    Returns:
        The document, ending with a newline. Part headings appear only when there is more than
        one part.
    """
    labels = _labels_for(transcript.language)
    lines = [f"# {escape_markdown(_title(transcript))}", ""]
    lines += [
        f"- **{name}:** {escape_markdown(value)}" for name, value in _header_rows(transcript, opts)
    ]
    sections = _sections(transcript, opts)
    if not sections:
        lines += ["", f"_{escape_markdown(labels.no_speech)}_"]
    for section in sections:
        if len(sections) > 1:
            title = _part_title(labels, section, transcript, opts.persian_digits)
            lines += ["", f"## {title} — {format_clock(section.start)}"]
        for paragraph in section.paragraphs:
            lines += ["", f"[{format_clock(paragraph.start)}] {escape_markdown(paragraph.text)}"]
    return "\n".join(lines) + "\n"


_CSS = """\
:root {
  color-scheme: light dark;
  --fg: #1d2329; --muted: #5f6b76; --bg: #fbfaf7; --rule: #e4e1da;
  --accent: #1f6fb2; --accent-bg: #eaf2fa;
}
@media (prefers-color-scheme: dark) {
  :root {
    --fg: #e6e3dc; --muted: #9aa4ad; --bg: #17191c; --rule: #2d3136;
    --accent: #7db5e8; --accent-bg: #1d2a37;
  }
}
* { box-sizing: border-box; }
html { -webkit-text-size-adjust: 100%; }
body {
  margin: 0; background: var(--bg); color: var(--fg);
  font: 18px/1.7 system-ui, -apple-system, "Segoe UI", Roboto, "Noto Sans", "Helvetica Neue",
    Arial, sans-serif;
  text-rendering: optimizeLegibility;
}
html[dir="rtl"] body {
  font-family: Vazirmatn, Vazir, "Noto Naskh Arabic", "Noto Sans Arabic", Tahoma,
    "Segoe UI", "DejaVu Sans", system-ui, sans-serif;
  line-height: 1.95;
}
main { max-width: 42em; margin: 0 auto; padding: 3rem 1.5rem 4rem; }
header { border-bottom: 1px solid var(--rule); padding-bottom: 1.25rem; margin-bottom: 2rem; }
h1 { font-size: 1.7rem; line-height: 1.3; margin: 0 0 .9rem; overflow-wrap: anywhere; }
.meta { display: flex; flex-wrap: wrap; gap: .35rem 1.75rem; margin: 0; font-size: .88rem;
  color: var(--muted); }
.meta div { display: flex; gap: .45em; }
.meta dt { font-weight: 600; }
.meta dt::after { content: ":"; }
.meta dd { margin: 0; unicode-bidi: isolate; }
h2 { font-size: 1.15rem; margin: 2.75rem 0 1rem; padding-bottom: .3rem;
  border-bottom: 1px solid var(--rule); display: flex; gap: .6em; align-items: baseline; }
h2 .h-ts { font: 500 .8rem/1 ui-monospace, "SFMono-Regular", Menlo, Consolas,
  "DejaVu Sans Mono", monospace; color: var(--muted); }
p { margin: 0 0 1.15em; overflow-wrap: break-word; }
p:target { background: var(--accent-bg); border-radius: 6px; }
a.ts {
  font: 500 .72em/1 ui-monospace, "SFMono-Regular", Menlo, Consolas, "DejaVu Sans Mono",
    monospace;
  color: var(--accent); text-decoration: none; white-space: nowrap;
  margin: 0 .4em 0 0; padding: .2em .4em; border-radius: 4px;
  background: var(--accent-bg); vertical-align: .12em;
}
/* The link is an isolated left-to-right run, so a logical margin would follow its own
   direction; the gap before the text is set by the page's direction instead. */
html[dir="rtl"] a.ts { margin: 0 0 0 .4em; }
a.ts:hover, a.ts:focus { text-decoration: underline; }
.empty { color: var(--muted); font-style: italic; }
@media print {
  body { background: #fff; color: #000; font-size: 11pt; }
  main { max-width: none; padding: 0; }
  a.ts { background: none; color: #555; }
}
"""


def render_html(transcript: Transcript, opts: RenderOptions) -> str:
    """Render the notes as one standalone HTML5 document.

    Args:
        transcript: a prepared transcript (see ``writers.prepare_transcript``).
        opts: rendering options; ``created_at`` and ``heading_every_s`` are used here.

    Returns:
        The document, UTF-8 declared, every piece of text HTML-escaped, ending with a newline.
    """
    esc = html.escape
    labels = _labels_for(transcript.language)
    language = transcript.language or "und"
    direction = "rtl" if is_rtl(transcript.language) else "ltr"
    out = [
        "<!DOCTYPE html>",
        f'<html lang="{esc(language)}" dir="{direction}">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<meta name="generator" content="jozvesaz">',
        f"<title>{esc(_title(transcript))} — {esc(labels.notes)}</title>",
        f"<style>\n{_CSS}</style>",
        "</head>",
        "<body>",
        "<main>",
        "<header>",
        f'<h1 dir="auto">{esc(_title(transcript))}</h1>',
        '<dl class="meta">',
    ]
    out += [
        f'<div><dt>{esc(name)}</dt><dd dir="auto">{esc(value)}</dd></div>'
        for name, value in _header_rows(transcript, opts)
    ]
    out += ["</dl>", "</header>"]
    sections = _sections(transcript, opts)
    if not sections:
        out.append(f'<p class="empty">{esc(labels.no_speech)}</p>')
    used_ids: set[str] = set()
    for section in sections:
        out.append("<section>")
        if len(sections) > 1:
            title = _part_title(labels, section, transcript, opts.persian_digits)
            out.append(
                f'<h2 id="part-{section.number}"><span>{esc(title)}</span>'
                f'<span class="h-ts" dir="ltr">{format_clock(section.start)}</span></h2>'
            )
        for paragraph in section.paragraphs:
            out.append(_html_paragraph(paragraph, used_ids))
        out.append("</section>")
    out += ["</main>", "</body>", "</html>"]
    return "\n".join(out) + "\n"


def _html_paragraph(paragraph: Paragraph, used_ids: set[str]) -> str:
    second = int(paragraph.start) if math.isfinite(paragraph.start) and paragraph.start > 0 else 0
    anchor = f"t={second}"
    id_attr = "" if anchor in used_ids else f' id="{anchor}"'
    used_ids.add(anchor)
    stamp = f'<a class="ts" href="#{anchor}" dir="ltr">[{format_clock(paragraph.start)}]</a>'
    return f"<p{id_attr}>{stamp} {html.escape(paragraph.text)}</p>"
