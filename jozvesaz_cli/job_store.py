"""The ``jobs`` table: enqueueing, claiming with leases, and guarded state transitions.

One table serves ``transcribe``, ``watch``, ``drain-queue`` and other programs that insert rows.
A job's identity (``job_key``) is the recording's SHA-256 plus a fingerprint of the settings that
change the output, with a unique constraint, so enqueueing is insert-or-ignore, never a
read-then-insert race. Claiming is one short statement: PostgreSQL
``UPDATE ... WHERE id IN (SELECT ... FOR UPDATE SKIP LOCKED LIMIT 1) RETURNING``; SQLite runs the
same statement inside ``BEGIN IMMEDIATE`` (WAL, busy timeout), because a deferred transaction that
reads then writes fails with "database is locked" without waiting. Every lease time comes from
the database's clock, never the host's. Every transition names the expected state and lease token
in its WHERE clause; zero rows changed means another worker owns the job.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import enum
import json
import logging
import random
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event, exc, func
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import FunctionElement

from jozvesaz_cli.errors import StoreUnavailableError, UnknownJobError
from jozvesaz_cli.storage import is_network_filesystem

logger = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_S = 30.0
PG_CONNECT_TIMEOUT_S = 5
BACKOFF_BASE_S = 2.0
BACKOFF_CAP_S = 300.0
ERROR_TEXT_LIMIT = 4000


class JobStatus(str, enum.Enum):
    """A job's state; stored as these lowercase values."""

    QUEUED = "queued"  #: waiting to be claimed (also after a retry or an interruption)
    RUNNING = "running"  #: claimed under a lease
    DONE = "done"  #: outputs written
    FAILED = "failed"  #: failed for good (permanent error, or attempts used up)
    CANCELLED = "cancelled"  #: cancelled by ``jobs cancel``


class JobOrigin(str, enum.Enum):
    """Who created the job; decides how ``source_path`` is read."""

    QUEUE = "queue"  #: a path relative to uploads/ (enqueue, watch, scan, other programs)
    CLI = "cli"  #: an absolute path given to ``jozvesaz transcribe``


