"""Runs one decoded recording through a loaded model and returns jozvesaz's own ``Transcript``.

faster-whisper types never leave this module. With VAD on (the default) every recording goes
through faster-whisper's batched pipeline, two slots of it: on a 2-core CPU the benchmark
measured 1.41x the fastest direct faster-whisper configuration on a batch of short files and
2.5x the plain loop on lectures (at a WER cost on long English; see bench/README.md). Each
VAD chunk (up to 30 s) becomes one segment, which the subtitle writer splits into readable cues.
``JOZVESAZ_BATCHED_MIN_AUDIO_S`` sends shorter recordings through the plain loop instead (finer
segments, same text as faster-whisper's default ``transcribe``), and so does VAD off.

The batched pipeline has no temperature fallback, so a chunk it decodes into a loop (a digit
string read as "1-0-0-0-0-...", losing the rest of the chunk) is decoded again by the plain
loop, which has one. Two more guards sit on top of the model: an allowed-languages fallback and
a repetition-loop filter (faster-whisper #506).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol

from jozvesaz_cli.transcript import Segment, Transcript, Word

if TYPE_CHECKING:
    from jozvesaz_cli.audio import DecodedAudio
    from jozvesaz_cli.config import Settings

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[float], None]

#: A batched chunk whose text compresses more than this is a loop (faster-whisper's own
#: threshold for retrying a window at a higher temperature).
LOOP_COMPRESSION_RATIO = 2.4

#: A segment text repeated this many times in a row is a decoding loop, not speech.
MAX_IDENTICAL_RUN = 2
#: Phrases Whisper invents over silence and music (learned from subtitle credits).
SILENCE_HALLUCINATIONS = (
    "thank you for watching",
    "thanks for watching",
    "subtitles by the amara.org community",
    "please subscribe",
    "ترجمه و زیرنویس",
    "زیرنویس",
)
#: Whole-segment fillers Whisper writes over silence and noise when VAD is off ("You").
SILENCE_FILLERS = frozenset({"you", "thank you", "thanks", "bye", "so"})
#: A filler is dropped only when the model itself thought the window held no speech.
FILLER_NO_SPEECH_PROB = 0.6
#: Whole words (up to 60 characters) said this many times back to back inside one segment
#: are a loop ("we are we are we are we are we are...", "1-0-0-0-0-0-0..."), not emphasis.
MIN_PHRASE_LOOP = 5
_REPEATED_PHRASE_RE = re.compile(
    r"(?<!\w)(?P<phrase>\w.{0,59}?)(?:[\s,.;:!?،؛-]+(?P=phrase)(?!\w)){"
    + str(MIN_PHRASE_LOOP - 1)
    + ",}",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class DecodeOptions:
    """The options that shape the text; part of a job's settings fingerprint.

    Attributes:
        language: forced language, or None to detect.
        allowed_languages: detection is limited to these codes when not empty.
        task: ``transcribe`` or ``translate``.
        beam_size: beam width.
        initial_prompt: text that primes the decoder.
        hotwords: words to favour.
        word_timestamps: compute per-word timings.
        vad_filter: skip non-speech with Silero VAD.
        batched_min_audio_s: recordings this long or longer use the batched pipeline.
        batch_size: batch size for the batched pipeline.
    """

    language: str | None = None
    allowed_languages: tuple[str, ...] = ()
    task: str = "transcribe"
    beam_size: int = 5
    initial_prompt: str | None = None
    hotwords: str | None = None
    word_timestamps: bool = False
    vad_filter: bool = True
    batched_min_audio_s: float = 0.0
    batch_size: int = 8

    @classmethod
    def from_settings(cls, settings: Settings) -> DecodeOptions:
        """The decoding slice of the settings."""
        return cls(
            language=settings.language,
            allowed_languages=settings.allowed_language_list,
            task=settings.task,
            beam_size=settings.beam_size,
            initial_prompt=settings.initial_prompt,
            hotwords=settings.hotwords,
            word_timestamps=settings.word_timestamps,
            vad_filter=settings.vad_filter,
            batched_min_audio_s=settings.batched_min_audio_s,
            batch_size=settings.batch_size,
        )

    def with_values(self, values: dict[str, Any]) -> DecodeOptions:
        """These options overridden by a job's stored settings (course profiles, other hosts)."""
        from dataclasses import replace

        allowed = values.get("allowed_languages")
        if isinstance(allowed, str):
            allowed = tuple(code.strip() for code in allowed.split(",") if code.strip())
        changes: dict[str, Any] = {
            key: values[key]
            for key in (
                "language",
                "task",
                "beam_size",
                "initial_prompt",
                "hotwords",
                "word_timestamps",
                "vad_filter",
            )
            if key in values
        }
        if allowed is not None:
            changes["allowed_languages"] = tuple(allowed)
        return replace(self, **changes)

    def as_dict(self) -> dict[str, object]:
        """Plain values for the JSON output and the fingerprint."""
        return {
            "language": self.language,
            "allowed_languages": list(self.allowed_languages),
            "task": self.task,
            "beam_size": self.beam_size,
            "initial_prompt": self.initial_prompt,
            "hotwords": self.hotwords,
            "word_timestamps": self.word_timestamps,
            "vad_filter": self.vad_filter,
        }


