"""Feeds the job queue from uploads/: a watchdog observer, a settle window and periodic rescans.

Events are hints and the database is the truth. Every file goes through ``intake.offer_path``
(identity plus insert-or-ignore), so duplicate events, the startup scan, the periodic rescan and a
concurrent ``drain-queue`` can all see the same file and still make one job. Paths that already
have a job are remembered with their size and mtime and never hashed again unless those change.

A file is offered only once it has finished arriving, judged by two signals:

- everywhere, a stability window: size and mtime unchanged for ``settle_s`` (measured by our own
  observations, or by the file's mtime when the folder is local and its clock is ours);
- on Linux, close-after-write: a file that inotify saw being written is not offered before the
  writer closed it, however long it pauses (up to ``OPEN_WRITE_TIMEOUT_S``, for writers that never
  close). The close does not shorten the window, because some writers close and reopen between
  chunks (NFS servers, recorders that append).

A 0-byte file is treated like any other and offered only after it stayed empty for the window
(new uploads start empty); intake then records it failed with ``empty_file``. Symlinks whose
real path leaves uploads/ and anything that is not a regular file (FIFO, device, socket) are never
opened: intake records them as failed jobs (``unsafe_path``, ``not_a_file``), once, so that
operators see the reason and no scan offers them again.

A file that changes after its job was queued, but before any worker claimed it, has that job
cancelled at once (so no slot starts on a half-rewritten file) and is offered again once it
settles: new content makes a new job, the same content puts the cancelled job back in the queue.
A file that changes after its job started or finished is offered again too; the content hash
decides whether that is new work (a re-upload) or nothing (a ``touch``).

The observer is inotify on Linux, or the polling observer when ``watch_polling`` is set, when
uploads/ is on a network or FUSE filesystem (inotify never sees writes made by other hosts), or
when the inotify instance or watch limit is reached; each fallback logs a warning with the fix.
A rescan every ``rescan_s`` (and right after watchdog reports an inotify queue overflow) catches
whatever the events missed.
"""

from __future__ import annotations

import enum
import errno
import logging
import os
import queue
import sys
import threading
import time
import types
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from jozvesaz_cli.config import Settings
from jozvesaz_cli.errors import ExitCode, JobStateError, JozvesazError, StoreUnavailableError
from jozvesaz_cli.intake import Intake, is_candidate_name, offer_path
from jozvesaz_cli.job_store import JobOrigin, JobStatus, JobStore
from jozvesaz_cli.storage import (
    StorageLayout,
    display_path,
    filesystem_type,
    is_network_filesystem,
    relative_upload_name,
)

if TYPE_CHECKING:
    from watchdog.events import FileSystemEvent, FileSystemEventHandler
    from watchdog.observers.api import BaseObserver

__all__ = [
    "OPEN_WRITE_TIMEOUT_S",
    "Arrival",
    "FileStamp",
    "InboxWatcher",
    "ObserverChoice",
    "SettleTracker",
    "WatchError",
    "choose_observer",
    "inotify_limit_message",
    "is_candidate",
    "read_stamp",
    "rejection_reason",
]

logger = logging.getLogger(__name__)

#: How long a file that inotify saw being written may stay open and unchanged before it is
#: offered anyway (a writer that never closes its file must not stall the queue forever).
OPEN_WRITE_TIMEOUT_S = 300.0
#: Seconds between two snapshots of the polling observer.
POLL_INTERVAL_S = 1.0
#: Seconds to wait before retrying when the database cannot be used.
STORE_RETRY_S = 5.0
#: The logger on which watchdog reports an inotify queue overflow (events were lost).
_WATCHDOG_INOTIFY_LOGGER = "watchdog.observers.inotify_c"


class WatchError(JozvesazError):
    """The watcher stopped watching uploads/; restart ``jozvesaz watch`` (systemd restarts it)."""

    exit_code = ExitCode.ENVIRONMENT


