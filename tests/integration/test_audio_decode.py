"""Integration tests for ``jozvesaz_cli.audio`` on the bug bank's inputs and the shared corpus.

Inputs are built at test time by ``fixtures_audio`` (sox, ffmpeg, espeak-ng); the decoder is the
real PyAV, and memory is measured in a fresh child process. Covers bug bank C02 (nothing
decodable), C05 (channel layouts and rates), C06 (file names), C07 (length limits and memory) and
issue 7's partial decodes.
"""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from jozvesaz_cli.audio import SAMPLE_RATE, check_input_file, decode_audio, probe_audio
from jozvesaz_cli.errors import FailureReason, InputError
from tests.fixtures_audio import (
    make_c02_inputs,
    make_c04_inputs,
    make_c05_inputs,
    make_c06_names,
    make_corrupt_mp3,
    make_hd_video_mkv,
    make_long_opus,
    make_lying_mka,
    make_special_paths,
    make_speech,
    make_speech60,
    make_truncated_mp3,
    run_tool,
    wav_duration_s,
)

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "corpus"
REPO = Path(__file__).resolve().parents[2]


def rms_db(samples: np.ndarray) -> float:
    return 20 * math.log10(float(np.sqrt(np.mean(np.square(samples, dtype=np.float64)))))


def failure(call: Callable[..., object], path: Path, **kwargs: object) -> InputError:
    with pytest.raises(InputError) as caught:
        call(path, **kwargs)
    error = caught.value
    # A one-line human reason that never shows an exception class (bug bank C02).
    assert "\n" not in error.detail
    for word in ("Error", "Exception", "Traceback", "tuple index"):
        assert word not in error.detail
    return error


def decode_failure(path: Path, max_audio_s: float = 600.0) -> InputError:
    return failure(decode_audio, path, max_audio_s=max_audio_s)


# -- C02: nothing decodable ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def c02(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_c02_inputs(tmp_path_factory.mktemp("c02"))


