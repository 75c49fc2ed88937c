"""Builds the one ``Settings`` object from defaults, ``.env``, the environment and CLI flags.

Precedence, lowest first: defaults, ``.env`` in the working directory (or ``--env-file``), the
environment, command-line flags (passed to the constructor as keyword arguments, which
pydantic-settings ranks above every other source). The names that existing deployments use keep
their exact spelling without a prefix (``TRANSCRIPTION_MODEL_NAME``, ``STORAGE_ROOT``, ...); every
setting jozvesaz adds is ``JOZVESAZ_<FIELD>``. This is the only module that reads ``os.environ``.
"""

import difflib
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from jozvesaz_cli.errors import ConfigError
from jozvesaz_cli.languages import normalize_code, normalize_codes

ENV_PREFIX = "JOZVESAZ_"

COMPUTE_TYPES = (
    "default",
    "auto",
    "int8",
    "int8_float32",
    "int8_float16",
    "int8_bfloat16",
    "int16",
    "float16",
    "bfloat16",
    "float32",
)
OUTPUT_FORMATS = ("txt", "srt", "vtt", "json", "md", "html")
DEFAULT_FORMATS = ("txt", "srt", "vtt", "json")

ComputeType = Literal[
    "default",
    "auto",
    "int8",
    "int8_float32",
    "int8_float16",
    "int8_bfloat16",
    "int16",
    "float16",
    "bfloat16",
    "float32",
]


def _legacy(name: str) -> Any:
    """An environment name kept from existing deployments (no prefix)."""
    return AliasChoices(name)


