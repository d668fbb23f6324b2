"""Database URL resolution, the engine (one per process), sessions, and migrations.

With ``PAGEQA_DATABASE_URL`` unset, the embedded PostgreSQL under ``PAGEQA_HOME`` is started (or reused) on a
process's first use.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

import psycopg
from sqlalchemy import Engine, create_engine
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session, sessionmaker

from db import embedded
from pageqa.settings import Settings

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"

#: Errors that say the database is briefly unreachable (a PostgreSQL restart), not that the work is bad: a task
#: retries as a whole with backoff (answering takes its questions back: :func:`db.lifecycle.claim_questions`).
TRANSIENT = (sa_exc.OperationalError, sa_exc.InterfaceError, psycopg.OperationalError, psycopg.InterfaceError)


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
    return _embedded_url(settings.home_dir, tuple(settings.pg_parameters().items()))


@lru_cache(maxsize=4)
def _embedded_url(home: Path, parameters: tuple[tuple[str, str], ...]) -> str:
    return embedded.start(home, dict(parameters))


def connect_params(settings: Settings, url: str) -> dict[str, int]:
    """libpq parameters that bound every wait on a PostgreSQL server the network lost, in libpq's units: the
    connection attempt (``connect_timeout``, seconds), and a request or an idle connection whose server stopped
    acknowledging (``tcp_user_timeout``, milliseconds, with keepalives so a connection waiting for a reply notices
    too). A busy server still acknowledges, so a long statement is never cut. Without them a request waits for the
    kernel's TCP retries (about 15 minutes) or SYN retries (about 2 minutes). Parameters the URL itself sets are
    left to it; libpq ignores these on a Unix socket."""
    from sqlalchemy.engine import make_url

    lost = settings.database_unreachable_seconds
    params = {"connect_timeout": settings.database_connect_timeout_seconds, "keepalives": 1,
              "keepalives_idle": max(1, lost // 2), "keepalives_interval": max(1, lost // 6), "keepalives_count": 3,
              "tcp_user_timeout": lost * 1000}
    given = make_url(url).query
    return {k: v for k, v in params.items() if k not in given}


@lru_cache(maxsize=4)
def _engine_for(url: str, params: tuple[tuple[str, int], ...]) -> Engine:
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5, connect_args=dict(params))


def get_engine(settings: Settings) -> Engine:
    """The process-wide engine for ``settings`` (created once, pinged before each checkout; waits on a lost server
    bounded by :func:`connect_params`)."""
    url = resolve_database_url(settings)
    return _engine_for(url, tuple(connect_params(settings, url).items()))


@contextmanager
def session_scope(settings: Settings) -> Iterator[Session]:
    """A session for one unit of work: committed on success, rolled back on any exception."""
    factory = sessionmaker(bind=get_engine(settings), expire_on_commit=False)
    with factory() as session, session.begin():
        yield session


def psycopg_conninfo(settings: Settings) -> str:
    """The database URL as a libpq connection string for psycopg (no SQLAlchemy driver name), with the
    :func:`connect_params` that bound waits on a lost server."""
    from sqlalchemy.engine import make_url

    raw = resolve_database_url(settings)
    url = make_url(raw).set(drivername="postgresql")
    url = url.update_query_dict({k: str(v) for k, v in connect_params(settings, raw).items()})
    return url.render_as_string(hide_password=False)


def migrate(settings: Settings, revision: str = "head") -> None:
    """Apply Alembic migrations up to ``revision`` (idempotent)."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["engine"] = get_engine(settings)
    command.upgrade(cfg, revision)


_search_lock = threading.Lock()
_search_conns: list[psycopg.Connection] = []


def search_connections(settings: Settings) -> list[psycopg.Connection]:
    """The process's ``settings.search_connections`` psycopg connections for the two-stage search (pgvector types
    registered), opened on first use. Each is pinged first (one round trip): a connection the server ended, after a
    PostgreSQL restart for instance, looks open until used, and is replaced here instead of failing a chunk."""
    from db.multivector import connect

    def alive(conn: psycopg.Connection) -> bool:
        if conn.closed or conn.broken:
            return False
        try:
            conn.execute("SELECT 1")
            conn.rollback()
        except psycopg.Error:
            conn.close()
            return False
        return True

    with _search_lock:
        _search_conns[:] = [c for c in _search_conns if alive(c)]
        while len(_search_conns) < settings.search_connections:
            _search_conns.append(connect(psycopg_conninfo(settings)))
        return list(_search_conns[: settings.search_connections])
