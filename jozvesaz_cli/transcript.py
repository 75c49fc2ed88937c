"""jozvesaz's own result types: what a transcription produced, independent of faster-whisper.

These frozen values cross the process boundary between a slot and the parent, and feed every
writer, so writers and their tests never need faster-whisper installed.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Word:
    """One word with its timing.

    Attributes:
        start: start in seconds from the start of the recording.
        end: end in seconds.
        word: the text, with the leading space Whisper gives it.
        probability: the model's confidence, 0-1.
    """

    start: float
    end: float
    word: str
    probability: float


@dataclass(frozen=True, slots=True)
class Segment:
    """One decoded segment.

    Attributes:
        start: start in seconds.
        end: end in seconds.
        text: the text, stripped.
        words: per-word timings when word timestamps were asked for.
        avg_logprob: mean log-probability of the tokens.
        no_speech_prob: the model's probability that the window held no speech.
        compression_ratio: gzip ratio of the text; high values mean repetition.
    """

    start: float
    end: float
    text: str
    words: tuple[Word, ...] = ()
    avg_logprob: float = 0.0
    no_speech_prob: float = 0.0
    compression_ratio: float = 1.0


@dataclass(frozen=True, slots=True)
class Transcript:
    """The result of transcribing one recording.

    Attributes:
        source_name: the input's file name, for headers and logs.
        segments: the segments in time order; empty is a valid result (silence, music).
        language: the language code used (forced or detected).
        language_probability: detection confidence, 1.0 when forced.
        duration_s: decoded audio length in seconds.
        model: the model name as configured.
        device: ``cpu`` or ``cuda``.
        compute_type: the resolved CTranslate2 compute type.
        options: the decoding options that shaped the text.
        warnings: things the user should know (partial decode, repetition suppressed).
    """

    source_name: str
    segments: tuple[Segment, ...]
    language: str
    language_probability: float
    duration_s: float
    model: str
    device: str = "cpu"
    compute_type: str = "int8"
    options: dict[str, object] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()

    @property
    def text(self) -> str:
        """All segment texts joined by single spaces."""
        return " ".join(segment.text for segment in self.segments if segment.text)
