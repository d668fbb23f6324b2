"""Probes of what pageqa runs on, for ``GET /v1/health``: the database, the broker and the Celery workers."""

from __future__ import annotations

from sqlalchemy import text

from db.engine import session_scope
from pageqa.settings import Settings
from worker.app import get_app


class Probes:
    """One health check's probes. Each raises whatever its client raises when the dependency does not answer.

    Raises:
        ConfigError, ServiceError: from :func:`worker.app.get_app`, at construction (before any probe runs).
    """

    def __init__(self, settings: Settings):
        self.settings, self.app = settings, get_app(settings)

    def database(self) -> None:
        """Run ``SELECT 1`` in PostgreSQL."""
        with session_scope(self.settings) as session:
            session.execute(text("SELECT 1"))

    def broker(self) -> None:
        """Open a connection to the broker (Redis): one retry, 2 s timeout."""
        with self.app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)

    def worker_names(self, *, timeout_s: float) -> list[str]:
        """The names of the Celery workers that answer a ping within ``timeout_s`` seconds, sorted."""
        return sorted(name for reply in self.app.control.ping(timeout=timeout_s) or [] for name in reply)
