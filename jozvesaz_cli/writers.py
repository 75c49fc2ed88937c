"""Renders a ``Transcript`` as txt, srt, vtt, json, md or html, and writes the files atomically.

Rendering is a pure function from our own ``Transcript`` to a string, so writers are tested
without faster-whisper and compared byte for byte with golden files. Every file is UTF-8 without a
byte-order mark, uses ``\\n`` line ends and ends with a newline (an SRT or TXT file with nothing
to say is empty, which is the valid empty form of both).

**Right-to-left subtitles.** A player lays out each subtitle line as its own paragraph, and the
Unicode bidirectional algorithm (rules P2/P3) takes a paragraph's base direction from its *first
strong character*. A Persian line that starts with a Latin word ("PyTorch ...") or is laid out by
a player that defaults to left-to-right comes out left-to-right: its final full stop or «؟» jumps
to the wrong end and the word order of mixed runs flips (SubtitleEdit#3228, Sub-Zero#409). So in
SRT and VTT, and only there, every cue line of a right-to-left language starts with a
RIGHT-TO-LEFT MARK (RLM, U+200F). RLM was chosen over wrapping lines in RLE…PDF because it is
itself a strong right-to-left character, so the plain P2 rule resolves the line to RTL in every
conforming renderer; it needs no closing PDF that an editor, a line re-wrap or a player that
strips unknown controls could lose, leaving an unbalanced embedding; and it is the mark subtitle
tools and players document for this problem. Trailing punctuation then resolves to the paragraph
direction (rule N2) and sits at the visual end of the line. TXT, JSON, Markdown and HTML never
carry direction marks (HTML says ``dir="rtl"`` instead), and the text stays in logical order.

**Cues.** Cues are numbered from 1, never end before they start, skip segments with empty text,
and hold at most two lines of about ``CUE_LINE_CHARS`` characters; a longer segment becomes
several consecutive cues whose times come from word timestamps when they line up with the text,
else from the share of characters. Timestamps keep counting hours past 99.

**Atomic writes.** Each file is written to a hidden temporary name in the destination folder
(``.<final name>.<8 hex>.tmp``, which watchers skip and ``is_temp_output`` recognises), flushed,
fsynced, then moved over the final name with ``os.replace``, so no reader ever sees half a file.
``stage_outputs`` and ``commit_staged`` are separate so that a caller can stage every format, then
commit only after recording the job, and discard everything if that fails.

**Names.** ``result_base_name`` is ``<safe stem>-<first 8 characters of the job key>``: the stem
keeps Persian and other letters, spaces, brackets and quotes in the Unicode form the caller gave
(no NFC/NFD conversion), and the job key keeps two inputs with the same stem apart and makes a
shortened long name unique.
"""

from __future__ import annotations

import enum
import json
import logging
import math
import os
import re
import secrets
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from jozvesaz_cli import notes
from jozvesaz_cli.persian import DIGIT_MODES, convert_digits, is_persian, is_rtl, normalize_persian
from jozvesaz_cli.transcript import Segment, Transcript, Word

__all__ = [
    "CUE_LINE_CHARS",
    "OutputFormat",
    "RenderOptions",
    "StagedFile",
    "commit_staged",
    "discard_staged",
    "is_temp_output",
    "prepare_transcript",
    "render",
    "result_base_name",
    "stage_outputs",
    "write_outputs",
]

logger = logging.getLogger(__name__)

#: Target length of a subtitle line, in characters (the common broadcast guideline).
CUE_LINE_CHARS = 42
#: Lines per cue at most.
CUE_MAX_LINES = 2
#: Longest file name most Linux file systems accept, in bytes.
MAX_NAME_BYTES = 255

RLM = "\u200f"
_KEY_CHARS = 8
_TEMP_TOKEN_HEX = 8
_TEMP_SUFFIX = ".tmp"
_WHITESPACE_RE = re.compile(r"\s+")
_UNSAFE_NAME_CHARS = frozenset("/\\\u2028\u2029\ufffd")


