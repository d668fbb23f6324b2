"""batch API: OpenAI-style job states with a timestamp each, completion windows, validation errors, frozen request
counts, corpora per tenant, and hashed API keys

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_STAMPS = ("finalizing_at", "failed_at", "cancelling_at", "cancelled_at", "expired_at")


def upgrade() -> None:
    # A stored job has passed validation: 'queued' jobs are in progress. The value itself becomes 'validating'.
    op.execute("UPDATE jobs SET status = 'in_progress', started_at = COALESCE(started_at, created_at) "
               "WHERE status = 'queued'")
    op.execute("ALTER TYPE job_status RENAME VALUE 'queued' TO 'validating'")
    op.execute("ALTER TYPE job_status ADD VALUE IF NOT EXISTS 'finalizing'")
    op.execute("ALTER TYPE job_status ADD VALUE IF NOT EXISTS 'expired'")
    op.execute("ALTER TYPE question_status ADD VALUE IF NOT EXISTS 'expired'")

    op.alter_column("jobs", "started_at", new_column_name="in_progress_at")
    for name in _STAMPS:
        op.add_column("jobs", sa.Column(name, sa.DateTime(timezone=True), nullable=True))
    op.add_column("jobs", sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE jobs SET expires_at = created_at + interval '24 hours'")
    op.alter_column("jobs", "expires_at", nullable=False)
    # completed_at meant "ended" before; now each final state has its own stamp.
    for status, column in (("failed", "failed_at"), ("cancelled", "cancelled_at")):
        op.execute(f"UPDATE jobs SET {column} = completed_at, completed_at = NULL WHERE status = '{status}'")
    op.add_column("jobs", sa.Column("errors", postgresql.JSONB(), server_default="[]", nullable=False))
    op.add_column("jobs", sa.Column("n_errors", sa.Integer(), server_default="0", nullable=False))
    op.add_column("jobs", sa.Column("request_counts", postgresql.JSONB(), nullable=True))
    op.create_index("ix_jobs_tenant_created", "jobs", ["tenant", sa.text("created_at DESC"), sa.text("id DESC")])

    op.add_column("corpora", sa.Column("tenant", sa.String(100), server_default="default", nullable=False))
    op.drop_constraint("corpora_name_key", "corpora", type_="unique")
    op.create_unique_constraint("uq_corpora_tenant_name", "corpora", ["tenant", "name"])

    op.create_table(
        "api_keys",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("tenant", sa.String(100), nullable=False, index=True),
        sa.Column("name", sa.Text(), nullable=False, server_default=""),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("api_keys")
    op.drop_constraint("uq_corpora_tenant_name", "corpora", type_="unique")
    op.create_unique_constraint("corpora_name_key", "corpora", ["name"])
    op.drop_column("corpora", "tenant")
    op.drop_index("ix_jobs_tenant_created", table_name="jobs")
    for name in ("request_counts", "n_errors", "errors"):
        op.drop_column("jobs", name)
    for status, column in (("failed", "failed_at"), ("cancelled", "cancelled_at")):
        op.execute(f"UPDATE jobs SET completed_at = {column} WHERE status = '{status}'")
    op.execute("UPDATE jobs SET completed_at = expired_at, status = 'cancelled' WHERE status = 'expired'")
    op.execute("UPDATE jobs SET status = 'completed', completed_at = finalizing_at WHERE status = 'finalizing'")
    for name in (*_STAMPS, "expires_at"):
        op.drop_column("jobs", name)
    op.alter_column("jobs", "in_progress_at", new_column_name="started_at")
    op.execute("UPDATE questions SET status = 'cancelled' WHERE status = 'expired'")
    op.execute("ALTER TYPE job_status RENAME VALUE 'validating' TO 'queued'")
    # PostgreSQL cannot drop enum values: 'finalizing' and 'expired' stay in the types, unused.
