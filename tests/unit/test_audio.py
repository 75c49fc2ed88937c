"""Unit tests for ``jozvesaz_cli.audio`` on small inputs written by Python itself.

No external tool is needed: WAV files come from the stdlib ``wave`` module or raw ``struct``
headers, and special files (FIFO, socket, directory) from ``os``. The decoder is the real PyAV.
"""

from __future__ import annotations

import math
import os
import socket
import struct
import threading
import wave
from pathlib import Path

import numpy as np
import pytest

from jozvesaz_cli.audio import (
    SAMPLE_RATE,
    SUPPORTED_SUFFIXES,
    AudioInfo,
    DecodedAudio,
    check_input_file,
    decode_audio,
    is_supported_path,
    mix_to_mono,
    probe_audio,
)
from jozvesaz_cli.errors import FailureReason, InputError

# -- helpers -------------------------------------------------------------------------------------


def write_wav(path: Path, channels: list[np.ndarray], rate: int) -> Path:
    """Write float channels (-1..1, equal lengths) as a 16-bit PCM WAV."""
    stacked = np.stack(channels, axis=1) if channels else np.zeros((0, 1))
    pcm = np.clip(np.round(stacked * 32767), -32768, 32767).astype("<i2")
    with wave.open(os.fspath(path), "wb") as handle:
        handle.setnchannels(max(len(channels), 1))
        handle.setsampwidth(2)
        handle.setframerate(rate)
        handle.writeframes(pcm.tobytes())
    return path


def sine(seconds: float, rate: int, freq: float = 440.0, amp: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (amp * np.sin(2 * math.pi * freq * t)).astype(np.float32)


def rms_db(samples: np.ndarray) -> float:
    return 20 * math.log10(float(np.sqrt(np.mean(np.square(samples, dtype=np.float64)))))


def reason_of(call: object, *args: object, **kwargs: object) -> InputError:
    with pytest.raises(InputError) as caught:
        call(*args, **kwargs)  # type: ignore[operator]
    return caught.value


# -- is_supported_path ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["talk.wav", "TALK.MP3", "a.b.m4a", "جلسه.opus", "clip.WebM", "movie.mkv", "x.3gp", "-rf.wav"],
)
def test_is_supported_path_accepts_audio_and_video_suffixes(name: str) -> None:
    assert is_supported_path(Path(name))
    assert is_supported_path(name)


@pytest.mark.parametrize(
    "name", ["notes.txt", "talk.wav.part", "talk", ".wav", "talk.crdownload", "cover.png"]
)
def test_is_supported_path_rejects_other_suffixes(name: str) -> None:
    assert not is_supported_path(Path(name))


def test_is_supported_path_handles_surrogate_escaped_names() -> None:
    assert is_supported_path(Path(os.fsdecode(b"caf\xe9.wav")))


def test_supported_suffixes_are_lower_case_with_dot() -> None:
    assert all(s.startswith(".") and s == s.lower() for s in SUPPORTED_SUFFIXES)
    required = {".wav", ".mp3", ".m4a", ".aac", ".flac", ".ogg", ".oga", ".opus", ".webm", ".mkv"}
    required |= {".mka", ".mp4", ".mov", ".avi", ".wma", ".amr", ".3gp", ".aiff", ".aif", ".caf"}
    required |= {".ac3", ".mpga"}
    assert required <= SUPPORTED_SUFFIXES


# -- mix_to_mono ---------------------------------------------------------------------------------


def test_mix_to_mono_keeps_full_level_of_centre_only_51() -> None:
    speech = sine(1.0, SAMPLE_RATE)
    block = np.zeros((speech.shape[0], 6), dtype=np.float32)
    block[:, 2] = speech
    mono = mix_to_mono(block)
    assert mono.dtype == np.float32 and mono.flags.c_contiguous
    np.testing.assert_allclose(mono, speech, atol=1e-7)


