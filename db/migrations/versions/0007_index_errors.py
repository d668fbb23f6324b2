"""index errors: why a page's last indexing failed, so ingest stops waiting for it and says so

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("pages", sa.Column("index_error", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("pages", "index_error")
