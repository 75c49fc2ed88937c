"""Builds the benchmark's workload from the shared corpus: a batch of short files and a long set.

The corpus holds about two dozen real recordings with references, most of them a few seconds
long. Users feed a batch transcriber a *batch* of at least 30 files of
mixed length, format and language, and a *long* set of lectures of 10 minutes or more. So:

- the batch is every corpus file that has a reference, copied under a unique name, plus at
  least ``MIN_TRANSCODED_COPIES`` copies transcoded to other containers and codecs (Opus in Ogg,
  MP3, FLAC, AAC in M4A), more if needed to reach ``MIN_BATCH_FILES``; transcoding keeps each
  file's channels and (except for Opus) sample rate, so decoding cost stays realistic;
- the long set joins corpus clips of one language, with pauses of 0.6-1.5 s between them (a
  seeded generator, so every run builds the same audio), until each recording passes the
  target length; its reference is the clips' references joined in the same order. One language
  per recording keeps WER/CER meaningful: Whisper detects one language per recording.

Every duration in the workload is measured by decoding the file that was written, in this run.
Output file stems are unique across the batch because whisper-ctranslate2 names its outputs by
stem alone. The workload is rebuilt on every run (seconds), so its numbers are never stale.
"""

from __future__ import annotations

import csv
import json
import random
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import cast

import numpy as np

SAMPLE_RATE = 16000
MIN_BATCH_FILES = 30
MIN_TRANSCODED_COPIES = 8
LONG_MIN_S = 600.0
QUICK_LONG_MIN_S = 60.0
# The quick recording joins only short clips, so it ends near 60 s instead of overshooting by a
# 74-second corpus file.
QUICK_MAX_CLIP_S = 20.0
PAUSE_RANGE_S = (0.6, 1.5)

# Target containers for transcoded copies: (suffix, encoder, forced sample rate or None).
# Opus only accepts 8/12/16/24/48 kHz, so it is resampled to 48 kHz, as an Opus encoder would.
TRANSCODES: tuple[tuple[str, str, int | None], ...] = (
    (".ogg", "libopus", 48000),
    (".mp3", "libmp3lame", None),
    (".flac", "flac", None),
    (".m4a", "aac", None),
)
QUICK_BATCH = ("en/jfk.flac", "fa/Ardalan01.mp3", "ar/ARA_NORM_0003.wav")
QUICK_TRANSCODED = "en/LDC93S1.wav"


@dataclass(frozen=True, slots=True)
class CorpusEntry:
    """One row of the corpus manifest that has a usable reference.

    Attributes:
        file: path relative to the corpus folder, e.g. ``fa/Ardalan01.mp3``.
        language: a single language code.
        reference: the reference transcript.
        listed_duration_s: the manifest's duration, used only to spread transcoded copies.
    """

    file: str
    language: str
    reference: str
    listed_duration_s: float


@dataclass(frozen=True, slots=True)
class AudioItem:
    """One file of the workload.

    Attributes:
        name: the file name inside its set folder; its stem is unique within the set.
        path: absolute path of the file.
        language: the language of the reference.
        duration_s: measured by decoding the written file.
        reference: the reference transcript.
        origin: the corpus file(s) and the transformation that made it.
    """

    name: str
    path: Path
    language: str
    duration_s: float
    reference: str
    origin: str


@dataclass(frozen=True, slots=True)
class Workload:
    """The two sets the benchmark runs.

    Attributes:
        batch: many files of mixed length, format and language.
        long: a few recordings of ``LONG_MIN_S`` or more (60 s in quick mode).
    """

    batch: tuple[AudioItem, ...]
    long: tuple[AudioItem, ...]

    def set_items(self, set_name: str) -> tuple[AudioItem, ...]:
        """Return the items of ``"batch"`` or ``"long"``."""
        return self.batch if set_name == "batch" else self.long


@dataclass(frozen=True, slots=True)
class LongPlan:
    """How the long set is made.

    Attributes:
        recordings: ``(file name, language, encoder)`` for each joined recording.
        min_s: each recording is at least this long.
        max_clip_s: only clips listed this short or shorter are joined.
    """

    recordings: tuple[tuple[str, str, str], ...]
    min_s: float
    max_clip_s: float


FULL_LONG = LongPlan(
    (("long_en.flac", "en", "flac"), ("long_fa.mp3", "fa", "libmp3lame")), LONG_MIN_S, float("inf")
)
QUICK_LONG = LongPlan((("long_en.flac", "en", "flac"),), QUICK_LONG_MIN_S, QUICK_MAX_CLIP_S)


def read_corpus(corpus_dir: Path) -> list[CorpusEntry]:
    """Read ``manifest.tsv`` and keep single-language rows that have a reference and a file.

    Raises:
        FileNotFoundError: the corpus has no manifest.
    """
    entries = []
    with (corpus_dir / "manifest.tsv").open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE):
            reference = (row.get("reference_transcript") or "").strip()
            language = (row.get("language") or "").strip()
            if not reference or "+" in language or not (corpus_dir / row["file"]).is_file():
                continue
            listed = float(row.get("duration_s") or 0.0)
            entries.append(CorpusEntry(row["file"], language, reference, listed))
    return entries


