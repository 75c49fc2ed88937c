"""Create the jobs table.

Revision ID: 0001_jobs
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from jozvesaz_cli.job_store import UTCDateTime

revision = "0001_jobs"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create ``jobs`` with its unique identity and its claim index."""
    op.create_table(
        "jobs",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("job_key", sa.String(64), unique=True),
        sa.Column("content_sha256", sa.String(64)),
        sa.Column("settings_fingerprint", sa.String(64)),
        sa.Column("source_path", sa.Text(), nullable=False),
        sa.Column("origin", sa.String(16), nullable=False, server_default="queue"),
        sa.Column("size_bytes", sa.BigInteger()),
        sa.Column("status", sa.String(16), nullable=False, server_default="queued"),
        sa.Column("priority", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("run_after", UTCDateTime()),
        sa.Column("lease_owner", sa.String(255)),
        sa.Column("lease_token", sa.String(64)),
        sa.Column("lease_expires_at", UTCDateTime()),
        sa.Column("heartbeat_at", UTCDateTime()),
        sa.Column("worker_pid", sa.Integer()),
        sa.Column("created_at", UTCDateTime(), nullable=False, server_default=sa.func.now()),
        sa.Column("claimed_at", UTCDateTime()),
        sa.Column("finished_at", UTCDateTime()),
        sa.Column("model", sa.String(255)),
        sa.Column("device", sa.String(32)),
        sa.Column("compute_type", sa.String(32)),
        sa.Column("language", sa.String(16)),
        sa.Column("language_probability", sa.Float()),
        sa.Column("audio_duration_s", sa.Float()),
        sa.Column("processing_s", sa.Float()),
        sa.Column("source_sample_rate", sa.Integer()),
        sa.Column("source_channels", sa.Integer()),
        sa.Column("outputs", sa.Text()),
        sa.Column("warnings", sa.Text()),
        sa.Column("settings_json", sa.Text()),
        sa.Column("profile", sa.Text()),
        sa.Column("last_error_type", sa.String(32)),
        sa.Column("last_error", sa.Text()),
        sa.Column("error_traceback", sa.Text()),
    )
    op.create_index("ix_jobs_status_priority", "jobs", ["status", "priority"])


def downgrade() -> None:
    """Drop ``jobs``."""
    op.drop_index("ix_jobs_status_priority", table_name="jobs")
    op.drop_table("jobs")
