"""answers.confidence: the answerer's own probability of its answer in [0, 1] (NULL for extractive answers and
answers written before it)

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("answers", sa.Column("confidence", sa.Float(), nullable=True))


def downgrade() -> None:
    op.drop_column("answers", "confidence")