# -- which files ---------------------------------------------------------------------------
def rejection_reason(
    path: Path, layout: StorageLayout, ignored: Collection[Path] = ()
) -> str | None:
    """Why the watcher ignores ``path``, or None when it is a candidate recording.

    Only names are looked at (nothing is opened or stat'ed): the file may already be gone.

    Args:
        path: an absolute path reported by the observer or a scan.
        layout: the storage layout; only files under ``uploads`` are candidates.
        ignored: files never to offer whatever their name (the SQLite database and its
            ``-wal``/``-shm``/``-journal`` companions).

    Returns:
        A short reason for the debug log (``"inside results/"``, ``"temporary or junk name"``...),
        or None.
    """
    relative = relative_upload_name(layout.uploads, path)
    if relative is None or relative in ("", "."):
        return "outside uploads/"
    if _results_nested(layout) and path.absolute().is_relative_to(layout.results.absolute()):
        return "inside results/"
    if path.absolute() in ignored:
        return "a database file"
    parts = Path(relative).parts
    if any(part.startswith(".") for part in parts[:-1]):
        return "inside a hidden folder"
    if not is_candidate_name(parts[-1]):
        return "hidden, temporary, junk or unsupported name"
    return None


def is_candidate(path: Path, layout: StorageLayout, ignored: Collection[Path] = ()) -> bool:
    """True when ``path`` may become a job (see ``rejection_reason``)."""
    return rejection_reason(path, layout, ignored) is None


def _results_nested(layout: StorageLayout) -> bool:
    """True when results/ sits inside uploads/ (outputs must then never be re-ingested)."""
    results, uploads = layout.results.absolute(), layout.uploads.absolute()
    return results != uploads and results.is_relative_to(uploads)


# -- when a file has finished arriving ------------------------------------------------------
@dataclass(frozen=True, slots=True)
class FileStamp:
    """What a stat says about a file's content, cheaply.

    Attributes:
        size_bytes: the size.
        mtime_ns: the modification time, in nanoseconds since the epoch.
    """

    size_bytes: int
    mtime_ns: int


def read_stamp(path: Path) -> FileStamp | None:
    """Stat ``path`` without opening it (a FIFO never blocks); None when it is gone.

    A dangling symlink is stamped from the link itself, so that intake can record it.
    """
    try:
        info = os.stat(path)
    except FileNotFoundError:
        try:
            info = os.lstat(path)
        except OSError:
            return None
    except OSError:
        return None
    return FileStamp(info.st_size, info.st_mtime_ns)


class Arrival(enum.Enum):
    """The settle tracker's verdict on one file."""

    WAITING = "waiting"  #: still changing, or still open for writing
    SETTLED = "settled"  #: unchanged for the settle window: offer it now
    GONE = "gone"  #: disappeared before it settled


@dataclass(slots=True)
class _Arriving:
    stamp: FileStamp | None
    changed_at: float
    writing: bool = False