def test_mix_to_mono_ignores_a_silent_or_near_silent_channel() -> None:
    speech = sine(1.0, SAMPLE_RATE)
    hum = sine(1.0, SAMPLE_RATE, freq=50.0, amp=0.3 * 0.05)  # 5 % of the speech's RMS
    np.testing.assert_allclose(mix_to_mono(np.stack([speech, hum], axis=1)), speech, atol=1e-7)


def test_mix_to_mono_averages_channels_that_carry_signal() -> None:
    left = sine(1.0, SAMPLE_RATE, amp=0.4)
    right = sine(1.0, SAMPLE_RATE, freq=300.0, amp=0.1)  # 25 %: kept
    mono = mix_to_mono(np.stack([left, right], axis=1))
    np.testing.assert_allclose(mono, (left + right) / 2, atol=1e-6)


def test_mix_to_mono_of_all_silent_channels_is_silent() -> None:
    block = np.zeros((1000, 6), dtype=np.float32)
    mono = mix_to_mono(block)
    assert mono.shape == (1000,) and not mono.any()


def test_mix_to_mono_survives_nan_and_infinity() -> None:
    block = np.stack([sine(0.1, SAMPLE_RATE), np.full(1600, np.nan, dtype=np.float32)], axis=1)
    block[5, 0] = np.inf
    assert np.isfinite(mix_to_mono(block)).all()
    mono = sine(0.1, SAMPLE_RATE)
    mono[7] = np.nan
    assert np.isfinite(mix_to_mono(mono[:, None])).all()


def test_mix_to_mono_passes_mono_through() -> None:
    speech = sine(0.5, SAMPLE_RATE)
    np.testing.assert_array_equal(mix_to_mono(speech[:, None]), speech)


# -- check_input_file ----------------------------------------------------------------------------


def test_check_input_file_returns_the_size(tmp_path: Path) -> None:
    path = tmp_path / "a.wav"
    path.write_bytes(b"x" * 123)
    assert check_input_file(path) == 123
    assert check_input_file(str(path)) == 123


def test_check_input_file_refuses_an_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.m4a"
    path.write_bytes(b"")
    error = reason_of(check_input_file, path)
    assert error.reason is FailureReason.EMPTY_FILE
    assert error.detail == "empty file (0 bytes)"
    assert error.path == str(path)
    assert str(path) in str(error)


def test_check_input_file_refuses_a_missing_path(tmp_path: Path) -> None:
    error = reason_of(check_input_file, tmp_path / "missing.wav")
    assert error.reason is FailureReason.NOT_FOUND
    assert error.detail == "no such file"


def test_check_input_file_names_a_broken_symlink(tmp_path: Path) -> None:
    link = tmp_path / "link.wav"
    link.symlink_to(tmp_path / "gone.wav")
    error = reason_of(check_input_file, link)
    assert error.reason is FailureReason.NOT_FOUND
    assert "symbolic link" in error.detail


def test_check_input_file_refuses_a_path_under_a_file(tmp_path: Path) -> None:
    parent = tmp_path / "file"
    parent.write_bytes(b"x")
    assert reason_of(check_input_file, parent / "a.wav").reason is FailureReason.NOT_FOUND


def test_check_input_file_refuses_a_directory(tmp_path: Path) -> None:
    folder = tmp_path / "folder.wav"
    folder.mkdir()
    error = reason_of(check_input_file, folder)
    assert error.reason is FailureReason.NOT_A_FILE
    assert "directory" in error.detail


def test_check_input_file_refuses_a_fifo_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.wav"
    os.mkfifo(fifo)
    outcome: list[InputError] = []

    def check() -> None:
        try:
            check_input_file(fifo)
        except InputError as exc:
            outcome.append(exc)

    worker = threading.Thread(target=check, daemon=True)
    worker.start()
    worker.join(timeout=5)
    if worker.is_alive():
        # Release the blocked reader so the thread can end, then fail.
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        worker.join(timeout=5)
        pytest.fail("check_input_file blocked on a FIFO")
    assert outcome and outcome[0].reason is FailureReason.NOT_A_FILE
    assert "FIFO" in outcome[0].detail


