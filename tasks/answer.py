"""Task: answer a chunk of questions through the resident pipeline and write answers with citations."""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import time
from collections.abc import Sequence

from PIL import Image

from db import corpus as corpus_db
from db import jobs as jobs_db
from db import lifecycle
from db.engine import session_scope
from db.schema import Job
from models.batching import BatchLog
from models.images import decode_image
from models.pipeline import ChunkQuestion, Options
from pageqa.settings import Settings, get_settings
from tasks.enqueue import ANSWER_CHUNK
from tasks.retrieval import retrieve
from tasks.reuse import dedup_key, settings_fingerprint
from worker import resident
from worker.app import app

log = logging.getLogger(__name__)


@app.task(name=ANSWER_CHUNK)
def answer_chunk(question_ids: list[int], enqueued_at: float | None = None) -> int:
    """Answer the still-queued questions among ``question_ids``; returns how many of them got an answer (by reuse too).

    The questions are claimed (``running``) in one transaction. Those with a reusable answer (same tenant, corpus,
    settings and normalised text within ``dedup_window_hours``; :mod:`tasks.reuse`) get a copy; the rest are
    answered with one batched call per stage, and each answer is written with its citations, its state change
    and the copies for its in-job duplicates. A model error marks those questions ``failed`` with the error, and
    a job is completed once none of its questions is left. Each job's share of the chunk is recorded in
    ``chunk_runs`` (queue wait from ``enqueued_at``, Unix seconds, when the sender gave it).
    """
    settings = get_settings()
    queue_wait_ms = None if enqueued_at is None else max(0.0, (time.time() - enqueued_at) * 1e3)
    with session_scope(settings) as session:
        claimed = lifecycle.claim_questions(
            session, ids=question_ids, worker=f"{socket.gethostname()}:{os.getpid()}",
            lease_s=settings.lease_seconds, max_attempts=settings.max_attempts,
        )
        by_job: dict[str, list[ChunkQuestion]] = {}
        for q in claimed:
            by_job.setdefault(q.job_id, []).append(ChunkQuestion(q.id, q.question, q.document_id))
        jobs = {job_id: jobs_db.get_job(session, job_id=job_id) for job_id in by_job}
    return sum(
        _answer(settings, jobs[job_id], questions, queue_wait_ms=queue_wait_ms) for job_id, questions in by_job.items()
    )


def _answer(settings: Settings, job: Job, questions: list[ChunkQuestion], *, queue_wait_ms: float | None) -> int:
    options = job_options(settings, job.options)
    run = _ChunkRun(settings, job.id, len(questions), queue_wait_ms)
    try:
        pipe = resident.pipeline(settings)
        run.on_device(pipe.device)
        keys, reused = _reuse(settings, pipe, job, options, questions)
        run.n_reused = len(reused)
        todo = [q for q in questions if q.question_id not in reused]
        t0 = time.perf_counter()
        retrieved = retrieve(settings, pipe, corpus_id=job.corpus_id, questions=todo, options=options,
                             batch_log=run.batches) if todo else []
        retrieve_ms = (time.perf_counter() - t0) * 1e3 / max(len(todo), 1)
        cache = resident.page_images(settings)
        answers = pipe.answer_chunk(
            todo, [r.fused for r in retrieved], options=options, batch_log=run.batches,
            load_images=lambda ids: cache.get_many(ids, lambda missing: _images(settings, missing)),
            load_texts=lambda ids: _texts(settings, ids),
        ) if todo else []
    except Exception as exc:  # any model or data error fails these questions, never the worker
        log.exception("chunk of %d questions of %s failed", len(questions), job.id)
        with session_scope(settings) as session:
            lifecycle.record_failure(session, ids=[q.question_id for q in questions], error=_one_line(exc))
            lifecycle.finish_jobs(session, job_ids=[job.id])
            run.record(session, error=_one_line(exc))
        return 0
    written = len(reused)
    with session_scope(settings) as session:
        for a, r in zip(answers, retrieved, strict=True):
            written += jobs_db.record_answer(session, new=jobs_db.NewAnswer(
                question_id=a.question_id, answer=a.answer, kind=a.kind, evidence_page_id=a.evidence_page_id,
                citations=[jobs_db.NewCitation(c.page_id, c.rank, c.retrieval_score, c.rerank_score, c.lanes)
                           for c in a.citations],
                lane_hits={**r.lanes, "fused": [(f.page_id, f.score) for f in r.fused]},
                **pipe.model_ids, dedup_key=keys[a.question_id],
                retrieve_ms=retrieve_ms, rerank_ms=a.timings_ms["rerank"], generate_ms=a.timings_ms["generate"],
            ))
        lifecycle.finish_jobs(session, job_ids=[job.id])
        run.record(session, retrieve_ms=retrieve_ms * len(todo),
                   rerank_ms=sum(a.timings_ms["rerank"] for a in answers),
                   generate_ms=sum(a.timings_ms["generate"] for a in answers))
    return written


