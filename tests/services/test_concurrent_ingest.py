"""The same document ingested by several processes, or uploaded in several requests, at once (issue 19): stored once,
the others told it is already in the corpus, nobody sees a traceback or an HTTP 500.

The race is made certain rather than hoped for: the test holds a SHARE lock on ``documents`` (reads pass, inserts
wait), waits until every ingest has rendered the file and waits on its insert, then lets them all go at once.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest
from conftest import ROOT, make_pdf, wait_for
from fastapi.testclient import TestClient
from sqlalchemy import select, text

from db import keys
from db.engine import get_engine, session_scope
from db.schema import Corpus, Document

pytestmark = pytest.mark.timeout(240)
RACERS = 3


@contextlib.contextmanager
def inserts_held(settings) -> Iterator[None]:
    """``documents`` locked in SHARE mode until the block ends: every ``INSERT`` into it waits meanwhile."""
    with get_engine(settings).connect() as conn, conn.begin():
        conn.execute(text("SET LOCAL lock_timeout = '120s'"))
        conn.execute(text("LOCK TABLE documents IN SHARE MODE"))
        yield


def _inserts_waiting(settings) -> int:
    with session_scope(settings) as session:
        return session.scalar(text(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND query ILIKE 'INSERT INTO documents%'"))


def _documents(settings, corpus: str, tenant: str = "default") -> list[str]:
    with session_scope(settings) as session:
        return list(session.scalars(
            select(Document.source).join(Corpus, Corpus.id == Document.corpus_id)
            .where(Corpus.name == corpus, Corpus.tenant == tenant)))


def test_concurrent_cli_ingests_of_one_pdf_store_it_once(settings, services, tiny_models, tmp_path):
    pdf = make_pdf(tmp_path / "raced.pdf", ["one", "two", "three"])
    env = {**os.environ, "PAGEQA_INGEST_PROCESSES": "1"}  # three processes on a small machine: one render each
    with inserts_held(settings):
        procs = [subprocess.Popen([sys.executable, "-m", "scripts.cli", "ingest", str(pdf), "--corpus", "raced",
                                   "--no-wait"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for _ in range(RACERS)]
        wait_for(lambda: _inserts_waiting(settings) == RACERS or any(p.poll() is not None for p in procs),
                 timeout_s=150, what=f"{RACERS} ingests waiting on their insert")
        assert _inserts_waiting(settings) == RACERS
    outputs = [(p.wait(timeout=60), *p.communicate()) for p in procs]

    for code, _out, err in outputs:
        assert code == 0 and "Traceback" not in err and "error" not in err.lower(), err
    summaries = sorted(out.strip().splitlines()[-1] for _code, out, _err in outputs)
    assert summaries == ["0 documents added (0 pages), 1 skipped as already in the corpus"] * (RACERS - 1) + [
        "1 documents added (3 pages), 0 skipped as already in the corpus"]
    assert _documents(settings, "raced") == ["raced.pdf"]


def test_concurrent_uploads_of_one_pdf_store_it_once(settings, services, tmp_path):
    from api.app import create_app

    data = make_pdf(tmp_path / "uploaded.pdf", ["uploaded at once"]).read_bytes()
    with session_scope(settings) as session:
        auth = {"Authorization": f"Bearer {keys.create_key(session, tenant='racers').key}"}
    responses = []
    with TestClient(create_app(settings)) as client:
        def upload() -> None:
            responses.append(client.post("/v1/corpora/raced-uploads/documents", headers=auth,
                                         files=[("files", ("uploaded.pdf", data, "application/pdf"))]))

        threads = [threading.Thread(target=upload) for _ in range(RACERS)]
        with inserts_held(settings):
            for thread in threads:
                thread.start()
            wait_for(lambda: _inserts_waiting(settings) == RACERS or responses, timeout_s=120,
                     what=f"{RACERS} uploads waiting on their insert")
            assert _inserts_waiting(settings) == RACERS
        for thread in threads:
            thread.join(60)

    assert [r.status_code for r in responses] == [201] * RACERS, [r.text for r in responses]
    bodies = sorted((r.json()["added"], r.json()["duplicates"], r.json()["errors"]) for r in responses)
    assert bodies == [([], ["uploaded.pdf"], [])] * (RACERS - 1) + [(["uploaded.pdf"], [], [])]
    assert _documents(settings, "raced-uploads", tenant="racers") == ["uploaded.pdf"]
