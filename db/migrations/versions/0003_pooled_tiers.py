"""late-interaction tiers: visual indexes (model + pooling per corpus), fine pooled tier on page embeddings, coarse
pooled vectors with a pgvector HNSW index for the first stage

Rows stored before this revision keep their exact multi-vector and get ``visual_index_id`` NULL; indexing the
corpus again builds their pooled tiers from the stored vectors, without re-embedding.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from pgvector.sqlalchemy import HALFVEC

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "visual_indexes",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("corpus_id", sa.Integer(), sa.ForeignKey("corpora.id", ondelete="CASCADE"), nullable=False),
        sa.Column("model_id", sa.Text(), nullable=False),
        sa.Column("pooling", sa.Text(), nullable=False),
        sa.Column("dim", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.UniqueConstraint("corpus_id", "model_id"),
    )
    op.add_column(
        "page_embeddings",
        sa.Column(
            "visual_index_id", sa.Integer(), sa.ForeignKey("visual_indexes.id", ondelete="CASCADE"), nullable=True
        ),
    )
    op.create_index("ix_page_embeddings_visual_index_id", "page_embeddings", ["visual_index_id"])
    op.add_column("page_embeddings", sa.Column("n_fine", sa.Integer(), nullable=True))
    op.add_column("page_embeddings", sa.Column("fine", sa.LargeBinary(), nullable=True))
    # Multi-vectors are float16 noise to pglz: store them out of line without trying to compress them.
    op.execute("ALTER TABLE page_embeddings ALTER COLUMN vectors SET STORAGE EXTERNAL")
    op.execute("ALTER TABLE page_embeddings ALTER COLUMN fine SET STORAGE EXTERNAL")
    op.create_table(
        "page_pool_vectors",
        sa.Column("id", sa.BigInteger(), primary_key=True),
        sa.Column(
            "embedding_id", sa.Integer(), sa.ForeignKey("page_embeddings.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("visual_index_id", sa.Integer(), nullable=False),
        sa.Column("document_id", sa.Integer(), nullable=False),
        sa.Column("page_id", sa.Integer(), nullable=False),
        sa.Column("vector", HALFVEC(128), nullable=False),
    )
    op.create_index("ix_page_pool_vectors_embedding_id", "page_pool_vectors", ["embedding_id"])
    op.create_index("ix_page_pool_vectors_document_id", "page_pool_vectors", ["document_id"])
    op.create_index(
        "ix_page_pool_vectors_hnsw", "page_pool_vectors", ["vector"], postgresql_using="hnsw",
        postgresql_ops={"vector": "halfvec_ip_ops"},
    )


def downgrade() -> None:
    op.drop_table("page_pool_vectors")
    op.drop_index("ix_page_embeddings_visual_index_id", table_name="page_embeddings")
    op.drop_column("page_embeddings", "fine")
    op.drop_column("page_embeddings", "n_fine")
    op.drop_column("page_embeddings", "visual_index_id")
    op.drop_table("visual_indexes")