class UTCDateTime(sa.types.TypeDecorator[dt.datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores naive text)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not accepted; use UTC")
        value = value.astimezone(dt.timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        moment = value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(str(value))
        if moment.tzinfo is None:
            return moment.replace(tzinfo=dt.timezone.utc)
        return moment.astimezone(dt.timezone.utc)


class db_now(FunctionElement[dt.datetime]):
    """The database server's current UTC time plus ``offset_s``: the only clock for leases.

    The offset is a bound parameter, not text in the SQL: SQLAlchemy caches a statement's
    compiled form by its structure, so an offset rendered as text would be reused for every
    later statement of the same shape (a lease or backoff computed once per process).
    """

    type = UTCDateTime()
    inherit_cache = True

    def __init__(self, offset_s: float = 0.0) -> None:
        super().__init__(sa.literal(float(offset_s), sa.Float()))


def _offset_sql(element: db_now, compiler: SQLCompiler, **kw: Any) -> str:
    return str(compiler.process(element.clauses, **kw))


@compiles(db_now, "sqlite")
def _db_now_sqlite(element: db_now, compiler: SQLCompiler, **kw: Any) -> str:
    # Six fractional digits, so the text sorts and parses like SQLAlchemy's own format.
    offset = _offset_sql(element, compiler, **kw)
    return f"(strftime('%Y-%m-%d %H:%M:%f', 'now', printf('%+.3f seconds', {offset})) || '000')"


@compiles(db_now, "postgresql")
def _db_now_pg(element: db_now, compiler: SQLCompiler, **kw: Any) -> str:
    offset = _offset_sql(element, compiler, **kw)
    return f"(clock_timestamp() + CAST({offset} AS DOUBLE PRECISION) * INTERVAL '1 second')"


@compiles(db_now)
def _db_now_default(element: db_now, compiler: SQLCompiler, **kw: Any) -> str:
    return "CURRENT_TIMESTAMP"


class Base(DeclarativeBase):
    """Declarative base of jozvesaz's tables."""


class JobRow(Base):
    """The ``jobs`` table; the README documents it as the interface for other programs."""

    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    job_key: Mapped[str | None] = mapped_column(sa.String(64), unique=True)
    content_sha256: Mapped[str | None] = mapped_column(sa.String(64))
    settings_fingerprint: Mapped[str | None] = mapped_column(sa.String(64))
    source_path: Mapped[str] = mapped_column(sa.Text())
    origin: Mapped[str] = mapped_column(sa.String(16), server_default=JobOrigin.QUEUE.value)
    size_bytes: Mapped[int | None] = mapped_column(sa.BigInteger())
    status: Mapped[str] = mapped_column(sa.String(16), server_default=JobStatus.QUEUED.value)
    priority: Mapped[int] = mapped_column(sa.Integer(), server_default="0")
    attempts: Mapped[int] = mapped_column(sa.Integer(), server_default="0")
    run_after: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    lease_owner: Mapped[str | None] = mapped_column(sa.String(255))
    lease_token: Mapped[str | None] = mapped_column(sa.String(64))
    lease_expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    heartbeat_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    worker_pid: Mapped[int | None] = mapped_column(sa.Integer())
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), server_default=func.now())
    claimed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    model: Mapped[str | None] = mapped_column(sa.String(255))
    device: Mapped[str | None] = mapped_column(sa.String(32))
    compute_type: Mapped[str | None] = mapped_column(sa.String(32))
    language: Mapped[str | None] = mapped_column(sa.String(16))
    language_probability: Mapped[float | None] = mapped_column(sa.Float())
    audio_duration_s: Mapped[float | None] = mapped_column(sa.Float())
    processing_s: Mapped[float | None] = mapped_column(sa.Float())
    source_sample_rate: Mapped[int | None] = mapped_column(sa.Integer())
    source_channels: Mapped[int | None] = mapped_column(sa.Integer())
    outputs: Mapped[str | None] = mapped_column(sa.Text())
    warnings: Mapped[str | None] = mapped_column(sa.Text())
    settings_json: Mapped[str | None] = mapped_column(sa.Text())
    profile: Mapped[str | None] = mapped_column(sa.Text())
    last_error_type: Mapped[str | None] = mapped_column(sa.String(32))
    last_error: Mapped[str | None] = mapped_column(sa.Text())
    error_traceback: Mapped[str | None] = mapped_column(sa.Text())

    __table_args__ = (sa.Index("ix_jobs_status_priority", "status", "priority"),)