class Settings(BaseSettings):
    """Every tunable of jozvesaz; built once per command by ``load_settings``."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        env_file_encoding="utf-8",
        frozen=True,
        extra="ignore",
        populate_by_name=True,
        validate_default=True,
    )

    # -- model and device -------------------------------------------------------------------
    model_name: str = Field(
        "base",
        validation_alias=_legacy("TRANSCRIPTION_MODEL_NAME"),
        description="Model: a size name (tiny, base, small, large-v3, turbo...), a Hugging Face "
        "repo id, or a local CTranslate2 folder.",
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="auto uses CUDA when CTranslate2 sees a GPU, else the CPU."
    )
    device_index: int | None = Field(
        None,
        ge=0,
        validation_alias=_legacy("TRANSCRIPTION_DEVICE_INDEX"),
        description="GPU index; blank picks automatically.",
    )
    compute_type: ComputeType = Field(
        "default",
        validation_alias=_legacy("TRANSCRIPTION_COMPUTE_TYPE"),
        description="CTranslate2 compute type; default = int8 on CPU, float16 on GPU.",
    )
    load_in_8bit: bool = Field(
        False,
        validation_alias=_legacy("TRANSCRIPTION_LOAD_IN_8BIT"),
        description="Quantise to 8 bits: int8 on CPU, int8_float16 on GPU.",
    )
    models_dir: Path | None = Field(
        None, description="The jozvesaz model store (default: the user cache folder)."
    )
    allow_download: bool = Field(
        False, description="Allow downloading a model from the Hugging Face hub when not found."
    )
    cpu_threads: int = Field(
        0, ge=0, description="CPU threads per slot; 0 splits the cores between the slots."
    )

    # -- decoding ---------------------------------------------------------------------------
    language: str | None = Field(None, description="Force a language code (fa, en, ar...).")
    allowed_languages: str | None = Field(
        None, description="Comma list (fa,en): detection falls back to the likeliest of these."
    )
    task: Literal["transcribe", "translate"] = Field("transcribe", description="Task.")
    beam_size: int = Field(5, ge=1, le=20, description="Beam size.")
    initial_prompt: str | None = Field(None, description="Text that primes the decoder.")
    hotwords: str | None = Field(None, description="Words to favour (names, terms).")
    word_timestamps: bool = Field(False, description="Add per-word timings to the JSON output.")
    vad_filter: bool = Field(True, description="Skip silence with voice-activity detection.")
    batched_min_audio_s: float = Field(
        0.0, ge=0, description="Recordings at least this long use the batched pipeline."
    )
    batch_size: int = Field(8, ge=1, le=64, description="Batch size of the batched pipeline.")
    max_audio_s: float = Field(
        6 * 3600.0,
        gt=0,
        validation_alias=_legacy("JOZVESAZ_MAX_AUDIO_SECONDS"),
        description="Longest recording accepted (seconds), counted while decoding.",
    )

    # -- outputs and storage ----------------------------------------------------------------
    formats: str = Field(
        ",".join(DEFAULT_FORMATS), description="Output formats: txt,srt,vtt,json,md,html or all."
    )
    normalize_persian: bool = Field(
        True, description="Persian letters, ZWNJ and punctuation fixed when the language is fa."
    )
    persian_digits: Literal["keep", "persian", "latin"] = Field(
        "keep", description="Digits in Persian text: keep as the model wrote them, persian, latin."
    )
    notes_heading_every_s: float = Field(
        300.0, gt=0, description="Notes (md/html): a heading every so many seconds."
    )
    output_dir: Path | None = Field(None, description="Where results go (default: results/).")
    storage_root: Path | None = Field(
        None,
        validation_alias=_legacy("STORAGE_ROOT"),
        description="Runtime data: uploads/, results/ and the default SQLite database.",
    )
    database_url: str | None = Field(
        None,
        validation_alias=_legacy("DATABASE_URL"),
        description="SQLAlchemy URL; default sqlite:///<STORAGE_ROOT>/jozvesaz.sqlite3.",
    )

    # -- pool, queue and memory guard -------------------------------------------------------
    slots: int = Field(2, ge=1, le=32, description="Worker processes, each with its own model.")
    max_attempts: int = Field(3, ge=1, le=100, description="Tries before a job stays failed.")
    grace_s: float = Field(30.0, ge=0, description="Time running files get after Ctrl-C/SIGTERM.")
    lease_s: float = Field(60.0, ge=3, description="Job lease; renewed every lease_s/3.")
    memory_monitor_interval_s: float = Field(
        30.0,
        gt=0,
        validation_alias=_legacy("MEMORY_MONITOR_INTERVAL_SECONDS"),
        description="Seconds between memory samples.",
    )
    memory_monitor_ram_ratio: float = Field(
        0.9,
        gt=0,
        le=1,
        validation_alias=_legacy("MEMORY_MONITOR_RAM_RATIO"),
        description="RAM use (0-1] above which a warning is logged and new files wait.",
    )
    memory_monitor_vram_ratio: float = Field(
        0.9,
        gt=0,
        le=1,
        validation_alias=_legacy("MEMORY_MONITOR_VRAM_RATIO"),
        description="GPU memory use (0-1] above which a warning is logged and new files wait.",
    )
    enable_memory_monitoring: bool = Field(
        True,
        validation_alias=_legacy("ENABLE_MEMORY_MONITORING"),
        description="Turn the memory guard on or off.",
    )

    # -- watcher ----------------------------------------------------------------------------
    settle_s: float = Field(2.0, ge=0, description="A file must be unchanged this long.")
    rescan_s: float = Field(300.0, gt=0, description="Full rescan of uploads/ every so often.")
    watch_polling: bool = Field(False, description="Poll instead of inotify (network shares).")

    @field_validator(
        "device_index", "language", "allowed_languages", "initial_prompt", "hotwords", mode="before"
    )
    @classmethod
    def _blank_is_none(cls, value: Any) -> Any:
        """Deployments write ``TRANSCRIPTION_DEVICE_INDEX=`` to mean "automatic"."""
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("language")
    @classmethod
    def _check_language(cls, value: str | None) -> str | None:
        """One Whisper language code, caught here rather than as a failed job."""
        return None if value is None else normalize_code(value)

    @field_validator("allowed_languages")
    @classmethod
    def _check_allowed_languages(cls, value: str | None) -> str | None:
        """A comma list of Whisper language codes."""
        return None if value is None else ",".join(normalize_codes(value)) or None

    @field_validator("formats")
    @classmethod
    def _check_formats(cls, value: str) -> str:
        """Accept a comma list of known formats, or ``all``."""
        names = [part.strip().lower() for part in value.split(",") if part.strip()]
        if names == ["all"]:
            return ",".join(OUTPUT_FORMATS)
        unknown = [name for name in names if name not in OUTPUT_FORMATS]
        if unknown or not names:
            raise ValueError(f"expected a comma list of {', '.join(OUTPUT_FORMATS)} or all")
        return ",".join(dict.fromkeys(names))

    @model_validator(mode="after")
    def _check_precision(self) -> "Settings":
        """8-bit loading and an explicit non-8-bit compute type contradict each other."""
        if (
            self.load_in_8bit
            and self.compute_type not in ("default", "auto")
            and not (self.compute_type.startswith("int8"))
        ):
            raise ValueError(
                f"TRANSCRIPTION_LOAD_IN_8BIT=true contradicts TRANSCRIPTION_COMPUTE_TYPE="
                f"{self.compute_type}; set one of them"
            )
        return self

    # -- derived values ---------------------------------------------------------------------
    @property
    def resolved_storage_root(self) -> Path:
        """The storage root, absolute."""
        return (self.storage_root or default_storage_root()).expanduser().absolute()

    @property
    def uploads_dir(self) -> Path:
        return self.resolved_storage_root / "uploads"

    @property
    def results_dir(self) -> Path:
        return (self.output_dir or self.resolved_storage_root / "results").expanduser().absolute()

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.resolved_storage_root / 'jozvesaz.sqlite3'}"

    @property
    def resolved_models_dir(self) -> Path:
        if self.models_dir:
            return self.models_dir.expanduser().absolute()
        import platformdirs

        return Path(platformdirs.user_cache_dir("jozvesaz")) / "models"

    @property
    def format_list(self) -> tuple[str, ...]:
        return tuple(self.formats.split(","))

    @property
    def allowed_language_list(self) -> tuple[str, ...]:
        if not self.allowed_languages:
            return ()
        return tuple(code.strip() for code in self.allowed_languages.split(",") if code.strip())

    @property
    def threads_per_slot(self) -> int:
        if self.cpu_threads:
            return self.cpu_threads
        return max(1, (os.cpu_count() or 1) // self.slots)

    @property
    def model_spec(self) -> "ModelSpec":
        return ModelSpec(
            name=self.model_name,
            device=self.device,
            device_index=self.device_index,
            compute_type=self.compute_type,
            load_in_8bit=self.load_in_8bit,
            cpu_threads=self.threads_per_slot,
            models_dir=self.resolved_models_dir,
            allow_download=self.allow_download and not hub_offline(),
        )


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """What the model loader needs: a narrow, picklable slice of ``Settings``.

    Attributes:
        name: size name, repo id or local folder.
        device: ``auto``, ``cpu`` or ``cuda``.
        device_index: GPU index, or None for automatic.
        compute_type: as configured (``default`` is resolved by the loader).
        load_in_8bit: prefer 8-bit weights.
        cpu_threads: intra-op threads for this process.
        models_dir: the jozvesaz model store.
        allow_download: whether the hub may be contacted.
    """

    name: str
    device: str
    device_index: int | None
    compute_type: str
    load_in_8bit: bool
    cpu_threads: int
    models_dir: Path
    allow_download: bool


def hub_offline() -> bool:
    """True when the Hugging Face hub is switched off by ``HF_HUB_OFFLINE``."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def default_storage_root() -> Path:
    """The checkout's ``storage/`` when run from a source tree, else ``./storage``."""
    checkout = Path(__file__).resolve().parent.parent
    if (checkout / "pyproject.toml").is_file() and (checkout / "storage").is_dir():
        return checkout / "storage"
    return Path.cwd() / "storage"


