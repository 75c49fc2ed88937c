"""Storage layout and path safety: rows from other programs never reach outside uploads/."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from jozvesaz_cli.errors import FailureReason, InputError
from jozvesaz_cli.storage import (
    StorageLayout,
    display_path,
    filesystem_type,
    fs_path,
    relative_upload_name,
    resolve_upload,
)


@pytest.fixture
def uploads(tmp_path: Path) -> Path:
    folder = tmp_path / "storage" / "uploads"
    (folder / "course").mkdir(parents=True)
    (folder / "course" / "a.wav").write_bytes(b"x")
    return folder


def test_resolve_upload_accepts_relative_paths_inside(uploads: Path) -> None:
    assert resolve_upload(uploads, "course/a.wav") == (uploads / "course" / "a.wav").resolve()


@pytest.mark.parametrize("row", ["../jozvesaz.sqlite3", "course/../../secret.wav", "/etc/passwd"])
def test_resolve_upload_refuses_escapes(uploads: Path, row: str) -> None:
    with pytest.raises(InputError) as caught:
        resolve_upload(uploads, row)
    assert caught.value.reason is FailureReason.UNSAFE_PATH


def test_resolve_upload_refuses_symlink_out(uploads: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside.wav"
    outside.write_bytes(b"x")
    (uploads / "link.wav").symlink_to(outside)
    with pytest.raises(InputError, match="outside the uploads folder"):
        resolve_upload(uploads, "link.wav")


def test_display_path_shows_utf8_names_under_any_locale() -> None:
    raw = "جلسه ۱.wav".encode()
    as_seen_under_c_locale = raw.decode("ascii", errors="surrogateescape")
    assert display_path(as_seen_under_c_locale) == "جلسه ۱.wav"
    assert display_path(os.fsdecode(b"bad-\xff.wav")) == "bad-\\xff.wav"
    assert os.fsencode(fs_path("جلسه ۱.wav")) == raw


def test_relative_upload_name_and_results_mirror(uploads: Path) -> None:
    layout = StorageLayout(uploads.parent, uploads, uploads.parent / "results")
    assert relative_upload_name(uploads, uploads / "course" / "a.wav") == "course/a.wav"
    assert relative_upload_name(uploads, uploads.parent / "x.wav") is None
    assert layout.results_dir_for("course/a.wav") == layout.results / "course"
    assert layout.results_dir_for("a.wav") == layout.results
    assert layout.results_dir_for(None) == layout.results


def test_filesystem_type_reads_the_mount_table(tmp_path: Path) -> None:
    assert filesystem_type(tmp_path) not in ("nfs", "cifs")
    assert filesystem_type(Path("/proc")) == "proc"
