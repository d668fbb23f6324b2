"""The services pageqa runs on: start (or reuse) PostgreSQL and Redis and bring the schema up to date, once per
process, before any command, demo, benchmark or test touches them."""

from __future__ import annotations

from pageqa.settings import Settings

_prepared = False


def prepare(settings: Settings) -> None:
    """Start (or reuse) the embedded services that ``settings`` name (none when ``PAGEQA_DATABASE_URL`` and
    ``PAGEQA_BROKER_URL`` point elsewhere) and apply the Alembic migrations; once per process.

    Raises:
        ServiceError: the embedded PostgreSQL or redis-server cannot be started.
    """
    global _prepared
    if _prepared:
        return
    # Imported here: every command imports this module, and most never start a service.
    from db.engine import migrate
    from worker.app import resolve_broker_url

    resolve_broker_url(settings)
    migrate(settings)
    _prepared = True
