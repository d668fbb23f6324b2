"""The Celery application: Redis carries task ids only; Postgres holds every state.

Configuration follows Celery's guide for long GPU tasks: late acknowledgement (a task is acknowledged after it
ran, so a lost worker's task is delivered again), prefetch multiplier 1 (a worker holds one task at a time), and a
Redis visibility timeout longer than any chunk may take (``visibility_timeout_seconds``, checked against the chunk
time budget and the lease when the settings load). Kombu reads the timeout from the transport options of whichever
process opens a channel, the submitting CLI and beat included, so every process builds its app here.
"""

from __future__ import annotations

from celery import Celery
from celery.schedules import crontab

from pageqa.errors import ConfigError
from pageqa.settings import Settings, get_settings
from worker import broker

app = Celery("pageqa", include=["tasks.embed", "tasks.answer", "tasks.reconcile", "tasks.report"])
_configured_for: str | None = None


def control_queue(settings: Settings) -> str:
    """The queue of the reconciler's beat tasks, consumed only by the worker started with ``--beat``."""
    return f"{settings.worker_queue}.control"


def report_schedule(settings: Settings) -> crontab:
    """Every day at ``report_time`` (HH:MM) in the app's time zone, which is ``report_timezone``."""
    hour, minute = settings.report_time.split(":")
    return crontab(hour=int(hour), minute=int(minute))


def resolve_broker_url(settings: Settings) -> str:
    """``PAGEQA_BROKER_URL`` if set, else the embedded redis-server's URL (started when needed).

    Raises:
        ServiceError: the embedded redis-server cannot be started.
    """
    return settings.broker_url or broker.start(settings.home_dir)


def get_app(settings: Settings | None = None) -> Celery:
    """The Celery app configured for ``settings`` (default: the process settings); configured once per process.

    Raises:
        ConfigError: the app was already configured for another broker in this process.
    """
    global _configured_for
    settings = settings or get_settings()
    url = resolve_broker_url(settings)
    if _configured_for is None:
        app.conf.update(
            broker_url=url,
            # Ten priority lists per queue, polled most urgent first (kombu's Redis priority emulation: 0 is the
            # most urgent there); job priorities map onto them in worker.queue.
            broker_transport_options={"visibility_timeout": settings.visibility_timeout_seconds,
                                      "queue_order_strategy": "priority", "priority_steps": list(range(10))},
            result_backend_transport_options={"visibility_timeout": settings.visibility_timeout_seconds},
            broker_connection_retry_on_startup=True,
            task_default_queue=settings.worker_queue,
            task_acks_late=True,
            task_ignore_result=True,
            task_serializer="json",
            accept_content=["json"],
            worker_prefetch_multiplier=1,
            worker_hijack_root_logger=False,
            worker_send_task_events=False,
            # On a cold shutdown (a second SIGTERM, SIGQUIT) Celery still signals and waits this long first; the
            # answering task stops at its next micro-batch and hands its questions back (services.answering).
            worker_soft_shutdown_timeout=30.0,
            # Crontab entries read the clock in this zone (Celery's documented way to schedule in local time); the
            # reconciler's interval does not depend on it, and messages still carry UTC times (enable_utc).
            timezone=settings.report_timezone,
            # The reconciler has a queue of its own, read by the --beat worker between chunks: behind a backlog of
            # answering tasks in the main queue it would wait for the whole backlog.
            beat_schedule={
                "reconcile": {"task": "pageqa.reconcile", "schedule": settings.reconcile_every_seconds,
                              "options": {"queue": control_queue(settings), "expires": 3600}},
                # The previous day's report; it may wait in the queue up to 12 h for a control worker.
                "nightly-report": {"task": "pageqa.nightly_report", "schedule": report_schedule(settings),
                                   "options": {"queue": control_queue(settings), "expires": 12 * 3600}},
            },
        )
        _configured_for = url
    elif _configured_for != url:
        raise ConfigError(f"the Celery app of this process already uses {_configured_for}, not {url}")
    return app