def host_name() -> str:
    """This host's name, used in lease owners."""
    return socket.gethostname()


def _env_name(field: str) -> str:
    info = Settings.model_fields[field]
    alias = info.validation_alias
    if isinstance(alias, AliasChoices):
        first = alias.choices[0]
        return str(first)
    return ENV_PREFIX + field.upper()


def env_names() -> dict[str, str]:
    """Field name -> environment variable name, for help and the README table."""
    return {field: _env_name(field) for field in Settings.model_fields}


def _unknown_prefixed_keys(env_file: Path | None) -> list[str]:
    """Describe each unknown ``JOZVESAZ_*`` name: where it was set and the nearest valid name.

    A typo in a setting would otherwise be ignored silently and the default used instead.
    """
    known = sorted(name for name in env_names().values() if name.startswith(ENV_PREFIX))
    found = {key: "the environment" for key in os.environ if key.upper().startswith(ENV_PREFIX)}
    if env_file is not None and env_file.is_file():
        for line in env_file.read_text(encoding="utf-8", errors="replace").splitlines():
            key = line.split("=", 1)[0].strip().removeprefix("export ").strip()
            if key.upper().startswith(ENV_PREFIX) and "=" in line:
                found.setdefault(key, str(env_file))
    described = []
    for key in sorted(found):
        if key.upper() in known:
            continue
        near = difflib.get_close_matches(key.upper(), known, n=1, cutoff=0.75)
        guess = f", did you mean {near[0]}?" if near else ""
        described.append(f"{key} (set in {found[key]}{guess})")
    return described


