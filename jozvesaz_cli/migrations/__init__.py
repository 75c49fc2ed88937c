"""Alembic migrations of the jobs schema, run in-process by ``JobStore.migrate``.

The schema changes only through revisions in ``versions/``; ``upgrade_to_head`` runs them on the
caller's connection, so the caller's lock (PostgreSQL advisory lock, SQLite ``BEGIN IMMEDIATE``)
serialises processes that start together on a fresh database.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import Connection

SCRIPT_LOCATION = str(Path(__file__).resolve().parent)


def upgrade_to_head(connection: Connection) -> None:
    """Apply every missing revision on ``connection`` (no-op when already at head)."""
    from alembic import command
    from alembic.config import Config
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    script = ScriptDirectory.from_config(config)
    current = MigrationContext.configure(connection).get_current_revision()
    if current == script.get_current_head():
        return
    config.attributes["connection"] = connection
    command.upgrade(config, "head")
