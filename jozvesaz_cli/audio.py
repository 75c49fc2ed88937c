"""Checks, probes and decodes one input file into the 16 kHz mono float32 samples Whisper needs.

Every way a file can fail becomes an ``InputError`` with a specific ``FailureReason`` and a one-line
detail that names no exception class, because PyAV raises several unrelated families for bad input
(``av.error.InvalidDataError`` for garbage, ``av.error.OSError`` for a truncated WebM header,
``IndexError`` for a container without audio, nothing at all for a WAV header with no frames;
bug bank C02, faster-whisper #407).

Key decisions, and why:

- **Counted, not declared, length.** Samples are counted as they come out of the resampler and
  decoding stops the moment the count passes ``max_audio_s``. Headers can lie about duration and
  sample rate, and a 25 MB low-bitrate file can decode to gigabytes (bug bank C07).
- **Our own downmix.** Channels are kept through resampling (packed float, original layout) and
  mixed here, in blocks of about 10 s, averaging only the channels that carry signal. FFmpeg's
  downmix to 16-bit mono, which faster-whisper's own ``decode_audio`` uses, normalises the 5.1
  matrix, so speech that lives only in the centre channel comes out about 10.7 dB quieter than
  the mono source (bug bank C05), and a stereo file with one silent channel loses 6 dB; that
  pushes quiet speech under the voice-activity threshold. A float downmix is not normalised, so
  its level moves with the layout instead (+3 dB for dual mono, -3 dB for one silent side).
- **Partial decodes are reported, never silent.** The decoded length is compared with the length
  the container declares; a short decode becomes a warning or a ``PARTIAL_DECODE`` failure with
  both numbers, so a truncated download never becomes a "done" transcript that stops early.
- **Bounded memory.** Decoded audio goes into one buffer sized from the declared length (capped by
  the limit), the container is closed and ``gc.collect()`` runs after every decode: PyAV frames
  hold references that otherwise make a long-lived worker creep (faster-whisper #390, fixed in
  #448).
- **Only the first audio stream is decoded.** Video packets are demuxed and dropped, never decoded,
  so a video file costs about what its audio track alone would.

PyAV is imported inside functions only, so that ``jozvesaz --help`` and unit tests that never decode
do not load FFmpeg.
"""

from __future__ import annotations

import errno
import gc
import logging
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from jozvesaz_cli.errors import FailureReason, InputError

if TYPE_CHECKING:
    from av.audio.frame import AudioFrame
    from av.audio.resampler import AudioResampler
    from av.audio.stream import AudioStream
    from av.container import InputContainer
    from av.packet import Packet
    from numpy.typing import NDArray

logger = logging.getLogger(__name__)

#: The sample rate every decoded file is converted to; the rate Whisper models are trained on.
SAMPLE_RATE = 16000

#: Suffixes (lower case, with the dot) of the audio and video containers jozvesaz accepts.
SUPPORTED_SUFFIXES: frozenset[str] = frozenset(
    {
        # audio
        ".wav", ".wave", ".mp3", ".mpga", ".mp2", ".m4a", ".m4b", ".aac", ".flac", ".ogg",
        ".oga", ".opus", ".spx", ".mka", ".wma", ".amr", ".aiff", ".aif", ".aifc", ".caf",
        ".ac3", ".eac3", ".dts", ".au", ".snd", ".wv", ".ape", ".tta", ".ra", ".gsm", ".voc",
        ".w64",
        # video and mixed containers
        ".webm", ".mkv", ".mp4", ".m4v", ".mov", ".avi", ".wmv", ".asf", ".3gp", ".3g2",
        ".flv", ".mpeg", ".mpg", ".ts", ".mts", ".m2ts", ".vob", ".ogv",
    }
)  # fmt: skip