class Transcriber(Protocol):
    """Turns decoded audio into a transcript; the seam where tests inject a fake."""

    def transcribe(
        self,
        audio: DecodedAudio,
        options: DecodeOptions,
        progress: ProgressCallback | None = None,
        *,
        source: str = "",
    ) -> Transcript:
        """Transcribe one recording; ``source`` is its path, for names and logs."""
        ...


class WhisperTranscriber:
    """The real transcriber around a loaded faster-whisper ``WhisperModel``."""

    def __init__(self, model: Any, *, model_name: str, device: str, compute_type: str) -> None:
        self._model = model
        self._batched: Any = None
        self.model_name = model_name
        self.device = device
        self.compute_type = compute_type

    def _pipeline(self) -> Any:
        if self._batched is None:
            from faster_whisper import BatchedInferencePipeline

            self._batched = BatchedInferencePipeline(self._model)
        return self._batched

    def choose_language(
        self, audio: DecodedAudio, options: DecodeOptions
    ) -> tuple[str | None, float, str | None]:
        """The language to force, the probability behind it, and a note when the guard acted.

        Without an allowed set faster-whisper detects on its own (None is returned). With one,
        the most likely allowed language wins, so Persian audio never comes out as Thai.
        """
        if options.language:
            return options.language, 1.0, None
        if not options.allowed_languages:
            return None, 0.0, None
        detected, detected_prob, ranked = self._model.detect_language(
            audio.samples, vad_filter=options.vad_filter
        )
        allowed = [(code, prob) for code, prob in ranked if code in options.allowed_languages]
        code, prob = allowed[0] if allowed else (options.allowed_languages[0], 0.0)
        note = None
        if detected != code:
            note = (
                f"language guard: detected {detected} (p={detected_prob:.2f}), not in "
                f"{','.join(options.allowed_languages)}; used {code} (p={prob:.2f})"
            )
            logger.info("%s", note)
        return code, float(prob), note

    def transcribe(
        self,
        audio: DecodedAudio,
        options: DecodeOptions,
        progress: ProgressCallback | None = None,
        *,
        source: str = "",
    ) -> Transcript:
        """Transcribe ``audio``; reports progress as the fraction of audio decoded."""
        language, guard_prob, guard_note = self.choose_language(audio, options)
        kwargs: dict[str, Any] = {
            "language": language,
            "task": options.task,
            "beam_size": options.beam_size,
            "initial_prompt": options.initial_prompt,
            "hotwords": options.hotwords,
            "word_timestamps": options.word_timestamps,
            "vad_filter": options.vad_filter,
        }
        batched = audio.duration_s >= options.batched_min_audio_s and options.vad_filter
        if batched:
            segments, info = self._pipeline().transcribe(
                audio.samples, batch_size=options.batch_size, **kwargs
            )
        else:
            segments, info = self._model.transcribe(audio.samples, **kwargs)
        collected = list(_collect(segments, audio.duration_s, progress))
        redone = 0
        if batched:
            collected, redone = self._redo_looped_chunks(audio, collected, kwargs)
        kept, warnings = suppress_repetition(collected)
        if redone:
            warnings.insert(0, f"{redone} looping chunk(s) of the batched pipeline decoded again")
        kept = drop_silence_hallucinations(kept)
        detected_prob = guard_prob if options.allowed_languages and not options.language else None
        options_dict = options.as_dict() | {"pipeline": "batched" if batched else "sequential"}
        return Transcript(
            source_name=source,
            segments=tuple(kept),
            language=info.language,
            language_probability=float(
                detected_prob if detected_prob is not None else info.language_probability
            ),
            duration_s=audio.duration_s,
            model=self.model_name,
            device=self.device,
            compute_type=self.compute_type,
            options=options_dict,
            warnings=tuple(audio.warnings)
            + tuple(warnings)
            + ((guard_note,) if guard_note else ()),
        )

    def _redo_looped_chunks(
        self, audio: DecodedAudio, chunks: list[Segment], kwargs: dict[str, Any]
    ) -> tuple[list[Segment], int]:
        """Decode again, with the plain loop and its temperature fallback, each batched chunk
        whose text is a loop; its speech would otherwise be lost behind the repeated token.

        Returns:
            The segments, and how many chunks were decoded again.
        """
        from jozvesaz_cli.audio import SAMPLE_RATE

        redone: list[Segment] = []
        count = 0
        for chunk in chunks:
            if chunk.compression_ratio <= LOOP_COMPRESSION_RATIO:
                redone.append(chunk)
                continue
            count += 1
            logger.info("chunk %.1f-%.1f s looped; decoding it again", chunk.start, chunk.end)
            first, last = int(chunk.start * SAMPLE_RATE), int(chunk.end * SAMPLE_RATE)
            segments, _ = self._model.transcribe(audio.samples[first:last], **kwargs)
            redone.extend(
                _shifted(segment, chunk.start)
                for segment in _collect(segments, chunk.end - chunk.start, None)
            )
        return redone, count


