"""reports: the nightly report of each day, one row per (day, scope), scope a tenant or 'all'

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "reports",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("scope", sa.String(100), nullable=False),
        sa.Column("html", sa.Text(), nullable=False),
        sa.Column("json", postgresql.JSONB(), nullable=False),
        sa.Column("csv", sa.Text(), nullable=False),
        sa.Column("generated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("day", "scope", name="uq_reports_day_scope"),
    )
    op.create_index("ix_reports_scope_day", "reports", ["scope", sa.text("day DESC")])


def downgrade() -> None:
    op.drop_table("reports")
