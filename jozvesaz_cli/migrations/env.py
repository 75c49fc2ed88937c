"""Alembic environment: runs on the connection handed over by ``upgrade_to_head``."""

from __future__ import annotations

from alembic import context

from jozvesaz_cli.job_store import Base

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
context.run_migrations()
