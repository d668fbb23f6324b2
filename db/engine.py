"""Database URL resolution, the engine (one per process), sessions, and migrations.

With ``PAGEQA_DATABASE_URL`` unset, the embedded PostgreSQL under ``PAGEQA_HOME`` is started (or reused) on a
process's first use.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

from sqlalchemy import Engine, create_engine
from sqlalchemy.orm import Session, sessionmaker

from db import embedded
from pageqa.settings import Settings

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def resolve_database_url(settings: Settings) -> str:
    """``PAGEQA_DATABASE_URL`` if set, else the URL of the embedded server, started on this process's first use.

    The embedded URL is resolved once per process: a server stopped later is not started again behind the
    operator's back by whichever process next opens a session (connections are re-made once it is back, through
    the engine's pre-ping), and a unit of work does not pay the start check (3.7 ms, an admin connection).

    Raises:
        ServiceError: the embedded server cannot be started.
    """
    if settings.database_url:
        return settings.database_url
    return _embedded_url(settings.home_dir)


@lru_cache(maxsize=4)
def _embedded_url(home: Path) -> str:
    return embedded.start(home)


@lru_cache(maxsize=4)
def _engine_for(url: str) -> Engine:
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5)


def get_engine(settings: Settings) -> Engine:
    """The process-wide engine for ``settings`` (created once, pinged before each checkout)."""
    return _engine_for(resolve_database_url(settings))


@contextmanager
def session_scope(settings: Settings) -> Iterator[Session]:
    """A session for one unit of work: committed on success, rolled back on any exception."""
    factory = sessionmaker(bind=get_engine(settings), expire_on_commit=False)
    with factory() as session, session.begin():
        yield session


def psycopg_conninfo(settings: Settings) -> str:
    """The database URL as a libpq connection string for psycopg (no SQLAlchemy driver name)."""
    from sqlalchemy.engine import make_url

    url = make_url(resolve_database_url(settings)).set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


def migrate(settings: Settings, revision: str = "head") -> None:
    """Apply Alembic migrations up to ``revision`` (idempotent)."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["engine"] = get_engine(settings)
    command.upgrade(cfg, revision)
