"""The embedded services are real: PostgreSQL with pgvector ≥ 0.8 and a Redis that answers; start is idempotent."""

from __future__ import annotations

import redis
from sqlalchemy import text

from db import embedded
from db.engine import MIGRATIONS_DIR, get_engine, resolve_database_url
from worker import broker


def test_postgres_has_pgvector_and_the_schema(settings, services):
    with get_engine(settings).connect() as conn:
        version = conn.execute(text("SELECT extversion FROM pg_extension WHERE extname = 'vector'")).scalar_one()
        server = conn.execute(text("SHOW server_version_num")).scalar_one()
        tables = set(conn.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")).scalars())
        head = conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
    assert tuple(int(x) for x in version.split(".")[:2]) >= (0, 8)
    assert int(server) >= 150000
    assert {"corpora", "documents", "pages", "page_embeddings", "jobs", "questions", "answers", "citations",
            "passages", "lane_hits"} <= tables
    assert head == _script_head()


def _script_head() -> str:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return ScriptDirectory.from_config(cfg).get_current_head()


def test_migrations_match_the_models(settings, services):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from db.schema import Base

    with get_engine(settings).connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    assert diff == [], "db/schema.py and db/migrations disagree: write a migration"


def test_start_is_idempotent_and_reuses_the_running_servers(settings, services):
    home = settings.home_dir
    assert embedded.is_running(home) and broker.is_running(home)
    pid = (embedded.pgdata_dir(home) / "postmaster.pid").read_text().splitlines()[0]
    assert resolve_database_url(settings) == embedded.start(home)
    assert (embedded.pgdata_dir(home) / "postmaster.pid").read_text().splitlines()[0] == pid
    url = broker.start(home)
    assert url == f"redis+socket://{broker.socket_path(home)}"
    client = redis.Redis(unix_socket_path=str(broker.socket_path(home)))
    client.set("pageqa-test-key", "1")
    assert client.get("pageqa-test-key") == b"1"


def test_stop_and_start_again_keeps_data(settings, services):
    from db.engine import search_connections

    home = settings.home_dir
    with get_engine(settings).begin() as conn:
        conn.execute(text("INSERT INTO corpora (name) VALUES ('survives-restart') ON CONFLICT DO NOTHING"))
    get_engine(settings).dispose()
    before = search_connections(settings)  # a worker's cached search connections
    assert embedded.stop(home) is True
    assert embedded.is_running(home) is False
    assert embedded.stop(home) is False
    embedded.start(home)
    with get_engine(settings).connect() as conn:
        names = set(conn.execute(text("SELECT name FROM corpora")).scalars())
    assert "survives-restart" in names
    after = search_connections(settings)  # the ones the restart ended are replaced, not handed out
    assert not set(map(id, after)) & set(map(id, before)) and all(c.closed for c in before)
    assert [c.execute("SELECT 1").fetchone() for c in after] == [(1,)] * settings.search_connections


def test_concurrent_starts_share_one_redis_server(tmp_path):
    """Several processes starting the embedded Redis of one home at once end with one server."""
    import subprocess
    import sys

    home = tmp_path / "home"
    code = f"from pathlib import Path; from worker import broker; print(broker.start(Path({str(home)!r})))"
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE) for _ in range(4)]
    urls = {p.communicate(timeout=60)[0].decode().strip() for p in procs}
    try:
        assert len(urls) == 1 and all(p.returncode == 0 for p in procs)
        out = subprocess.run(["pgrep", "-f", f"unixsocket:{broker.socket_path(home)}"], capture_output=True, text=True)
        pids = [line for line in out.stdout.split() if line]
        assert len(pids) == 1, f"one server expected, found pids {pids}"
    finally:
        broker.stop(home)
    assert not broker.is_running(home)
