"""report indexes: the nightly report reads one day of answers, chunk runs and failed questions; without these it
scans the whole tables every night

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_answers_created_at", "answers", ["created_at"])
    op.create_index("ix_chunk_runs_created_at", "chunk_runs", ["created_at"])
    op.create_index("ix_questions_failed_updated_at", "questions", ["updated_at"],
                    postgresql_where=sa.text("status = 'failed'"))


def downgrade() -> None:
    op.drop_index("ix_questions_failed_updated_at", table_name="questions")
    op.drop_index("ix_chunk_runs_created_at", table_name="chunk_runs")
    op.drop_index("ix_answers_created_at", table_name="answers")
