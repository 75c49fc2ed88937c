"""The only module that imports Rich: the two consoles, logging, progress and summaries.

stdout carries results only (written paths, or the ``--json`` summary) so that pipes work;
progress, logs and error messages go to stderr. Progress turns itself off when stderr is not a
terminal, and then finished files are logged as plain lines instead.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

from rich.console import Console
from rich.logging import RichHandler
from rich.progress import (
    BarColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from jozvesaz_cli.batch import FileResult, RunReport

stdout_console = Console(soft_wrap=True, highlight=False)
stderr_console = Console(stderr=True, highlight=False, soft_wrap=True)


def use_utf8_streams() -> None:
    """Write UTF-8 whatever the locale, so Persian names never crash a print.

    Under ``LC_ALL=C`` with ``PYTHONUTF8=0`` Python's streams are ASCII; jozvesaz's own
    output stays UTF-8 there, as the bug bank's C06 case asks.
    """
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None and (stream.encoding or "").lower().replace("-", "") != "utf8":
            reconfigure(encoding="utf-8", errors="backslashreplace")
    global stdout_console, stderr_console
    stdout_console = Console(soft_wrap=True, highlight=False)
    stderr_console = Console(stderr=True, highlight=False, soft_wrap=True)


def setup_logging(verbosity: int) -> None:
    """WARNING by default, INFO with -v, DEBUG with -vv; faster_whisper follows our level."""
    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    handler: logging.Handler
    if stderr_console.is_terminal:
        handler = RichHandler(
            console=stderr_console, show_path=False, markup=False, rich_tracebacks=verbosity > 1
        )
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("faster_whisper").setLevel(level)
    logging.getLogger("watchdog").setLevel(max(level, logging.INFO))
    logging.getLogger("alembic").setLevel(max(level, logging.WARNING))


def print_error(message: str, hint: str | None = None) -> None:
    """An expected error: one line, plus the fix when there is one."""
    stderr_console.print(f"[bold red]error:[/] {_escape(message)}")
    if hint:
        stderr_console.print(f"[dim]hint:[/] {_escape(hint)}")


def print_note(message: str) -> None:
    """A line for the user on stderr."""
    stderr_console.print(_escape(message))


def print_paths(paths: list[str]) -> None:
    """Results on stdout, one path a line."""
    for path in paths:
        stdout_console.print(path, markup=False, highlight=False)


def print_json(data: Any) -> None:
    """Machine-readable output on stdout."""
    stdout_console.print_json(json.dumps(data, ensure_ascii=False, default=str))


def print_table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    """A table on stdout (``jobs list``, ``models list``).

    On a terminal long cells wrap rather than end in an ellipsis (a path cut short cannot be
    copied). Piped, it is tab-separated lines with a header, whole cells on one line, so that
    grep, cut and awk work on it.
    """
    cells = [[_cell(row.get(column)) for column in columns] for row in rows]
    if not stdout_console.is_terminal:
        lines = ["\t".join(columns), *("\t".join(line) for line in cells)]
        stdout_console.file.write("".join(f"{line}\n" for line in lines))
        return
    table = Table(show_lines=False)
    for column in columns:
        table.add_column(column, overflow="fold", min_width=len(column))
    for line in cells:
        table.add_row(*(_escape(cell) for cell in line))
    stdout_console.print(table)


def _cell(value: Any) -> str:
    """One cell on one line; 0 shows as 0, only a missing value is blank."""
    return "" if value is None else " ".join(str(value).split())


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


class RichObserver:
    """Live progress: one line per busy slot (file, percent of audio, ETA) and the total."""

    def __init__(self, total: int | None, slots: int) -> None:
        self.enabled = stderr_console.is_terminal
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.percentage:>3.0f}%"),
            TimeRemainingColumn(),
            console=stderr_console,
            disable=not self.enabled,
            transient=True,
        )
        self.overall: TaskID = self.progress.add_task("files", total=total)
        self.slot_tasks: dict[int, TaskID] = {}
        self.slots = slots

    def __enter__(self) -> RichObserver:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def job_started(self, slot: int, name: str, duration_s: float | None) -> None:
        label = f"slot {slot}: {_short(name)}"
        task = self.slot_tasks.get(slot)
        if task is None:
            self.slot_tasks[slot] = self.progress.add_task(label, total=100)
        else:
            self.progress.reset(task, total=100, description=label, visible=True)
        logging.getLogger("jozvesaz_cli.batch").info("slot %d started %s", slot, name)

    def job_progress(self, slot: int, fraction: float) -> None:
        task = self.slot_tasks.get(slot)
        if task is not None:
            self.progress.update(task, completed=fraction * 100)

    def job_finished(self, slot: int | None, result: FileResult) -> None:
        if slot is not None and slot in self.slot_tasks:
            self.progress.update(self.slot_tasks[slot], visible=False)
        if result.status in ("done", "failed"):
            self.progress.advance(self.overall)
        line = _result_line(result)
        if self.enabled:
            self.progress.console.log(line, markup=False)
        else:
            logging.getLogger("jozvesaz_cli.batch").info("%s", line)

    def note(self, text: str) -> None:
        if self.enabled:
            self.progress.console.log(text, markup=False)
        else:
            logging.getLogger("jozvesaz_cli.batch").warning("%s", text)


def _short(name: str, limit: int = 40) -> str:
    return name if len(name) <= limit else "…" + name[-(limit - 1) :]


def _result_line(result: FileResult) -> str:
    if result.status == "done":
        return f"done    {result.path}"
    if result.status == "failed":
        return f"FAILED  {result.message or result.path} [{result.reason}]"
    return f"{result.status:<7} {result.path}"


def render_summary(report: RunReport) -> None:
    """The end-of-run summary on stderr: counts, and one line per failed input."""
    counts = report.counts()
    parts = [
        f"{counts[key]} {key}"
        for key in ("done", "skipped", "failed", "interrupted", "queued")
        if counts.get(key)
    ]
    failed = [result for result in report.results if result.status == "failed"]
    for result in failed:
        stderr_console.print(
            f"[red]failed[/] {_escape(result.message or result.path)} [dim]({result.reason})[/]"
        )
    warned = [result for result in report.results if result.warnings]
    for result in warned:
        for warning in result.warnings:
            stderr_console.print(f"[yellow]warning[/] {_escape(result.path)}: {_escape(warning)}")
    summary = ", ".join(parts) if parts else "nothing to do"
    if report.interrupted:
        summary += " (interrupted)"
    stderr_console.print(f"{summary} in {report.elapsed_s:.1f} s")