class SettleTracker:
    """Decides when files have finished arriving, from stamps and write/close hints.

    Pure bookkeeping: the caller supplies every stamp and both clocks, so the rules can be
    tested without sleeping. Not thread-safe; the watcher holds its lock around every call.

    Args:
        settle_s: how long size and mtime must stay unchanged.
        trust_mtime: count the time since the file's own mtime as quiet time. True on local
            filesystems, where the mtime comes from our clock; False on network shares,
            where another host's clock (and attribute caching) make it unreliable.
        open_timeout_s: how long a file seen being written (and not closed) must stay unchanged
            before it is offered anyway.
    """

    def __init__(
        self,
        settle_s: float,
        *,
        trust_mtime: bool = True,
        open_timeout_s: float = OPEN_WRITE_TIMEOUT_S,
    ) -> None:
        self.settle_s = settle_s
        self.trust_mtime = trust_mtime
        self.open_timeout_s = max(open_timeout_s, settle_s)
        self._files: dict[str, _Arriving] = {}

    def __contains__(self, key: object) -> bool:
        return key in self._files

    def __len__(self) -> int:
        return len(self._files)

    def keys(self) -> list[str]:
        """The files being tracked."""
        return list(self._files)

    def track(self, key: str, now: float, *, writing: bool | None = None) -> None:
        """Start (or keep) tracking ``key`` after an event.

        Args:
            key: the file's path.
            now: monotonic time of the event.
            writing: True after a write event from an observer that reports closes (the
                file is open for writing until it is closed), False after close-after-write,
                None when the event says nothing about it (created, moved in, a scan).
        """
        entry = self._files.get(key)
        if entry is None:
            entry = self._files[key] = _Arriving(None, now)
        if writing is not None:
            entry.writing = writing

    def check(self, key: str, stamp: FileStamp | None, now: float, wall_now: float) -> Arrival:
        """Record a fresh stamp of ``key`` and say whether it has finished arriving.

        Args:
            key: the file's path (tracked on first use).
            stamp: its stamp now, or None when it is gone.
            now: monotonic time of the stamp.
            wall_now: ``time.time()`` at the stamp, compared with the file's mtime.

        Returns:
            SETTLED when the file has been quiet for ``settle_s`` (and, when it was seen being
            written, was closed or stayed unchanged for ``open_timeout_s``); the caller offers
            it and forgets it. WAITING otherwise; GONE when it disappeared (forgotten).
        """
        entry = self._files.get(key)
        if entry is None:
            entry = self._files[key] = _Arriving(None, now)
        if stamp is None:
            del self._files[key]
            return Arrival.GONE
        if stamp != entry.stamp:
            entry.stamp, entry.changed_at = stamp, now
        quiet_s = now - entry.changed_at
        if entry.writing:
            if quiet_s < self.open_timeout_s:
                return Arrival.WAITING
            logger.warning(
                "%s: still open for writing but unchanged for %.0f s; treating it as complete",
                display_path(key),
                quiet_s,
                extra={"action": "open_write_timeout"},
            )
            return Arrival.SETTLED
        if self.trust_mtime:
            quiet_s = max(quiet_s, wall_now - stamp.mtime_ns / 1e9)
        return Arrival.SETTLED if quiet_s >= self.settle_s else Arrival.WAITING

    def forget(self, key: str) -> None:
        """Stop tracking ``key`` (offered, deleted or moved away)."""
        self._files.pop(key, None)

    def forget_under(self, folder: str) -> None:
        """Stop tracking everything below ``folder`` (a folder deleted or moved away)."""
        prefix = folder.rstrip(os.sep) + os.sep
        for key in [key for key in self._files if key.startswith(prefix)]:
            del self._files[key]


# -- which observer --------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ObserverChoice:
    """How uploads/ is watched.

    Attributes:
        polling: use watchdog's polling observer instead of the native one.
        reason: why polling was chosen ("" for the native observer).
        network: uploads/ is on a network or FUSE filesystem (mtimes come from another clock).
        warn: the choice was made for the user, so it is logged as a warning.
    """

    polling: bool
    reason: str
    network: bool
    warn: bool


def choose_observer(watch_polling: bool, network_fs_type: str | None) -> ObserverChoice:
    """Pick the observer for uploads/.

    Args:
        watch_polling: ``--poll`` / ``JOZVESAZ_WATCH_POLLING``.
        network_fs_type: the filesystem type when uploads/ is on a network or FUSE filesystem
            (``nfs4``, ``cifs``, ``fuse.sshfs``...), else None.

    Returns:
        Polling when asked for, or on a network filesystem, where inotify never reports
        writes made by other hosts (gorakhargosh/watchdog#504); the native observer otherwise.
    """
    network = network_fs_type is not None
    if watch_polling:
        return ObserverChoice(
            True, "asked for with --poll or JOZVESAZ_WATCH_POLLING", network, False
        )
    if network:
        reason = (
            f"uploads/ is on a {network_fs_type} filesystem, where inotify misses writes made "
            "by other hosts"
        )
        return ObserverChoice(True, reason, True, True)
    return ObserverChoice(False, "", False, False)


