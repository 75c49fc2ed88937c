"""Course profiles: a ``jozvesaz.toml`` in an uploads subfolder applies to the files under it.

A teacher keeps one folder per course; the course's language, glossary and recurring
mis-hearings belong to the folder, not to every command line. The nearest profile between a
file's folder and ``uploads/`` applies (no merging: one file, one profile, easy to reason about).
The profile's values become part of the job's stored settings and of its fingerprint, so editing
a profile and enqueueing the same recording again makes a new job.

Example ``uploads/course-a/jozvesaz.toml``::

    language = "fa"                      # or: allowed_languages = ["fa", "en"]
    initial_prompt = "درس یادگیری ماشین"
    glossary = ["PyTorch", "گرادیان"]    # added to hotwords
    formats = ["txt", "srt", "md"]

    [replacements]                       # applied to the text, whole words
    "پای تورچ" = "PyTorch"
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import tomllib

from jozvesaz_cli.config import OUTPUT_FORMATS
from jozvesaz_cli.errors import ConfigError
from jozvesaz_cli.languages import normalize_code, normalize_codes
from jozvesaz_cli.transcript import Transcript

PROFILE_NAME = "jozvesaz.toml"
ALLOWED_KEYS = frozenset(
    {
        "language",
        "allowed_languages",
        "initial_prompt",
        "hotwords",
        "glossary",
        "formats",
        "replacements",
        "task",
    }
)


@dataclass(frozen=True, slots=True)
class Profile:
    """A parsed course profile.

    Attributes:
        name: the profile's path relative to uploads/ plus a short content hash.
        settings: output-shaping settings it overrides (same keys as the stored job settings).
        replacements: whole-word text replacements for recurring mis-hearings.
    """

    name: str
    settings: dict[str, Any] = field(default_factory=dict)
    replacements: dict[str, str] = field(default_factory=dict)


def find_profile(uploads: Path, folder: Path) -> Path | None:
    """The nearest ``jozvesaz.toml`` from ``folder`` up to ``uploads`` (inclusive), if any."""
    root = uploads.absolute()
    current = folder.absolute()
    while True:
        candidate = current / PROFILE_NAME
        if candidate.is_file():
            return candidate
        if current == root or root not in current.parents:
            return None
        current = current.parent


def _strings(value: Any, key: str, path: Path) -> list[str]:
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",")]
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ConfigError(f"{path}: {key} must be a string or a list of strings")
    return [item for item in value if item]


def _language_settings(data: dict[str, Any], path: Path) -> dict[str, str]:
    """``language`` (one code) and ``allowed_languages`` (several), checked against Whisper's."""
    found: dict[str, str] = {}
    if "language" in data:
        if not isinstance(data["language"], str):
            raise ConfigError(f"{path}: language must be a string")
        found["language"] = data["language"]
    if "allowed_languages" in data:
        found["allowed_languages"] = ",".join(
            _strings(data["allowed_languages"], "allowed_languages", path)
        )
    for key, text in found.items():
        try:
            found[key] = (
                normalize_code(text) if key == "language" else ",".join(normalize_codes(text))
            )
        except ValueError as exc:
            raise ConfigError(f"{path}: {key}: {exc}") from None
    return found


def load_profile(path: Path, uploads: Path) -> Profile:
    """Parse and validate a profile.

    Raises:
        ConfigError: the file is not valid TOML or has unknown or mistyped keys.
    """
    raw = path.read_bytes()
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not a valid profile: {exc}") from None
    unknown = sorted(set(data) - ALLOWED_KEYS)
    if unknown:
        allowed = ", ".join(sorted(ALLOWED_KEYS))
        raise ConfigError(f"{path}: unknown key(s) {', '.join(unknown)}; allowed: {allowed}")
    settings: dict[str, Any] = {}
    for key in ("initial_prompt", "task"):
        if key in data:
            if not isinstance(data[key], str):
                raise ConfigError(f"{path}: {key} must be a string")
            settings[key] = data[key]
    settings.update(_language_settings(data, path))
    words = _strings(data.get("hotwords", []), "hotwords", path) + _strings(
        data.get("glossary", []), "glossary", path
    )
    if words:
        settings["hotwords"] = " ".join(dict.fromkeys(words))
    if "formats" in data:
        formats = [f.lower() for f in _strings(data["formats"], "formats", path)]
        bad = [f for f in formats if f not in OUTPUT_FORMATS]
        if bad:
            raise ConfigError(f"{path}: unknown format(s) {', '.join(bad)}")
        settings["formats"] = ",".join(formats)
    replacements = data.get("replacements", {})
    if not isinstance(replacements, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in replacements.items()
    ):
        raise ConfigError(f"{path}: [replacements] must map strings to strings")
    if replacements:
        settings["replacements"] = dict(sorted(replacements.items()))
    try:
        relative = path.absolute().relative_to(uploads.absolute()).as_posix()
    except ValueError:
        relative = path.name
    digest = hashlib.sha256(raw).hexdigest()[:8]
    return Profile(f"{relative}@{digest}", settings, dict(replacements))


def apply_replacements(transcript: Transcript, replacements: dict[str, str]) -> Transcript:
    """Replace whole words or phrases in every segment (longest first, case as written)."""
    if not replacements:
        return transcript
    ordered = sorted(replacements, key=len, reverse=True)
    pattern = re.compile(r"(?<!\w)(" + "|".join(re.escape(key) for key in ordered) + r")(?!\w)")

    def fix(text: str) -> str:
        return pattern.sub(lambda match: replacements[match.group(1)], text)

    segments = tuple(replace(segment, text=fix(segment.text)) for segment in transcript.segments)
    return replace(transcript, segments=segments)
