"""text lanes: OCR text source, full-text search vector, passages with dense embeddings, lane hits, citation lanes,
answer kind and evidence page

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from pgvector.sqlalchemy import Vector
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("pages", sa.Column("text_source", sa.String(8), nullable=False, server_default="pdf"))
    op.add_column("pages", sa.Column("text_indexed_by", sa.Text(), nullable=True))
    op.add_column(
        "pages",
        sa.Column("tsv", postgresql.TSVECTOR(), sa.Computed("to_tsvector('english', text)", persisted=True)),
    )
    op.create_index("ix_pages_tsv", "pages", ["tsv"], postgresql_using="gin")
    op.create_table(
        "passages",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("page_id", sa.Integer(), sa.ForeignKey("pages.id", ondelete="CASCADE"), nullable=False),
        sa.Column("model_id", sa.Text(), nullable=False),
        sa.Column("ordinal", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("embedding", Vector(384), nullable=False),
        sa.UniqueConstraint("page_id", "model_id", "ordinal"),
    )
    op.create_index("ix_passages_page_id", "passages", ["page_id"])
    op.create_index(
        "ix_passages_embedding_hnsw", "passages", ["embedding"], postgresql_using="hnsw",
        postgresql_ops={"embedding": "vector_cosine_ops"},
    )
    op.add_column("answers", sa.Column("kind", sa.String(16), nullable=False, server_default="generated"))
    op.add_column(
        "answers",
        sa.Column("evidence_page_id", sa.Integer(), sa.ForeignKey("pages.id", ondelete="SET NULL"), nullable=True),
    )
    op.add_column(
        "citations",
        sa.Column("lanes", postgresql.ARRAY(sa.String(16)), nullable=False, server_default="{}"),
    )
    op.create_table(
        "lane_hits",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("question_id", sa.Integer(), sa.ForeignKey("questions.id", ondelete="CASCADE"), nullable=False),
        sa.Column("lane", sa.String(16), nullable=False),
        sa.Column("rank", sa.Integer(), nullable=False),
        sa.Column("page_id", sa.Integer(), sa.ForeignKey("pages.id", ondelete="CASCADE"), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.UniqueConstraint("question_id", "lane", "rank"),
    )
    op.create_index("ix_lane_hits_question_id", "lane_hits", ["question_id"])


def downgrade() -> None:
    op.drop_index("ix_lane_hits_question_id", table_name="lane_hits")
    op.drop_table("lane_hits")
    op.drop_column("citations", "lanes")
    op.drop_column("answers", "evidence_page_id")
    op.drop_column("answers", "kind")
    op.drop_index("ix_passages_embedding_hnsw", table_name="passages")
    op.drop_index("ix_passages_page_id", table_name="passages")
    op.drop_table("passages")
    op.drop_index("ix_pages_tsv", table_name="pages")
    op.drop_column("pages", "tsv")
    op.drop_column("pages", "text_indexed_by")
    op.drop_column("pages", "text_source")
