"""Task: answer a chunk of questions through the resident pipeline and write answers with citations."""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Sequence

from PIL import Image

from db import corpus as corpus_db
from db import jobs as jobs_db
from db.engine import session_scope
from models.images import decode_image
from models.pipeline import ChunkQuestion, Options
from pageqa.settings import Settings, get_settings
from tasks.enqueue import ANSWER_CHUNK
from tasks.retrieval import retrieve
from worker import resident
from worker.app import app

log = logging.getLogger(__name__)


@app.task(name=ANSWER_CHUNK)
def answer_chunk(question_ids: list[int], enqueued_at: float | None = None) -> int:
    """Answer the still-queued questions among ``question_ids``; returns answers written.

    The questions are claimed (``running``) in one transaction, answered with one batched call per stage, and
    each answer is written with its citations and state change; a model error marks those questions ``failed``
    with the error, and a job is completed once none of its questions is left. Each job's share of the chunk is
    recorded in ``chunk_runs`` (queue wait from ``enqueued_at``, Unix seconds, when the sender gave it).
    """
    settings = get_settings()
    queue_wait_ms = None if enqueued_at is None else max(0.0, (time.time() - enqueued_at) * 1e3)
    with session_scope(settings) as session:
        claimed = jobs_db.claim_questions(session, ids=question_ids)
        by_job: dict[str, list[ChunkQuestion]] = {}
        for q in claimed:
            by_job.setdefault(q.job_id, []).append(ChunkQuestion(q.id, q.question, q.document_id))
        jobs = {job_id: jobs_db.get_job(session, job_id=job_id) for job_id in by_job}
    return sum(
        _answer(settings, job_id, jobs[job_id].corpus_id, job_options(settings, jobs[job_id].options), questions,
                queue_wait_ms=queue_wait_ms)
        for job_id, questions in by_job.items()
    )


def _answer(
    settings: Settings, job_id: str, corpus_id: int, options: Options, questions: list[ChunkQuestion], *,
    queue_wait_ms: float | None,
) -> int:
    run = _ChunkRun(settings, job_id, len(questions), queue_wait_ms)
    try:
        pipe = resident.pipeline(settings)
        run.on_device(pipe.device)
        t0 = time.perf_counter()
        retrieved = retrieve(settings, pipe, corpus_id=corpus_id, questions=questions, options=options)
        retrieve_ms = (time.perf_counter() - t0) * 1e3 / len(questions)
        answers = pipe.answer_chunk(
            questions, [r.fused for r in retrieved], options=options,
            load_images=lambda ids: _images(settings, ids), load_texts=lambda ids: _texts(settings, ids),
        )
    except Exception as exc:  # any model or data error fails these questions, never the worker
        log.exception("chunk of %d questions of %s failed", len(questions), job_id)
        with session_scope(settings) as session:
            jobs_db.record_failure(session, ids=[q.question_id for q in questions], error=_one_line(exc))
            jobs_db.finish_jobs(session, job_ids=[job_id])
            run.record(session, error=_one_line(exc))
        return 0
    written = 0
    with session_scope(settings) as session:
        for a, r in zip(answers, retrieved, strict=True):
            written += jobs_db.record_answer(session, new=jobs_db.NewAnswer(
                question_id=a.question_id, answer=a.answer, kind=a.kind, evidence_page_id=a.evidence_page_id,
                citations=[jobs_db.NewCitation(c.page_id, c.rank, c.retrieval_score, c.rerank_score, c.lanes)
                           for c in a.citations],
                lane_hits={**r.lanes, "fused": [(f.page_id, f.score) for f in r.fused]},
                **pipe.model_ids,
                retrieve_ms=retrieve_ms, rerank_ms=a.timings_ms["rerank"], generate_ms=a.timings_ms["generate"],
            ))
        jobs_db.finish_jobs(session, job_ids=[job_id])
        run.record(session, retrieve_ms=retrieve_ms * len(questions),
                   rerank_ms=sum(a.timings_ms["rerank"] for a in answers),
                   generate_ms=sum(a.timings_ms["generate"] for a in answers))
    return written


class _ChunkRun:
    """Instrumentation of one job's share of a chunk: started when created, written by :meth:`record`."""

    def __init__(self, settings: Settings, job_id: str, n_questions: int, queue_wait_ms: float | None):
        self.settings, self.job_id, self.n = settings, job_id, n_questions
        self.queue_wait_ms, self.start = queue_wait_ms, time.perf_counter()
        self.device, self.cuda = settings.device, False

    def on_device(self, device) -> None:
        """The pipeline's ``torch.device``; on CUDA the peak-memory counter starts here."""
        import torch

        self.device, self.cuda = device, device.type == "cuda"
        if self.cuda:
            torch.cuda.reset_peak_memory_stats(device)

    def record(self, session, *, retrieve_ms: float = 0.0, rerank_ms: float = 0.0, generate_ms: float = 0.0,
               error: str | None = None) -> None:
        import torch

        s = self.settings
        jobs_db.record_chunk_run(
            session, job_id=self.job_id, worker=f"{socket.gethostname()}:{os.getpid()}", device=str(self.device),
            n_questions=self.n, queue_wait_ms=self.queue_wait_ms,
            batch_sizes={"query": s.query_batch_size, "rerank": s.rerank_batch_size,
                         "generate": s.generate_batch_size},
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