def measure_duration_s(path: Path) -> float:
    """Decode ``path`` the way faster-whisper does and return its length in seconds."""
    from faster_whisper.audio import decode_audio

    return len(decode_audio(str(path), sampling_rate=SAMPLE_RATE)) / SAMPLE_RATE


def flat_name(file: str) -> str:
    """``fa/Ardalan01.mp3`` -> ``fa_Ardalan01.mp3``: unique, and shows where it came from."""
    return file.replace("/", "_")


def transcode(src: Path, dst: Path, encoder: str, rate: int | None) -> None:
    """Re-encode ``src`` into ``dst`` with PyAV, keeping its channels (and rate unless forced)."""
    import av
    from av.audio.stream import AudioStream

    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        in_stream = inp.streams.audio[0]
        layout = "mono" if in_stream.channels == 1 else "stereo"
        out_rate = rate or in_stream.rate
        out_stream = cast(AudioStream, out.add_stream(encoder, rate=out_rate, layout=layout))
        resampler = av.AudioResampler(format=out_stream.format.name, layout=layout, rate=out_rate)
        for frame in inp.decode(in_stream):
            frame.pts = None
            _encode_frames(out, out_stream, resampler.resample(frame))
        _encode_frames(out, out_stream, resampler.resample(None))
        for packet in out_stream.encode(None):
            out.mux(packet)


def _encode_frames(out: object, stream: object, frames: Iterable[object]) -> None:
    """Encode resampled frames and mux the packets (PyAV buffers to the codec's frame size)."""
    for frame in frames:
        for packet in stream.encode(frame):  # type: ignore[attr-defined]
            out.mux(packet)  # type: ignore[attr-defined]


def encode_pcm(samples: np.ndarray, dst: Path, encoder: str) -> None:
    """Write 16 kHz mono float samples to ``dst`` with ``encoder`` (``flac``, ``libmp3lame``)."""
    import av
    from av.audio.stream import AudioStream

    chunk = SAMPLE_RATE * 10
    with av.open(str(dst), "w") as out:
        stream = cast(AudioStream, out.add_stream(encoder, rate=SAMPLE_RATE, layout="mono"))
        resampler = av.AudioResampler(format=stream.format.name, layout="mono", rate=SAMPLE_RATE)
        for start in range(0, len(samples), chunk):
            block = np.ascontiguousarray(samples[start : start + chunk], dtype=np.float32)
            frame = av.AudioFrame.from_ndarray(block.reshape(1, -1), format="flt", layout="mono")
            frame.sample_rate = SAMPLE_RATE
            _encode_frames(out, stream, resampler.resample(frame))
        _encode_frames(out, stream, resampler.resample(None))
        for packet in stream.encode(None):
            out.mux(packet)


def pick_transcodes(
    entries: Sequence[CorpusEntry], count: int
) -> list[tuple[CorpusEntry, tuple[str, str, int | None]]]:
    """Pair ``count`` entries, spread from shortest to longest, with formats from ``TRANSCODES``.

    Spreading over the length range and cycling the formats mixes formats for short and long
    files alike.
    """
    if not entries or count <= 0:
        return []
    by_length = sorted(entries, key=lambda entry: entry.listed_duration_s)
    step = len(by_length) / count
    return [
        (by_length[int(i * step) % len(by_length)], TRANSCODES[i % len(TRANSCODES)])
        for i in range(count)
    ]