def _reuse(
    settings: Settings, pipe, job: Job, options: Options, questions: list[ChunkQuestion]
) -> tuple[dict[int, str], set[int]]:
    """Each question's dedup key, and the questions that got a copy of an earlier answer with the same key (model
    answers no older than ``dedup_window_hours``; 0 turns reuse across jobs off)."""
    fingerprint = settings_fingerprint(settings, model_ids=pipe.model_ids, options=options)
    with session_scope(settings) as session:
        version = corpus_db.corpus_version(session, corpus_id=job.corpus_id)
        keys = {q.question_id: dedup_key(tenant=job.tenant, corpus_id=job.corpus_id, corpus_version=version,
                                         document_id=q.document_id, question=q.text, fingerprint=fingerprint)
                for q in questions}
        if settings.dedup_window_hours <= 0:
            return keys, set()
        since = dt.datetime.now(dt.UTC) - dt.timedelta(hours=settings.dedup_window_hours)
        sources = jobs_db.find_reusable(session, keys=list(keys.values()), since=since)
        reused: set[int] = set()
        for qid, key in keys.items():
            if key in sources and qid not in reused:
                copied = jobs_db.copy_answer(session, source_question_id=sources[key], question_ids=[qid])
                reused.update(q for q in copied if q in keys)
    if reused:
        log.info("%s: %d of %d questions answered by reuse", job.id, len(reused), len(questions))
    return keys, reused


class _ChunkRun:
    """Instrumentation of one job's share of a chunk: started when created, written by :meth:`record`."""

    def __init__(self, settings: Settings, job_id: str, n_questions: int, queue_wait_ms: float | None):
        self.settings, self.job_id, self.n = settings, job_id, n_questions
        self.queue_wait_ms, self.start = queue_wait_ms, time.perf_counter()
        self.device, self.cuda = settings.device, False
        self.batches, self.n_reused = BatchLog(), 0

    def on_device(self, device) -> None:
        """The pipeline's ``torch.device``; on CUDA the peak-memory counter starts here."""
        import torch

        self.device, self.cuda = device, device.type == "cuda"
        if self.cuda:
            torch.cuda.reset_peak_memory_stats(device)

    def record(self, session, *, retrieve_ms: float = 0.0, rerank_ms: float = 0.0, generate_ms: float = 0.0,
               error: str | None = None) -> None:
        """Write the ``chunk_runs`` row: micro-batch sizes as run (after any out-of-memory halving), stage
        milliseconds summed over the chunk, total milliseconds from claim to now, peak GPU bytes on CUDA."""
        import torch

        jobs_db.record_chunk_run(
            session, job_id=self.job_id, worker=f"{socket.gethostname()}:{os.getpid()}", device=str(self.device),
            n_questions=self.n, n_reused=self.n_reused, queue_wait_ms=self.queue_wait_ms,
            batch_sizes=self.batches.as_record(),
            retrieve_ms=retrieve_ms, rerank_ms=rerank_ms, generate_ms=generate_ms,
            total_ms=(time.perf_counter() - self.start) * 1e3,
            peak_gpu_bytes=torch.cuda.max_memory_allocated(self.device) if self.cuda else None, error=error,
        )


def job_options(settings: Settings, raw: dict) -> Options:
    """A job's stored options over the settings' defaults."""
    return Options(
        lanes=tuple(raw.get("lanes") or settings.lanes),
        retrieve_top_k=int(raw.get("retrieve_top_k") or settings.retrieve_top_k),
        rerank_top_k=int(raw.get("rerank_top_k") or settings.rerank_top_k),
        max_new_tokens=int(raw.get("max_new_tokens") or settings.max_new_tokens),
    )


def _images(settings: Settings, page_ids: Sequence[int]) -> dict[int, Image.Image]:
    with session_scope(settings) as session:
        return {p.id: decode_image(p.image) for p in corpus_db.load_pages(session, page_ids=page_ids)}


def _texts(settings: Settings, page_ids: Sequence[int]) -> dict[int, str]:
    with session_scope(settings) as session:
        return corpus_db.page_texts(session, page_ids=page_ids)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
