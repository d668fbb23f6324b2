"""What one answering task records about its work: the ``chunk_runs`` row of each job's share of a chunk (queue
wait, micro-batch sizes, stage milliseconds, peak GPU memory) and the worker it ran on."""

from __future__ import annotations

import os
import socket
import time

from db import answers as answers_db
from models.batching import BatchLog
from pageqa.settings import Settings


def worker_id() -> str:
    """This worker process as it appears in ``questions.worker`` and ``chunk_runs.worker``: ``hostname:pid``."""
    return f"{socket.gethostname()}:{os.getpid()}"


class ChunkRun:
    """Instrumentation of one job's share of a chunk: started when created, written by :meth:`record`. Stage
    times are sums over the job's answered questions, in milliseconds; ``batches`` records each micro-batch as it
    ran (after any out-of-memory halving)."""

    def __init__(self, settings: Settings, job_id: str, n_questions: int, queue_wait_ms: float | None):
        self.settings, self.job_id, self.n = settings, job_id, n_questions
        self.queue_wait_ms, self.start = queue_wait_ms, time.perf_counter()
        self.device, self.cuda = settings.device, False
        self.batches, self.n_reused = BatchLog(), 0
        self.stage_ms = {"retrieve": 0.0, "rerank": 0.0, "generate": 0.0}

    def on_device(self, device) -> None:
        """The pipeline's ``torch.device``; on CUDA the peak-memory counter starts here."""
        import torch

        self.device, self.cuda = device, device.type == "cuda"
        if self.cuda:
            torch.cuda.reset_peak_memory_stats(device)

    def add(self, **stage_ms: float) -> None:
        """Add milliseconds to stages (``retrieve``, ``rerank``, ``generate``) of answered questions."""
        for stage, ms in stage_ms.items():
            self.stage_ms[stage.removesuffix("_ms")] += ms

    def record(self, session, *, error: str | None = None) -> None:
        """Write the ``chunk_runs`` row: micro-batch sizes as run (after any out-of-memory halving), stage
        milliseconds summed over the answered questions, total milliseconds from claim to now, peak GPU bytes on
        CUDA, and the first error of the chunk."""
        import torch

        answers_db.record_chunk_run(
            session, job_id=self.job_id, worker=worker_id(), device=str(self.device),
            n_questions=self.n, n_reused=self.n_reused, queue_wait_ms=self.queue_wait_ms,
            batch_sizes=self.batches.as_record(),
            retrieve_ms=self.stage_ms["retrieve"], rerank_ms=self.stage_ms["rerank"],
            generate_ms=self.stage_ms["generate"], total_ms=(time.perf_counter() - self.start) * 1e3,
            peak_gpu_bytes=torch.cuda.max_memory_allocated(self.device) if self.cuda else None, error=error,
        )