#: The setting that holds ``max_audio_s``, named in the TOO_LONG detail so users know what to raise.
_LIMIT_SETTING = "JOZVESAZ_MAX_AUDIO_SECONDS"
#: Length of the blocks in which channel activity is measured for the downmix.
_MIX_BLOCK_SAMPLES = 10 * SAMPLE_RATE
#: A channel joins the downmix of a block when its RMS is at least this share of the loudest's.
_ACTIVE_CHANNEL_RMS_RATIO = 0.1
#: A decode that falls short of the declared length by no more than this is complete...
_SHORTFALL_TOLERANCE_S = 1.0
#: ...or by no more than this share of the declared length, whichever is larger.
_SHORTFALL_TOLERANCE_RATIO = 0.02
#: Below this share of the declared length a short decode fails instead of warning.
_PARTIAL_FAIL_RATIO = 0.5
#: After this many damaged packets in a row the stream is treated as undecodable from there on.
_MAX_CONSECUTIVE_BAD_PACKETS = 50
#: Decoder messages longer than this are cut, so details stay one line.
_MAX_MESSAGE_CHARS = 120
#: Buffer size used when the container declares no length.
_DEFAULT_CAPACITY_S = 60.0
#: Demuxers of raw elementary streams, whose declared length FFmpeg estimates from the bit rate.
_BITRATE_TIMED_FORMATS = frozenset({"aac", "ac3", "eac3", "dts", "truehd", "mlp", "amr"})
#: How far into the first MP3 frame to look for a Xing, Info or VBRI tag.
_MP3_TAG_SEARCH_BYTES = 256
#: Unused buffer capacity, in seconds of audio, above which the result is copied out tight.
_TIGHT_COPY_MIN_UNUSED_S = 60.0

PathArg = str | os.PathLike[str]
ProgressCallback = Callable[[float], None]


@dataclass(frozen=True, slots=True)
class AudioInfo:
    """What the container says about a file's first audio stream, before anything is decoded.

    Attributes:
        container: FFmpeg's demuxer name, e.g. ``"wav"`` or ``"matroska,webm"``.
        codec: FFmpeg's decoder name, e.g. ``"aac"`` or ``"pcm_mulaw"``.
        sample_rate: Declared sample rate in Hz (0 when unknown); recorded, never trusted.
        channels: Declared channel count (0 when unknown).
        declared_duration_s: Length the header declares, in seconds; ``None`` when it declares
            none (live WebM recordings, some raw streams).
        size_bytes: File size in bytes.
    """

    container: str
    codec: str
    sample_rate: int
    channels: int
    declared_duration_s: float | None
    size_bytes: int


@dataclass(frozen=True, slots=True)
class DecodedAudio:
    """A file decoded for transcription.

    Attributes:
        samples: float32, mono, 16 kHz, C-contiguous, one dimension.
        info: What the container declared.
        duration_s: Length of ``samples`` in seconds; the length that counts.
        warnings: Human sentences about a decode that succeeded with losses (a damaged end or
            damaged packets skipped); empty when the decode was clean.
    """

    samples: NDArray[np.float32]
    info: AudioInfo
    duration_s: float
    warnings: tuple[str, ...]


def is_supported_path(path: PathArg) -> bool:
    """Tell whether a path has a suffix jozvesaz accepts, ignoring case.

    The watcher uses this to ignore junk; an explicit command-line argument is decoded whatever
    its suffix, because the decoder, not the name, decides what a file is.

    Args:
        path: Any path; it need not exist.

    Returns:
        True when the suffix is in ``SUPPORTED_SUFFIXES``.
    """
    _, suffix = os.path.splitext(os.fsdecode(path))
    return suffix.lower() in SUPPORTED_SUFFIXES


def check_input_file(path: PathArg) -> int:
    """Check that a path names a non-empty regular file that can be read, without blocking.

    The file type is taken from ``os.stat``, so a FIFO is refused without ever being opened
    (opening one for reading blocks until a writer appears). Only a regular file is then opened,
    non-blocking, to prove it is readable.

    Args:
        path: The input path.

    Returns:
        The file size in bytes.

    Raises:
        InputError: ``NOT_FOUND``, ``NOT_A_FILE`` (directory, FIFO, socket, device node),
            ``EMPTY_FILE`` or ``UNREADABLE``.
    """
    shown = os.fsdecode(path)
    try:
        st = os.stat(path)
    except FileNotFoundError as exc:
        detail = "no such file"
        if os.path.lexists(path):
            detail = "a symbolic link whose target does not exist"
        raise InputError(shown, FailureReason.NOT_FOUND, detail) from exc
    except NotADirectoryError as exc:
        raise InputError(
            shown, FailureReason.NOT_FOUND, "no such file (a parent in the path is not a folder)"
        ) from exc
    except PermissionError as exc:
        raise InputError(shown, FailureReason.UNREADABLE, "permission denied") from exc
    except ValueError as exc:  # an embedded NUL byte
        raise InputError(
            shown, FailureReason.NOT_FOUND, "invalid path (contains a NUL byte)"
        ) from exc
    except OSError as exc:  # ELOOP, ENAMETOOLONG, EIO...
        raise InputError(shown, FailureReason.NOT_FOUND, _os_message(exc)) from exc
    mode = st.st_mode
    if not stat.S_ISREG(mode):
        raise InputError(shown, FailureReason.NOT_A_FILE, _describe_non_file(mode))
    if st.st_size == 0:
        raise InputError(shown, FailureReason.EMPTY_FILE, "empty file (0 bytes)")
    _check_readable(path, shown)
    return st.st_size


