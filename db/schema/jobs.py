"""The tables of what is asked and answered: jobs, their questions, each question's answer with its citations and
lane rankings, and what each answering task recorded about its run.

Page numbers are 1-based everywhere. Times are ``timestamptz``; durations are milliseconds (float).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    BigInteger,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column, relationship

from db.schema.base import Base, now_column
from db.schema.corpus import Page
from pageqa.domain import JobStatus, QuestionStatus


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
    created_at: Mapped[dt.datetime] = now_column()
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
    confidence: Mapped[float | None] = mapped_column(
        Float, doc="The answerer's own probability of its answer in [0, 1] (geometric mean of its generated tokens' "
        "probabilities); NULL for extractive answers.",
    )
    retrieve_ms: Mapped[float] = mapped_column(Float)
    rerank_ms: Mapped[float] = mapped_column(Float)
    generate_ms: Mapped[float] = mapped_column(Float)
    reused_from: Mapped[int | None] = mapped_column(
        ForeignKey("questions.id", ondelete="SET NULL"),
        doc="The question whose model-made answer this copies (de-duplication); NULL when the models ran.",
    )
    created_at: Mapped[dt.datetime] = now_column()

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
    created_at: Mapped[dt.datetime] = now_column()


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
