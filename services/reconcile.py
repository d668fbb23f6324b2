"""The reconciler. PostgreSQL is the source of truth, so whatever the broker or a worker lost is found there:
expired leases are retried or failed for good, queued questions whose task was sent long ago are sent again, and
jobs past their completion window expire. It runs at every worker start and as a beat task."""

from __future__ import annotations

import logging

from db import lifecycle
from db.engine import session_scope
from pageqa.settings import Settings
from worker.queue import enqueue_questions, waiting_tasks

log = logging.getLogger(__name__)


def run_reconciler(settings: Settings) -> int:
    """One pass (:func:`db.lifecycle.reconcile`), committed before its tasks are sent; returns the questions sent
    again. Stale queued questions are sent again only when no message waits in the worker queue."""
    idle = waiting_tasks(settings) == 0
    with session_scope(settings) as session:
        done = lifecycle.reconcile(session, max_attempts=settings.max_attempts,
                                   requeue_after_s=settings.requeue_after_seconds, resend_stale=idle)
    if done.requeue:
        enqueue_questions(settings, question_ids=done.requeue, chunk_size=settings.chunk_size)
    if done.requeue or done.failed:
        log.warning("reconciler: %d questions sent again, %d failed after %d attempts (jobs %s)",
                    len(done.requeue), len(done.failed), settings.max_attempts, ", ".join(done.job_ids))
    return len(done.requeue)
