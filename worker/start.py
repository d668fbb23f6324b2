"""Worker start-up: one Celery worker process per GPU (solo pool, concurrency 1), models loaded before the first
task and kept resident."""

from __future__ import annotations

import logging
import os
import socket

from celery.signals import worker_init

log = logging.getLogger(__name__)


def pin_gpu(gpu: int | None) -> None:
    """Make only GPU ``gpu`` visible to this process (it becomes ``cuda:0``); must run before torch loads CUDA."""
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu)


def run_worker(*, gpu: int | None, loglevel: str = "INFO") -> None:
    """Run a Celery worker in this process until it is stopped (SIGTERM: warm shutdown after the current task)."""
    from pageqa.settings import get_settings
    from worker.app import get_app

    settings = get_settings()
    app = get_app(settings)
    name = f"gpu{gpu}@{socket.gethostname()}" if gpu is not None else f"{settings.device}-{os.getpid()}@{socket.gethostname()}"
    app.worker_main([
        "worker", "--pool=solo", "--concurrency=1", "--prefetch-multiplier=1", "--without-gossip",
        "--without-mingle", f"--loglevel={loglevel}", f"--hostname={name}", f"--queues={settings.worker_queue}",
    ])


@worker_init.connect
def _load_models(**_kwargs) -> None:
    from pageqa.settings import get_settings
    from worker import resident

    resident.pipeline(get_settings())