def _shifted(segment: Segment, offset: float) -> Segment:
    """A segment decoded from a clip, timed on the whole recording."""
    words = tuple(replace(w, start=w.start + offset, end=w.end + offset) for w in segment.words)
    return replace(segment, start=segment.start + offset, end=segment.end + offset, words=words)


def _collect(
    segments: Iterable[Any], duration_s: float, progress: ProgressCallback | None
) -> Iterable[Segment]:
    for raw in segments:
        words = tuple(
            Word(float(w.start), float(w.end), str(w.word), float(w.probability))
            for w in (raw.words or ())
        )
        if progress is not None and duration_s > 0:
            progress(min(1.0, float(raw.end) / duration_s))
        if duration_s and float(raw.start) >= duration_s:
            # Without VAD the last, zero-padded window can yield text timed after the end of
            # the recording (a 30 s hiss gave cues at 31-57 s): there is no audio to hear there.
            logger.debug("dropped segment after the end of the audio: %r", raw.text)
            continue
        yield Segment(
            start=float(raw.start),
            end=min(float(raw.end), duration_s) if duration_s else float(raw.end),
            text=str(raw.text).strip(),
            words=words,
            avg_logprob=float(raw.avg_logprob),
            no_speech_prob=float(raw.no_speech_prob),
            compression_ratio=float(raw.compression_ratio),
        )


def _normalised(text: str) -> str:
    return re.sub(r"[\W_]+", " ", text.lower()).strip()


def suppress_repetition(segments: Sequence[Segment]) -> tuple[list[Segment], list[str]]:
    """Cut a run of more than ``MAX_IDENTICAL_RUN`` identical segments to its first one.

    Whisper can fall into a loop that repeats one phrase with high confidence even with VAD
    on (faster-whisper #506); a speaker almost never says the same sentence three times in a
    row, so such a run is a loop, and the job gets a warning saying how much was removed.
    The same holds inside one segment: a phrase said ``MIN_PHRASE_LOOP`` or more times back
    to back is cut to one (its word timings are dropped, since they no longer match).
    """
    kept: list[Segment] = []
    dropped = 0
    index = 0
    while index < len(segments):
        key = _loop_key(segments[index].text)
        end = index + 1
        while key and end < len(segments) and _loop_key(segments[end].text) == key:
            end += 1
        run = segments[index:end]
        if len(run) > MAX_IDENTICAL_RUN:
            kept.append(run[0])
            dropped += len(run) - 1
        else:
            kept.extend(run)
        index = end
    warnings = (
        [f"repetition loop suppressed: {dropped} repeated segment(s) removed"] if dropped else []
    )
    shortened = 0
    for position, segment in enumerate(kept):
        text = _REPEATED_PHRASE_RE.sub(r"\g<phrase>", segment.text)
        if text != segment.text:
            kept[position] = replace(segment, text=text, words=())
            shortened += 1
    if shortened:
        warnings.append(
            f"repetition loop suppressed: a repeated phrase cut in {shortened} segment(s)"
        )
    return kept, warnings


def _loop_key(text: str) -> str:
    # Punctuation-only segments (". .", "...") loop too; compare them by their raw text.
    return _normalised(text) or text.strip()


def drop_silence_hallucinations(segments: Sequence[Segment]) -> list[Segment]:
    """Remove what the model invents where nobody speaks.

    Credit-style phrases the model was unsure were speech at all; lone fillers ("You") in a
    window the model itself judged silent; and segments with no letters or digits at all
    (". .", "..."), which are never speech.
    """
    phrases = tuple(_normalised(phrase) for phrase in SILENCE_HALLUCINATIONS)
    kept: list[Segment] = []
    for segment in segments:
        text = _normalised(segment.text)
        invented = any(phrase in text for phrase in phrases)
        if (
            not text
            or (invented and (segment.no_speech_prob > 0.3 or segment.avg_logprob < -0.8))
            or (text in SILENCE_FILLERS and segment.no_speech_prob > FILLER_NO_SPEECH_PROB)
        ):
            logger.debug("dropped likely hallucination %r", segment.text)
            continue
        kept.append(segment)
    return kept


def build_transcriber(settings: Settings) -> Transcriber:
    """Load the model for this process and wrap it; the default slot transcriber factory."""
    from jozvesaz_cli.model_loader import load_model, resolve_device, resolve_model

    spec = settings.model_spec
    resolved = resolve_model(spec, verify=False)
    choice = resolve_device(spec)
    model = load_model(spec, resolved.path, choice)
    return WhisperTranscriber(
        model,
        model_name=settings.model_name,
        device=choice.device,
        compute_type=choice.compute_type,
    )
