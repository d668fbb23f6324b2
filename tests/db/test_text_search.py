"""The text lanes in the real PostgreSQL: full-text search over page text and pgvector passage search."""

from __future__ import annotations

import numpy as np
import pytest

from db import corpus as corpus_db

from db import pages as pages_db
from db import text_search
from db.engine import session_scope

TEXTS = {
    ("a.pdf", 1): "The bridge inspection found three cracks in the north span.",
    ("a.pdf", 2): "Revenue rose to 12.5 million euros in the third quarter.",
    ("b.pdf", 1): "Apple harvest: 41 tonnes, mostly from the southern orchards.",
    ("b.pdf", 2): "Bridges and roads need a yearly inspection budget.",
}


def _unit(i: int) -> np.ndarray:
    v = np.zeros(384, dtype=np.float32)
    v[i] = 1.0
    return v


@pytest.fixture(scope="module")
def search_corpus(settings, services):
    """Two documents with two pages each; page (doc, n) has one passage whose embedding is a basis vector."""
    ids = {}
    with session_scope(settings) as session:
        corpus_id = corpus_db.get_or_create_corpus(session, name="search-test").id
        for j, source in enumerate(("a.pdf", "b.pdf")):
            pages = [corpus_db.PageRecord(n, b"", "PNG", 1, 1, TEXTS[(source, n)]) for n in (1, 2)]
            doc = corpus_db.add_document(session, corpus_id=corpus_id, sha256=f"{j:064d}", title=source,
                                         source=source, kind="pdf", size_bytes=1, pages=pages)
            for n, pid in zip((1, 2), pages_db.page_ids_of_document(session, document_id=doc.id), strict=True):
                ids[(source, n)] = (pid, doc.id)
                pages_db.store_passages(session, page_id=pid, model_id="test-model", texts=[TEXTS[(source, n)]],
                                         vectors=np.stack([_unit(len(ids))]))
    return corpus_id, ids


def test_lexical_or_mode_ranks_the_matching_page_first_and_respects_the_document_filter(settings, search_corpus):
    corpus_id, ids = search_corpus
    with session_scope(settings) as session:
        (everywhere,), (in_b,) = (
            text_search.lexical_search(session, queries=["How many cracks did the bridge inspection find?"],
                                  corpus_id=corpus_id, document_ids=[doc], k=5)
            for doc in (None, ids[("b.pdf", 1)][1])
        )
        (strict,) = text_search.lexical_search(session, queries=["How many cracks did the bridge inspection find?"],
                                          corpus_id=corpus_id, document_ids=[None], k=5, mode="websearch")
    assert everywhere[0][0] == ids[("a.pdf", 1)][0]
    assert ids[("b.pdf", 2)][0] in [pid for pid, _ in everywhere]  # "bridges", "inspection" stem-match
    assert [pid for pid, _ in in_b] == [ids[("b.pdf", 2)][0]]
    assert strict == [], "AND semantics: 'many' and 'find' appear nowhere"


def test_dense_search_scores_pages_by_their_best_passage(settings, search_corpus):
    corpus_id, ids = search_corpus
    target, _ = ids[("b.pdf", 1)]
    query = _unit(3) * 0.8 + _unit(1) * 0.6  # closest to page 3 (b.pdf p1), then page 1 (a.pdf p1)
    with session_scope(settings) as session:
        (ranked,) = text_search.dense_search(session, vectors=query[None, :], corpus_id=corpus_id, document_ids=[None],
                                        k=4, model_id="test-model")
        (only_a,) = text_search.dense_search(session, vectors=query[None, :], corpus_id=corpus_id,
                                        document_ids=[ids[("a.pdf", 1)][1]], k=4, model_id="test-model")
        (other_model,) = text_search.dense_search(session, vectors=query[None, :], corpus_id=corpus_id,
                                             document_ids=[None], k=4, model_id="another-model")
    assert ranked[0][0] == target and ranked[0][1] == pytest.approx(0.8, abs=1e-4)
    assert ranked[1][0] == ids[("a.pdf", 1)][0] and ranked[1][1] == pytest.approx(0.6, abs=1e-4)
    assert {pid for pid, _ in only_a} == {ids[("a.pdf", 1)][0], ids[("a.pdf", 2)][0]}
    assert other_model == []


def test_or_query_keeps_words_only():
    assert text_search.or_query("What's the 2007 value, in %?") == "What or s or the or 2007 or value or in"
