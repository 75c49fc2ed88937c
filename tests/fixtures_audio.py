"""Builders for the bug bank's audio inputs, made at test time into a folder the caller owns.

Each function follows a recipe from ``../shared/bug-bank.md`` (sox, ffmpeg, espeak-ng and Python)
and returns the paths it made. Nothing is cached globally: a builder reuses a file only when it
already sits in the same folder (so ``make_c05_inputs(d)`` after ``make_speech(d)`` does not
synthesise the speech twice). Long inputs are made by stream-copying a short encode, which keeps
every builder well under a second or two.

A builder that needs a missing tool skips the calling test with the reason, or fails it when the
``CI`` environment variable is set, because CI must never pass by skipping.

Debian packages: ``sox``, ``ffmpeg`` (with libx264, libopus, libmp3lame), ``espeak-ng``.
"""

from __future__ import annotations

import os
import shutil
import socket
import struct
import subprocess
import unicodedata
import wave
from pathlib import Path

import pytest

#: The sentence every speech fixture speaks (bug bank make_fixtures.sh).
SPEECH_TEXT = (
    "The quick brown fox jumps over the lazy dog. This is sentence number one of the test "
    "recording. We are checking that the whole file is transcribed."
)
#: Persian speech with a question mark and a zero-width non-joiner (bug bank C19).
FA_SPEECH_TEXT = "سلام. جلسه امروز ساعت ده صبح شروع می‌شود. آیا همه آماده هستند؟"

_TOOL_TIMEOUT_S = 120


def need_tools(*names: str) -> None:
    """Skip the calling test when a tool is missing, or fail it when ``CI`` is set."""
    missing = [name for name in names if shutil.which(name) is None]
    if not missing:
        return
    message = f"needs {', '.join(missing)} on PATH (Debian packages: sox, ffmpeg, espeak-ng)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def run_tool(*args: str | os.PathLike[str]) -> None:
    """Run one command line, failing loudly (with its stderr) when it does not exit 0."""
    need_tools(str(args[0]))
    result = subprocess.run(
        [os.fspath(a) for a in args], capture_output=True, timeout=_TOOL_TIMEOUT_S, check=False
    )
    if result.returncode != 0:
        stderr = result.stderr.decode("utf-8", "replace")
        raise AssertionError(f"{args[0]} exited {result.returncode}: {stderr}")


def wav_duration_s(path: Path) -> float:
    """Length of a PCM WAV file from its header (the reference the decoder is held to)."""
    with wave.open(os.fspath(path), "rb") as handle:
        return handle.getnframes() / handle.getframerate()


def _ffmpeg(*args: str | os.PathLike[str]) -> None:
    run_tool("ffmpeg", "-nostdin", "-v", "error", "-y", *args)


def make_speech(folder: Path) -> Path:
    """``speech.wav``: espeak-ng speech, 16 kHz mono 16-bit, about 9.96 s."""
    target = folder / "speech.wav"
    if target.exists():
        return target
    folder.mkdir(parents=True, exist_ok=True)
    raw = folder / "speech_raw.wav"
    run_tool("espeak-ng", "-v", "en-us", "-s", "150", "-w", raw, SPEECH_TEXT)
    run_tool("sox", raw, "-r", "16000", "-c", "1", target)
    raw.unlink()
    return target


def make_speech_mp3(folder: Path) -> Path:
    """``speech.mp3``: ``speech.wav`` as 64 kb/s MP3 with a LAME Info tag (exact length)."""
    target = folder / "speech.mp3"
    if not target.exists():
        _ffmpeg("-i", make_speech(folder), "-c:a", "libmp3lame", "-b:a", "64k", target)
    return target


def make_speech60(folder: Path) -> dict[str, Path]:
    """``speech60.flac`` and ``speech60.mp3``: one minute (59.79 s) of the speech, six times."""
    speech = make_speech(folder)
    made = {"flac": folder / "speech60.flac", "mp3": folder / "speech60.mp3"}
    if not made["flac"].exists():
        _ffmpeg("-stream_loop", "5", "-i", speech, "-c:a", "flac", made["flac"])
    if not made["mp3"].exists():
        _ffmpeg("-stream_loop", "5", "-i", speech, "-c:a", "libmp3lame", "-b:a", "64k", made["mp3"])
    return made


