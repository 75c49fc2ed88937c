"""Exception hierarchy, failure reasons and exit codes.

Each exception's class docstring is its default user-facing message. Exceptions are grouped by who
can fix the problem (the user, the input, the environment), and the CLI maps each group to one exit
code. Per-file failures carry a ``reason`` from a small stored vocabulary (``FailureReason``), so
other programs reading the jobs table can act on them without parsing English.
"""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    """Process exit codes; the same for every command."""

    OK = 0  #: everything succeeded (files skipped as already done count as success)
    PARTIAL = 1  #: the run finished but some inputs failed
    USAGE = 2  #: usage or configuration error, found before any work
    ENVIRONMENT = 3  #: model, database or storage cannot be used
    INTERRUPTED = 130  #: stopped by Ctrl-C or SIGTERM


class FailureReason(str, enum.Enum):
    """Why a job failed; stored in ``jobs.error_type``."""

    NOT_FOUND = "not_found"  #: the path does not exist
    NOT_A_FILE = "not_a_file"  #: a directory, FIFO, socket or device node
    UNSAFE_PATH = "unsafe_path"  #: the real path leaves the storage root
    EMPTY_FILE = "empty_file"  #: zero bytes
    UNREADABLE = "unreadable"  #: exists but cannot be read (permission denied, I/O error)
    NOT_AUDIO = "not_audio"  #: no demuxer recognises the file
    NO_AUDIO_STREAM = "no_audio_stream"  #: a container with no audio track (video only, image)
    NO_SAMPLES = "no_samples"  #: an audio stream that decodes to zero samples (header only)
    UNDECODABLE = "undecodable"  #: the decoder failed before any usable audio came out
    PARTIAL_DECODE = "partial_decode"  #: decoding stopped well before the declared end
    TOO_LONG = "too_long"  #: over JOZVESAZ_MAX_AUDIO_SECONDS
    WORKER_LOST = "worker_lost"  #: the slot process died (signal, out-of-memory killer)
    MODEL_UNAVAILABLE = "model_unavailable"  #: the model could not be loaded
    OUTPUT_FAILED = "output_failed"  #: results could not be written (disk full, permissions)
    INTERNAL = "internal"  #: a bug: the traceback is in the debug log and on the job


#: Reasons that a retry can cure; everything else fails at once.
TRANSIENT_REASONS = frozenset({FailureReason.WORKER_LOST, FailureReason.OUTPUT_FAILED})


class JozvesazError(Exception):
    """jozvesaz failed."""

    exit_code: ExitCode = ExitCode.ENVIRONMENT

    def __init__(self, message: str | None = None, *, hint: str | None = None) -> None:
        self.message = message or (self.__doc__ or "").strip()
        self.hint = hint
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message


class ConfigError(JozvesazError):
    """The configuration is invalid."""

    exit_code = ExitCode.USAGE


class ModelLoadError(JozvesazError):
    """The transcription model cannot be loaded."""

    exit_code = ExitCode.ENVIRONMENT


class ModelIntegrityError(ModelLoadError):
    """A model file does not match its official SHA-256."""


class StoreUnavailableError(JozvesazError):
    """The job database cannot be used."""

    exit_code = ExitCode.ENVIRONMENT


class StorageError(JozvesazError):
    """The storage folder cannot be used."""

    exit_code = ExitCode.ENVIRONMENT


class JobStateError(JozvesazError):
    """The job is no longer in the state this worker expected; another worker owns it."""


class UnknownJobError(JobStateError):
    """No job has the id the user gave: a usage error, not a broken environment."""

    exit_code = ExitCode.USAGE


class InputError(JozvesazError):
    """The input file cannot be transcribed."""

    exit_code = ExitCode.PARTIAL

    def __init__(self, path: str, reason: FailureReason, detail: str) -> None:
        self.path = path
        self.reason = reason
        self.detail = detail
        super().__init__(f"{path}: {detail}")
