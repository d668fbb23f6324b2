"""de-duplication: job tenant, in-job duplicates, dedup keys, reused answers, reused questions per chunk

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("tenant", sa.String(100), server_default="default", nullable=False))
    op.create_index("ix_jobs_tenant", "jobs", ["tenant"])
    op.add_column("questions", sa.Column(
        "duplicate_of", sa.Integer(), sa.ForeignKey("questions.id", ondelete="SET NULL"), nullable=True))
    op.create_index("ix_questions_duplicate_of", "questions", ["duplicate_of"])
    op.add_column("questions", sa.Column("dedup_key", sa.String(64), nullable=True))
    op.create_index("ix_questions_dedup_key", "questions", ["dedup_key"])
    op.add_column("answers", sa.Column(
        "reused_from", sa.Integer(), sa.ForeignKey("questions.id", ondelete="SET NULL"), nullable=True))
    op.add_column("chunk_runs", sa.Column("n_reused", sa.Integer(), server_default="0", nullable=False))


def downgrade() -> None:
    op.drop_column("chunk_runs", "n_reused")
    op.drop_column("answers", "reused_from")
    op.drop_index("ix_questions_dedup_key", table_name="questions")
    op.drop_column("questions", "dedup_key")
    op.drop_index("ix_questions_duplicate_of", table_name="questions")
    op.drop_column("questions", "duplicate_of")
    op.drop_index("ix_jobs_tenant", table_name="jobs")
    op.drop_column("jobs", "tenant")