def test_check_input_file_refuses_a_socket(tmp_path: Path) -> None:
    path = tmp_path / "s.wav"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(os.fspath(path))
        error = reason_of(check_input_file, path)
    finally:
        sock.close()
    assert error.reason is FailureReason.NOT_A_FILE
    assert "socket" in error.detail


def test_check_input_file_refuses_a_device_node() -> None:
    error = reason_of(check_input_file, Path("/dev/null"))
    assert error.reason is FailureReason.NOT_A_FILE
    assert "device" in error.detail


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_check_input_file_refuses_an_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "secret.wav"
    path.write_bytes(b"RIFF")
    path.chmod(0)
    error = reason_of(check_input_file, path)
    assert error.reason is FailureReason.UNREADABLE


# -- probe_audio and decode_audio on Python-written files ----------------------------------------


def test_decode_audio_returns_16k_mono_float32(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "tone.wav", [sine(2.0, 22050)], 22050)
    audio = decode_audio(path, max_audio_s=60)
    assert isinstance(audio, DecodedAudio)
    assert audio.samples.dtype == np.float32
    assert audio.samples.ndim == 1 and audio.samples.flags.c_contiguous
    assert abs(audio.duration_s - 2.0) < 0.01
    assert audio.samples.shape[0] == round(audio.duration_s * SAMPLE_RATE)
    assert abs(rms_db(audio.samples) - rms_db(sine(2.0, 22050))) < 0.2
    assert audio.warnings == ()
    assert audio.info == AudioInfo(
        container="wav",
        codec="pcm_s16le",
        sample_rate=22050,
        channels=1,
        declared_duration_s=pytest.approx(2.0),  # type: ignore[arg-type]
        size_bytes=path.stat().st_size,
    )


def test_decode_audio_keeps_level_of_stereo_with_one_silent_channel(tmp_path: Path) -> None:
    left = sine(3.0, 44100)
    path = write_wav(tmp_path / "one_side.wav", [left, np.zeros_like(left)], 44100)
    audio = decode_audio(path, max_audio_s=60)
    assert audio.info.channels == 2
    assert abs(rms_db(audio.samples) - rms_db(left)) < 0.5  # a plain mean would lose 6 dB


def test_decode_audio_of_header_only_wav_is_no_samples(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "header_only.wav", [], 16000)
    assert path.stat().st_size == 44
    error = reason_of(decode_audio, path, max_audio_s=60)
    assert error.reason is FailureReason.NO_SAMPLES
    assert error.detail == "audio stream contains no samples"
    assert probe_audio(path).codec == "pcm_s16le"  # the container itself is fine


def test_decode_audio_of_pure_silence_succeeds(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "silence.wav", [np.zeros(16000 * 3, dtype=np.float32)], 16000)
    audio = decode_audio(path, max_audio_s=60)
    assert abs(audio.duration_s - 3.0) < 0.01
    assert not audio.samples.any()
    assert audio.warnings == ()


def test_decode_audio_of_text_is_not_audio(tmp_path: Path) -> None:
    path = tmp_path / "notes.wav"
    path.write_text("meeting notes, not audio\n", encoding="utf-8")
    for call in (probe_audio, decode_audio):
        kwargs = {"max_audio_s": 60.0} if call is decode_audio else {}
        error = reason_of(call, path, **kwargs)
        assert error.reason is FailureReason.NOT_AUDIO
        assert error.detail == "not a recognised audio or video file"


def test_decode_audio_checks_the_file_first(tmp_path: Path) -> None:
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    assert reason_of(decode_audio, empty, max_audio_s=60).reason is FailureReason.EMPTY_FILE
    assert reason_of(probe_audio, tmp_path).reason is FailureReason.NOT_A_FILE