class OutputFormat(str, enum.Enum):
    """An output file format; the value is the file extension."""

    TXT = "txt"  #: readable paragraphs, no timestamps
    SRT = "srt"  #: SubRip subtitles
    VTT = "vtt"  #: WebVTT subtitles
    JSON = "json"  #: everything, for programs
    MD = "md"  #: the notes, in Markdown
    HTML = "html"  #: the notes, as a standalone web page


_LONGEST_EXTENSION_BYTES = max(len(f.value) for f in OutputFormat) + 1
# ".<final name>.<token>.tmp" adds this many bytes to the final name.
_TEMP_OVERHEAD_BYTES = 1 + 1 + _TEMP_TOKEN_HEX + len(_TEMP_SUFFIX)
_TEMP_NAME_RE = re.compile(
    r"\.(?P<final>.+\.(?:"
    + "|".join(f.value for f in OutputFormat)
    + rf"))\.[0-9a-f]{{{_TEMP_TOKEN_HEX}}}{re.escape(_TEMP_SUFFIX)}",
    re.DOTALL,
)


@dataclass(frozen=True, slots=True)
class RenderOptions:
    """How text is shaped; built from the settings.

    Attributes:
        persian_digits: ``keep``, ``persian`` (۰-۹) or ``latin`` (0-9); applies to Persian only.
        normalize_persian: apply Persian normalisation when the transcript's language is ``fa``.
        heading_every_s: notes get a part heading every this many seconds (and at long pauses);
            0 keeps only the pause headings.
        created_at: ISO date shown in the notes header; empty leaves it out.
    """

    persian_digits: str = "keep"
    normalize_persian: bool = True
    heading_every_s: float = 300.0
    created_at: str = ""

    def __post_init__(self) -> None:
        if self.persian_digits not in DIGIT_MODES:
            raise ValueError(
                f"persian_digits must be one of {', '.join(DIGIT_MODES)}, "
                f"not {self.persian_digits!r}"
            )
        if not math.isfinite(self.heading_every_s) or self.heading_every_s < 0:
            raise ValueError(f"heading_every_s must be >= 0, not {self.heading_every_s!r}")


@dataclass(frozen=True, slots=True)
class StagedFile:
    """A rendered file written under a temporary name, waiting to be committed.

    Attributes:
        temp_path: the hidden temporary file, complete and fsynced.
        final_path: where ``commit_staged`` moves it.
    """

    temp_path: Path
    final_path: Path


@dataclass(frozen=True, slots=True)
class _Cue:
    start: float
    end: float
    lines: tuple[str, ...]


def prepare_transcript(transcript: Transcript, opts: RenderOptions) -> Transcript:
    """Normalise a Persian transcript's text once, before it is rendered or stored.

    Segment texts and word tokens are normalised (``persian.normalize_persian``) or, with
    normalisation off, only have their digits converted. Other languages, Arabic included, are
    returned unchanged. Word tokens keep the model's split, so after a ZWNJ repair the words of a
    segment may no longer spell its text exactly.

    Args:
        transcript: the transcript as the model produced it.
        opts: the rendering options.

    Returns:
        The transcript to render and to store.
    """
    if not is_persian(transcript.language):
        return transcript
    if not opts.normalize_persian and opts.persian_digits == "keep":
        return transcript

    def fix(text: str) -> str:
        if opts.normalize_persian:
            return normalize_persian(text, opts.persian_digits)
        return convert_digits(text, opts.persian_digits)

    segments = tuple(
        replace(
            segment,
            text=fix(segment.text).strip(),
            words=tuple(replace(word, word=fix(word.word)) for word in segment.words),
        )
        for segment in transcript.segments
    )
    return replace(transcript, segments=segments)


