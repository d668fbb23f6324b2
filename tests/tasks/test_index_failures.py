"""A page the workers cannot index is recorded with its error; ingest stops waiting for it, lists it and exits 1;
the other pages are indexed; ``--retry-failed`` queues it again."""

from __future__ import annotations

import pytest
from conftest import run_cli as cli
from sqlalchemy import func, select, update

from db import corpus as corpus_db
from db.engine import session_scope
from db.schema import Page, PageEmbedding

pytestmark = [pytest.mark.models, pytest.mark.timeout(300)]

CORPUS = "index-failures"


def _page(settings, doc_id: int, number: int) -> Page:
    with session_scope(settings) as session:
        return session.scalar(select(Page).where(Page.document_id == doc_id, Page.page_number == number))


def _embedded(settings, page_id: int) -> bool:
    with session_scope(settings) as session:
        return bool(session.scalar(select(func.count()).select_from(PageEmbedding)
                                   .where(PageEmbedding.page_id == page_id)))


def test_a_page_that_cannot_be_indexed_is_listed_and_the_rest_indexed(settings, worker, sample_docs):
    cli("ingest", str(sample_docs["pdf"]), "--corpus", CORPUS)
    with session_scope(settings) as session:
        corpus_id = corpus_db.get_corpus(session, name=CORPUS).id
        good = session.scalar(select(Page).join(Page.document).where(Page.page_number == 1)
                              .where(Page.document.has(corpus_id=corpus_id)))
        record = corpus_db.PageRecord(1, good.image, good.image_format, good.width, good.height, "a readable page")
        rotten = corpus_db.PageRecord(2, b"bytes that rotted on disk", good.image_format, good.width, good.height, "")
        doc = corpus_db.add_document(session, corpus_id=corpus_id, sha256="0" * 64, title="rotten", kind="pdf",
                                     source="rotten.pdf", size_bytes=1, pages=[record, rotten])
        doc_id = doc.id
    # The PDF is already stored (skipped); the new document's pages are queued and the command must still end.
    out = cli("ingest", str(sample_docs["pdf"]), "--corpus", CORPUS, ok=False)
    assert out.exit_code == 1
    assert "rotten.pdf page 2: cannot index (UnidentifiedImageError: cannot identify image file" in out.output
    assert "rotten.pdf page 1" not in out.output
    assert "1 pages of the corpus are not indexed" in out.output and "Traceback" not in out.output
    first, second = _page(settings, doc_id, 1), _page(settings, doc_id, 2)
    assert _embedded(settings, first.id) and first.index_error is None, "the good page of the batch is indexed"
    assert not _embedded(settings, second.id) and second.index_error.startswith("UnidentifiedImageError")

    again = cli("ingest", str(sample_docs["pdf"]), "--corpus", CORPUS, ok=False)  # still failed: not queued again
    assert again.exit_code == 1 and "rotten.pdf page 2: cannot index" in again.output

    with session_scope(settings) as session:  # the cause is fixed
        session.execute(update(Page).where(Page.id == second.id).values(image=good.image))
    cli("ingest", str(sample_docs["pdf"]), "--corpus", CORPUS, "--retry-failed")
    second = _page(settings, doc_id, 2)
    assert _embedded(settings, second.id) and second.index_error is None