@dataclass(frozen=True, slots=True)
class JobRecord:
    """A snapshot of one row, safe to pass around and pickle.

    Attributes mirror the columns; ``outputs`` and ``warnings`` are decoded lists.
    """

    id: int
    job_key: str | None
    content_sha256: str | None
    source_path: str
    origin: str
    status: JobStatus
    attempts: int
    size_bytes: int | None
    lease_owner: str | None
    lease_token: str | None
    worker_pid: int | None
    created_at: dt.datetime | None
    claimed_at: dt.datetime | None
    finished_at: dt.datetime | None
    heartbeat_at: dt.datetime | None
    lease_expires_at: dt.datetime | None
    run_after: dt.datetime | None
    model: str | None
    device: str | None
    compute_type: str | None
    language: str | None
    language_probability: float | None
    audio_duration_s: float | None
    processing_s: float | None
    outputs: tuple[str, ...]
    warnings: tuple[str, ...]
    settings: dict[str, Any]
    profile: str | None
    last_error_type: str | None
    last_error: str | None

    @classmethod
    def from_row(cls, row: Any) -> JobRecord:
        """Build from a mapped row or a RETURNING row."""
        m = row._mapping if hasattr(row, "_mapping") else None

        def get(name: str) -> Any:
            if m is not None:
                return m[name] if name in m else m[getattr(JobRow, name)]
            return getattr(row, name)

        return cls(
            id=int(get("id")),
            job_key=get("job_key"),
            content_sha256=get("content_sha256"),
            source_path=get("source_path"),
            origin=get("origin"),
            status=JobStatus(get("status")),
            attempts=int(get("attempts") or 0),
            size_bytes=get("size_bytes"),
            lease_owner=get("lease_owner"),
            lease_token=get("lease_token"),
            worker_pid=get("worker_pid"),
            created_at=get("created_at"),
            claimed_at=get("claimed_at"),
            finished_at=get("finished_at"),
            heartbeat_at=get("heartbeat_at"),
            lease_expires_at=get("lease_expires_at"),
            run_after=get("run_after"),
            model=get("model"),
            device=get("device"),
            compute_type=get("compute_type"),
            language=get("language"),
            language_probability=get("language_probability"),
            audio_duration_s=get("audio_duration_s"),
            processing_s=get("processing_s"),
            outputs=tuple(json.loads(get("outputs") or "[]")),
            warnings=tuple(json.loads(get("warnings") or "[]")),
            settings=json.loads(get("settings_json") or "{}"),
            profile=get("profile"),
            last_error_type=get("last_error_type"),
            last_error=get("last_error"),
        )

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready values (``jobs list --json``, ``jobs show``)."""
        out: dict[str, Any] = {}
        for name in self.__slots__:
            value = getattr(self, name)
            if isinstance(value, dt.datetime):
                value = value.isoformat()
            elif isinstance(value, enum.Enum):
                value = value.value
            elif isinstance(value, tuple):
                value = list(value)
            out[name] = value
        return out


@dataclass(frozen=True, slots=True)
class NewJob:
    """What enqueueing needs to know about a recording.

    Attributes:
        source_path: relative to uploads/ (queue) or absolute (cli).
        origin: ``queue`` or ``cli``.
        content_sha256: the recording's hash, or None when it cannot be read.
        settings_fingerprint: fingerprint of the output-shaping settings.
        size_bytes: file size.
        audio_duration_s: declared duration, used to schedule long files first.
        settings: the output-shaping settings, stored for ``jobs show``.
        profile: the course profile that applied, if any.
    """

    source_path: str
    origin: JobOrigin
    content_sha256: str | None
    settings_fingerprint: str
    size_bytes: int | None = None
    audio_duration_s: float | None = None
    settings: dict[str, Any] | None = None
    profile: str | None = None

    @property
    def job_key(self) -> str | None:
        if self.content_sha256 is None:
            return None
        return sha256_text(f"{self.content_sha256}:{self.settings_fingerprint}")


def sha256_text(text: str) -> str:
    """Hex SHA-256 of a text."""
    import hashlib

    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def mask_url(url: str) -> str:
    """The URL with its password replaced by ``***``, safe for any output."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except exc.ArgumentError:
        return "<invalid database URL>"


def _password(url: str) -> str | None:
    try:
        password = make_url(url).password
    except exc.ArgumentError:
        return None
    return str(password) if password else None


def backoff_s(attempt: int) -> float:
    """Exponential backoff with jitter, capped: 2 s, 4 s, 8 s, ... plus up to 25 %."""
    base = min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2.0 ** max(0, attempt - 1))
    return base * (1.0 + random.random() * 0.25)


