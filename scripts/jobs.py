"""Job operations behind the CLI: submit a question file, read status, export results."""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from kombu.exceptions import OperationalError as KombuOperationalError

from db import corpus as corpus_db
from db import jobs as jobs_db
from db.engine import session_scope
from pageqa.errors import InputError, ServiceError
from pageqa.settings import Settings
from scripts.questions import (
    MAX_KEPT_ERRORS,
    ErrorLog,
    QuestionFile,
    open_question_file,
)
from tasks.enqueue import enqueue_questions


@dataclass(frozen=True)
class Submitted:
    """A submitted job: its id, questions stored, in-job duplicates among them (answered by copy, not enqueued),
    the one-line errors of the rows left out (the first ``MAX_KEPT_ERRORS``, in line order) and how many rows were
    left out in all, and notes on how the file was read."""

    job_id: str
    total: int
    duplicates: int
    errors: list[str]
    notes: list[str] = field(default_factory=list)
    n_errors: int = 0
    tasks: int = 0  # answering tasks sent
    store_s: float = 0.0  # seconds reading, checking and storing the rows, up to the commit
    enqueue_s: float = 0.0  # seconds streaming the ids back and sending the tasks

    @property
    def errors_omitted(self) -> int:
        """Rows left out whose error is not in ``errors`` (only the first ones are kept)."""
        return self.n_errors - len(self.errors)


def submit_file(
    settings: Settings, *, path: Path, corpus: str, options: dict, strict: bool = False,
    document_field: str = "document", tenant: str = "default", max_errors: int = MAX_KEPT_ERRORS,
) -> Submitted:
    """Validate a question file, store the job and its questions in one transaction, then enqueue them in chunks.

    The file is streamed: rows are read, checked and copied to PostgreSQL one at a time, and the ids are streamed
    back into tasks after the commit, so memory does not grow with the number of rows. Rows with errors (including
    an unknown ``document`` and a ``custom_id`` already used on an earlier line) are left out and reported, unless
    ``strict``; only the first ``max_errors`` messages are kept. Repeated questions (same normalised text and
    document) are stored but not enqueued: they get the first one's answer. Nothing is stored when this raises.

    Raises:
        InputError: the file is unreadable or empty, has no valid row, or (``strict``) has any invalid row.
        NotFoundError: the corpus does not exist.
        ServiceError: the job is stored but the broker cannot be reached (the message names the job).
    """
    start = time.perf_counter()
    errors = ErrorLog(keep=max_errors)
    questions = open_question_file(path, document_field=document_field, errors=errors)
    with session_scope(settings) as session:
        corpus_row = corpus_db.get_corpus(session, name=corpus)
        docs = {name: doc.id for name, doc in corpus_db.documents_by_name(session, corpus_id=corpus_row.id).items()}
        stored = jobs_db.create_job(session, corpus_id=corpus_row.id, source=path.name, options=options,
                                    questions=_with_documents(questions, docs, corpus), tenant=tenant,
                                    keep_repeats=max_errors)
        errors.merge((InputError(f"custom_id {r.custom_id!r} repeats line {r.first_line}", source=str(path),
                                 line=r.line_number) for r in stored.repeated), count=stored.n_repeated)
        if strict and errors.count:
            raise InputError(f"{errors.count} invalid rows (--strict); first: {errors.kept[0]}")
        if not stored.total:
            first = f"; first error: {errors.kept[0]}" if errors.kept else ""
            raise InputError(f"no valid question{first}", source=str(path))
    stored_at = time.perf_counter()
    chunk = int(options.get("chunk_size") or settings.chunk_size)
    try:
        with session_scope(settings) as session:  # after the commit above: a worker finds every row it is sent
            ids = jobs_db.iter_question_ids(session, job_id=stored.id, to_enqueue=True)
            tasks = enqueue_questions(settings, question_ids=ids, chunk_size=chunk)
    except KombuOperationalError as exc:  # the job is stored: PostgreSQL, not the broker, is the source of truth
        raise ServiceError(
            f"job {stored.id} is stored ({stored.total} questions) but the broker cannot be reached "
            f"({' '.join(str(exc).split())}); the reconciler sends its questions once the broker and a worker are "
            f"back (within PAGEQA_REQUEUE_AFTER_SECONDS, {settings.requeue_after_seconds} s)"
        ) from None
    return Submitted(stored.id, stored.total, stored.duplicates, [str(e) for e in errors.kept], questions.notes,
                     errors.count, tasks, stored_at - start, time.perf_counter() - stored_at)