def render(fmt: OutputFormat | str, transcript: Transcript, opts: RenderOptions) -> str:
    """Render one format.

    Args:
        fmt: the format, or its name (``"srt"``).
        transcript: a transcript from ``prepare_transcript``.
        opts: the rendering options.

    Returns:
        The whole file's text, ``\\n`` line ends, ending with a newline unless empty.

    Raises:
        ValueError: the format name is unknown.
    """
    fmt = OutputFormat(fmt)
    if not _is_utf8_safe(transcript.source_name):
        transcript = replace(transcript, source_name=_repair_surrogates(transcript.source_name))
    if fmt is OutputFormat.TXT:
        return _render_txt(transcript)
    if fmt is OutputFormat.SRT:
        return _render_srt(transcript)
    if fmt is OutputFormat.VTT:
        return _render_vtt(transcript)
    if fmt is OutputFormat.JSON:
        return _render_json(transcript)
    if fmt is OutputFormat.MD:
        return notes.render_markdown(transcript, opts)
    return notes.render_html(transcript, opts)


# -- plain text ---------------------------------------------------------------------------------


def _render_txt(transcript: Transcript) -> str:
    paragraphs = notes.build_paragraphs(transcript.segments)
    if not paragraphs:
        return ""
    return "\n\n".join(paragraph.text for paragraph in paragraphs) + "\n"


# -- subtitles ----------------------------------------------------------------------------------


def _timestamp(seconds: float, separator: str) -> str:
    """``HH:MM:SS<sep>mmm``; hours keep growing past 99 (``100:00:00,000``)."""
    total_ms = _to_ms(seconds)
    hours, rest = divmod(total_ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


def _to_ms(seconds: float) -> int:
    if not math.isfinite(seconds) or seconds <= 0:
        return 0
    return round(seconds * 1000)


def _wrap(tokens: Sequence[str], width: int) -> list[list[str]]:
    """Greedy word wrap; a token longer than ``width`` gets a line of its own."""
    lines: list[list[str]] = []
    length = 0
    for token in tokens:
        if lines and length + 1 + len(token) <= width:
            lines[-1].append(token)
            length += 1 + len(token)
        else:
            lines.append([token])
            length = len(token)
    return lines


def _balanced_wrap(tokens: Sequence[str], width: int) -> list[list[str]]:
    """Wrap into as few lines as greedy wrapping needs, but with lines of even length."""
    lines = _wrap(tokens, width)
    if len(lines) < 2:
        return lines
    narrowest = max(max(len(t) for t in tokens), math.ceil(len(" ".join(tokens)) / len(lines)))
    for candidate in range(narrowest, width):
        balanced = _wrap(tokens, candidate)
        if len(balanced) == len(lines):
            return balanced
    return lines


def _group_tokens(tokens: Sequence[str]) -> list[list[str]]:
    """Split a segment's words into as few cues as fit, with similar lengths.

    The count comes from greedy wrapping; then the smallest per-cue length that still needs no
    more cues is searched, so a long segment never ends in a one-word cue.
    """
    lines = _wrap(tokens, CUE_LINE_CHARS)
    count = math.ceil(len(lines) / CUE_MAX_LINES)
    if count <= 1:
        return [list(tokens)]
    total = len(" ".join(tokens))
    for cap in range(math.ceil(total / count), CUE_MAX_LINES * (CUE_LINE_CHARS + 1) + 1):
        groups: list[list[str]] = [[]]
        for token in tokens:
            candidate = [*groups[-1], token]
            fits = len(_wrap(candidate, CUE_LINE_CHARS)) <= CUE_MAX_LINES
            if groups[-1] and not (fits and len(" ".join(candidate)) <= cap):
                groups.append([token])
            else:
                groups[-1].append(token)
        if len(groups) <= count:
            return groups
    return [
        [token for line in lines[i : i + CUE_MAX_LINES] for token in line]
        for i in range(0, len(lines), CUE_MAX_LINES)
    ]


def _segment_cues(segment: Segment) -> list[_Cue]:
    """One cue of up to two lines, or several consecutive cues for a long segment."""
    text = _WHITESPACE_RE.sub(" ", segment.text).strip().replace("-->", "->")
    groups = _group_tokens(text.split(" "))
    start = segment.start if math.isfinite(segment.start) else 0.0
    end = max(start, segment.end if math.isfinite(segment.end) else start)
    bounds = _piece_bounds(groups, segment.words, start, end)
    return [
        _Cue(
            bounds[i],
            bounds[i + 1],
            tuple(" ".join(line) for line in _balanced_wrap(group, CUE_LINE_CHARS)),
        )
        for i, group in enumerate(groups)
    ]


def _piece_bounds(
    groups: list[list[str]], words: Sequence[Word], start: float, end: float
) -> list[float]:
    """Times at which each piece of a split segment starts, plus the segment's end."""
    bounds = [start]
    token_count = sum(len(g) for g in groups)
    use_words = len(words) == token_count and all(math.isfinite(w.start) for w in words)
    total_chars = sum(len(" ".join(g)) for g in groups) or 1
    first_token, chars = 0, 0
    for group in groups[:-1]:
        first_token += len(group)
        chars += len(" ".join(group))
        if use_words:
            moment = words[first_token].start
        else:
            moment = start + (end - start) * chars / total_chars
        bounds.append(min(end, max(bounds[-1], moment)))
    bounds.append(end)
    return bounds


def _build_cues(transcript: Transcript) -> list[_Cue]:
    spoken = sorted((s for s in transcript.segments if s.text.strip()), key=lambda s: s.start)
    cues = [cue for segment in spoken for cue in _segment_cues(segment)]
    if is_rtl(transcript.language):
        cues = [replace(cue, lines=tuple(RLM + line for line in cue.lines)) for cue in cues]
    return cues


def _cue_times(cue: _Cue, separator: str) -> str:
    start_ms = _to_ms(cue.start)
    end = cue.end if _to_ms(cue.end) >= start_ms else cue.start
    return f"{_timestamp(cue.start, separator)} --> {_timestamp(end, separator)}"


def _render_srt(transcript: Transcript) -> str:
    blocks = [
        f"{number}\n{_cue_times(cue, ',')}\n" + "\n".join(cue.lines) + "\n"
        for number, cue in enumerate(_build_cues(transcript), start=1)
    ]
    return "\n".join(blocks)


def _escape_vtt(line: str) -> str:
    """WebVTT cue text is markup: ``&``, ``<`` and ``>`` must be character references."""
    return line.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _render_vtt(transcript: Transcript) -> str:
    blocks = [
        f"{_cue_times(cue, '.')}\n" + "\n".join(_escape_vtt(line) for line in cue.lines) + "\n"
        for cue in _build_cues(transcript)
    ]
    return "\n".join(["WEBVTT\n", *blocks])


# -- json ---------------------------------------------------------------------------------------


def _number(value: float, digits: int) -> float | None:
    """Rounded for stable, readable files; NaN and infinity become null (JSON has neither)."""
    return round(value, digits) if math.isfinite(value) else None


def _json_default(value: object) -> object:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (set, frozenset)):
        return sorted(str(item) for item in value)
    return str(value)


