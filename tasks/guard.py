"""How tasks meet trouble: transient errors (retried as a whole), and the answering task's time budget and soft
shutdown.

Celery's solo pool (one GPU worker, one task at a time) enforces no time limit, and its warm shutdown waits for
the running task however long it takes. So the task checks for itself, before every micro-batch
(:meth:`models.batching.BatchLog.before_batch`), whether it ran past ``chunk_time_budget_seconds`` or the worker
was asked to stop; either stops the work at that boundary, and the task hands its unanswered questions back to the
queue (:func:`db.lifecycle.release`).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import psycopg
from sqlalchemy import exc as sa_exc

#: Errors that say a service is briefly unreachable (a PostgreSQL restart), not that the work is bad: a task retries
#: as a whole with backoff (answering takes its questions back: :func:`db.lifecycle.claim_questions`).
TRANSIENT = (sa_exc.OperationalError, sa_exc.InterfaceError, psycopg.OperationalError, psycopg.InterfaceError)

_shutdown = threading.Event()


def one_line(exc: BaseException) -> str:
    """``"<ExceptionType>: <message>"`` on one line, as stored in ``last_error`` and ``index_error``."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class ChunkStopped(Exception):
    """The answering task stopped between two micro-batches; its unanswered questions must be handed back."""


class TimeBudgetExceeded(ChunkStopped):
    """The task ran past ``chunk_time_budget_seconds``: its questions are retried one per task (attempt counted)."""


class ShutdownRequested(ChunkStopped):
    """The worker received SIGTERM (or SIGINT/SIGQUIT): its questions are sent again at once (attempt refunded)."""


def request_shutdown() -> None:
    """Ask the running task to stop at its next micro-batch (called from Celery's ``worker_shutting_down``)."""
    _shutdown.set()


@dataclass
class Guard:
    """The limits of one answering task: ``budget_s`` seconds of wall time from its creation, and no shutdown."""

    budget_s: float
    start: float = field(default_factory=time.monotonic)

    def check(self) -> None:
        """Raise if the task must stop now.

        Raises:
            ShutdownRequested: the worker is shutting down.
            TimeBudgetExceeded: more than ``budget_s`` seconds passed since the task started.
        """
        if _shutdown.is_set():
            raise ShutdownRequested("the worker is shutting down")
        elapsed = time.monotonic() - self.start
        if elapsed > self.budget_s:
            raise TimeBudgetExceeded(f"the chunk ran {elapsed:.1f} s, over its time budget of {self.budget_s:g} s")
