"""The services pageqa runs on: start (or reuse) PostgreSQL and Redis and bring the schema up to date, once per
process, before any command, demo, benchmark or test touches them; stop the embedded ones; say where they are."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pageqa.errors import ServiceError
from pageqa.settings import Settings

if TYPE_CHECKING:
    from db.embedded import ServerSetting

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


def migrate(settings: Settings) -> None:
    """Apply the Alembic migrations to the database ``settings`` name (idempotent), without starting Redis.

    Raises:
        ServiceError: the embedded PostgreSQL cannot be started.
    """
    from db.engine import migrate as upgrade

    upgrade(settings)


@dataclass(frozen=True)
class ServiceState:
    """Where a service is: ``name`` (``postgres``, ``redis``), ``external`` (a URL in the settings) or embedded,
    whether an embedded one is ``running``, and ``where`` (the external host part, or the data folder or socket).
    For the running embedded PostgreSQL, ``settings`` are the server settings pageqa sizes (:mod:`pageqa.pg_tuning`)
    as the server reports them, or ``problem`` says why they could not be read."""

    name: str
    external: bool
    running: bool
    where: str
    settings: tuple[ServerSetting, ...] = ()
    problem: str = ""


def service_states(settings: Settings) -> list[ServiceState]:
    """PostgreSQL's state, then Redis's; an external service is reported from its URL (after any ``user@``),
    never contacted; the running embedded PostgreSQL is asked for its server settings."""
    from db import embedded
    from worker import broker

    home = settings.home_dir
    if settings.database_url:
        postgres = ServiceState("postgres", True, True, settings.database_url.split("@")[-1])
    elif embedded.is_running(home):
        try:
            found, problem = tuple(embedded.server_settings(home)), ""
        except ServiceError as exc:  # e.g. still starting up
            found, problem = (), str(exc)
        postgres = ServiceState("postgres", False, True, str(embedded.pgdata_dir(home)), found, problem)
    else:
        postgres = ServiceState("postgres", False, False, str(embedded.pgdata_dir(home)))
    if settings.broker_url:
        redis = ServiceState("redis", True, True, settings.broker_url.split("@")[-1])
    else:
        redis = ServiceState("redis", False, broker.is_running(home), str(broker.socket_path(home)))
    return [postgres, redis]


def stop_embedded(settings: Settings) -> dict[str, bool]:
    """Stop the embedded Redis, then the embedded PostgreSQL (their data stays under ``PAGEQA_HOME``); whether
    each was running, by name (``redis-server``, ``postgres``)."""
    from db import embedded
    from worker import broker

    home = settings.home_dir
    return {"redis-server": broker.stop(home), "postgres": embedded.stop(home)}
