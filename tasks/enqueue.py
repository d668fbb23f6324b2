"""Sending tasks by name, so the CLI never imports the model code. Only ids travel through the broker."""

from __future__ import annotations

import time
from collections.abc import Sequence

from pageqa.settings import Settings
from worker.app import get_app

INDEX_PAGES = "pageqa.index_pages"
ANSWER_CHUNK = "pageqa.answer_chunk"
RECONCILE = "pageqa.reconcile"


def _chunks(ids: Sequence[int], size: int) -> list[list[int]]:
    return [list(ids[i : i + size]) for i in range(0, len(ids), size)]


def enqueue_indexing(settings: Settings, *, page_ids: Sequence[int]) -> int:
    """Queue page indexing (OCR, passages, multi-vectors) in tasks of ``embed_task_pages`` pages; returns the
    number of tasks."""
    app = get_app(settings)
    chunks = _chunks(page_ids, settings.embed_task_pages)
    for chunk in chunks:
        app.send_task(INDEX_PAGES, args=[chunk], queue=settings.worker_queue)
    return len(chunks)


def enqueue_questions(settings: Settings, *, question_ids: Sequence[int], chunk_size: int) -> int:
    """Queue questions in chunks of ``chunk_size`` (call only after the job's rows committed); returns tasks sent.

    Each task carries its enqueue time (Unix seconds) so the worker can record the queue wait.
    """
    app = get_app(settings)
    chunks = _chunks(question_ids, chunk_size)
    for chunk in chunks:
        app.send_task(ANSWER_CHUNK, args=[chunk], kwargs={"enqueued_at": time.time()}, queue=settings.worker_queue)
    return len(chunks)
