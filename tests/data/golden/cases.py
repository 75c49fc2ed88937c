"""The fixed transcripts behind the golden files, shared by the tests and ``regenerate.py``.

The text is written the way Whisper produces it (for Persian: Arabic letter forms, verb prefixes
and plural suffixes split off with a space), so the goldens also pin ``prepare_transcript``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from jozvesaz_cli.transcript import Segment, Transcript, Word
from jozvesaz_cli.writers import OutputFormat, RenderOptions, prepare_transcript, render

GOLDEN_DIR = Path(__file__).resolve().parent

#: The options every golden file is rendered with.
GOLDEN_OPTIONS = RenderOptions(created_at="2025-03-14", heading_every_s=300.0)

_OPTIONS: dict[str, object] = {
    "task": "transcribe",
    "beam_size": 5,
    "vad_filter": True,
    "word_timestamps": True,
    "initial_prompt": None,
}


def _words(start: float, end: float, text: str) -> tuple[Word, ...]:
    """Word tokens spread evenly over [start, end], with Whisper's leading spaces."""
    tokens = text.split()
    step = (end - start) / len(tokens)
    return tuple(
        Word(
            start=round(start + i * step, 3),
            end=round(start + (i + 1) * step, 3),
            word=" " + token,
            probability=round(0.9 - 0.01 * i, 4),
        )
        for i, token in enumerate(tokens)
    )


def english_lecture() -> Transcript:
    """A 12-minute English lecture: pauses, a 5-minute heading, a long pause, markup characters."""
    part_two = "Part two: momentum. [laughs]"
    return Transcript(
        source_name="Lecture 03 - Gradient Descent.mp3",
        segments=(
            Segment(
                0.0,
                5.2,
                "Welcome back, everyone. Today we're looking at gradient descent.",
                words=_words(
                    0.0, 5.2, "Welcome back, everyone. Today we're looking at gradient descent."
                ),
                avg_logprob=-0.21,
                no_speech_prob=0.01,
            ),
            Segment(
                5.2,
                12.9,
                "Last week we defined the loss function, and I promised we'd see how to actually "
                "minimise it.",
                avg_logprob=-0.25,
                no_speech_prob=0.01,
            ),
            Segment(13.0, 16.4, "Here's the key idea:", avg_logprob=-0.3, no_speech_prob=0.02),
            Segment(
                16.4,
                24.0,
                "we take small steps in the direction where the loss decreases fastest.",
                avg_logprob=-0.19,
            ),
            Segment(24.2, 24.9, " ", avg_logprob=-1.2, no_speech_prob=0.8),
            Segment(
                27.5,
                33.0,
                "If the gradient is negative, i.e. dL/dw < 0, we move w to the right.",
                avg_logprob=-0.33,
            ),
            Segment(33.1, 38.0, "Questions & answers come at the end, so note them down."),
            Segment(38.0, 44.0, "We'll use PyTorch and NumPy for the *exercises*."),
            Segment(305.0, 311.0, part_two, words=_words(305.0, 311.0, part_two)),
            Segment(325.0, 330.0, "OK, let's wrap up with a quick summary."),
        ),
        language="en",
        language_probability=0.9871,
        duration_s=742.5,
        model="base",
        device="cpu",
        compute_type="int8",
        options=dict(_OPTIONS),
    )


def persian_lecture() -> Transcript:
    """A 15-minute Persian lecture as Whisper writes it; some lines start with Latin or digits."""
    rate = "نرخ یادگیری 0.01 را امتحان کنید."
    return Transcript(
        source_name="جلسه ۳ - یادگیری عمیق.mp3",
        segments=(
            Segment(
                0.0, 4.6, "سلام به همه. امروز درباره يادگيري عميق صحبت مي كنيم.", avg_logprob=-0.4
            ),
            Segment(4.6, 9.8, "PyTorch یکی از کتابخانه های اصلی این درس است.", avg_logprob=-0.38),
            Segment(10.1, 15.0, "۱۳۹۸ سالی بود که این پروژه ها شروع شد.", avg_logprob=-0.45),
            Segment(
                15.4,
                21.0,
                "آیا کسی می داند چرا شبکه‌های عمیق‌تر بهتر یاد می گیرند؟",
                avg_logprob=-0.41,
            ),
            Segment(21.5, 22.0, "", no_speech_prob=0.9),
            Segment(
                23.8,
                37.5,
                "در این جلسه ابتدا مفهوم گرادیان را مرور می کنیم، سپس نشان می‌دهیم که چگونه نرخ "
                "یادگیری روی همگرایی اثر می گذارد و در پایان با یک مثال ساده در PyTorch کار را "
                "تمام می کنیم.",
                avg_logprob=-0.5,
            ),
            Segment(312.0, 318.5, "حالا برویم سراغ تابع هزینه و مشتق آن."),
            Segment(318.9, 324.0, rate, words=_words(318.9, 324.0, rate)),
            Segment(335.0, 340.2, "سوالی هست؟ اگر نه، جلسه بعد ادامه می دهیم."),
        ),
        language="fa",
        language_probability=0.9712,
        duration_s=905.0,
        model="base",
        device="cpu",
        compute_type="int8",
        options=dict(_OPTIONS, language="fa"),
    )


def empty_recording() -> Transcript:
    """Silence: zero segments, which every writer must turn into a valid empty file."""
    return Transcript(
        source_name="silence.wav",
        segments=(),
        language="en",
        language_probability=0.5,
        duration_s=30.0,
        model="base",
        warnings=("no speech detected",),
    )


#: Golden case name -> transcript builder.
CASES: dict[str, Callable[[], Transcript]] = {
    "en_lecture": english_lecture,
    "fa_lecture": persian_lecture,
    "empty": empty_recording,
}


def golden_path(case: str, fmt: OutputFormat) -> Path:
    """Where the golden file for a case and format lives."""
    return GOLDEN_DIR / f"{case}.{fmt.value}"


def render_case(case: str, fmt: OutputFormat) -> bytes:
    """The exact bytes the golden file must hold."""
    transcript = prepare_transcript(CASES[case](), GOLDEN_OPTIONS)
    return render(fmt, transcript, GOLDEN_OPTIONS).encode("utf-8")
