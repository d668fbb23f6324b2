"""`pageqa delete`: a document or a whole corpus goes with its pages, multi-vectors and passages; nothing else."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select, text
from typer.testing import CliRunner

from db.engine import session_scope
from db.schema import Corpus, Document, Page, PageEmbedding, PagePoolVector, Passage
from scripts.cli import app
from services.ingest.pipeline import ingest_files
from scripts.cli.progress import embed_and_wait

pytestmark = pytest.mark.models
runner = CliRunner()


def _counts(settings, corpus: str) -> dict[str, int]:
    with session_scope(settings) as session:
        pages = (select(Page.id).join(Document, Document.id == Page.document_id)
                 .join(Corpus, Corpus.id == Document.corpus_id).where(Corpus.name == corpus))
        return {
            "pages": session.scalar(select(func.count()).select_from(pages.subquery())),
            "embeddings": session.scalar(select(func.count(PageEmbedding.id)).where(PageEmbedding.page_id.in_(pages))),
            "passages": session.scalar(select(func.count(Passage.id)).where(Passage.page_id.in_(pages))),
            "pool_vectors": session.scalar(
                select(func.count(PagePoolVector.id)).where(PagePoolVector.page_id.in_(pages))
            ),
        }


def _orphans(settings) -> int:
    with session_scope(settings) as session:
        return session.execute(text(
            "SELECT (SELECT count(*) FROM passages s LEFT JOIN pages p ON p.id = s.page_id WHERE p.id IS NULL)"
            " + (SELECT count(*) FROM page_embeddings e LEFT JOIN pages p ON p.id = e.page_id WHERE p.id IS NULL)"
            " + (SELECT count(*) FROM pages p LEFT JOIN documents d ON d.id = p.document_id WHERE d.id IS NULL)"
            " + (SELECT count(*) FROM page_pool_vectors v LEFT JOIN pages p ON p.id = v.page_id WHERE p.id IS NULL)"
            " + (SELECT count(*) FROM page_pool_vectors v LEFT JOIN page_embeddings e ON e.id = v.embedding_id"
            "    WHERE e.id IS NULL)"
        )).scalar_one()


def test_delete_a_document_then_the_corpus(settings, worker, sample_docs):
    ingest_files(settings, corpus="delete-test", files=[sample_docs["pdf"], sample_docs["png"]])
    ingest_files(settings, corpus="delete-keep", files=[sample_docs["png"]])  # the same file in another corpus
    embed_and_wait(settings, corpus="delete-test", wait=True)
    before = _counts(settings, "delete-test")
    assert before["pages"] == 4 and before["embeddings"] == 4 and before["passages"] >= 3
    assert before["pool_vectors"] >= 4, "every page has coarse pooled vectors in the first-stage index"

    result = runner.invoke(app, ["delete", "report.pdf", "--corpus", "delete-test"])
    assert result.exit_code == 0, result.output
    assert "deleted 1 documents: 3 pages, 3 multi-vectors" in result.stdout
    after = _counts(settings, "delete-test")
    assert after["pages"] == 1 and after["embeddings"] == 1
    assert 1 <= after["pool_vectors"] < before["pool_vectors"]
    assert _orphans(settings) == 0

    missing = runner.invoke(app, ["delete", "report.pdf", "--corpus", "delete-test"])
    assert missing.exit_code == 1 and "no document 'report.pdf' in corpus 'delete-test'" in missing.stderr

    everything = runner.invoke(app, ["delete", "--corpus", "delete-test", "--yes"])
    assert everything.exit_code == 0 and "deleted 1 documents: 1 pages" in everything.stdout
    assert _counts(settings, "delete-test") == {"pages": 0, "embeddings": 0, "passages": 0, "pool_vectors": 0}
    assert _counts(settings, "delete-keep")["pages"] == 1, "other corpora are untouched"
    assert _orphans(settings) == 0