#: pydantic's bound errors, said as a rule ("must be at most 1").
_BOUNDS = {
    "less_than_equal": ("at most", "le"),
    "greater_than_equal": ("at least", "ge"),
    "less_than": ("less than", "lt"),
    "greater_than": ("more than", "gt"),
}


#: pydantic's type errors, said in the words of a settings file.
_KINDS = {
    "bool_parsing": "must be true or false (also 1/0, yes/no, on/off)",
    "int_parsing": "must be a whole number",
    "float_parsing": "must be a number",
}


def _explain(error: dict[str, Any], overrides: dict[str, Any], flags: Mapping[str, str]) -> str:
    loc = str(error["loc"][0]) if error.get("loc") else ""
    field = (
        loc
        if loc in Settings.model_fields
        else next((name for name, env in env_names().items() if env.lower() == loc.lower()), loc)
    )
    if field in overrides:
        where = flags.get(field, f"--{field.replace('_', '-')}")
    else:
        where = env_names().get(field, loc)
    if not loc:
        return str(error.get("msg", "invalid settings")).removeprefix("Value error, ")
    value = error.get("input")
    allowed = error.get("msg", "").removeprefix("Value error, ")
    ctx = error.get("ctx", {})
    kind = error.get("type", "")
    if kind in _KINDS:
        allowed = _KINDS[kind]
    elif kind == "literal_error":
        allowed = f"expected one of {ctx.get('expected', '')}"
    elif kind in _BOUNDS:
        word, key = _BOUNDS[kind]
        bound = ctx.get(key)
        shown = f"{bound:g}" if isinstance(bound, float) else str(bound)
        allowed = f"must be {word} {shown}"
    return f"{where}={value!r} is not valid: {allowed.replace('Input should be', 'must be')}"


def load_settings(
    overrides: dict[str, Any] | None = None,
    *,
    env_file: Path | None = None,
    flags: Mapping[str, str] | None = None,
) -> Settings:
    """Build the settings once, from defaults, ``.env``, the environment and ``overrides``.

    Args:
        overrides: values given on the command line, by field name (None entries are ignored).
        env_file: the ``.env`` file to read; default ``./.env``.
        flags: the command-line flag of each override whose flag is not ``--field-name``, so
            an error names what the user typed.

    Raises:
        ConfigError: a value is invalid or a ``JOZVESAZ_*`` name is unknown; the message names
            the variable, the value and what is allowed.
    """
    given = {key: value for key, value in (overrides or {}).items() if value is not None}
    path = env_file if env_file is not None else Path(".env")
    if env_file is not None and not env_file.is_file():
        raise ConfigError(f"--env-file {env_file}: no such file")
    unknown = _unknown_prefixed_keys(path)
    if unknown:
        raise ConfigError(
            f"unknown setting {'; '.join(unknown)}",
            hint="see the settings table in README.md for the valid JOZVESAZ_* names",
        )
    try:
        return Settings(_env_file=path, **given)  # type: ignore[call-arg]
    except ValidationError as exc:
        lines = [_explain(dict(err), given, flags or {}) for err in exc.errors()]
        raise ConfigError("; ".join(lines)) from None
