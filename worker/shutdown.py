"""The worker's soft-shutdown flag: set from Celery's ``worker_shutting_down`` signal (:mod:`worker.start`), read
by the answering task before each micro-batch (:class:`services.guard.Guard`)."""

from __future__ import annotations

import threading

_shutdown = threading.Event()


def request_shutdown() -> None:
    """Ask the running task to stop at its next micro-batch."""
    _shutdown.set()


def shutdown_requested() -> bool:
    """Whether this worker process was asked to stop."""
    return _shutdown.is_set()