def test_decode_audio_counts_samples_of_a_streaming_wav(tmp_path: Path) -> None:
    # RIFF and data sizes of 0xFFFFFFFF: the header declares nothing useful.
    path = tmp_path / "stream.wav"
    fmt = struct.pack("<HHIIHH", 1, 1, 8000, 16000, 2, 16)
    header = b"RIFF\xff\xff\xff\xffWAVEfmt " + struct.pack("<I", 16) + fmt + b"data\xff\xff\xff\xff"
    path.write_bytes(header + b"\0" * (8000 * 2 * 90))  # 90 s of silence at 8 kHz
    error = reason_of(decode_audio, path, max_audio_s=60)
    assert error.reason is FailureReason.TOO_LONG
    assert (
        error.detail == "longer than the limit: over 60 s of audio (JOZVESAZ_MAX_AUDIO_SECONDS=60)"
    )
    audio = decode_audio(path, max_audio_s=120)
    assert abs(audio.duration_s - 90.0) < 0.01


def test_decode_audio_allows_exactly_the_limit(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "two.wav", [sine(2.0, 16000)], 16000)
    assert decode_audio(path, max_audio_s=2.0).samples.shape[0] == 32000
    assert reason_of(decode_audio, path, max_audio_s=1.9).reason is FailureReason.TOO_LONG


def test_decode_audio_reports_progress_up_to_one(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "long.wav", [sine(35.0, 8000)], 8000)
    seen: list[float] = []
    decode_audio(path, max_audio_s=60, progress=seen.append)
    assert len(seen) >= 3
    assert seen == sorted(seen)
    assert all(0.0 <= f <= 1.0 for f in seen)
    assert seen[-1] == 1.0


def test_decode_audio_mixes_many_channels_without_a_named_layout(tmp_path: Path) -> None:
    # 16 channels have no standard layout; speech sits in channel 11 only.
    speech = sine(2.0, 22050)
    channels = [np.zeros_like(speech) for _ in range(16)]
    channels[11] = speech
    audio = decode_audio(write_wav(tmp_path / "16ch.wav", channels, 22050), max_audio_s=60)
    assert audio.info.channels == 16
    assert abs(rms_db(audio.samples) - rms_db(speech)) < 0.5


def test_decoded_audio_and_info_are_frozen(tmp_path: Path) -> None:
    audio = decode_audio(write_wav(tmp_path / "t.wav", [sine(0.5, 16000)], 16000), max_audio_s=9)
    with pytest.raises(AttributeError):
        audio.duration_s = 1.0  # type: ignore[misc]
    with pytest.raises(AttributeError):
        audio.info.codec = "x"  # type: ignore[misc]


@pytest.mark.parametrize("name", ["pipe:0.wav", "concat:other.wav", "file:x.wav", "-rf.wav"])
def test_decode_audio_never_reads_a_relative_name_as_a_protocol(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    # Given to FFmpeg as is, "pipe:0.wav" would read standard input (and block on a terminal).
    write_wav(tmp_path / name, [sine(1.0, 16000)], 16000)
    monkeypatch.chdir(tmp_path)
    audio = decode_audio(name, max_audio_s=60)
    assert abs(audio.duration_s - 1.0) < 0.01
    assert probe_audio(Path(name)).codec == "pcm_s16le"


def test_decode_audio_of_16k_float_mono_passes_through_the_resampler(tmp_path: Path) -> None:
    # Already the target format: PyAV's resampler passes frames through and answers the final
    # flush with [None], which must not be mistaken for a frame.
    samples = sine(2.5, SAMPLE_RATE)
    fmt = struct.pack("<HHIIHH", 3, 1, SAMPLE_RATE, SAMPLE_RATE * 4, 4, 32)  # IEEE float
    data = samples.astype("<f4").tobytes()
    riff = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    riff += b"data" + struct.pack("<I", len(data)) + data
    path = tmp_path / "float.wav"
    path.write_bytes(b"RIFF" + struct.pack("<I", len(riff)) + riff)
    audio = decode_audio(path, max_audio_s=60)
    assert audio.info.codec == "pcm_f32le"
    np.testing.assert_array_equal(audio.samples, samples)