def _with_documents(questions: QuestionFile, docs: dict[str, int], corpus: str) -> Iterator[jobs_db.NewQuestion]:
    """The file's rows with their document filter resolved to an id; a row naming no document of the corpus is
    reported to the file's errors and left out."""
    for row in questions:
        doc_id = docs.get(row.document) if row.document else None
        if row.document and doc_id is None:
            questions.errors.add(InputError(f"document {row.document!r} is not in corpus {corpus!r}",
                                            source=str(questions.path), line=row.line))
            continue
        yield jobs_db.NewQuestion(row.custom_id, row.question, doc_id, row.line)


@dataclass(frozen=True)
class JobStatusView:
    """A job's status and per-status question counts."""

    job_id: str
    status: str
    total: int
    counts: dict[str, int]
    elapsed_s: float

    @property
    def done(self) -> int:
        """Questions that have ended, answered or failed."""
        return self.counts["answered"] + self.counts["failed"]

    @property
    def finished(self) -> bool:
        """Whether the job has reached a final status."""
        return self.status in ("completed", "failed", "cancelled")


def job_status(settings: Settings, *, job_id: str) -> JobStatusView:
    """The job's current status. Raises NotFoundError for an unknown id."""
    with session_scope(settings) as session:
        job = jobs_db.get_job(session, job_id=job_id)
        counts = jobs_db.status_counts(session, job_id=job_id)
        return JobStatusView(job.id, job.status.value, job.total, counts, jobs_db.elapsed_s(job))


def result_records(settings: Settings, *, job_id: str) -> Iterator[dict]:
    """One record per question in file order: ``custom_id``, status, answer or error, citations (document,
    1-based page, rank, scores), per-stage milliseconds and model ids."""
    with session_scope(settings) as session:
        jobs_db.get_job(session, job_id=job_id)
        rows = jobs_db.answered_questions(session, job_id=job_id)
        reused = jobs_db.reuse_sources(session, question_ids=[a.reused_from for _, a in rows if a and a.reused_from])
        for q, a in rows:
            record = {"custom_id": q.custom_id, "question": q.question, "status": q.status.value}
            if a is None:
                record["error"] = q.last_error
            else:
                record["answer"] = a.answer
                record["answer_kind"] = a.kind
                record["citations"] = [
                    {"document": c.page.document.source, "document_id": c.page.document_id,
                     "page": c.page.page_number, "rank": c.rank, "lanes": list(c.lanes),
                     "retrieval_score": round(c.retrieval_score, 4), "rerank_score": round(c.rerank_score, 4)}
                    for c in a.citations
                ]
                evidence = next((c.page for c in a.citations if c.page_id == a.evidence_page_id), None)
                if evidence is not None:
                    record["evidence"] = {"document": evidence.document.source, "page": evidence.page_number}
                record["timings_ms"] = {"retrieve": round(a.retrieve_ms, 2), "rerank": round(a.rerank_ms, 2),
                                        "generate": round(a.generate_ms, 2)}
                record["models"] = {"retriever": a.retriever_model, "reranker": a.reranker_model,
                                    "generator": a.generator_model}
                if a.reused_from is not None:
                    record["reused_from"] = reused.get(a.reused_from)
            yield record


#: First characters that make a spreadsheet read a cell as a formula (OWASP, "CSV Injection").
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value):
    """A CSV cell that a spreadsheet shows as text: strings starting like a formula get a leading apostrophe."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


CSV_FIELDS = ["custom_id", "question", "status", "answer", "error", "citations",
              "top_document", "top_page", "top_retrieval_score", "top_rerank_score",
              "retrieve_ms", "rerank_ms", "generate_ms"]


def to_jsonl(records: Iterator[dict]) -> Iterator[str]:
    """Results as JSON lines."""
    for r in records:
        yield json.dumps(r, ensure_ascii=False) + "\n"


def to_csv(records: Iterator[dict]) -> Iterator[str]:
    """Results as CSV rows; ``citations`` is ``document#page`` joined by ``;`` in rank order. Text cells that a
    spreadsheet would run as a formula (starting with ``= + - @``, tab or carriage return) are prefixed with ``'``."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS)
    writer.writeheader()
    for r in records:
        cites = r.get("citations") or []
        top = cites[0] if cites else {}
        t = r.get("timings_ms") or {}
        writer.writerow({k: _cell(v) for k, v in {
            "custom_id": r["custom_id"], "question": r["question"], "status": r["status"],
            "answer": r.get("answer", ""), "error": r.get("error") or "",
            "citations": ";".join(f"{c['document']}#{c['page']}" for c in cites),
            "top_document": top.get("document", ""), "top_page": top.get("page", ""),
            "top_retrieval_score": top.get("retrieval_score", ""), "top_rerank_score": top.get("rerank_score", ""),
            "retrieve_ms": t.get("retrieve", ""), "rerank_ms": t.get("rerank", ""), "generate_ms": t.get("generate", ""),
        }.items()})
        yield buf.getvalue()
        buf.seek(0)
        buf.truncate()