def inotify_limit_message(error: OSError, folder: Path) -> str:
    """A sentence naming the folder, the inotify limit that was hit and how to raise it.

    Args:
        error: the ``OSError`` from watchdog (``EMFILE``: instances, ``ENOSPC``: watches).
        folder: the folder that could not be watched.
    """
    if error.errno == errno.ENOSPC:
        setting, suggested = "max_user_watches", 524288
        what = "watches is reached (a recursive watch needs one per subfolder)"
    else:
        setting, suggested = "max_user_instances", 512
        what = "instances is reached (other programs hold them; or out of file handles)"
    current = _read_sysctl(f"fs/inotify/{setting}")
    shown = f"fs.inotify.{setting} = {current}" if current else f"fs.inotify.{setting}"
    return (
        f"cannot watch {display_path(folder)} with inotify: the per-user limit on inotify {what}, "
        f"{shown}. Fix: `sudo sysctl fs.inotify.{setting}={suggested}` (and a file in "
        "/etc/sysctl.d/ to keep it), or use --poll (JOZVESAZ_WATCH_POLLING=true)"
    )


def _read_sysctl(name: str) -> str:
    try:
        return Path("/proc/sys", name).read_text(encoding="ascii").strip()
    except OSError:
        return ""


# -- the watcher -------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _Change:
    """One observer event, reduced to what the settle thread needs (no watchdog types)."""

    kind: str
    path: str
    dest: str
    is_directory: bool


class _OverflowListener(logging.Handler):
    """Wakes the rescan thread when watchdog logs that inotify dropped events.

    watchdog 7 handles ``IN_Q_OVERFLOW`` itself and only logs it; the log record is the one
    signal it gives, so a full rescan is requested from it (bug bank C11: no file is lost).
    """

    def __init__(self, wake: threading.Event) -> None:
        super().__init__(logging.WARNING)
        self._wake = wake

    def emit(self, record: logging.LogRecord) -> None:
        if "overflow" in record.getMessage().lower():
            self._wake.set()


def _make_handler(sink: Callable[[FileSystemEvent], None]) -> FileSystemEventHandler:
    from watchdog.events import FileSystemEventHandler

    class _Handler(FileSystemEventHandler):
        def on_any_event(self, event: FileSystemEvent) -> None:
            sink(event)

    return _Handler()


def _event_filter() -> list[type[FileSystemEvent]]:
    """The events the watcher uses; opens, reads and attribute changes are never asked for."""
    from watchdog.events import (
        DirCreatedEvent,
        DirDeletedEvent,
        DirMovedEvent,
        FileClosedEvent,
        FileCreatedEvent,
        FileDeletedEvent,
        FileModifiedEvent,
        FileMovedEvent,
    )

    return [
        FileCreatedEvent,
        FileModifiedEvent,
        FileClosedEvent,
        FileMovedEvent,
        FileDeletedEvent,
        DirCreatedEvent,
        DirMovedEvent,
        DirDeletedEvent,
    ]