def probe_audio(path: PathArg) -> AudioInfo:
    """Read what the container declares about a file's first audio stream, decoding nothing.

    Args:
        path: The input path.

    Returns:
        The declared facts. They are not trusted for limits: ``decode_audio`` counts samples.

    Raises:
        InputError: any reason from ``check_input_file``, or ``NOT_AUDIO``, ``NO_AUDIO_STREAM``,
            ``UNDECODABLE``.
    """
    size = check_input_file(path)
    container = _open_container(path)
    try:
        stream = _first_audio_stream(container, path)
        return _read_info(container, stream, size)
    finally:
        container.close()


def decode_audio(
    path: PathArg,
    *,
    max_audio_s: float,
    progress: ProgressCallback | None = None,
) -> DecodedAudio:
    """Decode a file's first audio stream to 16 kHz mono float32, within a length limit.

    Args:
        path: The input path.
        max_audio_s: Longest decoded length accepted, in seconds; checked against samples as
            they are produced, so memory never grows past about this much audio.
        progress: Called now and then with the decoded share of the declared length, 0.0 to
            1.0; called with 1.0 at the end. Exceptions it raises propagate.

    Returns:
        The samples, the declared facts, the decoded length and any warnings.

    Raises:
        InputError: any reason from ``probe_audio``, or ``NO_SAMPLES``, ``UNDECODABLE``,
            ``PARTIAL_DECODE``, ``TOO_LONG``.
    """
    size = check_input_file(path)
    container = _open_container(path)
    try:
        stream = _first_audio_stream(container, path)
        info = _read_info(container, stream, size)
        decoder = _StreamDecoder(container, stream, info, os.fsdecode(path), max_audio_s, progress)
        result = decoder.run()
    finally:
        container.close()
        # PyAV frames and packets sit in reference cycles; without this a long-lived worker's
        # memory creeps with every file (faster-whisper #390, fixed the same way in #448).
        gc.collect()
    return result