def make_c02_inputs(folder: Path) -> dict[str, Path]:
    """Files with nothing decodable (bug bank C02), keyed by a short name.

    ``empty.<ext>`` for five extensions (0 bytes), ``header_only.wav`` (44 bytes, no frames),
    ``header_only.webm`` (the first 110 bytes of a WebM), ``video_no_audio.mp4``,
    ``image_named.mp3`` (a PNG) and ``text_named.wav`` (a line of text).
    """
    folder.mkdir(parents=True, exist_ok=True)
    made: dict[str, Path] = {}
    for ext in ("mp3", "m4a", "wav", "webm", "flac"):
        path = folder / f"empty.{ext}"
        path.write_bytes(b"")
        made[f"empty.{ext}"] = path
    header_wav = folder / "header_only.wav"
    with wave.open(os.fspath(header_wav), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(16000)
        handle.writeframes(b"")
    made["header_only.wav"] = header_wav
    rec = folder / "rec.webm"
    _ffmpeg("-f", "lavfi", "-i", "anullsrc=r=48000:cl=mono", "-t", "2", "-c:a", "libopus", rec)
    header_webm = folder / "header_only.webm"
    header_webm.write_bytes(rec.read_bytes()[:110])
    rec.unlink()
    made["header_only.webm"] = header_webm
    video = folder / "video_no_audio.mp4"
    _ffmpeg(
        "-f", "lavfi", "-i", "testsrc=size=320x240:rate=25", "-t", "3", "-an",
        "-c:v", "libx264", "-pix_fmt", "yuv420p", video,
    )  # fmt: skip
    made["video_no_audio.mp4"] = video
    png = folder / "cover.png"
    _ffmpeg("-f", "lavfi", "-i", "testsrc=size=320x240", "-frames:v", "1", png)
    image = folder / "image_named.mp3"
    png.rename(image)
    made["image_named.mp3"] = image
    text = folder / "text_named.wav"
    text.write_text("meeting notes, not audio\n", encoding="utf-8")
    made["text_named.wav"] = text
    return made


def make_special_paths(folder: Path) -> dict[str, Path]:
    """Paths that are not regular files: a directory, a FIFO, a socket, a missing path, a
    broken symbolic link, and a device node (``/dev/null``).

    The socket is bound and its descriptor closed again, which leaves the socket file behind.
    """
    folder.mkdir(parents=True, exist_ok=True)
    directory = folder / "a_folder.wav"
    directory.mkdir(exist_ok=True)
    fifo = folder / "pipe.wav"
    if not fifo.exists():
        os.mkfifo(fifo)
    sock_path = folder / "sock.wav"
    if not sock_path.exists():
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(os.fspath(sock_path))
        finally:
            sock.close()
    broken = folder / "broken_link.wav"
    if not broken.is_symlink():
        broken.symlink_to(folder / "no_such_target.wav")
    return {
        "directory": directory,
        "fifo": fifo,
        "socket": sock_path,
        "missing": folder / "missing.wav",
        "broken_link": broken,
        "device": Path("/dev/null"),
    }


def make_c04_inputs(folder: Path) -> dict[str, Path]:
    """Non-speech (bug bank C04): silence, stereo 44.1 kHz silence, hiss, a tone, speech + tone."""
    folder.mkdir(parents=True, exist_ok=True)
    made = {
        "silence30.wav": folder / "silence30.wav",
        "silence30_stereo44k.wav": folder / "silence30_stereo44k.wav",
        "hiss30.wav": folder / "hiss30.wav",
        "tone90.wav": folder / "tone90.wav",
        "speech_then_tone.wav": folder / "speech_then_tone.wav",
    }
    run_tool("sox", "-n", "-r", "16000", "-c", "1", made["silence30.wav"], "trim", "0", "30")
    run_tool(
        "sox", "-n", "-r", "44100", "-c", "2", "-b", "16", made["silence30_stereo44k.wav"],
        "trim", "0", "30",
    )  # fmt: skip
    run_tool(
        "sox", "-n", "-r", "16000", "-c", "1", made["hiss30.wav"],
        "synth", "30", "pinknoise", "vol", "0.003",
    )  # fmt: skip
    run_tool(
        "sox", "-n", "-r", "16000", "-c", "1", made["tone90.wav"],
        "synth", "90", "sine", "440", "vol", "0.2",
    )  # fmt: skip
    run_tool("sox", make_speech(folder), made["tone90.wav"], made["speech_then_tone.wav"])
    return made


def make_c05_inputs(folder: Path) -> dict[str, Path]:
    """Channel layouts and sample rates (bug bank C05), plus the mono reference ``speech.wav``.

    ``center_only_51.m4a`` (5.1 AAC at 48 kHz, speech in the centre only), ``center_only_51.mkv``
    (the same audio next to H.264 video, 9.9 s), ``phone8k_ulaw.wav``, ``hires96k_24bit.wav``
    (stereo), ``odd11025.wav`` and ``stereo_one_silent.wav`` (speech left, digital silence right).
    """
    speech = make_speech(folder)
    made = {"speech.wav": speech}
    made["phone8k_ulaw.wav"] = folder / "phone8k_ulaw.wav"
    run_tool("sox", speech, "-r", "8000", "-e", "u-law", made["phone8k_ulaw.wav"])
    made["hires96k_24bit.wav"] = folder / "hires96k_24bit.wav"
    run_tool("sox", speech, "-r", "96000", "-b", "24", "-c", "2", made["hires96k_24bit.wav"])
    made["odd11025.wav"] = folder / "odd11025.wav"
    run_tool("sox", speech, "-r", "11025", made["odd11025.wav"])
    made["stereo_one_silent.wav"] = folder / "stereo_one_silent.wav"
    run_tool("sox", speech, "-c", "2", made["stereo_one_silent.wav"], "remix", "1", "0")
    made["center_only_51.m4a"] = folder / "center_only_51.m4a"
    _ffmpeg(
        "-i", speech, "-f", "lavfi", "-i", "anullsrc=r=48000:cl=mono", "-filter_complex",
        "[0:a]aresample=48000[s];[1:a]atrim=0:10,asplit=5[z1][z2][z3][z4][z5];"
        "[z1][z2][s][z3][z4][z5]join=inputs=6:channel_layout=5.1:"
        "map=0.0-FL|1.0-FR|2.0-FC|3.0-LFE|4.0-BL|5.0-BR[a]",
        "-map", "[a]", "-c:a", "aac", "-b:a", "192k", made["center_only_51.m4a"],
    )  # fmt: skip
    made["center_only_51.mkv"] = folder / "center_only_51.mkv"
    _ffmpeg(
        "-f", "lavfi", "-i", "testsrc=size=320x240:rate=25", "-i", made["center_only_51.m4a"],
        "-t", "9.9", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "copy",
        made["center_only_51.mkv"],
    )  # fmt: skip
    return made


def make_hd_video_mkv(folder: Path) -> Path:
    """``center_only_51_720p.mkv``: the C05 5.1 audio next to 9.9 s of 1280x720 H.264.

    Decoding its video costs several times its audio, so a decoder that touched video frames
    would show in the time taken (bug bank C05: "about as fast as the .m4a").
    """
    audio = folder / "center_only_51.m4a"
    if not audio.exists():
        audio = make_c05_inputs(folder)["center_only_51.m4a"]
    target = folder / "center_only_51_720p.mkv"
    _ffmpeg(
        "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=25", "-i", audio, "-t", "9.9",
        "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "copy", target,
    )  # fmt: skip
    return target


def make_c06_names(folder: Path) -> dict[str, Path]:
    """Awkward file names (bug bank C06), each a copy of real speech, keyed by a short name.

    ``persian``, ``brackets`` (spaces, brackets, quotes), ``leading_dash`` (``-rf.wav``), ``nfd``
    (decomposed accents), ``long254`` (a 254-byte UTF-8 name, MP3) and ``non_utf8`` (a name with a
    Latin-1 byte, which Python shows with a surrogate escape).
    """
    speech = make_speech(folder / "_src")
    mp3 = make_speech_mp3(folder / "_src")
    names = folder / "names"
    names.mkdir(parents=True, exist_ok=True)
    made = {
        "persian": names / "جلسه ۱ - گزارش نهایی.wav",
        "brackets": names / "my talk (final) [v2] 'draft'.wav",
        "leading_dash": names / "-rf.wav",
        "nfd": names / unicodedata.normalize("NFD", "café résumé.wav"),
        "long254": names / ("ب" * 125 + ".mp3"),
        "non_utf8": names / os.fsdecode(b"caf\xe9 latin1.wav"),
    }
    for key, path in made.items():
        shutil.copyfile(mp3 if key == "long254" else speech, path)
    return made


def make_fa_speech(folder: Path) -> Path:
    """``fa_speech.wav``: Persian espeak-ng speech, 16 kHz mono, about 7.5 s (bug bank C19)."""
    target = folder / "fa_speech.wav"
    if target.exists():
        return target
    folder.mkdir(parents=True, exist_ok=True)
    raw = folder / "fa_raw.wav"
    run_tool("espeak-ng", "-v", "fa", "-s", "140", "-w", raw, FA_SPEECH_TEXT)
    run_tool("sox", raw, "-r", "16000", "-c", "1", target)
    raw.unlink()
    return target


def make_long_opus(folder: Path, seconds: float) -> Path:
    """A low-bit-rate (16 kb/s) mono Opus file of about ``seconds``, built by stream-copying.

    One 10-second encode is looped with ``-c copy`` (bug bank C07), so 10 minutes take a fraction
    of a second to build and about 1.1 MB on disk, and 3 hours about 20 MB.
    """
    speech = make_speech(folder)
    short = folder / "speech16k.opus"
    if not short.exists():
        _ffmpeg("-i", speech, "-c:a", "libopus", "-b:a", "16k", short)
    loops = max(0, round(seconds / wav_duration_s(speech)) - 1)
    target = folder / f"long{int(seconds)}s.opus"
    _ffmpeg("-stream_loop", str(loops), "-i", short, "-c", "copy", target)
    return target


def make_lying_mka(folder: Path, *, seconds: float = 600.0, declared_s: float = 1.0) -> Path:
    """A Matroska Opus file of about ``seconds`` whose header declares ``declared_s``.

    The segment's Duration element and the stream's DURATION tag are both overwritten, so every
    length FFmpeg reports is the lie; only counting decoded samples finds the truth.
    """
    opus = make_long_opus(folder, seconds)
    honest = folder / "honest.mka"
    _ffmpeg("-i", opus, "-c", "copy", honest)
    data = bytearray(honest.read_bytes())
    honest.unlink()
    info_at = data.find(b"\x15\x49\xa9\x66")  # the Segment Info element
    duration_at = data.find(b"\x44\x89", info_at)  # its Duration child
    if info_at < 0 or duration_at < 0:
        raise AssertionError("no Matroska Duration element to patch")
    size_marker = data[duration_at + 2]
    value_at = duration_at + 3
    milliseconds = declared_s * 1000.0  # FFmpeg's default TimecodeScale is 1 ms
    if size_marker == 0x88:
        data[value_at : value_at + 8] = struct.pack(">d", milliseconds)
    elif size_marker == 0x84:
        data[value_at : value_at + 4] = struct.pack(">f", milliseconds)
    else:
        raise AssertionError(f"unexpected Duration size marker {size_marker:#x}")
    # The DURATION tag is "HH:MM:SS.nnnnnnnnn"; replace each one with the declared length.
    whole = int(declared_s)
    fake = (
        f"{whole // 3600:02d}:{whole % 3600 // 60:02d}:{whole % 60:02d}."
        f"{round((declared_s - whole) * 1e9):09d}"
    ).encode()
    start = 0
    while (at := data.find(b"DURATION", start)) >= 0:
        value = data.find(b"\x44\x87", at)  # TagString
        if value < 0:
            break
        length = data[value + 2] & 0x7F  # FFmpeg reserves 20 bytes, NUL-padded
        if length >= len(fake):
            data[value + 3 : value + 3 + length] = fake.ljust(length, b"\0")
        start = value + 3
    target = folder / f"lying_{int(seconds)}s_says_{declared_s:g}s.mka"
    target.write_bytes(bytes(data))
    return target


def make_streaming_wav(folder: Path, seconds: float, *, rate: int = 8000) -> Path:
    """A 16-bit mono WAV whose RIFF and data sizes say 0xFFFFFFFF ("until the end"), as written
    by recorders that stream to a pipe; its length is known only by reading it all. Silent."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"streaming_{int(seconds)}s.wav"
    fmt = struct.pack("<HHIIHH", 1, 1, rate, rate * 2, 2, 16)
    header = (
        b"RIFF" + struct.pack("<I", 0xFFFFFFFF) + b"WAVE"
        + b"fmt " + struct.pack("<I", len(fmt)) + fmt
        + b"data" + struct.pack("<I", 0xFFFFFFFF)
    )  # fmt: skip
    with target.open("wb") as handle:
        handle.write(header)
        handle.truncate(len(header) + int(seconds * rate) * 2)
    return target


def make_truncated_mp3(folder: Path, fraction: float) -> Path:
    """``speech60.mp3`` cut after ``fraction`` of its bytes, as by an interrupted download.

    Its Info tag still declares the full 59.79 s.
    """
    source = make_speech60(folder)["mp3"]
    data = source.read_bytes()
    target = folder / f"truncated_{round(fraction * 100)}pct.mp3"
    target.write_bytes(data[: int(len(data) * fraction)])
    return target


def make_corrupt_mp3(folder: Path, *, damaged_bytes: int = 4096) -> Path:
    """``speech60.mp3`` with ``damaged_bytes`` of seeded random bytes in the middle (bit rot)."""
    source = make_speech60(folder)["mp3"]
    data = bytearray(source.read_bytes())
    middle = len(data) // 2
    noise = bytes((i * 1103515245 + 12345) >> 16 & 0xFF for i in range(damaged_bytes))
    data[middle : middle + damaged_bytes] = noise
    target = folder / "corrupt_middle.mp3"
    target.write_bytes(bytes(data))
    return target


def make_noise_wav(path: Path, seconds: float = 1.0, seed: int = 0) -> Path:
    """A short recording of seeded noise: each seed gives a distinct file, hence its own job."""
    import wave

    import numpy as np

    rng = np.random.default_rng(seed)
    samples = (rng.standard_normal(int(16000 * seconds)) * 2000).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
        out.writeframes(samples.tobytes())
    return path