def _render_json(transcript: Transcript) -> str:
    document = {
        "source": transcript.source_name,
        "language": transcript.language,
        "language_probability": _number(transcript.language_probability, 4),
        "duration_s": _number(transcript.duration_s, 3),
        "model": transcript.model,
        "device": transcript.device,
        "compute_type": transcript.compute_type,
        "options": transcript.options,
        "warnings": list(transcript.warnings),
        "text": transcript.text,
        "segments": [
            {
                "start": _number(segment.start, 3),
                "end": _number(segment.end, 3),
                "text": segment.text,
                "words": [
                    {
                        "start": _number(word.start, 3),
                        "end": _number(word.end, 3),
                        "word": word.word,
                        "probability": _number(word.probability, 4),
                    }
                    for word in segment.words
                ],
                "avg_logprob": _number(segment.avg_logprob, 4),
                "no_speech_prob": _number(segment.no_speech_prob, 4),
            }
            for segment in transcript.segments
        ],
    }
    text = json.dumps(
        document, ensure_ascii=False, indent=2, allow_nan=False, default=_json_default
    )
    return text + "\n"


# -- names --------------------------------------------------------------------------------------


def _is_utf8_safe(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _repair_surrogates(text: str) -> str:
    """Undo a non-UTF-8 locale's surrogate escapes; any other lone surrogate becomes U+FFFD.

    Under ``LC_ALL=C`` Python lists a UTF-8 name «جلسه.wav» with each byte as a surrogate
    (``\\udcd8...``); turning the escapes back into bytes and decoding them as UTF-8 restores the
    real name, and bytes that are not UTF-8 become U+FFFD instead of crashing the encoder.
    """
    if _is_utf8_safe(text):
        return text
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raw = text.encode("utf-8", "replace")
    return raw.decode("utf-8", "replace")


def _split_extension(name: str) -> str:
    """``talk.mp3`` → ``talk``; a dotfile or a name whose "extension" is not one stays whole."""
    dot = name.rfind(".")
    if dot > 0:
        extension = name[dot + 1 :]
        if 1 <= len(extension) <= 10 and extension.isalnum() and extension.isascii():
            return name[:dot]
    return name


def _safe_name_part(text: str) -> str:
    return "".join(
        "_" if char in _UNSAFE_NAME_CHARS or unicodedata.category(char) == "Cc" else char
        for char in text
    )


def _truncate_utf8(text: str, max_bytes: int) -> str:
    """The longest prefix of whole characters that fits in ``max_bytes`` of UTF-8."""
    raw = text.encode("utf-8")
    if len(raw) <= max_bytes:
        return text
    return raw[:max_bytes].decode("utf-8", "ignore")


def result_base_name(source_name: str, job_key: str) -> str:
    """The file name, without extension, under which one input's results are written.

    ``<safe stem>-<job_key[:8]>``: the stem is the input's name without its extension, with
    ``/``, ``\\``, NUL and other control characters replaced by ``_`` and a leading ``-`` or ``.``
    turned into ``_`` (so the name is never read as an option or hidden). Letters of any script,
    spaces, brackets and quotes are kept, in the Unicode normalisation form given. The stem is
    cut at a character boundary so that the longest result name plus the temporary suffix fits
    in 255 bytes of UTF-8; the job key keeps names that were cut to the same prefix distinct.

    Args:
        source_name: the input's file name (``جلسه ۱.mp3``); lone surrogates from a non-UTF-8
            locale are decoded back to UTF-8 or replaced.
        job_key: the job's key (a hex digest); its first 8 characters are used.

    Returns:
        The base name, deterministic for the same arguments.

    Raises:
        ValueError: ``job_key`` is empty.
    """
    key = _safe_name_part(_repair_surrogates(job_key.strip()))[:_KEY_CHARS]
    if not key:
        raise ValueError("job_key must not be empty")
    stem = _safe_name_part(_split_extension(_repair_surrogates(source_name))) or "audio"
    if stem[0] in "-.":
        stem = "_" + stem[1:]
    budget = (
        MAX_NAME_BYTES - _TEMP_OVERHEAD_BYTES - _LONGEST_EXTENSION_BYTES - len(f"-{key}".encode())
    )
    return f"{_truncate_utf8(stem, budget)}-{key}"


# -- atomic writes ------------------------------------------------------------------------------


def is_temp_output(path: Path) -> bool:
    """Whether ``path`` names one of the temporary files ``stage_outputs`` writes.

    Watchers ignore these, and cleaners may delete ones left by a crash.
    """
    return _TEMP_NAME_RE.fullmatch(path.name) is not None


def _temp_path(final_path: Path) -> Path:
    token = secrets.token_hex(_TEMP_TOKEN_HEX // 2)
    return final_path.with_name(f".{final_path.name}.{token}{_TEMP_SUFFIX}")


def _check_base_name(base_name: str) -> None:
    if not base_name or "/" in base_name or "\0" in base_name or base_name in (".", ".."):
        raise ValueError(f"not a usable base name: {base_name!r}")
    longest = len(base_name.encode("utf-8")) + _LONGEST_EXTENSION_BYTES + _TEMP_OVERHEAD_BYTES
    if longest > MAX_NAME_BYTES:
        raise ValueError(f"base name too long ({longest} > {MAX_NAME_BYTES} bytes with suffixes)")


def _os_path(path: Path) -> bytes:
    """``path`` as the bytes the file system sees: UTF-8 under any locale.

    Result names are text («جلسه ۱-….srt»). Under ``LC_ALL=C`` Python would encode them as
    ASCII and fail with UnicodeEncodeError (bug bank C06), so every file operation here gets
    UTF-8 bytes instead; surrogate escapes (names read from disk under such a locale) turn
    back into their original bytes. Under a UTF-8 locale this is exactly ``os.fsencode``.
    """
    return os.fspath(path).encode("utf-8", "surrogateescape")


def _write_durably(path: Path, data: bytes) -> None:
    """Create ``path`` (it must not exist), write ``data``, flush and fsync it."""
    fd = os.open(_os_path(path), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _fsync_dir(directory: Path) -> None:
    """Make renames in ``directory`` durable; not every platform can open a folder for this."""
    try:
        fd = os.open(_os_path(directory), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _unique_formats(formats: Sequence[OutputFormat | str]) -> list[OutputFormat]:
    return list(dict.fromkeys(OutputFormat(f) for f in formats))


def stage_outputs(
    transcript: Transcript,
    formats: Sequence[OutputFormat | str],
    dest_dir: Path,
    base_name: str,
    opts: RenderOptions,
) -> list[StagedFile]:
    """Render each format and write it, complete and fsynced, under a temporary name.

    Everything is rendered before anything is written, so a rendering bug leaves no file.

    Args:
        transcript: a transcript from ``prepare_transcript``.
        formats: formats or their names; duplicates are written once.
        dest_dir: the folder for the results; created with its parents if missing.
        base_name: from ``result_base_name``.
        opts: the rendering options.

    Returns:
        One ``StagedFile`` per format, in the order given, for ``commit_staged`` or
        ``discard_staged``.

    Raises:
        ValueError: an unknown format, or an unusable base name.
        OSError: the folder or a file could not be written (disk full, permissions); the
            temporary files already written are removed first.
    """
    _check_base_name(base_name)
    rendered = [
        (fmt, render(fmt, transcript, opts).encode("utf-8")) for fmt in _unique_formats(formats)
    ]
    os.makedirs(_os_path(dest_dir), exist_ok=True)
    staged: list[StagedFile] = []
    try:
        for fmt, data in rendered:
            final_path = dest_dir / f"{base_name}.{fmt.value}"
            item = StagedFile(temp_path=_temp_path(final_path), final_path=final_path)
            staged.append(item)
            _write_durably(item.temp_path, data)
    except BaseException:
        discard_staged(staged)
        raise
    return staged


def commit_staged(staged: Sequence[StagedFile]) -> list[Path]:
    """Move each staged file onto its final name with ``os.replace``, atomically per file.

    Args:
        staged: from ``stage_outputs``.

    Returns:
        The final paths, in order.

    Raises:
        OSError: a rename failed; files already moved stay (each is complete), the temporary
            files not yet moved are removed.
    """
    done: list[Path] = []
    try:
        for item in staged:
            os.replace(_os_path(item.temp_path), _os_path(item.final_path))
            done.append(item.final_path)
    except BaseException:
        discard_staged(staged[len(done) :])
        raise
    for directory in dict.fromkeys(item.final_path.parent for item in staged):
        _fsync_dir(directory)
    return done


def discard_staged(staged: Sequence[StagedFile]) -> None:
    """Remove staged temporary files; used on failure paths, so it never raises.

    A file already gone is fine; any other error is logged and the rest are still removed, so
    that cleanup never hides the error that made it necessary.
    """
    for item in staged:
        try:
            os.unlink(_os_path(item.temp_path))
        except FileNotFoundError:
            pass
        except OSError as exc:
            logger.warning(
                "could not remove temporary output %s: %s",
                item.temp_path,
                exc,
                extra={"action": "discard_output"},
            )


def write_outputs(
    transcript: Transcript,
    formats: Sequence[OutputFormat | str],
    dest_dir: Path,
    base_name: str,
    opts: RenderOptions,
) -> list[Path]:
    """Stage and commit in one step; see ``stage_outputs`` for the arguments and errors.

    Returns:
        The final paths written, in the order of ``formats``.
    """
    return commit_staged(stage_outputs(transcript, formats, dest_dir, base_name, opts))