class _StreamDecoder:
    """One pass over one audio stream: demux, decode, resample, count, mix, store."""

    def __init__(
        self,
        container: InputContainer,
        stream: AudioStream,
        info: AudioInfo,
        shown: str,
        max_audio_s: float,
        progress: ProgressCallback | None,
    ) -> None:
        self._container = container
        self._stream = stream
        self._info = info
        self._shown = shown
        self._max_audio_s = max_audio_s
        self._limit_samples = int(max_audio_s * SAMPLE_RATE)
        self._progress = progress
        self._resampler: AudioResampler | None = None
        self._resampler_key: tuple[str, str, int] | None = None
        self._counted = 0
        self._next_progress = _MIX_BLOCK_SAMPLES
        self._bad_packets = 0
        self._first_bad_message = ""
        self._stop_message: str | None = None
        declared = info.declared_duration_s
        capacity_s = declared * 1.02 + 1.0 if declared else _DEFAULT_CAPACITY_S
        capacity = min(int(capacity_s * SAMPLE_RATE), self._limit_samples + _MIX_BLOCK_SAMPLES)
        self._mixer = _MonoMixer(capacity)
        self._length_is_estimate = _is_estimated_length(shown, info)

    def run(self) -> DecodedAudio:
        """Decode the whole stream, then judge the result against the declared length."""
        import av

        try:
            self._decode_packets()
            self._flush_resampler()
        except (av.error.FFmpegError, ValueError, RuntimeError) as exc:
            # The resampler refused a frame (a layout FFmpeg cannot convert): keep what came out
            # before, and let the judgement below decide whether that is enough.
            self._stop_message = self._stop_message or _short_message(exc)
        samples = self._mixer.finish()
        result = self._judge(samples)
        if self._progress is not None:
            self._progress(1.0)
        return result

    def _decode_packets(self) -> None:
        import av

        consecutive_bad = 0
        packets: Iterator[Packet[AudioStream]] = self._container.demux(self._stream)
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                return
            except (av.error.FFmpegError, OSError, ValueError, RuntimeError) as exc:
                # The demuxer itself gave up: a truncated or damaged container. Drain the frames
                # the decoder still holds, then stop.
                self._stop_message = _short_message(exc)
                self._drain_decoder()
                return
            try:
                frames = packet.decode()
            except (av.error.FFmpegError, ValueError, RuntimeError) as exc:
                self._note_bad_packet(exc)
                consecutive_bad += 1
                if consecutive_bad >= _MAX_CONSECUTIVE_BAD_PACKETS:
                    self._stop_message = self._first_bad_message
                    return
                continue
            consecutive_bad = 0
            for frame in frames:
                self._push_frame(frame)

    def _drain_decoder(self) -> None:
        import av

        try:
            frames = self._stream.codec_context.decode(None)
        except (av.error.FFmpegError, ValueError, RuntimeError):
            return
        for frame in frames:
            self._push_frame(frame)

    def _note_bad_packet(self, exc: Exception) -> None:
        # A damaged frame in the middle (bit rot, a bad splice) costs that frame only, as with the
        # ffmpeg command-line tool; the loss is reported as a warning.
        self._bad_packets += 1
        if not self._first_bad_message:
            self._first_bad_message = _short_message(exc)

    def _push_frame(self, frame: AudioFrame) -> None:
        import av

        key = (frame.format.name, frame.layout.name, frame.sample_rate)
        if self._resampler is None or key != self._resampler_key:
            # Some streams change rate or layout mid-way (radio captures, spliced files); PyAV's
            # resampler refuses a frame that differs from its first one, so start a new one.
            self._flush_resampler()
            self._resampler = av.AudioResampler(format="flt", layout=frame.layout, rate=SAMPLE_RATE)
            self._resampler_key = key
        for out in self._resampler.resample(frame):
            self._accept(out)

    def _flush_resampler(self) -> None:
        if self._resampler is None:
            return
        for out in self._resampler.resample(None):
            if out is not None:  # a pass-through resampler answers a flush with [None]
                self._accept(out)
        self._resampler = None
        self._resampler_key = None

    def _accept(self, frame: AudioFrame) -> None:
        count = frame.samples
        if count == 0:
            return
        self._counted += count
        if self._counted > self._limit_samples:
            self._mixer.release()
            raise InputError(
                self._shown,
                FailureReason.TOO_LONG,
                f"longer than the limit: over {self._max_audio_s:g} s of audio "
                f"({_LIMIT_SETTING}={self._max_audio_s:g})",
            )
        channels = frame.layout.nb_channels
        # Packed float: one plane of interleaved samples.
        interleaved = np.asarray(frame.to_ndarray(), dtype=np.float32).reshape(count, channels)
        self._mixer.push(interleaved)
        self._report_progress()

    def _report_progress(self) -> None:
        declared = self._info.declared_duration_s
        if self._progress is None or not declared or self._counted < self._next_progress:
            return
        self._next_progress = self._counted + _MIX_BLOCK_SAMPLES
        self._progress(min(self._counted / (declared * SAMPLE_RATE), 1.0))

    def _judge(self, samples: NDArray[np.float32]) -> DecodedAudio:
        decoded_s = samples.shape[0] / SAMPLE_RATE
        declared = None if self._length_is_estimate else self._info.declared_duration_s
        shown = self._shown
        if samples.shape[0] == 0:
            guessed = self._info.declared_duration_s
            of_declared = f" of {guessed:.1f} s" if guessed else ""
            message = self._stop_message or self._first_bad_message
            if message:
                raise InputError(
                    shown,
                    FailureReason.UNDECODABLE,
                    f"decoding failed at 0.0 s{of_declared}: {message}",
                )
            raise InputError(shown, FailureReason.NO_SAMPLES, "audio stream contains no samples")
        warnings: list[str] = []
        tolerance_s = max(_SHORTFALL_TOLERANCE_S, _SHORTFALL_TOLERANCE_RATIO * (declared or 0.0))
        if declared and declared - decoded_s > tolerance_s:
            if decoded_s < _PARTIAL_FAIL_RATIO * declared:
                if self._stop_message:
                    detail = (
                        f"decoding failed at {decoded_s:.1f} s of {declared:.1f} s: "
                        f"{self._stop_message}"
                    )
                else:
                    detail = (
                        f"decoded only {decoded_s:.1f} s of the declared {declared:.1f} s; "
                        "the file is damaged or truncated"
                    )
                raise InputError(shown, FailureReason.PARTIAL_DECODE, detail)
            warnings.append(
                f"decoded {decoded_s:.1f} s of the declared {declared:.1f} s; "
                "the end of the file is damaged or truncated"
            )
        elif self._stop_message and not declared:
            warnings.append(
                f"decoding stopped at {decoded_s:.1f} s: {self._stop_message}; "
                "the rest of the file is damaged or truncated"
            )
        elif self._stop_message:
            logger.debug(
                "decoder stopped within tolerance of the end",
                extra={"action": "decode_stopped_near_end", "path": shown},
            )
        if self._bad_packets:
            # The demuxer may drop damaged bytes before they reach the decoder, so the packet count
            # understates the loss; both lengths say how much went.
            decoded = f"decoded {decoded_s:.1f} s"
            if declared:
                decoded += f" of the declared {declared:.1f} s"
            warnings.append(
                f"skipped {self._bad_packets} damaged audio packet(s) ({decoded}); "
                f"the audio after them is shifted earlier: {self._first_bad_message}"
            )
        for warning in warnings:
            # DEBUG only: the caller records the warnings on the job and logs them once there.
            logger.debug("%s: %s", shown, warning, extra={"action": "decode_warning"})
        return DecodedAudio(
            samples=samples, info=self._info, duration_s=decoded_s, warnings=tuple(warnings)
        )


