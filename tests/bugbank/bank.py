"""Helpers for the bug-bank tests: run the real CLI in a subprocess, read its job rows.

The CLI runs as ``python -m jozvesaz_cli`` with a clean environment (no developer settings),
``STORAGE_ROOT`` in a temporary folder, and ``HF_HUB_OFFLINE=1`` unless a test says otherwise.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]

#: Text that must never reach a user as the explanation of a failed file (bug bank C02).
EXCEPTION_WORDS = ("Traceback", "IndexError", "OSError", "InvalidDataError", "tuple index")


@dataclass(frozen=True)
class CliRun:
    """One finished CLI process."""

    returncode: int
    stdout: str
    stderr: str
    wall_s: float

    def summary(self) -> dict[str, Any]:
        """The ``--json`` run summary on stdout."""
        return dict(json.loads(self.stdout))

    def by_name(self) -> dict[str, dict[str, Any]]:
        """``--json`` file entries keyed by the input's base name."""
        return {Path(entry["path"]).name: entry for entry in self.summary()["files"]}


def base_env(storage: Path, **extra: str) -> dict[str, str]:
    """A clean environment for the CLI; ``extra`` values of "" remove a variable."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", str(storage)),
        "STORAGE_ROOT": str(storage),
        "HF_HUB_OFFLINE": "1",
    }
    env.update(extra)
    return {key: value for key, value in env.items() if value != ""}


def run_cli(
    args: list[str],
    storage: Path,
    *,
    cwd: Path | None = None,
    timeout_s: float = 600,
    **env: str,
) -> CliRun:
    """Run ``jozvesaz ARGS`` to completion and capture everything it wrote."""
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "jozvesaz_cli", *args],
        env=base_env(storage, **env),
        capture_output=True,
        timeout=timeout_s,
        check=False,
        cwd=cwd or storage.parent,
    )
    return CliRun(
        result.returncode,
        result.stdout.decode("utf-8"),  # strict: undecodable output is itself a failure
        result.stderr.decode("utf-8"),
        time.monotonic() - started,
    )


def job_rows(storage: Path) -> list[dict[str, Any]]:
    """Every row of the jobs table, oldest first."""
    with sqlite3.connect(storage / "jozvesaz.sqlite3") as db:
        db.row_factory = sqlite3.Row
        return [dict(row) for row in db.execute("SELECT * FROM jobs ORDER BY id")]


def rows_by_name(storage: Path) -> dict[str, dict[str, Any]]:
    """Job rows keyed by the base name of their source path."""
    return {Path(row["source_path"]).name: row for row in job_rows(storage)}


def documented_reasons() -> set[str]:
    """The failure reasons the README's table documents (the vocabulary users rely on)."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("| reason | meaning |", 1)[1].split("\n\n", 1)[0]
    return set(re.findall(r"^\| `([a-z_]+)` \|", section, flags=re.MULTILINE))


def result_files(storage: Path) -> list[Path]:
    """Every file under ``results/``, hidden ones included."""
    results = storage / "results"
    return sorted(p for p in results.rglob("*") if p.is_file()) if results.is_dir() else []


def outputs_of(row: dict[str, Any]) -> list[Path]:
    """The result paths recorded on a job row."""
    return [Path(p) for p in json.loads(row["outputs"] or "[]")]
