"""SQLAlchemy 2 models of pageqa's tables. The schema itself changes only through Alembic migrations.

Page numbers are 1-based everywhere. Times are ``timestamptz``; durations are milliseconds (float).
"""

from __future__ import annotations

import datetime as dt

from pgvector.sqlalchemy import HALFVEC, Vector
from sqlalchemy import (
    BigInteger,
    Computed,
    Date,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, TSVECTOR
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from pageqa.domain import FINAL_JOB_STATES, JobStatus, QuestionStatus  # noqa: F401 -- the columns' enums


class Base(DeclarativeBase):
    """Declarative base of every pageqa table."""


def _now() -> Mapped[dt.datetime]:
    return mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)


class Corpus(Base):
    """A named collection of documents that questions are asked against; names are unique per tenant."""

    __tablename__ = "corpora"
    __table_args__ = (UniqueConstraint("tenant", "name", name="uq_corpora_tenant_name"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    tenant: Mapped[str] = mapped_column(String(100), default="default", server_default="default")
    created_at: Mapped[dt.datetime] = _now()


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
    created_at: Mapped[dt.datetime] = _now()


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
    created_at: Mapped[dt.datetime] = _now()


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
    created_at: Mapped[dt.datetime] = _now()


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


class Job(Base):
    """A bulk question file submitted against one corpus; per-job options are stored as JSON.

    Each state reached has its timestamp (``in_progress_at`` … ``expired_at``); ``expires_at`` ends the completion
    window. ``errors`` holds the first validation errors (``{"line", "code", "message"}``), ``n_errors`` how many
    rows were left out in all; ``request_counts`` is frozen when the job ends (live counts come from questions).
    """

    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_tenant_created", "tenant", text("created_at DESC"), text("id DESC")),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    corpus_id: Mapped[int] = mapped_column(ForeignKey("corpora.id"), index=True)
    status: Mapped[JobStatus] = mapped_column(Enum(JobStatus, name="job_status"), default=JobStatus.validating)
    source: Mapped[str] = mapped_column(Text, doc="File name the questions came from, as the user gave it.")
    tenant: Mapped[str] = mapped_column(
        String(100), default="default", server_default="default", index=True,
        doc="Who submitted the job; answers are never reused across tenants.",
    )
    options: Mapped[dict] = mapped_column(JSONB, default=dict)
    total: Mapped[int] = mapped_column(Integer)
    errors: Mapped[list] = mapped_column(JSONB, default=list, server_default="[]")
    n_errors: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    request_counts: Mapped[dict | None] = mapped_column(JSONB)
    created_at: Mapped[dt.datetime] = _now()
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    in_progress_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    finalizing_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    completed_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    failed_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    cancelling_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    cancelled_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    expired_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))

    @property
    def ended_at(self) -> dt.datetime | None:
        """When the job reached its final state (None while it runs)."""
        return self.completed_at or self.failed_at or self.cancelled_at or self.expired_at


class ApiKey(Base):
    """An API key of a tenant. Only the sha256 of the key is stored (keys are 256 random bits, so a fast hash is
    enough); ``prefix`` (its first characters) names it in listings. A revoked key is kept, refused."""

    __tablename__ = "api_keys"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant: Mapped[str] = mapped_column(String(100), index=True)
    name: Mapped[str] = mapped_column(Text, default="", server_default="")
    prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = _now()
    last_used_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class Question(Base):
    """One question of a job, identified by its ``custom_id`` (unique per job)."""

    __tablename__ = "questions"
    __table_args__ = (
        UniqueConstraint("job_id", "custom_id"),
        Index("ix_questions_failed_updated_at", "updated_at", postgresql_where=text("status = 'failed'")),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    custom_id: Mapped[str] = mapped_column(Text)
    question: Mapped[str] = mapped_column(Text)
    document_id: Mapped[int | None] = mapped_column(ForeignKey("documents.id", ondelete="SET NULL"))
    line_number: Mapped[int] = mapped_column(Integer, doc="1-based line of the question file.")
    status: Mapped[QuestionStatus] = mapped_column(
        Enum(QuestionStatus, name="question_status"), default=QuestionStatus.queued, index=True
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    lease_expires_at: Mapped[dt.datetime | None] = mapped_column(
        DateTime(timezone=True), doc="While running: when the claiming worker is presumed lost."
    )
    worker: Mapped[str | None] = mapped_column(Text, doc="hostname:pid of the worker that claimed it last.")
    enqueued_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), doc="When a task carrying it was last sent."
    )
    duplicate_of: Mapped[int | None] = mapped_column(
        ForeignKey("questions.id", ondelete="SET NULL"), index=True,
        doc="An earlier question of the same job with the same normalised text and document filter; this one is "
        "never enqueued and gets a copy of that one's answer (or its error).",
    )
    dedup_key: Mapped[str | None] = mapped_column(
        String(64), index=True,
        doc="sha256 of tenant, corpus and its version, document filter, normalised text, job options and the "
        "worker's model and search settings; set when answered by the models, looked up for reuse.",
    )
    updated_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )


