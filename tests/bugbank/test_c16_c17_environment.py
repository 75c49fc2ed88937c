"""Bug bank C16 and C17: a CPU-only host, bad device settings, and a model not obtainable offline.

slurm-job-exporter #10 crashed where pynvml was installed but the NVIDIA driver was not;
faster-whisper #116/#405 went to the hub with no network even with the model on disk. Each
variant runs the real ``transcribe`` command; the offline ones run inside a network namespace
with only loopback (``unshare -rn``), so any hub request would fail rather than pass unseen.
Environment problems are found at start-up: one message, the documented exit code (2 for a bad
setting, 3 for an unusable model), and no job row failed for them.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.bugbank.bank import CliRun, base_env, job_rows

pytestmark = [pytest.mark.model]


def _no_network_prefix() -> list[str]:
    """``unshare -rn`` when this host allows it (it does on Linux CI as root)."""
    unshare = shutil.which("unshare")
    if unshare and subprocess.run([unshare, "-rn", "true"], check=False).returncode == 0:
        return [unshare, "-rn"]
    return []


def run_isolated(args: list[str], storage: Path, *, pythonpath: str = "", **env: str) -> CliRun:
    """The real CLI without network access, in a clean environment."""
    variables = base_env(storage, **env)
    if pythonpath:
        variables["PYTHONPATH"] = pythonpath
    started = time.monotonic()
    result = subprocess.run(
        [*_no_network_prefix(), sys.executable, "-m", "jozvesaz_cli", *args],
        env=variables,
        capture_output=True,
        timeout=300,
        check=False,
        cwd=storage.parent,
    )
    return CliRun(
        result.returncode,
        result.stdout.decode("utf-8"),
        result.stderr.decode("utf-8"),
        time.monotonic() - started,
    )


def _failed_rows(storage: Path) -> list[dict[str, object]]:
    if not (storage / "jozvesaz.sqlite3").exists():
        return []
    return [row for row in job_rows(storage) if row["status"] == "failed"]


def test_c16_without_pynvml_the_guard_watches_ram_only_and_says_so_once(
    tiny_model_path: Path, speech: dict[str, Path], tmp_path: Path
) -> None:
    """C16: ``import pynvml`` fails (a shim on PYTHONPATH, as in the bank): the file is done on
    the CPU, exit 0, the "RAM only" line appears exactly once and no traceback is shown."""
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "pynvml.py").write_text('raise ImportError("simulated: pynvml not installed")\n')
    storage = tmp_path / "storage"
    run = run_isolated(
        ["transcribe", "-v", str(speech["speech.wav"])],
        storage,
        pythonpath=str(shim),
        TRANSCRIPTION_MODEL_NAME="tiny.en",
    )
    assert run.returncode == 0, run.stderr
    assert run.stderr.count("using system RAM only") == 1, run.stderr
    assert "simulated: pynvml not installed" in run.stderr
    assert "Traceback" not in run.stderr
    assert [row["status"] for row in job_rows(storage)] == ["done"]


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        ({"TRANSCRIPTION_COMPUTE_TYPE": "float16"}, ("TRANSCRIPTION_COMPUTE_TYPE=float16", "cpu")),
        ({"TRANSCRIPTION_DEVICE_INDEX": "3"}, ("TRANSCRIPTION_DEVICE_INDEX=3", "0 CUDA devices")),
        (
            {"TRANSCRIPTION_LOAD_IN_8BIT": "1", "TRANSCRIPTION_COMPUTE_TYPE": "float32"},
            ("TRANSCRIPTION_LOAD_IN_8BIT", "float32"),
        ),
        ({"MEMORY_MONITOR_RAM_RATIO": "1.7"}, ("MEMORY_MONITOR_RAM_RATIO", "1.7")),
    ],
    ids=["float16-on-cpu", "device-index-3", "8bit-with-float32", "ratio-1.7"],
)
def test_c16_bad_device_settings_stop_at_startup_with_exit_2_and_touch_no_job(
    speech: dict[str, Path], tmp_path: Path, variables: dict[str, str], expected: tuple[str, ...]
) -> None:
    """C16: each bad or contradictory setting is one message naming the variable and the value
    (and what is allowed or found), exit 2, no traceback, and no job row failed for it."""
    storage = tmp_path / "storage"
    run = run_isolated(
        ["transcribe", str(speech["speech.wav"])],
        storage,
        TRANSCRIPTION_MODEL_NAME="tiny.en",
        **variables,
    )
    assert run.returncode == 2, run.stderr
    for text in expected:
        assert text in run.stderr, run.stderr
    assert "Traceback" not in run.stderr
    assert run.stdout == ""
    assert _failed_rows(storage) == []


def test_c17_a_model_not_available_offline_fails_fast_with_the_fix(
    speech: dict[str, Path], tmp_path: Path
) -> None:
    """C17 (a): ``small`` with empty caches and no network: exit 3 well within 30 s, one message
    naming the model, what was tried and how to provide it; no job failed for it."""
    storage = tmp_path / "storage"
    empty = tmp_path / "empty"
    run = run_isolated(
        ["transcribe", str(speech["speech.wav"])],
        storage,
        TRANSCRIPTION_MODEL_NAME="small",
        HF_HOME=str(empty / "hf"),
        JOZVESAZ_MODELS_DIR=str(empty / "models"),
    )
    assert run.returncode == 3, run.stderr
    assert run.wall_s < 30, run.wall_s
    assert "'small' is not available offline" in run.stderr, run.stderr
    assert "TRANSCRIPTION_MODEL_NAME" in run.stderr and "models pull small" in run.stderr
    assert "Traceback" not in run.stderr
    assert _failed_rows(storage) == []


def test_c17_a_local_model_folder_with_spaces_works_with_no_network(
    tiny_model_path: Path, speech: dict[str, Path], tmp_path: Path
) -> None:
    """C17 (c): a CTranslate2 folder whose path has spaces, named by TRANSCRIPTION_MODEL_NAME,
    transcribes with no network and no hub cache at all: exit 0, done."""
    folder = tmp_path / "models dir" / "tiny en"
    shutil.copytree(tiny_model_path, folder)
    storage = tmp_path / "storage"
    run = run_isolated(
        ["transcribe", "--format", "txt", str(speech["speech.wav"])],
        storage,
        TRANSCRIPTION_MODEL_NAME=str(folder),
        HF_HOME=str(tmp_path / "no-hf"),
    )
    assert run.returncode == 0, run.stderr
    [printed] = run.stdout.splitlines()
    assert "fox" in Path(printed).read_text(encoding="utf-8").casefold()
    assert [row["status"] for row in job_rows(storage)] == ["done"]