def build_batch(
    corpus_dir: Path,
    copies: Sequence[CorpusEntry],
    transcodes: Sequence[tuple[CorpusEntry, tuple[str, str, int | None]]],
    out_dir: Path,
) -> list[AudioItem]:
    """Copy ``copies`` into ``out_dir`` as they are, and write the re-encoded ``transcodes``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    items = []
    for entry in copies:
        dst = out_dir / flat_name(entry.file)
        shutil.copyfile(corpus_dir / entry.file, dst)
        items.append(_item(dst, entry.language, entry.reference, f"copy of {entry.file}"))
    for entry, (suffix, encoder, rate) in transcodes:
        stem = Path(flat_name(entry.file)).stem
        dst = out_dir / f"{stem}-{encoder.removeprefix('lib')}{suffix}"
        transcode(corpus_dir / entry.file, dst, encoder, rate)
        items.append(_item(dst, entry.language, entry.reference, f"{entry.file} -> {encoder}"))
    return items


def _item(path: Path, language: str, reference: str, origin: str) -> AudioItem:
    """Make an ``AudioItem`` for a written file, measuring its duration."""
    return AudioItem(path.name, path, language, measure_duration_s(path), reference, origin)


def join_clips(
    corpus_dir: Path, clips: Sequence[CorpusEntry], min_s: float, rng: random.Random
) -> tuple[np.ndarray, list[str], list[str]]:
    """Join ``clips`` in shuffled passes, with random pauses, until ``min_s`` is reached.

    Returns:
        The 16 kHz mono samples, the references in spoken order and the clip files used.
    """
    from faster_whisper.audio import decode_audio

    decoded = {c.file: decode_audio(str(corpus_dir / c.file), SAMPLE_RATE) for c in clips}
    parts: list[np.ndarray] = []
    references: list[str] = []
    used: list[str] = []
    total = 0
    while total < min_s * SAMPLE_RATE:
        order = list(clips)
        rng.shuffle(order)
        for clip in order:
            pause = np.zeros(int(rng.uniform(*PAUSE_RANGE_S) * SAMPLE_RATE), dtype=np.float32)
            parts.extend((decoded[clip.file], pause))
            total += len(decoded[clip.file]) + len(pause)
            references.append(clip.reference)
            used.append(clip.file)
            if total >= min_s * SAMPLE_RATE:
                break
    return np.concatenate(parts), references, used


def build_long(
    corpus_dir: Path, entries: Sequence[CorpusEntry], out_dir: Path, plan: LongPlan, seed: int
) -> list[AudioItem]:
    """Write the joined recordings of ``plan`` into ``out_dir``.

    Languages without clips in the corpus are skipped; the caller checks the count.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    items = []
    for name, language, encoder in plan.recordings:
        clips = [
            entry
            for entry in entries
            if entry.language == language and entry.listed_duration_s <= plan.max_clip_s
        ]
        if not clips:
            continue
        samples, references, used = join_clips(corpus_dir, clips, plan.min_s, rng)
        dst = out_dir / name
        encode_pcm(samples, dst, encoder)
        origin = f"{len(used)} {language} clips joined ({len(set(used))} distinct), {encoder}"
        items.append(_item(dst, language, " ".join(references), origin))
    return items


def build_workload(corpus_dir: Path, workload_dir: Path, *, quick: bool, seed: int = 6) -> Workload:
    """Build the batch and long sets under ``workload_dir`` and write ``workload.json``.

    Args:
        corpus_dir: the shared corpus (with ``manifest.tsv``).
        workload_dir: where ``batch/`` and ``long/`` are (re)created.
        quick: 4 short files and one 60-second recording, for tests.
        seed: seeds pause lengths and clip order, so runs are comparable.

    Raises:
        ValueError: the corpus cannot fill the sets the benchmark needs.
    """
    entries = read_corpus(corpus_dir)
    for sub in ("batch", "long"):
        shutil.rmtree(workload_dir / sub, ignore_errors=True)
    if quick:
        copies = [entry for entry in entries if entry.file in QUICK_BATCH]
        transcodes = [(e, TRANSCODES[0]) for e in entries if e.file == QUICK_TRANSCODED]
        plan, minimum_batch = QUICK_LONG, 1
    else:
        copies = entries
        count = max(MIN_TRANSCODED_COPIES, MIN_BATCH_FILES - len(entries))
        transcodes = pick_transcodes(entries, count)
        plan, minimum_batch = FULL_LONG, MIN_BATCH_FILES
    batch = build_batch(corpus_dir, copies, transcodes, workload_dir / "batch")
    long = build_long(corpus_dir, entries, workload_dir / "long", plan, seed)
    if len(batch) < minimum_batch or len(long) < len(plan.recordings):
        raise ValueError(
            f"corpus {corpus_dir} gave {len(batch)} batch files and {len(long)} long recordings; "
            f"need {minimum_batch} and {len(plan.recordings)}"
        )
    workload = Workload(tuple(batch), tuple(long))
    write_workload_json(workload, workload_dir / "workload.json")
    return workload


def describe_items(items: Sequence[AudioItem]) -> dict[str, object]:
    """Summarise a set for the report: counts, audio seconds, formats, languages, items."""
    formats: dict[str, int] = {}
    languages: dict[str, float] = {}
    for item in items:
        suffix = item.path.suffix.lstrip(".")
        formats[suffix] = formats.get(suffix, 0) + 1
        languages[item.language] = round(languages.get(item.language, 0.0) + item.duration_s, 2)
    durations = [item.duration_s for item in items]
    return {
        "files": len(items),
        "audio_s": round(sum(durations), 2),
        "shortest_s": round(min(durations), 2) if durations else None,
        "longest_s": round(max(durations), 2) if durations else None,
        "formats": formats,
        "audio_s_by_language": languages,
        "items": [
            {
                "name": item.name,
                "language": item.language,
                "duration_s": round(item.duration_s, 3),
                "origin": item.origin,
            }
            for item in items
        ],
    }


def write_workload_json(workload: Workload, path: Path) -> None:
    """Record what was built, for whoever inspects ``bench/workload/`` later."""
    data = {
        name: [{**asdict(item), "path": str(item.path)} for item in workload.set_items(name)]
        for name in ("batch", "long")
    }
    path.write_text(json.dumps(data, ensure_ascii=False, indent=1), encoding="utf-8")
