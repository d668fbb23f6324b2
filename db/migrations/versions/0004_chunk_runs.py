"""chunk runs: per answering task, batch sizes, stage milliseconds, queue wait and peak GPU memory

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "chunk_runs",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("job_id", sa.String(40), sa.ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("worker", sa.Text(), nullable=False),
        sa.Column("device", sa.String(32), nullable=False),
        sa.Column("n_questions", sa.Integer(), nullable=False),
        sa.Column("batch_sizes", postgresql.JSONB(), nullable=False),
        sa.Column("queue_wait_ms", sa.Float(), nullable=True),
        sa.Column("retrieve_ms", sa.Float(), nullable=False),
        sa.Column("rerank_ms", sa.Float(), nullable=False),
        sa.Column("generate_ms", sa.Float(), nullable=False),
        sa.Column("total_ms", sa.Float(), nullable=False),
        sa.Column("peak_gpu_bytes", sa.BigInteger(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
    )
    op.create_index("ix_chunk_runs_job_id", "chunk_runs", ["job_id"])


def downgrade() -> None:
    op.drop_table("chunk_runs")
