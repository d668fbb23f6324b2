"""Sending tasks by name, so the CLI and the API never import the model code. Only ids travel through the broker."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from itertools import islice

from pageqa.settings import Settings
from worker.app import get_app

INDEX_PAGES = "pageqa.index_pages"
ANSWER_CHUNK = "pageqa.answer_chunk"
RECONCILE = "pageqa.reconcile"
NIGHTLY_REPORT = "pageqa.nightly_report"


def _chunks(ids: Iterable[int], size: int) -> Iterator[list[int]]:
    it = iter(ids)
    while chunk := list(islice(it, size)):
        yield chunk


def enqueue_indexing(settings: Settings, *, page_ids: Iterable[int]) -> int:
    """Queue page indexing (OCR, passages, multi-vectors) in tasks of ``embed_task_pages`` pages; returns the
    number of tasks."""
    app = get_app(settings)
    sent = 0
    for chunk in _chunks(page_ids, settings.embed_task_pages):
        app.send_task(INDEX_PAGES, args=[chunk], queue=settings.worker_queue)
        sent += 1
    return sent


#: Job priorities: 0 (runs last) to 9 (runs first).
DEFAULT_PRIORITY, MAX_PRIORITY = 5, 9


def broker_priority(priority: int | None) -> int:
    """The kombu message priority of a job priority (0–9, higher first; None: the default). Kombu's Redis
    transport serves priority 0 first, so the scale is reversed; messages sent without one (page indexing, the
    reconciler's re-sends) count as 0 there and run before any job's."""
    return MAX_PRIORITY - (DEFAULT_PRIORITY if priority is None else priority)


def enqueue_questions(
    settings: Settings, *, question_ids: Iterable[int], chunk_size: int, priority: int | None = None,
    countdown: float = 0.0,
) -> int:
    """Queue questions already committed as ``queued`` in answering tasks of ``chunk_size`` at the job's
    ``priority`` (:func:`broker_priority`), due in ``countdown`` seconds; returns tasks sent.

    ``question_ids`` may be a stream (:func:`db.jobs.iter_question_ids`): it is read one chunk at a time. Each
    task carries the time it becomes due (Unix seconds) so the worker can record the queue wait.
    """
    app = get_app(settings)
    sent = 0
    for chunk in _chunks(question_ids, chunk_size):
        app.send_task(ANSWER_CHUNK, args=[chunk], kwargs={"enqueued_at": time.time() + countdown},
                      countdown=countdown or None, queue=settings.worker_queue, priority=broker_priority(priority))
        sent += 1
    return sent


def waiting_tasks(settings: Settings) -> int:
    """Messages waiting in the worker queue, not yet delivered to any worker (0 when the broker has no such queue:
    Redis drops an empty list, and a restarted Redis has none)."""
    from kombu.exceptions import ChannelError

    with get_app(settings).connection_for_write() as conn:
        try:
            return conn.default_channel.queue_declare(queue=settings.worker_queue, passive=True).message_count
        except ChannelError:
            return 0
