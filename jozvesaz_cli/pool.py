"""The slot pool: N spawned worker processes, each with its own model, managed directly.

Why not ``multiprocessing.Pool``: it hangs forever when the out-of-memory killer takes a worker
(CPython issues 22393 and 96062). Each slot here is a ``Process`` with its own duplex pipe; the
parent waits on the pipes and the process sentinels together, so a slot that dies is seen at
once, reported with its signal, and replaced. Slots are spawned (the parent's threads, locks and
database connections are not inherited), ignore SIGINT (the parent owns signals), lead their own
process group (so stopping one kills everything it started), and exit when the parent vanishes.

A slot decodes, transcribes and *stages* outputs under temporary names; publishing them is the
parent's job, under the job's lease (fencing), so a slot never touches the database.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

from jozvesaz_cli.errors import FailureReason, InputError, JozvesazError, ModelLoadError

if TYPE_CHECKING:
    from multiprocessing.process import BaseProcess

    from jozvesaz_cli.config import Settings
    from jozvesaz_cli.transcription import DecodeOptions, Transcriber
    from jozvesaz_cli.writers import RenderOptions

logger = logging.getLogger(__name__)

TranscriberFactory = Callable[["Settings"], "Transcriber"]

PROGRESS_EVERY_S = 0.5
PARENT_CHECK_S = 1.0
LOAD_TIMEOUT_S = 900.0
MAX_LOAD_DEATHS = 3
KILL_WAIT_S = 3.0


@dataclass(frozen=True, slots=True)
class WorkItem:
    """One job handed to a slot.

    Attributes:
        job_id: the job's id.
        token: the lease token (echoed back so results can be fenced).
        source: the file to read (filesystem path text).
        display_name: the name to show and to put in headers.
        dest_dir: the results folder.
        base_name: the result file name without extension.
        formats: output formats.
        options: decoding options.
        render: text shaping options for the writers.
        max_audio_s: the decoded-length limit.
        replacements: whole-word replacements from a course profile.
    """

    job_id: int
    token: str
    source: str
    display_name: str
    dest_dir: str
    base_name: str
    formats: tuple[str, ...]
    options: DecodeOptions
    render: RenderOptions
    max_audio_s: float
    replacements: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class SlotEvent:
    """Something a slot reported, or the parent noticed about a slot.

    Attributes:
        kind: ``ready``, ``load_failed``, ``started``, ``progress``, ``done``, ``failed`` or
            ``lost`` (the process died).
        slot: the slot index.
        job_id: the job concerned, if any.
        payload: kind-specific values (see ``_run_item``).
    """

    kind: str
    slot: int
    job_id: int | None = None
    payload: dict[str, Any] = field(default_factory=dict)


def describe_exit(exitcode: int | None) -> str:
    """A plain sentence for how a slot process ended."""
    if exitcode is None:
        return "slot process vanished"
    if exitcode < 0:
        number = -exitcode
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = f"signal {number}"
        note = " — often the out-of-memory killer" if number == signal.SIGKILL else ""
        return f"slot process killed by signal {number} ({name}){note}"
    return f"slot process exited with status {exitcode}"


class _Slot:
    def __init__(self, index: int) -> None:
        self.index = index
        self.process: BaseProcess | None = None
        self.conn: Connection | None = None
        self.ready = False
        self.item: WorkItem | None = None
        self.load_deaths = 0


class SlotPool:
    """Runs work items on ``size`` slot processes; the caller drives it with ``wait``."""

    def __init__(
        self,
        settings: Settings,
        *,
        size: int | None = None,
        transcriber_factory: TranscriberFactory | None = None,
    ) -> None:
        self._settings = settings
        self._factory = transcriber_factory
        self._context = multiprocessing.get_context("spawn")
        self._slots = [_Slot(index) for index in range(size or settings.slots)]
        self.model_loads = 0

    # -- lifecycle ------------------------------------------------------------------------
    def _spawn(self, slot: _Slot) -> None:
        parent_end, child_end = self._context.Pipe(duplex=True)
        process = self._context.Process(
            target=slot_main,
            args=(slot.index, self._settings, self._factory, child_end, os.getpid()),
            name=f"jozvesaz-slot-{slot.index}",
            daemon=False,
        )
        process.start()
        child_end.close()
        slot.process, slot.conn, slot.ready, slot.item = process, parent_end, False, None
        logger.debug("slot %d started as pid %s", slot.index, process.pid)

    def start(self, *, stop: Callable[[], bool] | None = None) -> None:
        """Start every slot and wait until each has loaded its model.

        Raises:
            ModelLoadError: a slot could not load the model (the message is the slot's).
        """
        for slot in self._slots:
            self._spawn(slot)
        deadline = time.monotonic() + LOAD_TIMEOUT_S
        while not all(slot.ready for slot in self._slots):
            if stop is not None and stop():
                return
            if time.monotonic() > deadline:
                self.shutdown(cold=True)
                raise ModelLoadError("the slots did not finish loading the model in time")
            for event in self.wait(0.5):
                if event.kind == "load_failed":
                    self.shutdown(cold=True)
                    raise ModelLoadError(
                        str(event.payload.get("message")), hint=event.payload.get("hint")
                    )

    def shutdown(self, *, cold: bool = False) -> None:
        """Stop every slot: politely (finish nothing new), or at once with SIGKILL."""
        for slot in self._slots:
            if slot.process is None:
                continue
            if not cold and slot.conn is not None:
                try:
                    slot.conn.send(None)
                except (OSError, ValueError):
                    pass
        deadline = time.monotonic() + (0.0 if cold else KILL_WAIT_S)
        for slot in self._slots:
            process = slot.process
            if process is None:
                continue
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                _kill_group(process)
                process.join(KILL_WAIT_S)
            if slot.conn is not None:
                slot.conn.close()
            slot.process, slot.conn, slot.ready = None, None, False

    def __enter__(self) -> SlotPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown(cold=True)

    # -- work -----------------------------------------------------------------------------
    @property
    def size(self) -> int:
        return len(self._slots)

    def free_slots(self) -> list[int]:
        """Slots that are loaded and idle."""
        return [s.index for s in self._slots if s.ready and s.item is None and s.process]

    def busy(self) -> dict[int, WorkItem]:
        """Work items in flight, by slot."""
        return {s.index: s.item for s in self._slots if s.item is not None}

    def pid(self, slot: int) -> int | None:
        process = self._slots[slot].process
        return process.pid if process is not None else None

    def submit(self, slot: int, item: WorkItem) -> None:
        """Hand ``item`` to an idle slot."""
        target = self._slots[slot]
        assert target.conn is not None and target.item is None
        target.item = item
        target.conn.send(item)

    def kill(self, slot: int) -> None:
        """Kill one slot's process group now (cold stop); it is not replaced."""
        target = self._slots[slot]
        if target.process is not None and target.process.is_alive():
            _kill_group(target.process)

    def wait(self, timeout: float) -> list[SlotEvent]:
        """Wait up to ``timeout`` seconds for slot messages and deaths; replace dead slots."""
        waitables: dict[Any, _Slot] = {}
        for slot in self._slots:
            if slot.conn is not None and slot.process is not None:
                waitables[slot.conn] = slot
                waitables[slot.process.sentinel] = slot
        if not waitables:
            time.sleep(timeout)
            return []
        events: list[SlotEvent] = []
        dead: set[int] = set()
        for ready in multiprocessing.connection.wait(list(waitables), timeout):
            slot = waitables[ready]
            if ready is slot.conn:
                events.extend(self._drain(slot))
            elif slot.process is not None and not slot.process.is_alive():
                dead.add(slot.index)
        for index in sorted(dead):
            events.extend(self._drain(self._slots[index]))
            events.extend(self._bury(self._slots[index]))
        return events

    def _drain(self, slot: _Slot) -> list[SlotEvent]:
        events: list[SlotEvent] = []
        conn = slot.conn
        while conn is not None:
            try:
                if not conn.poll():
                    break
                event = conn.recv()
            except (EOFError, OSError):
                break
            events.append(event)
            if event.kind == "ready":
                slot.ready = True
                self.model_loads += 1
            elif event.kind in ("done", "failed") and slot.item is not None:
                slot.item = None
        return events

    def _bury(self, slot: _Slot) -> list[SlotEvent]:
        process = slot.process
        if process is None:
            return []
        process.join(KILL_WAIT_S)
        why = describe_exit(process.exitcode)
        _kill_group(process)
        if slot.conn is not None:
            slot.conn.close()
        lost = slot.item
        was_ready = slot.ready
        slot.process, slot.conn, slot.item, slot.ready = None, None, None, False
        events: list[SlotEvent] = []
        if lost is not None:
            logger.warning("slot %d lost %s: %s", slot.index, lost.display_name, why)
            events.append(
                SlotEvent("lost", slot.index, lost.job_id, {"message": why, "item": lost})
            )
        if not was_ready:
            slot.load_deaths += 1
            if slot.load_deaths >= MAX_LOAD_DEATHS:
                return [*events, SlotEvent("load_failed", slot.index, None, {"message": why})]
        self._spawn(slot)
        return events


def _kill_group(process: BaseProcess) -> None:
    pid = process.pid
    if pid is None:
        return
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


# -- the slot process --------------------------------------------------------------------------


def slot_main(
    index: int,
    settings: Settings,
    factory: TranscriberFactory | None,
    conn: Connection,
    parent_pid: int,
) -> None:
    """Entry point of a slot process: load the model once, then run items until told to stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        os.setpgrp()
    except OSError:
        pass
    logging.basicConfig(level=logging.WARNING, format=f"slot {index}: %(message)s")
    started = time.monotonic()
    try:
        if factory is None:
            from jozvesaz_cli.transcription import build_transcriber

            factory = build_transcriber
        transcriber = factory(settings)
    except JozvesazError as exc:
        conn.send(SlotEvent("load_failed", index, None, {"message": exc.message, "hint": exc.hint}))
        return
    except Exception as exc:  # a crash while loading must reach the parent as a message
        conn.send(SlotEvent("load_failed", index, None, {"message": f"model load crashed: {exc}"}))
        return
    conn.send(
        SlotEvent("ready", index, None, {"pid": os.getpid(), "load_s": time.monotonic() - started})
    )
    while True:
        if os.getppid() != parent_pid:
            return
        try:
            if not conn.poll(PARENT_CHECK_S):
                continue
            item = conn.recv()
        except (EOFError, OSError):
            return
        if item is None:
            return
        conn.send(_run_item(index, item, transcriber, conn))


def _run_item(index: int, item: WorkItem, transcriber: Transcriber, conn: Connection) -> SlotEvent:
    from pathlib import Path

    from jozvesaz_cli.audio import decode_audio
    from jozvesaz_cli.profiles import apply_replacements
    from jozvesaz_cli.writers import prepare_transcript, stage_outputs

    conn.send(SlotEvent("started", index, item.job_id, {"pid": os.getpid()}))
    started = time.monotonic()
    last = [0.0]

    def progress(fraction: float) -> None:
        now = time.monotonic()
        if now - last[0] >= PROGRESS_EVERY_S:
            last[0] = now
            conn.send(SlotEvent("progress", index, item.job_id, {"fraction": fraction}))

    try:
        audio = decode_audio(Path(item.source), max_audio_s=item.max_audio_s)
        result = transcriber.transcribe(audio, item.options, progress, source=item.source)
        result = apply_replacements(result, dict(item.replacements))
        result = prepare_transcript(_named(result, item.display_name), item.render)
        staged = stage_outputs(
            result, item.formats, Path(item.dest_dir), item.base_name, item.render
        )
    except InputError as exc:
        payload: dict[str, Any] = {"reason": exc.reason.value, "message": exc.detail}
        return SlotEvent("failed", index, item.job_id, payload)
    except OSError as exc:
        payload = {
            "reason": FailureReason.OUTPUT_FAILED.value,
            "message": f"cannot write results to {item.dest_dir}: {exc.strerror or exc}",
        }
        return SlotEvent("failed", index, item.job_id, payload)
    except Exception as exc:  # a bug: keep the batch going, keep the traceback on the job
        payload = {
            "reason": FailureReason.INTERNAL.value,
            "message": f"internal error ({type(exc).__name__}: {exc})",
            "traceback": traceback.format_exc(),
        }
        return SlotEvent("failed", index, item.job_id, payload)
    payload = {
        "staged": [(str(s.temp_path), str(s.final_path)) for s in staged],
        "language": result.language,
        "language_probability": result.language_probability,
        "duration_s": result.duration_s,
        "warnings": list(result.warnings),
        "segments": len(result.segments),
        "device": result.device,
        "compute_type": result.compute_type,
        "sample_rate": audio.info.sample_rate,
        "channels": audio.info.channels,
        "processing_s": time.monotonic() - started,
    }
    return SlotEvent("done", index, item.job_id, payload)


def _named(result: Any, name: str) -> Any:
    from dataclasses import replace

    return replace(result, source_name=name)