class _MonoMixer:
    """Mixes interleaved multichannel blocks down to mono and stores them in one growing buffer.

    Channels are judged per block of about 10 s: a channel whose RMS is under 10 % of the
    loudest channel's is left out of the average, so speech that lives in one channel (the centre
    of a 5.1 mix, one side of a stereo phone recording) keeps its full level instead of being
    diluted by silent channels. When every channel is silent the plain mean is used. Blocks are
    long enough that a pause in one speaker's channel does not switch it in and out, and short
    enough that the pending multichannel audio stays a few megabytes.
    """

    def __init__(self, capacity: int) -> None:
        # np.empty reserves address space only; pages become resident as they are written, so
        # an over-generous capacity from a lying header costs no real memory.
        self._buffer: NDArray[np.float32] = np.empty(max(capacity, SAMPLE_RATE), dtype=np.float32)
        self._size = 0
        self._pending: list[NDArray[np.float32]] = []
        self._pending_samples = 0
        self._pending_channels = 0

    def push(self, interleaved: NDArray[np.float32]) -> None:
        channels = interleaved.shape[1]
        if self._pending and channels != self._pending_channels:
            self._mix_pending()
        self._pending_channels = channels
        # to_ndarray returns a view of the frame's buffer; copy so the frame can be freed.
        self._pending.append(np.array(interleaved, dtype=np.float32, copy=True))
        self._pending_samples += interleaved.shape[0]
        if self._pending_samples >= _MIX_BLOCK_SAMPLES:
            self._mix_pending()

    def finish(self) -> NDArray[np.float32]:
        self._mix_pending()
        samples = self._buffer[: self._size]
        unused = self._buffer.shape[0] - self._size
        if unused > _TIGHT_COPY_MIN_UNUSED_S * SAMPLE_RATE and unused > 4 * self._size:
            # A header that overstated the length left a mostly empty buffer. Its untouched pages
            # were never resident, but the reservation still counts under strict overcommit, so
            # keep a tight copy; it is small next to the reservation. Otherwise return the view:
            # copying would briefly double the memory of a long recording.
            samples = samples.copy()
        self.release()
        return samples

    def release(self) -> None:
        self._buffer = np.empty(0, dtype=np.float32)
        self._pending = []
        self._pending_samples = 0

    def _mix_pending(self) -> None:
        if not self._pending:
            return
        block = self._pending[0] if len(self._pending) == 1 else np.concatenate(self._pending)
        self._pending = []
        self._pending_samples = 0
        self._append(mix_to_mono(block))

    def _append(self, mono: NDArray[np.float32]) -> None:
        end = self._size + mono.shape[0]
        if end > self._buffer.shape[0]:
            grown = np.empty(max(end, int(self._buffer.shape[0] * 1.5)), dtype=np.float32)
            grown[: self._size] = self._buffer[: self._size]
            self._buffer = grown
        self._buffer[self._size : end] = mono
        self._size = end


