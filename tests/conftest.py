"""Shared fixtures: clean environment, settings factory, both database backends, real models.

Everything is real except one expensive boundary per test (STYLE 4.9): a real SQLite file, the
real PostgreSQL server named by ``JOZVESAZ_TEST_DATABASE_URL`` (CI sets it; without it the
PostgreSQL variants skip with a reason, and fail when ``CI`` is set), real models and real speech.
"""

from __future__ import annotations

import os
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO.parent / "shared" / "corpus"
DATA = Path(__file__).resolve().parent / "data"
IN_CI = bool(os.environ.get("CI"))

# Read the test database before the environment is cleaned (jozvesaz rejects unknown
# JOZVESAZ_* names, and tests must not inherit a developer's settings).
POSTGRES_URL = os.environ.get("JOZVESAZ_TEST_DATABASE_URL", "")
for _name in list(os.environ):
    if _name.startswith("JOZVESAZ_") or _name in (
        "TRANSCRIPTION_MODEL_NAME",
        "TRANSCRIPTION_DEVICE_INDEX",
        "TRANSCRIPTION_COMPUTE_TYPE",
        "TRANSCRIPTION_LOAD_IN_8BIT",
        "STORAGE_ROOT",
        "DATABASE_URL",
        "MEMORY_MONITOR_INTERVAL_SECONDS",
        "MEMORY_MONITOR_RAM_RATIO",
        "MEMORY_MONITOR_VRAM_RATIO",
        "ENABLE_MEMORY_MONITORING",
    ):
        del os.environ[_name]

sys.path.insert(0, str(REPO))


def corpus_file(relative: str) -> Path:
    """A corpus recording, read in place; skipped (or failed in CI) when the corpus is absent."""
    path = CORPUS / relative
    if not path.is_file():
        if IN_CI:
            pytest.fail(f"corpus file missing: {path}")
        pytest.skip(f"corpus file missing: {path}")
    return path


def read_manifest() -> list[dict[str, str]]:
    """Rows of the corpus manifest."""
    manifest = CORPUS / "manifest.tsv"
    if not manifest.is_file():
        if IN_CI:
            pytest.fail("corpus manifest missing")
        pytest.skip("corpus manifest missing")
    lines = manifest.read_text(encoding="utf-8").splitlines()
    header = lines[0].split("\t")
    return [dict(zip(header, line.split("\t"), strict=False)) for line in lines[1:] if line]


@pytest.fixture
def settings_factory(tmp_path: Path) -> Callable[..., Any]:
    """Build Settings with no .env, storage under tmp_path, and the given overrides."""
    from jozvesaz_cli.config import Settings

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {"storage_root": tmp_path / "storage"}
        values.update(overrides)
        return Settings(_env_file=None, **values)  # type: ignore[call-arg]

    return make


def _postgres_schema_url() -> Iterator[str]:
    if not POSTGRES_URL:
        if IN_CI:
            pytest.fail(
                "CI is set but JOZVESAZ_TEST_DATABASE_URL is not: PostgreSQL tests must run"
            )
        pytest.skip("set JOZVESAZ_TEST_DATABASE_URL to run the PostgreSQL variant")
    import sqlalchemy as sa

    schema = f"t_{uuid.uuid4().hex[:12]}"
    engine = sa.create_engine(POSTGRES_URL, connect_args={"connect_timeout": 5})
    try:
        with engine.begin() as connection:
            connection.exec_driver_sql(f"CREATE SCHEMA {schema}")
    except sa.exc.OperationalError as exc:
        message = f"PostgreSQL at {POSTGRES_URL} is unreachable: {exc.orig}"
        engine.dispose()
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    separator = "&" if "?" in POSTGRES_URL else "?"
    try:
        yield f"{POSTGRES_URL}{separator}options=-csearch_path%3D{schema}"
    finally:
        with engine.begin() as connection:
            connection.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh database per test: a SQLite file, and a PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'jobs.sqlite3'}"
        return
    yield from _postgres_schema_url()


@pytest.fixture(scope="session")
def base_model_path() -> Path:
    """The real, verified ``base`` model folder (assembled from the offline packages)."""
    return _model_path("base")


@pytest.fixture(scope="session")
def tiny_model_path() -> Path:
    """The real, verified ``tiny.en`` model folder."""
    return _model_path("tiny.en")


def _model_path(name: str) -> Path:
    from jozvesaz_cli.config import Settings
    from jozvesaz_cli.errors import ModelLoadError
    from jozvesaz_cli.model_loader import resolve_model

    spec = Settings(_env_file=None, model_name=name).model_spec  # type: ignore[call-arg]
    try:
        return resolve_model(spec, verify=True).path
    except ModelLoadError as exc:
        if IN_CI:
            raise
        pytest.skip(f"model {name} not available offline: {exc}")


def _is_leak(child: psutil.Process) -> bool:
    """A live child other than multiprocessing's resource tracker (one per test process)."""
    try:
        if child.status() == psutil.STATUS_ZOMBIE:
            return False
        return not any("resource_tracker" in part for part in child.cmdline())
    except psutil.NoSuchProcess:
        return False


@pytest.fixture(autouse=True)
def _no_leaks() -> Iterator[None]:
    """No child process and no non-daemon thread may outlive a test."""
    threads_before = {thread.ident for thread in threading.enumerate()}
    yield
    me = psutil.Process()
    leftovers = [child for child in me.children(recursive=True) if _is_leak(child)]
    deadline = 5.0
    if leftovers:
        _, alive = psutil.wait_procs(leftovers, timeout=deadline)
        for child in alive:
            child.kill()
        assert not alive, f"child processes left behind: {[c.pid for c in alive]}"
    threads = [
        t
        for t in threading.enumerate()
        if t.ident not in threads_before and t.is_alive() and not t.daemon
    ]
    for thread in threads:
        thread.join(timeout=deadline)
    assert not [t for t in threads if t.is_alive()], f"threads left behind: {threads}"
