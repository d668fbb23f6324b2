"""The limits of one answering task: its time budget and the worker's soft shutdown.

Celery's solo pool (one GPU worker, one task at a time) enforces no time limit, and its warm shutdown waits for
the running task however long it takes. So the task checks for itself, before every micro-batch
(:meth:`models.batching.BatchLog.before_batch`), whether it ran past ``chunk_time_budget_seconds`` or the worker
was asked to stop; either stops the work at that boundary, and the task hands its unanswered questions back to the
queue (:func:`db.lifecycle.release`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from worker.shutdown import shutdown_requested


class ChunkStopped(Exception):
    """The answering task stopped between two micro-batches; its unanswered questions must be handed back."""


class TimeBudgetExceeded(ChunkStopped):
    """The task ran past ``chunk_time_budget_seconds``: its questions are retried one per task (attempt counted)."""


class ShutdownRequested(ChunkStopped):
    """The worker received SIGTERM (or SIGINT/SIGQUIT): its questions are sent again at once (attempt refunded)."""


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
        if shutdown_requested():
            raise ShutdownRequested("the worker is shutting down")
        elapsed = time.monotonic() - self.start
        if elapsed > self.budget_s:
            raise TimeBudgetExceeded(f"the chunk ran {elapsed:.1f} s, over its time budget of {self.budget_s:g} s")
