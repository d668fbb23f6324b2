"""The indexing task stores pooled tiers with every multi-vector, and builds them from the stored multi-vector
(without embedding again) for pages embedded before pooling existed."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from db.engine import session_scope
from services.ingest.pipeline import ingest_files
from scripts.cli.progress import embed_and_wait

pytestmark = pytest.mark.models


def _tiers(settings, corpus: str) -> dict[int, tuple]:
    with session_scope(settings) as session:
        rows = session.execute(text(
            "SELECT e.page_id, e.visual_index_id, e.n_fine, md5(e.vectors),"
            " (SELECT count(*) FROM page_pool_vectors v WHERE v.embedding_id = e.id)"
            " FROM page_embeddings e JOIN pages g ON g.id = e.page_id JOIN documents d ON d.id = g.document_id"
            " JOIN corpora c ON c.id = d.corpus_id WHERE c.name = :corpus"
        ), {"corpus": corpus}).all()
    return {r[0]: tuple(r[1:]) for r in rows}


def test_pages_embedded_before_pooling_get_their_tiers_from_stored_vectors(settings, worker, sample_docs):
    ingest_files(settings, corpus="tiers-test", files=[sample_docs["pdf"]])
    embed_and_wait(settings, corpus="tiers-test", wait=True)
    before = _tiers(settings, "tiers-test")
    assert len(before) == 3
    assert all(index_id is not None and n_fine >= 1 and n_pool >= 1 for index_id, n_fine, _, n_pool in before.values())

    legacy = min(before)
    with session_scope(settings) as session:  # what a page stored before migration 0003 looks like
        session.execute(text("DELETE FROM page_pool_vectors WHERE page_id = :p"), {"p": legacy})
        session.execute(text("UPDATE page_embeddings SET visual_index_id = NULL, n_fine = NULL, fine = NULL"
                             " WHERE page_id = :p"), {"p": legacy})
    log = settings.home_dir / "logs" / "test-worker.log"
    log_before = log.read_text()
    embed_and_wait(settings, corpus="tiers-test", wait=True)
    assert _tiers(settings, "tiers-test") == before, "same tiers, same multi-vector bytes"
    new_log = log.read_text()[len(log_before):]
    assert "0 embedded, 1 pooled from stored vectors" in new_log