@pytest.fixture(scope="module")
def special(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_special_paths(tmp_path_factory.mktemp("special"))


C02_EXPECTED = [
    ("empty.mp3", FailureReason.EMPTY_FILE, "empty file (0 bytes)"),
    ("empty.m4a", FailureReason.EMPTY_FILE, "empty file (0 bytes)"),
    ("empty.wav", FailureReason.EMPTY_FILE, "empty file (0 bytes)"),
    ("empty.webm", FailureReason.EMPTY_FILE, "empty file (0 bytes)"),
    ("empty.flac", FailureReason.EMPTY_FILE, "empty file (0 bytes)"),
    ("header_only.wav", FailureReason.NO_SAMPLES, "audio stream contains no samples"),
    ("header_only.webm", FailureReason.UNDECODABLE, "truncated"),
    ("video_no_audio.mp4", FailureReason.NO_AUDIO_STREAM, "no audio stream (container has: video)"),
    ("image_named.mp3", FailureReason.NO_AUDIO_STREAM, "no audio stream (the file is a PNG image)"),
    ("text_named.wav", FailureReason.NOT_AUDIO, "not a recognised audio or video file"),
]


@pytest.mark.parametrize(("name", "reason", "detail"), C02_EXPECTED)
def test_decode_audio_fails_each_c02_input_with_its_reason(
    c02: dict[str, Path], name: str, reason: FailureReason, detail: str
) -> None:
    error = decode_failure(c02[name])
    assert error.reason is reason
    assert detail in error.detail
    assert error.path == str(c02[name])


@pytest.mark.parametrize(("name", "reason", "detail"), C02_EXPECTED)
def test_probe_audio_agrees_with_decode_audio_on_c02_inputs(
    c02: dict[str, Path], name: str, reason: FailureReason, detail: str
) -> None:
    if name == "header_only.wav":
        # Only decoding can find that there are no samples; the header itself is valid.
        assert probe_audio(c02[name]).declared_duration_s in (None, 0.0)
        return
    assert failure(probe_audio, c02[name]).reason is reason


@pytest.mark.parametrize(
    ("key", "reason", "detail"),
    [
        ("directory", FailureReason.NOT_A_FILE, "a directory, not a file"),
        ("fifo", FailureReason.NOT_A_FILE, "a named pipe (FIFO), not a file"),
        ("socket", FailureReason.NOT_A_FILE, "a socket, not a file"),
        ("device", FailureReason.NOT_A_FILE, "a device node, not a file"),
        ("missing", FailureReason.NOT_FOUND, "no such file"),
        ("broken_link", FailureReason.NOT_FOUND, "a symbolic link whose target does not exist"),
    ],
)
def test_decode_audio_refuses_special_paths_without_blocking(
    special: dict[str, Path], key: str, reason: FailureReason, detail: str
) -> None:
    outcome: list[InputError] = []

    def attempt() -> None:
        try:
            decode_audio(special[key], max_audio_s=60)
        except InputError as exc:
            outcome.append(exc)

    worker = threading.Thread(target=attempt, daemon=True)
    worker.start()
    worker.join(timeout=10)
    if worker.is_alive():
        os.close(os.open(special[key], os.O_WRONLY | os.O_NONBLOCK))  # free a blocked FIFO reader
        worker.join(timeout=5)
        pytest.fail(f"decode_audio blocked on {key}")
    assert outcome, "no InputError raised"
    assert outcome[0].reason is reason
    assert outcome[0].detail == detail


def test_pure_silence_decodes_unlike_a_header_only_wav(tmp_path: Path) -> None:
    made = make_c04_inputs(tmp_path)
    for name in ("silence30.wav", "silence30_stereo44k.wav"):
        audio = decode_audio(made[name], max_audio_s=600)
        assert abs(audio.duration_s - 30.0) < 0.01
        # sox dithers when it writes 16 bits, so this "silence" is noise near -90 dBFS.
        assert float(np.abs(audio.samples).max()) < 1e-3
        assert audio.warnings == ()


# -- C05: channel layouts and sample rates -------------------------------------------------------


@pytest.fixture(scope="module")
def c05(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_c05_inputs(tmp_path_factory.mktemp("c05"))


C05_DECLARED = {
    "speech.wav": ("pcm_s16le", 16000, 1),
    "center_only_51.m4a": ("aac", 48000, 6),
    "center_only_51.mkv": ("aac", 48000, 6),
    "phone8k_ulaw.wav": ("pcm_mulaw", 8000, 1),
    "hires96k_24bit.wav": ("pcm_s24le", 96000, 2),
    "odd11025.wav": ("pcm_s16le", 11025, 1),
    "stereo_one_silent.wav": ("pcm_s16le", 16000, 2),
}


@pytest.mark.parametrize("name", sorted(C05_DECLARED))
def test_decode_audio_keeps_length_and_level_across_layouts_and_rates(
    c05: dict[str, Path], name: str
) -> None:
    reference = decode_audio(c05["speech.wav"], max_audio_s=60)
    source_s = wav_duration_s(c05["speech.wav"])
    audio = decode_audio(c05[name], max_audio_s=60)
    # The .mkv is cut at 9.9 s by its recipe (9.94 s of audio); every other file is the full 9.96 s.
    assert abs(audio.duration_s - source_s) <= 0.05
    assert audio.warnings == ()
    assert (audio.info.codec, audio.info.sample_rate, audio.info.channels) == C05_DECLARED[name]
    # Full speech level, including the centre-only 5.1 files: within 3 dB of the mono reference
    # (bug bank C05 saw 10.7 dB lost in FFmpeg's default downmix).
    assert abs(rms_db(audio.samples) - rms_db(reference.samples)) <= 3.0


def ffmpeg_mono_db(path: Path, sample_format: str) -> float:
    """Level of FFmpeg's own downmix to mono, as PyAV's resampler does it."""
    import av

    with av.open(str(path)) as container:
        resampler = av.AudioResampler(format=sample_format, layout="mono", rate=SAMPLE_RATE)
        chunks = [
            out.to_ndarray()[0].astype(np.float64)
            for frame in container.decode(audio=0)
            for out in resampler.resample(frame)
        ]
    samples = np.concatenate(chunks)
    return rms_db(samples / 32768.0 if sample_format == "s16" else samples)


def test_ffmpeg_downmix_level_depends_on_layout_and_ours_does_not(c05: dict[str, Path]) -> None:
    # Why audio.py mixes channels itself (bug bank C05).
    reference_db = rms_db(decode_audio(c05["speech.wav"], max_audio_s=60).samples)
    centre, one_side, dual = (
        c05["center_only_51.m4a"], c05["stereo_one_silent.wav"], c05["hires96k_24bit.wav"]
    )  # fmt: skip
    # faster-whisper's decode_audio asks for s16 mono: FFmpeg normalises the 5.1 matrix and the
    # centre comes out about 10.7 dB down; a silent side costs 6 dB.
    assert ffmpeg_mono_db(centre, "s16") < reference_db - 9.0
    assert ffmpeg_mono_db(one_side, "s16") < reference_db - 5.0
    # In float FFmpeg does not normalise, so the level moves with the layout instead.
    assert ffmpeg_mono_db(one_side, "flt") < reference_db - 2.5
    assert ffmpeg_mono_db(dual, "flt") > reference_db + 2.5
    for path in (centre, one_side, dual):
        ours_db = rms_db(decode_audio(path, max_audio_s=60).samples)
        assert abs(ours_db - reference_db) < 0.5


def test_decode_audio_aligns_the_centre_only_51_speech_in_time(c05: dict[str, Path]) -> None:
    reference = decode_audio(c05["speech.wav"], max_audio_s=60).samples
    audio = decode_audio(c05["center_only_51.m4a"], max_audio_s=60).samples
    n = min(reference.shape[0], audio.shape[0])
    window = 4000  # search lags of up to 0.25 s
    lags = range(-window, window + 1, 16)
    scores = [
        float(np.dot(reference[window : n - window], audio[window + k : n - window + k]))
        for k in lags
    ]
    best = list(lags)[int(np.argmax(scores))]
    assert abs(best) <= 0.02 * SAMPLE_RATE  # timings within 20 ms


@pytest.mark.slow
def test_decode_audio_of_mkv_skips_video_and_costs_about_the_m4a(c05: dict[str, Path]) -> None:
    import av

    mkv = make_hd_video_mkv(c05["speech.wav"].parent)
    m4a = c05["center_only_51.m4a"]
    started = time.perf_counter()
    with av.open(str(mkv)) as container:
        frames = sum(1 for _ in container.decode(video=0))
    video_s = time.perf_counter() - started
    assert frames >= 240
    m4a_times: list[float] = []
    mkv_times: list[float] = []
    for _ in range(3):  # interleaved, best of three, to ride out a busy machine
        for path, times in ((m4a, m4a_times), (mkv, mkv_times)):
            started = time.perf_counter()
            audio = decode_audio(path, max_audio_s=60)
            times.append(time.perf_counter() - started)
            assert abs(audio.duration_s - 9.94) < 0.05
    m4a_s, mkv_s = min(m4a_times), min(mkv_times)
    # Decoding the video frames alone costs video_s; the audio decode must not pay for them.
    assert mkv_s < m4a_s + 0.5 * video_s, (
        f"mkv {mkv_s:.3f} s, m4a {m4a_s:.3f} s, video {video_s:.3f} s"
    )


def test_decode_audio_follows_a_rate_and_layout_change_mid_stream(tmp_path: Path) -> None:
    speech = make_speech(tmp_path)
    first, second = tmp_path / "a16.mp3", tmp_path / "b44.mp3"
    run_tool("ffmpeg", "-v", "error", "-y", "-i", speech, "-c:a", "libmp3lame", "-b:a", "64k",
             "-write_xing", "0", first)  # fmt: skip
    run_tool("ffmpeg", "-v", "error", "-y", "-i", speech, "-ar", "44100", "-ac", "2",
             "-c:a", "libmp3lame", "-b:a", "128k", "-write_xing", "0", second)  # fmt: skip
    joined = tmp_path / "joined.mp3"
    joined.write_bytes(first.read_bytes() + second.read_bytes())
    expected_s = sum(decode_audio(p, max_audio_s=60).duration_s for p in (first, second))
    audio = decode_audio(joined, max_audio_s=60)
    assert abs(audio.duration_s - expected_s) < 0.1


# -- C06: file names -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def c06(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_c06_names(tmp_path_factory.mktemp("c06"))


@pytest.mark.parametrize(
    "key", ["persian", "brackets", "leading_dash", "nfd", "long254", "non_utf8"]
)
def test_decode_audio_opens_awkward_names(c06: dict[str, Path], key: str) -> None:
    path = c06[key]
    assert os.path.exists(path)
    audio = decode_audio(path, max_audio_s=60)
    assert 9.9 < audio.duration_s < 10.2
    assert decode_audio(str(path), max_audio_s=60).duration_s == audio.duration_s
    if key == "long254":
        assert len(os.fsencode(path.name)) == 254


def test_decode_audio_opens_non_ascii_names_under_the_c_locale(c06: dict[str, Path]) -> None:
    # Under LC_ALL=C without UTF-8 mode Python sees these names as surrogate escapes.
    folder = c06["persian"].parent
    script = textwrap.dedent(
        """
        import json, os, sys
        from jozvesaz_cli.audio import decode_audio
        encoding = sys.getfilesystemencoding()
        results = {}
        for name in sorted(os.listdir(".")):
            results[ascii(name)] = round(decode_audio(name, max_audio_s=60).duration_s, 2)
        print(json.dumps({"encoding": encoding, "results": results}))
        """
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LC_", "LANG", "PYTHON"))}
    env |= {"LC_ALL": "C", "PYTHONCOERCECLOCALE": "0", "PYTHONUTF8": "0", "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=folder, env=env, capture_output=True, timeout=60
    )
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    report = json.loads(result.stdout)
    assert report["encoding"] == "ascii"
    assert len(report["results"]) == len(c06)
    assert all(9.9 < seconds < 10.2 for seconds in report["results"].values())


# -- C07 and issue 3: limits counted while decoding ----------------------------------------------

RSS_SCRIPT = textwrap.dedent(
    """
    import json, resource, sys
    from jozvesaz_cli.audio import decode_audio
    from jozvesaz_cli.errors import InputError

    def status_kb(field):
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        raise LookupError(field)

    decode_audio(sys.argv[1], max_audio_s=60)  # warm up: PyAV import, codecs, allocator
    try:  # Linux >= 4.0: reset the high-water mark to the current RSS
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        peak_field = "VmHWM"
    except OSError:  # fall back to the lifetime peak, which can only overstate the growth
        peak_field = None
    before_kb = status_kb("VmRSS")
    try:
        decode_audio(sys.argv[2], max_audio_s=float(sys.argv[3]))
        reason = None
    except InputError as exc:
        reason = exc.reason.value
    if peak_field:
        peak_kb = status_kb(peak_field)
    else:
        peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"reason": reason, "growth_mb": (peak_kb - before_kb) / 1024}))
    """
)


def peak_rss_growth_mb(warm_up: Path, path: Path, max_audio_s: float) -> tuple[str | None, float]:
    """Decode in a fresh child; return its failure reason and its peak-RSS growth in MB."""
    result = subprocess.run(
        [sys.executable, "-c", RSS_SCRIPT, str(warm_up), str(path), str(max_audio_s)],
        capture_output=True,
        timeout=120,
        env=os.environ | {"PYTHONPATH": str(REPO)},
    )
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    report = json.loads(result.stdout)
    return report["reason"], report["growth_mb"]


@pytest.fixture(scope="module")
def long_opus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_long_opus(tmp_path_factory.mktemp("c07"), 600)


def test_decode_audio_refuses_a_long_low_bitrate_opus_with_bounded_memory(
    long_opus: Path,
) -> None:
    assert long_opus.stat().st_size < 2_000_000  # ten minutes in under 2 MB
    assert probe_audio(long_opus).declared_duration_s == pytest.approx(597.6, abs=1.0)
    error = decode_failure(long_opus, max_audio_s=60)
    assert error.reason is FailureReason.TOO_LONG
    assert (
        error.detail == "longer than the limit: over 60 s of audio (JOZVESAZ_MAX_AUDIO_SECONDS=60)"
    )
    reason, growth_mb = peak_rss_growth_mb(make_speech(long_opus.parent), long_opus, 60)
    assert reason == "too_long"
    # Stopping at the limit keeps the decode near 60 s of audio (about 4 MB of float32).
    assert growth_mb < 50, f"peak RSS grew {growth_mb:.1f} MB"


@pytest.mark.slow
def test_peak_rss_meter_sees_a_full_decode(long_opus: Path) -> None:
    # Keeps the memory test above honest: the same meter, on the same file decoded in full,
    # reports about the size of the samples (598 s x 16 kHz x 4 bytes = 36.5 MiB), not far more.
    reason, growth_mb = peak_rss_growth_mb(make_speech(long_opus.parent), long_opus, 700)
    assert reason is None
    assert 30 < growth_mb < 80, f"peak RSS grew {growth_mb:.1f} MB"


@pytest.mark.slow
def test_decode_audio_measures_a_lying_header_by_counted_samples(tmp_path: Path) -> None:
    lying = make_lying_mka(tmp_path, seconds=600, declared_s=1.0)
    assert probe_audio(lying).declared_duration_s == pytest.approx(1.0)
    assert decode_failure(lying, max_audio_s=60).reason is FailureReason.TOO_LONG
    reason, growth_mb = peak_rss_growth_mb(make_speech(tmp_path), lying, 60)
    assert reason == "too_long" and growth_mb < 50
    audio = decode_audio(lying, max_audio_s=700)
    honest = decode_audio(tmp_path / "long600s.opus", max_audio_s=700)
    assert audio.duration_s == pytest.approx(honest.duration_s, abs=0.05)
    assert audio.duration_s > 590
    assert audio.info.declared_duration_s == pytest.approx(1.0)
    assert audio.warnings == ()  # longer than declared is not damage


# -- issue 7: partial decodes --------------------------------------------------------------------


@pytest.fixture(scope="module")
def mp3_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("partial")
    make_speech60(folder)
    return folder


def test_decode_audio_warns_with_both_lengths_when_the_end_is_missing(mp3_folder: Path) -> None:
    full = decode_audio(make_speech60(mp3_folder)["mp3"], max_audio_s=120)
    assert full.warnings == ()
    audio = decode_audio(make_truncated_mp3(mp3_folder, 0.6), max_audio_s=120)
    declared = audio.info.declared_duration_s
    assert declared is not None
    assert declared == pytest.approx(full.duration_s, abs=0.1)
    assert audio.duration_s == pytest.approx(0.6 * declared, abs=1.0)
    assert len(audio.warnings) == 1
    warning = audio.warnings[0]
    assert f"decoded {audio.duration_s:.1f} s of the declared {declared:.1f} s" in warning
    assert "damaged or truncated" in warning


def test_decode_audio_fails_when_most_of_the_file_is_missing(mp3_folder: Path) -> None:
    path = make_truncated_mp3(mp3_folder, 0.3)
    error = decode_failure(path, max_audio_s=120)
    assert error.reason is FailureReason.PARTIAL_DECODE
    declared = probe_audio(path).declared_duration_s
    assert declared is not None
    assert f"of the declared {declared:.1f} s" in error.detail
    assert "decoded only 1" in error.detail  # about 17.9 s


def test_decode_audio_accepts_a_shortfall_within_tolerance(mp3_folder: Path) -> None:
    audio = decode_audio(make_truncated_mp3(mp3_folder, 0.995), max_audio_s=120)
    assert audio.warnings == ()


def test_decode_audio_skips_corrupt_packets_in_the_middle_with_a_warning(
    mp3_folder: Path,
) -> None:
    audio = decode_audio(make_corrupt_mp3(mp3_folder), max_audio_s=120)
    declared = audio.info.declared_duration_s
    assert declared is not None
    # 4 KB of noise is about 0.5 s of 64 kb/s audio; the rest decodes.
    assert declared - 1.0 <= audio.duration_s <= declared
    assert len(audio.warnings) == 1
    assert "damaged audio packet" in audio.warnings[0]
    assert f"of the declared {declared:.1f} s" in audio.warnings[0]


# -- the shared corpus ---------------------------------------------------------------------------


#: The manifest lists this file at 59.95 s, ffprobe's length (59.952 s), which counts 46 ms of MP3
#: encoder delay that FFmpeg's decoder trims; ``ffmpeg -i FILE -f s16le -`` also gives 59.90 s.
CORPUS_TOLERANCE_S = {"other/multilingual_en_de.mp3": 0.06}


def corpus_rows() -> list[dict[str, str]]:
    manifest = CORPUS / "manifest.tsv"
    if not manifest.exists():
        return []
    with manifest.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


@pytest.mark.parametrize("row", corpus_rows() or [None], ids=lambda r: r["file"] if r else "absent")
def test_decode_audio_matches_the_corpus_manifest(row: dict[str, str] | None) -> None:
    if row is None:
        if os.environ.get("CI"):
            pytest.fail(f"corpus missing at {CORPUS}")
        pytest.skip(f"corpus not present at {CORPUS}")
    path = CORPUS / row["file"]
    audio = decode_audio(path, max_audio_s=600)
    tolerance_s = CORPUS_TOLERANCE_S.get(row["file"], 0.05)
    assert abs(audio.duration_s - float(row["duration_s"])) <= tolerance_s
    assert audio.info.sample_rate == int(row["sample_rate"])
    assert audio.info.channels == int(row["channels"])
    assert audio.warnings == ()
    assert check_input_file(path) == path.stat().st_size
