"""The Celery app and queues, the embedded Redis, what a worker process keeps resident and its soft shutdown;
and the worker start-up (``start``, ``process``, ``python -m worker``), which is an entry point."""
