"""Worker start-up: one Celery worker process per GPU (solo pool, concurrency 1), models loaded before the first
task and kept resident."""

from __future__ import annotations

import logging
import os
import socket

from celery.signals import worker_init, worker_ready, worker_shutting_down

log = logging.getLogger(__name__)


def pin_gpu(gpu: int | None) -> None:
    """Make only GPU ``gpu`` visible to this process (it becomes ``cuda:0``); must run before torch loads CUDA."""
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu)


def run_worker(*, gpu: int | None, loglevel: str = "INFO", beat: bool = False) -> None:
    """Run a Celery worker in this process until it is stopped (SIGTERM: the running chunk stops at its next
    micro-batch and hands its questions back, then the worker exits);
    ``beat`` also runs the beat scheduler in it (the reconciler every ``reconcile_every_seconds``): give exactly one
    worker of a deployment ``--beat``."""
    from pageqa.settings import get_settings
    from worker.app import control_queue, get_app

    settings = get_settings()
    app = get_app(settings)
    queues = [settings.worker_queue, control_queue(settings)] if beat else [settings.worker_queue]
    name = f"gpu{gpu}@{socket.gethostname()}" if gpu is not None else f"{settings.device}-{os.getpid()}@{socket.gethostname()}"
    app.worker_main([
        "worker", "--pool=solo", "--concurrency=1", "--prefetch-multiplier=1", "--without-gossip",
        "--without-mingle", f"--loglevel={loglevel}", f"--hostname={name}", f"--queues={','.join(queues)}",
        *(["--beat", f"--schedule={settings.home_dir / 'celerybeat-schedule'}"] if beat else []),
    ])


@worker_init.connect
def _load_models(**_kwargs) -> None:
    from pageqa.settings import get_settings
    from worker import resident

    resident.pipeline(get_settings())


@worker_ready.connect
def _reconcile_at_start(**_kwargs) -> None:
    """A worker that starts after a crash finds the questions its predecessor held, without waiting for beat."""
    from pageqa.settings import get_settings
    from tasks.reconcile import run_reconciler

    try:
        run_reconciler(get_settings())
    except Exception:  # the worker must start even when the reconciler cannot run now; beat retries it
        log.exception("reconciler at worker start failed")


@worker_shutting_down.connect
def _stop_the_chunk(**_kwargs) -> None:
    """Soft shutdown: Celery's warm shutdown waits for the running task, so ask it to stop at its next micro-batch
    and hand its unanswered questions back (:mod:`tasks.guard`), instead of holding SIGTERM for a whole chunk."""
    from tasks.guard import request_shutdown

    request_shutdown()