class JobStore:
    """All access to the jobs table; one per process (each slot process has none)."""

    def __init__(self, database_url: str, *, create: bool = True) -> None:
        self.url = database_url
        self.masked_url = mask_url(database_url)
        self._secret = _password(database_url)
        self.engine = self._make_engine(database_url)
        if create:
            self.migrate()

    # -- engine and errors ----------------------------------------------------------------
    def _make_engine(self, url: str) -> Engine:
        try:
            parsed = make_url(url)
        except exc.ArgumentError as error:
            raise StoreUnavailableError(
                f"DATABASE_URL is not a valid database URL: {self.masked_url}"
            ) from error
        if parsed.get_backend_name() == "sqlite":
            return self._sqlite_engine(url, parsed.database)
        connect_args: dict[str, Any] = {}
        if parsed.get_backend_name() == "postgresql":
            connect_args["connect_timeout"] = PG_CONNECT_TIMEOUT_S
        try:
            return sa.create_engine(url, pool_pre_ping=True, connect_args=connect_args)
        except (exc.ArgumentError, ImportError) as error:
            raise StoreUnavailableError(
                f"cannot use database {self.masked_url}: {self.scrub(str(error))}",
                hint="for PostgreSQL install the extra: pip install 'jozvesaz[postgres]'",
            ) from None

    def _sqlite_engine(self, url: str, database: str | None) -> Engine:
        if database and database != ":memory:":
            folder = Path(database).absolute().parent
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise StoreUnavailableError(
                    f"cannot create the database folder {folder}: {error.strerror}"
                ) from None
            if is_network_filesystem(folder):
                raise StoreUnavailableError(
                    f"the SQLite database {database} is on a network filesystem, where SQLite's "
                    "locking and WAL do not work reliably",
                    hint="use PostgreSQL: DATABASE_URL=postgresql+psycopg://user@host/db",
                )
        engine = sa.create_engine(
            url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S}, poolclass=sa.pool.NullPool
        )

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            # Take control of BEGIN (SQLAlchemy docs, "Serializable isolation / Savepoints").
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute(f"PRAGMA busy_timeout = {int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _on_begin(connection: Connection) -> None:
            connection.exec_driver_sql("BEGIN IMMEDIATE")

        return engine

    def scrub(self, text: str) -> str:
        """Remove the database password from a message."""
        if self._secret:
            text = text.replace(self._secret, "***")
        return text

    @contextlib.contextmanager
    def _tx(self) -> Iterator[Connection]:
        try:
            with self.engine.begin() as connection:
                yield connection
        except exc.DBAPIError as error:
            detail = self.scrub(str(error.orig) if error.orig else str(error)).strip()
            detail = detail.splitlines()[0] if detail else type(error).__name__
            hint = None
            if isinstance(error, exc.OperationalError):
                hint = "check DATABASE_URL and that the database server is running and reachable"
            raise StoreUnavailableError(
                f"database {self.masked_url} cannot be used: {detail}", hint=hint
            ) from None

    @property
    def is_postgres(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    def close(self) -> None:
        """Release the connection pool."""
        self.engine.dispose()

    # -- schema ---------------------------------------------------------------------------
    def migrate(self) -> None:
        """Bring the schema to the newest Alembic revision, once, even with racing processes."""
        from jozvesaz_cli.migrations import upgrade_to_head

        with self._tx() as connection:
            if self.is_postgres:
                connection.exec_driver_sql("SELECT pg_advisory_xact_lock(7352001)")
            upgrade_to_head(connection)

    # -- enqueueing -----------------------------------------------------------------------
    def enqueue(self, job: NewJob, *, force: bool = False) -> tuple[JobRecord, bool]:
        """Insert the job unless one with the same identity exists.

        Returns:
            The row and whether it was created. With ``force`` an existing job that is not
            running under a live lease is reset to queued (attempts cleared) and counts as
            created; a job whose worker died while running (lease expired) is reset too.
        """
        values: dict[str, Any] = {
            "job_key": job.job_key,
            "content_sha256": job.content_sha256,
            "settings_fingerprint": job.settings_fingerprint,
            "source_path": job.source_path,
            "origin": job.origin.value,
            "size_bytes": job.size_bytes,
            "audio_duration_s": job.audio_duration_s,
            "settings_json": json.dumps(job.settings or {}, ensure_ascii=False, sort_keys=True),
            "profile": job.profile,
            "status": JobStatus.QUEUED.value,
            "attempts": 0,
            "priority": 0,
            "created_at": db_now(),
        }
        with self._tx() as connection:
            if job.job_key is None:
                row = connection.execute(
                    sa.insert(JobRow).values(**values).returning(*JobRow.__table__.c)
                ).one()
                return JobRecord.from_row(row), True
            insert = self._insert_ignore(values).returning(JobRow.id)
            created = connection.execute(insert).first() is not None
            row = connection.execute(
                sa.select(*JobRow.__table__.c).where(JobRow.job_key == job.job_key)
            ).one()
            record = JobRecord.from_row(row)
            if (
                not created
                and force
                and self._reset(connection, record.id, source_path=job.source_path)
            ):
                record = self._get(connection, record.id)
                created = True
        return record, created

    def _insert_ignore(self, values: dict[str, Any]) -> Any:
        if self.is_postgres:
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            return (
                pg_insert(JobRow)
                .values(**values)
                .on_conflict_do_nothing(index_elements=["job_key"])
            )
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return (
            sqlite_insert(JobRow)
            .values(**values)
            .on_conflict_do_nothing(index_elements=["job_key"])
        )

    def _reset(self, connection: Connection, job_id: int, **extra: Any) -> bool:
        """Requeue a job from scratch unless a live worker holds it; True if it was reset."""
        live = sa.and_(
            JobRow.status == JobStatus.RUNNING.value, JobRow.lease_expires_at >= db_now()
        )
        return (
            connection.execute(
                sa.update(JobRow)
                .where(JobRow.id == job_id, sa.not_(live))
                .values(
                    status=JobStatus.QUEUED.value,
                    attempts=0,
                    run_after=None,
                    lease_owner=None,
                    lease_token=None,
                    lease_expires_at=None,
                    finished_at=None,
                    last_error=None,
                    last_error_type=None,
                    error_traceback=None,
                    **extra,
                )
            ).rowcount
            == 1
        )

    def record_failure(self, job: NewJob, reason: str, message: str) -> JobRecord:
        """Record an input that failed before it could be queued (missing, not a file).

        The failure lands on the input's queued job when it has one (requeued by ``jobs
        retry``): left queued, no run would ever take it. Giving the same unusable path again
        refreshes its earlier failed row rather than adding one per attempt. Otherwise it is a
        new failed row.
        """
        same_input = sa.and_(
            JobRow.source_path == job.source_path,
            JobRow.origin == job.origin.value,
            JobRow.settings_fingerprint == job.settings_fingerprint,
        )
        with self._tx() as connection:
            queued = connection.execute(
                sa.select(JobRow.id)
                .where(same_input, JobRow.status == JobStatus.QUEUED.value)
                .order_by(JobRow.id)
                .limit(1)
            ).first()
        if queued is not None:
            return self.mark_input_failed(queued[0], reason, message)
        with self._tx() as connection:
            earlier = connection.execute(
                sa.update(JobRow)
                .where(
                    same_input,
                    JobRow.status == JobStatus.FAILED.value,
                    JobRow.content_sha256.is_(None),
                )
                .values(
                    finished_at=db_now(),
                    last_error_type=reason,
                    last_error=message[:ERROR_TEXT_LIMIT],
                )
                .returning(*JobRow.__table__.c)
            ).first()
            if earlier is not None:
                return JobRecord.from_row(earlier)
            row = connection.execute(
                sa.insert(JobRow)
                .values(
                    source_path=job.source_path,
                    origin=job.origin.value,
                    settings_fingerprint=job.settings_fingerprint,
                    status=JobStatus.FAILED.value,
                    attempts=0,
                    priority=0,
                    created_at=db_now(),
                    finished_at=db_now(),
                    last_error_type=reason,
                    last_error=message[:ERROR_TEXT_LIMIT],
                    size_bytes=job.size_bytes,
                    content_sha256=job.content_sha256,
                    job_key=None,
                )
                .returning(*JobRow.__table__.c)
            ).one()
        return JobRecord.from_row(row)

    def mark_input_failed(self, job_id: int, reason: str, message: str) -> JobRecord:
        """Fail a queued job whose input was found unusable before any slot saw it."""
        with self._tx() as connection:
            connection.execute(
                sa.update(JobRow)
                .where(JobRow.id == job_id, JobRow.status == JobStatus.QUEUED.value)
                .values(
                    status=JobStatus.FAILED.value,
                    finished_at=db_now(),
                    last_error_type=reason,
                    last_error=message[:ERROR_TEXT_LIMIT],
                )
            )
            return self._get(connection, job_id)

    # -- claiming -------------------------------------------------------------------------
    def claim(
        self,
        owner: str,
        *,
        lease_s: float,
        max_attempts: int,
        only_ids: Sequence[int] | None = None,
        origin: JobOrigin | None = JobOrigin.QUEUE,
    ) -> JobRecord | None:
        """Claim the next job under a fresh lease, or return None when nothing is claimable.

        Claimable: queued jobs whose ``run_after`` has passed, and running jobs whose lease
        expired with attempts left (their worker died). Long recordings come first, so that
        every slot stays busy to the end of a batch.
        """
        now = db_now()
        claimable = sa.or_(
            sa.and_(
                JobRow.status == JobStatus.QUEUED.value,
                sa.or_(JobRow.run_after.is_(None), JobRow.run_after <= now),
            ),
            sa.and_(
                JobRow.status == JobStatus.RUNNING.value,
                JobRow.lease_expires_at < now,
                JobRow.attempts < max_attempts,
            ),
        )
        pick = sa.select(JobRow.id).where(claimable)
        if origin is not None:
            pick = pick.where(JobRow.origin == origin.value)
        if only_ids is not None:
            pick = pick.where(JobRow.id.in_(list(only_ids)))
        pick = pick.order_by(
            JobRow.priority.desc(), JobRow.audio_duration_s.desc().nulls_last(), JobRow.id
        ).limit(1)
        if self.is_postgres:
            pick = pick.with_for_update(skip_locked=True)
        token = uuid.uuid4().hex
        statement = (
            sa.update(JobRow)
            .where(JobRow.id.in_(pick.scalar_subquery()))
            .values(
                status=JobStatus.RUNNING.value,
                attempts=JobRow.attempts + 1,
                lease_owner=owner,
                lease_token=token,
                lease_expires_at=db_now(lease_s),
                heartbeat_at=now,
                claimed_at=now,
                run_after=None,
            )
            .returning(*JobRow.__table__.c)
        )
        with self._tx() as connection:
            row = connection.execute(statement).first()
        return JobRecord.from_row(row) if row is not None else None

    def has_claimable(self, max_attempts: int, origin: JobOrigin = JobOrigin.QUEUE) -> bool:
        """True when a claim would find work now (a cheap check before loading models)."""
        now = db_now()
        with self._tx() as connection:
            row = connection.execute(
                sa.select(JobRow.id)
                .where(
                    JobRow.origin == origin.value,
                    sa.or_(
                        sa.and_(
                            JobRow.status == JobStatus.QUEUED.value,
                            sa.or_(JobRow.run_after.is_(None), JobRow.run_after <= now),
                        ),
                        sa.and_(
                            JobRow.status == JobStatus.RUNNING.value,
                            JobRow.lease_expires_at < now,
                            JobRow.attempts < max_attempts,
                        ),
                    ),
                )
                .limit(1)
            ).first()
        return row is not None

    def fail_exhausted(self, max_attempts: int) -> list[JobRecord]:
        """Fail running jobs whose lease expired after their last attempt (worker lost)."""
        with self._tx() as connection:
            rows = connection.execute(
                sa.update(JobRow)
                .where(
                    JobRow.status == JobStatus.RUNNING.value,
                    JobRow.lease_expires_at < db_now(),
                    JobRow.attempts >= max_attempts,
                )
                .values(
                    status=JobStatus.FAILED.value,
                    finished_at=db_now(),
                    last_error_type="worker_lost",
                    last_error="the worker stopped renewing its lease on the last attempt "
                    "(killed, or its host went away)",
                    lease_token=None,
                )
                .returning(*JobRow.__table__.c)
            ).all()
        return [JobRecord.from_row(row) for row in rows]

    # -- guarded transitions --------------------------------------------------------------
    def _guard(self, job_id: int, token: str) -> Any:
        return sa.and_(
            JobRow.id == job_id,
            JobRow.lease_token == token,
            JobRow.status == JobStatus.RUNNING.value,
        )

    def heartbeat(self, job_id: int, token: str, lease_s: float) -> bool:
        """Renew a lease; False when the lease was lost (another worker took the job)."""
        with self._tx() as connection:
            result = connection.execute(
                sa.update(JobRow)
                .where(self._guard(job_id, token))
                .values(lease_expires_at=db_now(lease_s), heartbeat_at=db_now())
            )
        return result.rowcount == 1

    def set_worker(self, job_id: int, token: str, pid: int, owner: str) -> None:
        """Record which slot process runs the job (for operators and tests)."""
        with self._tx() as connection:
            connection.execute(
                sa.update(JobRow)
                .where(self._guard(job_id, token))
                .values(worker_pid=pid, lease_owner=owner)
            )

    def finish(
        self,
        job_id: int,
        token: str,
        result: dict[str, Any],
        commit_files: Callable[[], list[str]],
    ) -> bool:
        """Mark the job done and publish its files, only while the lease is still ours.

        The row is updated first (locking it), then ``commit_files`` renames the staged
        outputs into place, then the transaction commits; a worker that lost its lease
        changes zero rows and publishes nothing (fencing).

        Returns:
            True when this worker's result was stored.
        """
        with self._tx() as connection:
            changed = connection.execute(
                sa.update(JobRow)
                .where(self._guard(job_id, token))
                .values(
                    status=JobStatus.DONE.value,
                    finished_at=db_now(),
                    lease_token=None,
                    last_error=None,
                    last_error_type=None,
                    error_traceback=None,
                    **result,
                )
            ).rowcount
            if changed != 1:
                return False
            outputs = commit_files()
            connection.execute(
                sa.update(JobRow)
                .where(JobRow.id == job_id)
                .values(outputs=json.dumps(outputs, ensure_ascii=False))
            )
        return True

    def fail(
        self,
        job_id: int,
        token: str,
        *,
        reason: str,
        message: str,
        traceback: str | None = None,
        retry: bool,
        max_attempts: int,
        retry_delay_s: float | None = None,
        extra: dict[str, Any] | None = None,
    ) -> JobStatus | None:
        """Record a failure: requeue with backoff when ``retry`` and attempts remain.

        Returns:
            The new status, or None when the lease was lost.
        """
        with self._tx() as connection:
            # FOR UPDATE (PostgreSQL; SQLite holds the write lock already): no claim can slip
            # in between this read and the update below.
            row = connection.execute(
                sa.select(JobRow.attempts).where(self._guard(job_id, token)).with_for_update()
            ).first()
            if row is None:
                return None
            attempts = int(row[0])
            again = retry and attempts < max_attempts
            delay = retry_delay_s if retry_delay_s is not None else backoff_s(attempts)
            values: dict[str, Any] = {
                "last_error_type": reason,
                "last_error": self.scrub(message)[:ERROR_TEXT_LIMIT],
                "error_traceback": self.scrub(traceback)[-ERROR_TEXT_LIMIT:] if traceback else None,
                "lease_token": None,
                "lease_expires_at": None,
                **(extra or {}),
            }
            if again:
                values.update(status=JobStatus.QUEUED.value, run_after=db_now(delay))
            else:
                values.update(status=JobStatus.FAILED.value, finished_at=db_now())
            changed = connection.execute(
                sa.update(JobRow).where(self._guard(job_id, token)).values(**values)
            ).rowcount
        if changed != 1:
            return None
        return JobStatus.QUEUED if again else JobStatus.FAILED

    def release(self, job_id: int, token: str, *, note: str) -> bool:
        """Put a claimed job back as queued without using up an attempt (interrupted)."""
        with self._tx() as connection:
            changed = connection.execute(
                sa.update(JobRow)
                .where(self._guard(job_id, token))
                .values(
                    status=JobStatus.QUEUED.value,
                    attempts=sa.case((JobRow.attempts > 0, JobRow.attempts - 1), else_=0),
                    lease_token=None,
                    lease_expires_at=None,
                    lease_owner=None,
                    last_error_type="interrupted",
                    last_error=note,
                )
            ).rowcount
        return changed == 1

    # -- operator commands ----------------------------------------------------------------
    def _get(self, connection: Connection, job_id: int) -> JobRecord:
        row = connection.execute(sa.select(*JobRow.__table__.c).where(JobRow.id == job_id)).first()
        if row is None:
            raise UnknownJobError(
                f"no job with id {job_id}", hint="`jozvesaz jobs list` shows the jobs and their ids"
            )
        return JobRecord.from_row(row)

    def get(self, job_id: int) -> JobRecord:
        """One job by id."""
        with self._tx() as connection:
            return self._get(connection, job_id)

    def find_by_key(self, job_key: str) -> JobRecord | None:
        """The job with this identity, if any."""
        with self._tx() as connection:
            row = connection.execute(
                sa.select(*JobRow.__table__.c).where(JobRow.job_key == job_key)
            ).first()
        return JobRecord.from_row(row) if row is not None else None

    def list_jobs(
        self, status: JobStatus | None = None, limit: int | None = None
    ) -> list[JobRecord]:
        """Jobs, newest first, optionally of one status."""
        query = sa.select(*JobRow.__table__.c).order_by(JobRow.id.desc())
        if status is not None:
            query = query.where(JobRow.status == status.value)
        if limit:
            query = query.limit(limit)
        with self._tx() as connection:
            return [JobRecord.from_row(row) for row in connection.execute(query).all()]

    def count_by_status(self) -> dict[str, int]:
        """How many jobs are in each state."""
        with self._tx() as connection:
            rows = connection.execute(
                sa.select(JobRow.status, func.count()).group_by(JobRow.status)
            ).all()
        return {str(status): int(count) for status, count in rows}

    def has_queued(self, job_ids: Sequence[int]) -> bool:
        """True while any of these jobs waits in the queue (a retry included)."""
        with self._tx() as connection:
            row = connection.execute(
                sa.select(JobRow.id)
                .where(JobRow.id.in_(list(job_ids)), JobRow.status == JobStatus.QUEUED.value)
                .limit(1)
            ).first()
        return row is not None

    def known_sources(self, origin: JobOrigin = JobOrigin.QUEUE) -> set[str]:
        """Source paths that already have a job (the scan skips them without hashing)."""
        with self._tx() as connection:
            rows = connection.execute(
                sa.select(JobRow.source_path).where(JobRow.origin == origin.value)
            ).all()
        return {str(row[0]) for row in rows}

    def retry(self, job_id: int | None = None, *, all_failed: bool = False) -> int:
        """Requeue failed (or cancelled) jobs; returns how many."""
        condition: sa.ColumnElement[bool] = JobRow.status.in_(
            [JobStatus.FAILED.value, JobStatus.CANCELLED.value]
        )
        if not all_failed:
            condition = sa.and_(condition, JobRow.id == job_id)
        with self._tx() as connection:
            return connection.execute(
                sa.update(JobRow)
                .where(condition)
                .values(
                    status=JobStatus.QUEUED.value,
                    attempts=0,
                    run_after=None,
                    finished_at=None,
                    lease_token=None,
                )
            ).rowcount

    def relocate(self, job_id: int, old_source: str, new_source: str) -> JobRecord | None:
        """Point a queued job at the new name of its recording (renamed inside uploads/).

        Guarded by the state and the old name, so two scans that both notice the rename
        change the row once. Returns the updated job, or None when nothing changed.
        """
        with self._tx() as connection:
            changed = connection.execute(
                sa.update(JobRow)
                .where(
                    JobRow.id == job_id,
                    JobRow.source_path == old_source,
                    JobRow.status == JobStatus.QUEUED.value,
                )
                .values(source_path=new_source)
            ).rowcount
            return self._get(connection, job_id) if changed == 1 else None

    def cancel(self, job_id: int) -> bool:
        """Cancel a queued job (a running one finishes first)."""
        with self._tx() as connection:
            return (
                connection.execute(
                    sa.update(JobRow)
                    .where(JobRow.id == job_id, JobRow.status == JobStatus.QUEUED.value)
                    .values(status=JobStatus.CANCELLED.value, finished_at=db_now())
                ).rowcount
                == 1
            )

    def update_source(self, job_id: int, token: str, values: dict[str, Any]) -> bool:
        """Fill in identity columns for a row another program inserted with only a path.

        Returns:
            False when another job already has this identity (the row is then cancelled as
            a duplicate).
        """
        try:
            with self.engine.begin() as connection:
                connection.execute(
                    sa.update(JobRow).where(self._guard(job_id, token)).values(**values)
                )
            return True
        except exc.IntegrityError:
            pass
        with self._tx() as connection:
            connection.execute(
                sa.update(JobRow)
                .where(self._guard(job_id, token))
                .values(
                    status=JobStatus.CANCELLED.value,
                    finished_at=db_now(),
                    lease_token=None,
                    last_error_type="duplicate",
                    last_error="the same recording with the same settings is another job",
                )
            )
        return False