class Answer(Base):
    """The one answer of a question, with the model ids that produced it and per-stage timings in milliseconds."""

    __tablename__ = "answers"
    __table_args__ = (Index("ix_answers_created_at", "created_at"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    question_id: Mapped[int] = mapped_column(ForeignKey("questions.id", ondelete="CASCADE"), unique=True)
    answer: Mapped[str] = mapped_column(Text)
    retriever_model: Mapped[str] = mapped_column(Text)
    reranker_model: Mapped[str] = mapped_column(Text)
    generator_model: Mapped[str] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(
        String(16), default="generated", doc="'generated' (VLM), 'extractive' (a passage), or 'none' (no page)."
    )
    evidence_page_id: Mapped[int | None] = mapped_column(
        ForeignKey("pages.id", ondelete="SET NULL"), doc="Extractive answers: the page the passage came from."
    )
    retrieve_ms: Mapped[float] = mapped_column(Float)
    rerank_ms: Mapped[float] = mapped_column(Float)
    generate_ms: Mapped[float] = mapped_column(Float)
    reused_from: Mapped[int | None] = mapped_column(
        ForeignKey("questions.id", ondelete="SET NULL"),
        doc="The question whose model-made answer this copies (de-duplication); NULL when the models ran.",
    )
    created_at: Mapped[dt.datetime] = _now()

    citations: Mapped[list[Citation]] = relationship(order_by="Citation.rank", lazy="selectin")


class Citation(Base):
    """A page cited by an answer: 1-based rank after rerank, fused retrieval score (reciprocal rank fusion over
    the lanes), rerank score (MonoQwen2-VL P(True); the fused score when no reranker runs), and the lanes that
    found it."""

    __tablename__ = "citations"
    __table_args__ = (UniqueConstraint("answer_id", "rank"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    answer_id: Mapped[int] = mapped_column(ForeignKey("answers.id", ondelete="CASCADE"), index=True)
    page_id: Mapped[int] = mapped_column(ForeignKey("pages.id", ondelete="CASCADE"))
    rank: Mapped[int] = mapped_column(Integer)
    retrieval_score: Mapped[float] = mapped_column(Float)
    rerank_score: Mapped[float] = mapped_column(Float)
    lanes: Mapped[list[str]] = mapped_column(ARRAY(String(16)), default=list)

    page: Mapped[Page] = relationship(lazy="joined")


class ChunkRun(Base):
    """One answering task's run over one job's questions: batch sizes, per-stage milliseconds (whole chunk), queue
    wait (ms from enqueue to the task's start), peak GPU memory (bytes; NULL on a CPU) and the error if it failed.
    The nightly report and throughput work read these."""

    __tablename__ = "chunk_runs"
    __table_args__ = (Index("ix_chunk_runs_created_at", "created_at"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    worker: Mapped[str] = mapped_column(Text, doc="hostname:pid of the worker process.")
    device: Mapped[str] = mapped_column(String(32))
    n_questions: Mapped[int] = mapped_column(Integer)
    n_reused: Mapped[int] = mapped_column(
        Integer, default=0, server_default="0", doc="Questions of the chunk answered by reuse, without the models."
    )
    batch_sizes: Mapped[dict] = mapped_column(JSONB, default=dict, doc="Micro-batch size per stage.")
    queue_wait_ms: Mapped[float | None] = mapped_column(Float)
    retrieve_ms: Mapped[float] = mapped_column(Float)
    rerank_ms: Mapped[float] = mapped_column(Float)
    generate_ms: Mapped[float] = mapped_column(Float)
    total_ms: Mapped[float] = mapped_column(Float)
    peak_gpu_bytes: Mapped[int | None] = mapped_column(BigInteger)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = _now()


class LaneHit(Base):
    """One page in one retrieval lane's ranked list for a question (``visual`` MaxSim, ``lexical`` full-text
    rank, ``dense`` passage cosine), kept for evaluation per lane and for explaining citations."""

    __tablename__ = "lane_hits"
    __table_args__ = (UniqueConstraint("question_id", "lane", "rank"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    question_id: Mapped[int] = mapped_column(ForeignKey("questions.id", ondelete="CASCADE"), index=True)
    lane: Mapped[str] = mapped_column(String(16))
    rank: Mapped[int] = mapped_column(Integer, doc="1-based.")
    page_id: Mapped[int] = mapped_column(ForeignKey("pages.id", ondelete="CASCADE"))
    score: Mapped[float] = mapped_column(Float)


class Report(Base):
    """One nightly report of one day for one scope (a tenant name, or ``"all"`` for every tenant): the
    self-contained HTML page, its figures as JSON and as a flat CSV (section, tenant, metric, value). Building a day
    again replaces its rows. ``day`` is a calendar date in the report's time zone (``json["timezone"]``)."""

    __tablename__ = "reports"
    __table_args__ = (UniqueConstraint("day", "scope", name="uq_reports_day_scope"),
                      Index("ix_reports_scope_day", "scope", text("day DESC")))
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    day: Mapped[dt.date] = mapped_column(Date)
    scope: Mapped[str] = mapped_column(String(100), doc="A tenant, or 'all'.")
    html: Mapped[str] = mapped_column(Text)
    json: Mapped[dict] = mapped_column(JSONB, doc="The figures of this scope (see services.report.build).")
    csv: Mapped[str] = mapped_column(Text)
    generated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