def mix_to_mono(block: NDArray[np.float32]) -> NDArray[np.float32]:
    """Mix one block of interleaved samples to mono, averaging only the channels with signal.

    Args:
        block: Shape ``(samples, channels)``, float32.

    Returns:
        Shape ``(samples,)``, float32. A channel takes part when its RMS over the block is at
        least 10 % of the loudest channel's; with every channel silent, the plain mean.
    """
    if not np.isfinite(block).all():
        # Float codecs fed damaged data can emit NaN or infinity, which would poison the RMS
        # here and the log-mel features later.
        block = np.nan_to_num(block, nan=0.0, posinf=0.0, neginf=0.0)
    if block.shape[1] == 1:
        return np.ascontiguousarray(block[:, 0], dtype=np.float32)
    rms = np.sqrt(np.mean(np.square(block, dtype=np.float64), axis=0))
    loudest = float(rms.max())
    if loudest > 0.0:
        active = rms >= _ACTIVE_CHANNEL_RMS_RATIO * loudest
        block = block[:, active]
    return np.ascontiguousarray(block.mean(axis=1, dtype=np.float32), dtype=np.float32)


def _check_readable(path: PathArg, shown: str) -> None:
    # O_NONBLOCK: should the path have been swapped for a FIFO since the stat, opening still
    # returns at once instead of waiting for a writer.
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except PermissionError as exc:
        raise InputError(shown, FailureReason.UNREADABLE, "permission denied") from exc
    except FileNotFoundError as exc:
        raise InputError(shown, FailureReason.NOT_FOUND, "no such file") from exc
    except OSError as exc:
        raise InputError(shown, FailureReason.UNREADABLE, _os_message(exc)) from exc
    try:
        mode = os.fstat(fd).st_mode
    finally:
        os.close(fd)
    if not stat.S_ISREG(mode):
        raise InputError(shown, FailureReason.NOT_A_FILE, _describe_non_file(mode))