class InboxWatcher:
    """Watches uploads/ and turns every recording that has finished arriving into a job.

    Use it as a context manager around the runner: ``__enter__`` calls ``start`` and
    ``__exit__`` calls ``stop``. Three threads of its own run while it is started, none of them
    daemons and all joined by ``stop``: the observer's (watchdog), a settle thread that turns
    events into offers, and a rescan thread.

    Args:
        settings: ``settle_s``, ``rescan_s`` and ``watch_polling``, plus the output settings
            that intake fingerprints.
        store: the job store that every offer goes to.
        layout: where uploads/ and results/ are (uploads/ must exist).
    """

    def __init__(self, settings: Settings, store: JobStore, layout: StorageLayout) -> None:
        self._settings = settings
        self._store = store
        self._layout = layout
        self._uploads = layout.uploads.absolute()
        self._ignored = _database_files(store)
        self._tick_s = max(0.05, min(0.25, settings.settle_s / 4))
        self._tracker = SettleTracker(settings.settle_s)
        self._events: queue.SimpleQueue[_Change] = queue.SimpleQueue()
        self._lock = threading.Lock()  # tracker, _handled, _jobs, _cancelled
        self._offer_lock = threading.Lock()  # one offer at a time (hashing, insert)
        self._stopping = threading.Event()
        self._rescan_now = threading.Event()
        self._handled: dict[str, FileStamp] = {}
        self._jobs: dict[str, int] = {}
        # Files whose queued job was looked up during a change: the job cancelled, or None.
        self._cancelled: dict[str, int | None] = {}
        self._observer: BaseObserver | None = None
        self._threads: list[threading.Thread] = []
        self._failure: BaseException | None = None
        self._overflow = _OverflowListener(self._rescan_now)
        self._close_events = False
        self.mode = "stopped"

    # -- lifecycle ---------------------------------------------------------------------------
    def __enter__(self) -> InboxWatcher:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: types.TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Start the observer and the threads, then queue every file that has no job yet.

        The observer starts first, so that nothing arriving during the startup scan is missed;
        files that are still arriving are left to the settle thread.

        Raises:
            WatchError: uploads/ is missing or cannot be watched at all.
            StoreUnavailableError: the database cannot be used.
        """
        if self._observer is not None:
            raise RuntimeError("the watcher is already started")
        if not self._uploads.is_dir():
            raise WatchError(f"{display_path(self._uploads)} is missing or not a folder")
        network_type = (
            filesystem_type(self._uploads) if is_network_filesystem(self._uploads) else None
        )
        choice = choose_observer(self._settings.watch_polling, network_type)
        self._tracker.trust_mtime = not choice.network
        self._stopping.clear()
        self._rescan_now.clear()
        logging.getLogger(_WATCHDOG_INOTIFY_LOGGER).addHandler(self._overflow)
        try:
            self._observer = self._start_observer(choice)
            self._start_thread("settle", self._settle_loop)
            self._start_thread("rescan", self._rescan_loop)
            created = self.rescan()
        except BaseException:
            self.stop()
            raise
        logger.info(
            "startup scan of %s: %d new file(s) queued, %d waiting to settle",
            display_path(self._uploads),
            created,
            len(self._tracker),
            extra={"action": "startup_scan"},
        )

    def stop(self) -> None:
        """Stop the observer and join every thread; safe to call twice."""
        self._stopping.set()
        self._rescan_now.set()
        observer, self._observer = self._observer, None
        if observer is not None:
            observer.stop()
            if observer.ident is not None:
                observer.join()
        for thread in self._threads:
            thread.join()
        self._threads.clear()
        logging.getLogger(_WATCHDOG_INOTIFY_LOGGER).removeHandler(self._overflow)
        self.mode = "stopped"

    def check_health(self) -> None:
        """Raise when the watcher is no longer watching (called by the runner's loop).

        Raises:
            WatchError: a thread of the watcher or the observer ended (the folder was removed
                or unmounted, or a bug); the message says which.
        """
        if self._failure is not None:
            raise WatchError(f"the watcher stopped: {self._failure}") from self._failure
        observer = self._observer
        if observer is None:
            raise WatchError("the watcher is not running")
        emitters = list(observer.emitters)
        if not observer.is_alive() or not emitters or not all(e.is_alive() for e in emitters):
            raise WatchError(
                f"stopped watching {display_path(self._uploads)}: the {self.mode} observer ended "
                "(was the folder removed or unmounted?)"
            )
        dead = [thread.name for thread in self._threads if not thread.is_alive()]
        if dead:
            raise WatchError(f"the watcher stopped: thread {', '.join(dead)} ended")

    def _start_thread(self, name: str, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, name=f"jozvesaz-watch-{name}", daemon=False)
        thread.start()
        self._threads.append(thread)

    def _start_observer(self, choice: ObserverChoice) -> BaseObserver:
        handler = _make_handler(self._on_event)
        if not choice.polling:
            try:
                return self._start_native(handler)
            except OSError as error:
                if error.errno not in (errno.EMFILE, errno.ENOSPC):
                    raise WatchError(
                        f"cannot watch {display_path(self._uploads)}: {error.strerror or error}"
                    ) from error
                choice = ObserverChoice(
                    True, inotify_limit_message(error, self._uploads), False, True
                )
        from watchdog.observers.polling import PollingObserver

        observer = PollingObserver(timeout=POLL_INTERVAL_S)
        observer.schedule(handler, str(self._uploads), recursive=True, event_filter=_event_filter())
        observer.start()
        self.mode = "polling"
        self._close_events = False
        (logger.warning if choice.warn else logger.info)(
            "watching %s by polling every %.0f s, with a full rescan every %.0f s. Why: %s",
            display_path(self._uploads),
            POLL_INTERVAL_S,
            self._settings.rescan_s,
            choice.reason,
            extra={"action": "watch_polling"},
        )
        return observer

    def _start_native(self, handler: FileSystemEventHandler) -> BaseObserver:
        from watchdog.observers import Observer

        observer = Observer()
        try:
            observer.schedule(
                handler, str(self._uploads), recursive=True, event_filter=_event_filter()
            )
            observer.start()
        except BaseException:
            observer.stop()  # closes the inotify instance and joins its reader thread
            raise
        self.mode = type(observer).__name__.removesuffix("Observer").lower() or "native"
        self._close_events = sys.platform.startswith("linux") and self.mode == "inotify"
        logger.info(
            "watching %s with %s; a file is queued once unchanged for %g s%s; full rescan "
            "every %.0f s",
            display_path(self._uploads),
            self.mode,
            self._settings.settle_s,
            " and closed by its writer" if self._close_events else "",
            self._settings.rescan_s,
            extra={"action": "watch_native"},
        )
        return observer

    # -- events (observer thread) -------------------------------------------------------------
    def _on_event(self, event: FileSystemEvent) -> None:
        """Queue the event for the settle thread; the observer thread does nothing else."""
        dest = os.fsdecode(event.dest_path) if event.dest_path else ""
        self._events.put(
            _Change(event.event_type, os.fsdecode(event.src_path), dest, event.is_directory)
        )

    # -- the settle thread -------------------------------------------------------------------
    def _settle_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                self._take_events(self._tick_s)
                self._settle_pass()
            except StoreUnavailableError as error:
                logger.warning("cannot queue files now: %s; retrying", error)
                self._stopping.wait(STORE_RETRY_S)
            except Exception as error:  # a bug: stop here, and let check_health say so
                self._failure = error
                logger.exception("the settle thread stopped")
                return

    def _take_events(self, timeout_s: float) -> None:
        try:
            change = self._events.get(timeout=timeout_s)
        except queue.Empty:
            return
        while True:
            self._apply(change, time.monotonic())
            try:
                change = self._events.get_nowait()
            except queue.Empty:
                return

    def _apply(self, change: _Change, now: float) -> None:
        if change.kind == "deleted":
            self._forget(change.path, change.is_directory)
            return
        if change.kind == "moved":
            self._forget(change.path, change.is_directory)
            if change.dest:
                if change.is_directory:
                    self._track_tree(Path(change.dest), now)
                else:
                    self._track(Path(change.dest), now, None)
            return
        if change.is_directory:
            if change.kind == "created":  # a folder made or moved in: its files too
                self._track_tree(Path(change.path), now)
            return
        writing: bool | None = None
        if change.kind == "closed":
            writing = False
        elif change.kind == "modified" and self._close_events:
            writing = True
        self._track(Path(change.path), now, writing)

    def _track(self, path: Path, now: float, writing: bool | None) -> None:
        reason = rejection_reason(path, self._layout, self._ignored)
        if reason is not None:
            logger.debug("ignored %s: %s", display_path(path), reason)
            return
        with self._lock:
            self._tracker.track(os.fspath(path), now, writing=writing)

    def _track_tree(self, folder: Path, now: float) -> None:
        relative = relative_upload_name(self._uploads, folder)
        if relative is None or any(part.startswith(".") for part in Path(relative).parts):
            return
        if _results_nested(self._layout) and folder.absolute().is_relative_to(
            self._layout.results.absolute()
        ):
            return
        for path in self._walk(folder):
            self._track(path, now, None)

    def _forget(self, path: str, is_directory: bool) -> None:
        relative = relative_upload_name(self._uploads, Path(path))
        with self._lock:
            if is_directory:
                self._tracker.forget_under(path)
                prefix = f"{relative}/" if relative else None
                for table in (self._handled, self._jobs, self._cancelled):
                    for key in [k for k in table if prefix and k.startswith(prefix)]:
                        del table[key]
            else:
                self._tracker.forget(path)
                if relative is not None:
                    self._handled.pop(relative, None)
                    self._jobs.pop(relative, None)
                    self._cancelled.pop(relative, None)

    def _settle_pass(self) -> None:
        with self._lock:
            keys = self._tracker.keys()
        for key in keys:
            if self._stopping.is_set():
                return
            path = Path(key)
            relative = relative_upload_name(self._uploads, path)
            if relative is None:
                continue
            stamp = read_stamp(path)
            with self._lock:
                if key not in self._tracker:
                    continue
                verdict = self._tracker.check(key, stamp, time.monotonic(), time.time())
                before = self._handled.get(relative)
                if verdict is Arrival.SETTLED:
                    self._tracker.forget(key)
                    if stamp == before:
                        continue  # a duplicate event for a file already offered
                changing = (
                    verdict is Arrival.WAITING
                    and before is not None
                    and stamp not in (before, None)
                    and relative not in self._cancelled
                )
                if changing:
                    self._cancelled[relative] = None  # looked up once per change
            if changing:
                self._hold_queued_job(relative)
            if verdict is Arrival.SETTLED and stamp is not None:
                self._offer(path, relative, stamp)

    # -- the rescan thread ---------------------------------------------------------------------
    def _rescan_loop(self) -> None:
        while True:
            self._rescan_now.wait(self._settings.rescan_s)
            if self._stopping.is_set():
                return
            if self._rescan_now.is_set():
                logger.warning(
                    "filesystem events were lost; rescanning %s",
                    display_path(self._uploads),
                    extra={"action": "overflow_rescan"},
                )
            self._rescan_now.clear()
            try:
                created = self.rescan()
            except StoreUnavailableError as error:
                logger.warning("rescan skipped: %s", error)
                continue
            except Exception as error:  # a bug, or uploads/ vanished: check_health reports it
                self._failure = error
                logger.exception("the rescan thread stopped")
                return
            if created:
                logger.info(
                    "rescan queued %d file(s) that no event announced",
                    created,
                    extra={"action": "rescan"},
                )

    def rescan(self) -> int:
        """Scan uploads/ fully and offer every settled file that has no job yet.

        Paths that already have a job are not hashed: the scan only records their size and
        mtime, and offers them again when those change later. Files still arriving are handed
        to the settle thread and offered by it.

        Returns:
            How many jobs this call created.

        Raises:
            WatchError: uploads/ is missing.
            StoreUnavailableError: the database cannot be used.
        """
        if not self._uploads.is_dir():
            raise WatchError(f"{display_path(self._uploads)} is missing or not a folder")
        known = self._store.known_sources()
        created = 0
        present: set[str] = set()
        interrupted = False
        for path in self._walk(self._uploads):
            if self._stopping.is_set():
                interrupted = True
                break
            relative = relative_upload_name(self._uploads, path)
            if relative is None or rejection_reason(path, self._layout, self._ignored):
                continue
            present.add(relative)
            stamp = read_stamp(path)
            if stamp is None:
                continue
            with self._lock:
                before = self._handled.get(relative)
                if before is None and relative in known:
                    self._handled[relative] = stamp  # has a job; remember, do not hash
                    continue
                key = os.fspath(path)
                if stamp == before or key in self._tracker:
                    continue
                verdict = self._tracker.check(key, stamp, time.monotonic(), time.time())
                if verdict is not Arrival.SETTLED:
                    continue  # the settle thread offers it once it is quiet
                self._tracker.forget(key)
            created += self._offer(path, relative, stamp)
        if not interrupted:
            with self._lock:  # forget files that are gone
                for table in (self._handled, self._jobs):
                    for relative in [k for k in table if k not in present]:
                        del table[relative]
        return created

    def _walk(self, top: Path) -> Iterator[Path]:
        def report(error: OSError) -> None:
            logger.warning(
                "cannot list %s: %s", display_path(error.filename or top), error.strerror
            )

        nested = self._layout.results.absolute() if _results_nested(self._layout) else None
        for folder, dirs, files in os.walk(top, onerror=report):
            base = Path(folder)
            dirs[:] = sorted(
                d for d in dirs if not d.startswith(".") and (base / d).absolute() != nested
            )
            for name in sorted(files):
                yield base / name

    # -- offering ------------------------------------------------------------------------------
    def _offer(self, path: Path, relative: str, stamp: FileStamp) -> bool:
        """Offer one settled file to intake; True when a job was created (or requeued)."""
        with self._offer_lock:
            with self._lock:
                if self._handled.get(relative) == stamp:
                    return False
                looked_up = relative in self._cancelled or relative not in self._handled
                cancelled = self._cancelled.pop(relative, None)
            if not looked_up:
                cancelled = self._hold_queued_job(relative, remember=False)
            try:
                intake = self._offer_once(path, relative, cancelled)
            except OSError as error:  # gone or unreadable between the stat and the hash
                logger.warning(
                    "%s: cannot read it (%s); skipped until it changes",
                    relative,
                    error.strerror or error,
                )
                with self._lock:
                    self._handled[relative] = stamp
                return False
            except StoreUnavailableError:
                with self._lock:
                    self._tracker.track(os.fspath(path), time.monotonic())
                    if cancelled is not None:
                        self._cancelled[relative] = cancelled
                raise
            job = intake.job
            with self._lock:
                self._handled[relative] = stamp
                if job is not None and job.source_path == relative:
                    self._jobs[relative] = job.id
                if read_stamp(path) not in (stamp, None):  # changed while it was hashed
                    self._tracker.track(os.fspath(path), time.monotonic())
        self._report(relative, intake)
        return intake.created

    def _offer_once(self, path: Path, relative: str, cancelled: int | None) -> Intake:
        intake = offer_path(
            self._store, self._settings, path, origin=JobOrigin.QUEUE, layout=self._layout
        )
        job = intake.job
        if intake.created or job is None:
            return intake
        if job.id == cancelled and job.status is JobStatus.CANCELLED:
            # The same content came back after a change: the job this watcher cancelled
            # goes back into the queue instead of a second job being made.
            return offer_path(
                self._store,
                self._settings,
                path,
                origin=JobOrigin.QUEUE,
                layout=self._layout,
                force=True,
            )
        return intake

    def _hold_queued_job(self, relative: str, *, remember: bool = True) -> int | None:
        """Cancel the queued job of a file that is changing, so no slot starts on it now.

        Returns:
            The id of the job cancelled, or None when there was none (or it already started).
        """
        job_id = self._queued_job_id(relative)
        if job_id is None or not self._store.cancel(job_id):
            return None
        logger.info(
            "%s changed before its job %d started; the job is held until the file settles",
            relative,
            job_id,
            extra={"action": "changed_while_queued", "job_id": job_id},
        )
        if remember:
            with self._lock:
                self._cancelled[relative] = job_id
        return job_id

    def _queued_job_id(self, relative: str) -> int | None:
        with self._lock:
            job_id = self._jobs.get(relative)
        if job_id is not None:
            try:
                job = self._store.get(job_id)
            except JobStateError:
                return None
            queued = job.status is JobStatus.QUEUED and job.source_path == relative
            return job_id if queued else None
        for job in self._store.list_jobs(JobStatus.QUEUED):
            if job.source_path == relative and job.origin == JobOrigin.QUEUE.value:
                return job.id
        return None

    def _report(self, relative: str, intake: Intake) -> None:
        job = intake.job
        job_id = job.id if job is not None else None
        extra = {"action": "offered", "job_id": job_id}
        if intake.error is not None:
            logger.warning(
                "rejected %s: %s (%s)",
                relative,
                intake.error.detail,
                intake.error.reason.value,
                extra=extra,
            )
        elif intake.created:
            logger.info("queued %s (job %s)", relative, job_id, extra=extra)
        elif job is not None:
            logger.debug(
                "%s is job %d already (%s)", relative, job.id, job.status.value, extra=extra
            )


def _database_files(store: JobStore) -> frozenset[Path]:
    """The SQLite file and its companions, never offered even if they sit in uploads/."""
    url = store.engine.url
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return frozenset()
    database = Path(url.database).absolute()
    names = ("", "-wal", "-shm", "-journal")
    return frozenset(database.with_name(database.name + suffix) for suffix in names)
