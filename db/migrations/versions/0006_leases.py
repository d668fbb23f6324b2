"""leases: per-question lease expiry, claiming worker, last enqueue time; cancelling jobs, cancelled questions

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TYPE job_status ADD VALUE IF NOT EXISTS 'cancelling' BEFORE 'cancelled'")
    op.execute("ALTER TYPE question_status ADD VALUE IF NOT EXISTS 'cancelled'")
    op.add_column("questions", sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("questions", sa.Column("worker", sa.Text(), nullable=True))
    op.add_column("questions", sa.Column(
        "enqueued_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False))


def downgrade() -> None:
    op.drop_column("questions", "enqueued_at")
    op.drop_column("questions", "worker")
    op.drop_column("questions", "lease_expires_at")
    # PostgreSQL cannot drop an enum value; 'cancelling' and 'cancelled' stay in the types.