def _describe_non_file(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory, not a file"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO), not a file"
    if stat.S_ISSOCK(mode):
        return "a socket, not a file"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device node, not a file"
    return "not a regular file"


def _open_container(path: PathArg) -> InputContainer:
    import av

    shown = os.fsdecode(path)
    try:
        # Absolute, so that FFmpeg never reads a relative name such as "pipe:0.wav" or
        # "concat:a|b.wav" as a protocol (reading stdin, or other files). os.fsdecode keeps
        # undecodable bytes as surrogate escapes and PyAV encodes the name back with
        # os.fsencode, so any name on disk round-trips under any locale.
        return av.open(os.path.abspath(shown), mode="r", metadata_errors="ignore")
    except av.error.InvalidDataError as exc:
        raise InputError(
            shown, FailureReason.NOT_AUDIO, "not a recognised audio or video file"
        ) from exc
    except av.error.PermissionError as exc:
        raise InputError(shown, FailureReason.UNREADABLE, "permission denied") from exc
    except av.error.FileNotFoundError as exc:
        raise InputError(shown, FailureReason.NOT_FOUND, "no such file") from exc
    except av.error.EOFError as exc:
        raise InputError(
            shown,
            FailureReason.UNDECODABLE,
            "the file ends inside its header (an unfinished or truncated recording)",
        ) from exc
    except (av.error.FFmpegError, OSError, ValueError, RuntimeError) as exc:
        # A recognised container whose header cannot be read: FFmpeg's Matroska demuxer answers a
        # 110-byte WebM header with EIO, for instance (bug bank C02, OpenWhispr #871).
        raise InputError(
            shown,
            FailureReason.UNDECODABLE,
            f"the container header cannot be read ({_short_message(exc)}); "
            "the file may be truncated or damaged",
        ) from exc


def _first_audio_stream(container: InputContainer, path: PathArg) -> AudioStream:
    shown = os.fsdecode(path)
    audio = container.streams.audio
    if audio:
        stream = audio[0]
        if stream.codec_context is None:
            raise InputError(
                shown, FailureReason.UNDECODABLE, "no decoder for this file's audio codec"
            )
        return stream
    kinds = sorted({s.type for s in container.streams})
    fmt = container.format.name
    if fmt.endswith("_pipe") or fmt == "image2":
        kind = fmt.removesuffix("_pipe").upper()
        detail = f"no audio stream (the file is a {kind} image)"
    elif kinds:
        detail = f"no audio stream (container has: {', '.join(kinds)})"
    else:
        detail = "no audio stream (container has no streams)"
    raise InputError(shown, FailureReason.NO_AUDIO_STREAM, detail)


def _read_info(container: InputContainer, stream: AudioStream, size: int) -> AudioInfo:
    context = stream.codec_context
    return AudioInfo(
        container=container.format.name,
        codec=context.name,
        sample_rate=int(context.sample_rate or 0),
        channels=int(context.channels or 0),
        declared_duration_s=_declared_duration_s(container, stream),
        size_bytes=size,
    )


def _declared_duration_s(container: InputContainer, stream: AudioStream) -> float | None:
    # Prefer the audio stream's own length: a container's length is its longest stream's, and a
    # video may run on after its audio ends. Matroska keeps the per-stream length in a DURATION
    # tag (written by FFmpeg and mkvmerge) rather than in the stream header.
    if stream.duration and stream.time_base:
        seconds = float(stream.duration * stream.time_base)
        if seconds > 0:
            return seconds
    tagged = _parse_duration_tag(stream.metadata.get("DURATION") or stream.metadata.get("duration"))
    if tagged:
        return tagged
    if container.duration and container.duration > 0:
        return container.duration / 1_000_000  # AV_TIME_BASE units
    return None


def _parse_duration_tag(value: str | None) -> float | None:
    # "HH:MM:SS.nnnnnnnnn", as Matroska muxers write it.
    if not value:
        return None
    parts = value.strip().split(":")
    if len(parts) != 3:
        return None
    try:
        seconds = int(parts[0]) * 3600 + int(parts[1]) * 60 + float(parts[2])
    except ValueError:
        return None
    return seconds if seconds > 0 else None


def _is_estimated_length(path: PathArg, info: AudioInfo) -> bool:
    """Tell whether FFmpeg guessed the declared length from the bit rate instead of reading it.

    Raw elementary streams carry no length; FFmpeg divides the file size by the first frames'
    bit rate, which for variable bit rate audio can be off by a factor of several. Judging a
    decode against such a guess would fail good files as partial, so the guess is used for
    progress only.
    """
    if info.container in _BITRATE_TIMED_FORMATS:
        return True
    if info.container == "mp3":
        return not _has_mp3_length_tag(path)
    return False


def _has_mp3_length_tag(path: PathArg) -> bool:
    # A Xing/Info (LAME) or VBRI (Fraunhofer) tag in the first frame gives the exact frame count.
    try:
        with open(path, "rb") as handle:
            head = handle.read(10)
            offset = 0
            if len(head) == 10 and head[:3] == b"ID3":
                size = (head[6] << 21) | (head[7] << 14) | (head[8] << 7) | head[9]
                footer = 10 if head[5] & 0x10 else 0
                offset = 10 + size + footer
            handle.seek(offset)
            frame = handle.read(_MP3_TAG_SEARCH_BYTES)
    except OSError:
        return False
    return any(tag in frame for tag in (b"Xing", b"Info", b"VBRI"))


def _short_message(exc: BaseException) -> str:
    # FFmpeg errors carry a readable strerror; never show the exception's class name.
    message = getattr(exc, "strerror", None) or str(exc) or "unknown decoder error"
    message = " ".join(str(message).split())
    if len(message) > _MAX_MESSAGE_CHARS:
        message = message[: _MAX_MESSAGE_CHARS - 1] + "…"
    return message


def _os_message(exc: OSError) -> str:
    if exc.errno == errno.ENAMETOOLONG:
        return "the path is too long"
    if exc.errno == errno.ELOOP:
        return "too many levels of symbolic links"
    return (exc.strerror or "cannot be read").lower()
