"""The storage root's layout, path safety, and file names that survive any locale.

``${STORAGE_ROOT}/uploads`` receives recordings, ``results/`` receives outputs, and the default
SQLite database lives at the root. Paths named by job rows (which other programs may insert) are
resolved inside ``uploads/`` and refused when their real path leaves it. File names are shown and
stored as UTF-8 text, even when Python runs under a non-UTF-8 locale and sees surrogate escapes.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from jozvesaz_cli.errors import FailureReason, InputError, StorageError

#: Filesystems where inotify misses remote writes and SQLite's locking is unreliable.
NETWORK_FILESYSTEMS = frozenset(
    {
        "nfs",
        "nfs4",
        "cifs",
        "smb3",
        "smbfs",
        "9p",
        "afs",
        "ceph",
        "glusterfs",
        "lustre",
        "fuse.sshfs",
        "fuse.bindfs",
        "fuse.rclone",
        "fuse.s3fs",
        "fuse.gcsfuse",
        "davfs",
        "fuse.glusterfs",
        "fuse",
    }
)
HASH_CHUNK_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class StorageLayout:
    """Where jozvesaz keeps its runtime data.

    Attributes:
        root: the storage root.
        uploads: recordings to transcribe (watched, scanned by drain-queue).
        results: outputs; subfolders of uploads are mirrored here.
    """

    root: Path
    uploads: Path
    results: Path

    def ensure(self) -> None:
        """Create the folders on demand.

        Raises:
            StorageError: a folder cannot be created (read-only, permissions).
        """
        for folder in (self.root, self.uploads, self.results):
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StorageError(f"cannot create {display_path(folder)}: {exc.strerror}") from exc

    def results_dir_for(self, relative_source: str | None) -> Path:
        """The results folder that mirrors an upload's subfolder (flat for other inputs)."""
        if not relative_source:
            return self.results
        parent = Path(relative_source).parent
        return self.results / parent if str(parent) not in ("", ".") else self.results


def display_path(path: Path | str) -> str:
    """A path as UTF-8 text for logs, stdout and the database, whatever the locale.

    Under a C/POSIX locale Python decodes file names with surrogate escapes; re-encoding the
    original bytes as UTF-8 gives back the real name, and bytes that are not UTF-8 are shown
    as ``\\xNN`` instead of crashing a database insert or a print.
    """
    raw = os.fsencode(path)
    return raw.decode("utf-8", errors="backslashreplace")


#: A byte that is not UTF-8, as ``display_path`` shows it.
_ESCAPED_BYTE_RE = re.compile(r"\\x([89a-f][0-9a-f])")


def fs_path(text: str) -> Path:
    """The filesystem path for a UTF-8 name read back from the database or the command line.

    The inverse of ``display_path``: a name whose bytes are not UTF-8 was stored with each such
    byte as ``\\xNN``; when the name does not exist as written, those escapes are turned back
    into the bytes, so the file is found again instead of failing as "no such file".
    """
    path = Path(os.fsdecode(text.encode("utf-8", errors="surrogateescape")))
    if "\\x" in text and not os.path.lexists(path):
        raw = _ESCAPED_BYTE_RE.sub(lambda m: chr(0xDC00 + int(m.group(1), 16)), text)
        candidate = Path(os.fsdecode(raw.encode("utf-8", errors="surrogateescape")))
        if os.path.lexists(candidate):
            return candidate
    return path


def hash_file(path: Path) -> str:
    """SHA-256 of a file's content: the recording's identity."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def resolve_upload(uploads: Path, relative: str) -> Path:
    """The real path of an upload named by a job row, refused if it leaves ``uploads``.

    Rows may come from other programs, so ``..``, absolute paths and symlinks that point
    outside the storage are all possible; the check is on the fully resolved real path.

    Raises:
        InputError: the path escapes ``uploads`` (reason ``unsafe_path``).
    """
    candidate = fs_path(relative)
    root = uploads.resolve()
    if candidate.is_absolute():
        raise InputError(
            relative,
            FailureReason.UNSAFE_PATH,
            "absolute paths are not accepted in the queue; name files relative to uploads/",
        )
    real = (root / candidate).resolve()
    if not real.is_relative_to(root):
        raise InputError(
            relative,
            FailureReason.UNSAFE_PATH,
            "resolves outside the uploads folder (a symlink or '..'); refused",
        )
    return real


def relative_upload_name(uploads: Path, path: Path) -> str | None:
    """The name of ``path`` relative to ``uploads`` (as stored in job rows), or None if outside."""
    try:
        relative = path.absolute().relative_to(uploads.absolute())
    except ValueError:
        return None
    return display_path(relative)


def filesystem_type(path: Path) -> str:
    """The type of the filesystem holding ``path``, from the mount table ("" if unknown)."""
    try:
        mounts = Path("/proc/self/mounts").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    target = os.path.realpath(path)
    best, best_type = "", ""
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        mount_point = fields[1].replace("\\040", " ")
        inside = target == mount_point or target.startswith(mount_point.rstrip("/") + "/")
        if inside and len(mount_point) >= len(best):
            best, best_type = mount_point, fields[2]
    return best_type


def is_network_filesystem(path: Path) -> bool:
    """True for NFS, SMB, FUSE and similar, where inotify and SQLite locking fall short."""
    fs_type = filesystem_type(path)
    return fs_type in NETWORK_FILESYSTEMS or fs_type.startswith("fuse.")
