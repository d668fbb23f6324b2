"""The tables of what questions are asked against: corpora, their documents and pages, the pages' text passages,
and the late-interaction index of each corpus (its pages' multi-vector tiers).

Page numbers are 1-based everywhere. Times are ``timestamptz``.
"""

from __future__ import annotations

import datetime as dt

from pgvector.sqlalchemy import HALFVEC, Vector
from sqlalchemy import (
    BigInteger,
    Computed,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import TSVECTOR
from sqlalchemy.orm import Mapped, mapped_column, relationship

from db.schema.base import Base, now_column


class Corpus(Base):
    """A named collection of documents that questions are asked against; names are unique per tenant."""

    __tablename__ = "corpora"
    __table_args__ = (UniqueConstraint("tenant", "name", name="uq_corpora_tenant_name"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    tenant: Mapped[str] = mapped_column(String(100), default="default", server_default="default")
    created_at: Mapped[dt.datetime] = now_column()


class Document(Base):
    """One ingested file (PDF or image); de-duplicated per corpus by the sha256 of its bytes."""

    __tablename__ = "documents"
    __table_args__ = (UniqueConstraint("corpus_id", "sha256"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    corpus_id: Mapped[int] = mapped_column(ForeignKey("corpora.id", ondelete="CASCADE"), index=True)
    sha256: Mapped[str] = mapped_column(String(64))
    title: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(Text, doc="File name as given at ingest.")
    kind: Mapped[str] = mapped_column(String(16), doc="'pdf' or 'image'.")
    page_count: Mapped[int] = mapped_column(Integer)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[dt.datetime] = now_column()


class Page(Base):
    """One page image, downscaled to the page pixel budget and stored compressed, with its PDF text layer."""

    __tablename__ = "pages"
    __table_args__ = (
        UniqueConstraint("document_id", "page_number"),
        Index("ix_pages_tsv", "tsv", postgresql_using="gin"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    document_id: Mapped[int] = mapped_column(ForeignKey("documents.id", ondelete="CASCADE"), index=True)
    page_number: Mapped[int] = mapped_column(Integer, doc="1-based.")
    width: Mapped[int] = mapped_column(Integer, doc="Stored image width in pixels.")
    height: Mapped[int] = mapped_column(Integer, doc="Stored image height in pixels.")
    image_format: Mapped[str] = mapped_column(String(8))
    image: Mapped[bytes] = mapped_column(LargeBinary)
    text: Mapped[str] = mapped_column(Text, default="", doc="PDF text layer, or OCR text for pages without one.")
    text_source: Mapped[str] = mapped_column(String(8), default="pdf", doc="'pdf', 'ocr' or 'none'.")
    text_indexed_by: Mapped[str | None] = mapped_column(
        Text, doc="Text model whose passages are stored for this page (None: not indexed yet)."
    )
    index_error: Mapped[str | None] = mapped_column(
        Text, doc="Why the last indexing of this page failed (one line); such a page is not queued again until "
                  "its errors are cleared (pageqa ingest --retry-failed)."
    )
    tsv: Mapped[str] = mapped_column(
        TSVECTOR, Computed("to_tsvector('english', text)", persisted=True), doc="Full-text search vector."
    )

    document: Mapped[Document] = relationship(lazy="joined")


TEXT_DIM = 384  # all-MiniLM-L6-v2; another text model of another width needs a migration


class Passage(Base):
    """A sentence-aligned window of a page's text with its dense text embedding (``vector(384)``, unit norm)."""

    __tablename__ = "passages"
    __table_args__ = (
        UniqueConstraint("page_id", "model_id", "ordinal"),
        Index("ix_passages_embedding_hnsw", "embedding", postgresql_using="hnsw",
              postgresql_ops={"embedding": "vector_cosine_ops"}),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    page_id: Mapped[int] = mapped_column(ForeignKey("pages.id", ondelete="CASCADE"), index=True)
    model_id: Mapped[str] = mapped_column(Text)
    ordinal: Mapped[int] = mapped_column(Integer, doc="0-based position in the page.")
    text: Mapped[str] = mapped_column(Text)
    embedding: Mapped[list[float]] = mapped_column(Vector(TEXT_DIM))


#: Dimension of ColQwen2 patch and query vectors (the pooled first-stage tier is ``halfvec(128)``).
VISUAL_DIM = 128


class VisualIndex(Base):
    """The late-interaction index of one corpus for one retriever model: which pooling made its tiers.

    There is one row per (corpus, model), and every page's tiers point at it, so a corpus cannot hold pages pooled
    two ways: pages from another pooling are refused at load time (see ``db.multivector``).
    """

    __tablename__ = "visual_indexes"
    __table_args__ = (UniqueConstraint("corpus_id", "model_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    corpus_id: Mapped[int] = mapped_column(ForeignKey("corpora.id", ondelete="CASCADE"))
    model_id: Mapped[str] = mapped_column(Text)
    pooling: Mapped[str] = mapped_column(Text, doc="PoolingSpec.name, e.g. 'kmeans-v1:16/64:8'.")
    dim: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = now_column()


class PageEmbedding(Base):
    """ColQwen2 multi-vector of one page in two tiers.

    * exact: ``vectors``, the row-major bytes of the ``(n_vectors, dim) float16`` patch embeddings, padding stripped.
    * fine pooled: ``fine``, ``(n_fine, dim) float16`` k-means centroids, scored for the first stage's candidates.

    The coarse pooled tier (the first stage) lives in ``page_pool_vectors``. ``visual_index_id`` is NULL for rows
    stored before pooling existed; their pooled tiers are built from ``vectors`` when the corpus is indexed again.
    """

    __tablename__ = "page_embeddings"
    __table_args__ = (UniqueConstraint("page_id", "model_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    page_id: Mapped[int] = mapped_column(ForeignKey("pages.id", ondelete="CASCADE"), index=True)
    model_id: Mapped[str] = mapped_column(Text)
    colpali_version: Mapped[str] = mapped_column(String(32))
    max_pixels: Mapped[int] = mapped_column(Integer)
    n_vectors: Mapped[int] = mapped_column(Integer)
    dim: Mapped[int] = mapped_column(Integer)
    vectors: Mapped[bytes] = mapped_column(LargeBinary)
    visual_index_id: Mapped[int | None] = mapped_column(
        ForeignKey("visual_indexes.id", ondelete="CASCADE"), index=True
    )
    n_fine: Mapped[int | None] = mapped_column(Integer)
    fine: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[dt.datetime] = now_column()


class PagePoolVector(Base):
    """One coarse pooled vector of a page: a row of the first stage's pgvector HNSW index (inner product).

    ``visual_index_id``, ``document_id`` and ``page_id`` are copies kept for filtering the index scan.
    """

    __tablename__ = "page_pool_vectors"
    __table_args__ = (
        Index("ix_page_pool_vectors_hnsw", "vector", postgresql_using="hnsw",
              postgresql_ops={"vector": "halfvec_ip_ops"}),
    )
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    embedding_id: Mapped[int] = mapped_column(ForeignKey("page_embeddings.id", ondelete="CASCADE"), index=True)
    visual_index_id: Mapped[int] = mapped_column(Integer)
    document_id: Mapped[int] = mapped_column(Integer, index=True)
    page_id: Mapped[int] = mapped_column(Integer)
    vector: Mapped[list[float]] = mapped_column(HALFVEC(VISUAL_DIM))
