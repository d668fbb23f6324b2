"""Worker start-up: one Celery worker process per GPU (solo pool, concurrency 1), models loaded before the first
task and kept resident; and the control worker of the beat service, which schedules and runs the reconciler
without loading any model."""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path

from celery.signals import worker_init, worker_ready, worker_shutting_down

from pageqa.errors import ConfigError
from pageqa.settings import Settings

log = logging.getLogger(__name__)

# Set by run_control before the worker starts: the control worker runs only the reconciler (PostgreSQL and Redis),
# and loading the models there would hold a GPU's worth of weights in the beat container for nothing.
_control_only = False


def pin_gpu(gpu: int | None) -> None:
    """Make only GPU ``gpu`` visible to this process (it becomes ``cuda:0``); must run before torch loads CUDA."""
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu)


def worker_argv(*, hostname: str, queues: list[str], loglevel: str, schedule: Path | None = None) -> list[str]:
    """Celery ``worker`` arguments: solo pool, one task at a time, consuming ``queues``; with ``schedule`` (the
    beat state file) the beat scheduler runs in the same process."""
    return [
        "worker", "--pool=solo", "--concurrency=1", "--prefetch-multiplier=1", "--without-gossip",
        "--without-mingle", f"--loglevel={loglevel}", f"--hostname={hostname}", f"--queues={','.join(queues)}",
        *(["--beat", f"--schedule={schedule}"] if schedule is not None else []),
    ]


def control_argv(settings: Settings, *, loglevel: str = "INFO") -> list[str]:
    """The control worker's arguments: only the control queue, with the beat scheduler."""
    from worker.app import control_queue

    return worker_argv(hostname=f"control@{socket.gethostname()}", queues=[control_queue(settings)],
                       loglevel=loglevel, schedule=settings.home_dir / "celerybeat-schedule")


def run_worker(*, gpu: int | None, loglevel: str = "INFO", beat: bool = False) -> None:
    """Run a Celery worker in this process until it is stopped (SIGTERM: the running chunk stops at its next
    micro-batch and hands its questions back, then the worker exits);
    ``beat`` also runs the beat scheduler in it (the reconciler every ``reconcile_every_seconds``): give exactly one
    worker of a deployment ``--beat``, or run :func:`run_control` instead."""
    from pageqa.settings import get_settings
    from worker.app import control_queue, get_app

    settings = get_settings()
    app = get_app(settings)
    queues = [settings.worker_queue, control_queue(settings)] if beat else [settings.worker_queue]
    name = f"gpu{gpu}@{socket.gethostname()}" if gpu is not None else f"{settings.device}-{os.getpid()}@{socket.gethostname()}"
    app.worker_main(worker_argv(hostname=name, queues=queues, loglevel=loglevel,
                                schedule=settings.home_dir / "celerybeat-schedule" if beat else None))


def start_worker(*, gpu: int | None = None, device: str | None = None, loglevel: str = "INFO",
                 beat: bool = False) -> None:
    """``pageqa worker`` and ``python -m worker``: pin GPU ``gpu`` (it becomes ``cuda``) or run on ``device``,
    start (or reuse) the services, then :func:`run_worker` until stopped.

    The device goes through ``PAGEQA_DEVICE`` because the worker's signal handlers and tasks read the process
    settings (:func:`pageqa.settings.get_settings`), which are read again after it is set.

    Raises:
        ConfigError: both ``gpu`` and a device other than ``cuda``.
    """
    from pageqa.settings import get_settings
    from services.runtime import prepare

    if gpu is not None and device is not None and device != "cuda":
        raise ConfigError("use either --gpu N or --device, not both")
    pin_gpu(gpu)
    if device is not None:
        os.environ["PAGEQA_DEVICE"] = device
    elif gpu is not None:
        os.environ["PAGEQA_DEVICE"] = "cuda"
    get_settings.cache_clear()
    prepare(get_settings())
    run_worker(gpu=gpu, loglevel=loglevel, beat=beat)


def run_control(*, loglevel: str = "INFO") -> None:
    """Run the control worker in this process until it is stopped: the beat scheduler and a worker consuming only
    the control queue (the reconciler every ``reconcile_every_seconds``), solo pool, no models loaded. Run exactly
    one per deployment (the compose ``beat`` service), and no GPU worker with ``--beat`` beside it."""
    global _control_only
    from pageqa.settings import get_settings
    from worker.app import get_app

    settings = get_settings()
    settings.home_dir.mkdir(parents=True, exist_ok=True)  # the beat state file lives there
    app = get_app(settings)
    _control_only = True
    app.worker_main(control_argv(settings, loglevel=loglevel))


@worker_init.connect
def _load_models(**_kwargs) -> None:
    if _control_only:
        log.info("control worker: no models loaded")
        return
    from pageqa.settings import get_settings
    from worker import resident

    resident.pipeline(get_settings())


@worker_ready.connect
def _reconcile_at_start(**_kwargs) -> None:
    """A worker that starts after a crash finds the questions its predecessor held, without waiting for beat."""
    from pageqa.settings import get_settings
    from services.reconcile import run_reconciler

    try:
        run_reconciler(get_settings())
    except Exception:  # the worker must start even when the reconciler cannot run now; beat retries it
        log.exception("reconciler at worker start failed")


@worker_shutting_down.connect
def _stop_the_chunk(**_kwargs) -> None:
    """Soft shutdown: Celery's warm shutdown waits for the running task, so ask it to stop at its next micro-batch
    and hand its unanswered questions back (:mod:`services.guard`), instead of holding SIGTERM for a whole chunk."""
    from worker.shutdown import request_shutdown

    request_shutdown()
