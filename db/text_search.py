"""The text lanes inside PostgreSQL: full-text search (``tsvector`` + GIN) and dense passage search (pgvector HNSW).

Both return, per query, up to ``k`` (page id, score) pairs, best first, restricted to the corpus and optionally to
one document per query.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
from pgvector.sqlalchemy import Vector
from sqlalchemy import bindparam, text
from sqlalchemy.orm import Session

from db.schema import TEXT_DIM

#: Nearest passages the dense lane takes per query, and the ``hnsw.ef_search`` it scans them with.
DENSE_PASSAGES = 200
DENSE_EF_SEARCH = 200

_WORD = re.compile(r"[^\W_]+", re.UNICODE)

LEXICAL_SQL = """
SELECT g.id, {rank}(g.tsv, q, :norm) AS score
FROM pages g JOIN documents d ON d.id = g.document_id, websearch_to_tsquery('english', :query) q
WHERE d.corpus_id = :corpus_id AND (CAST(:document_id AS integer) IS NULL OR g.document_id = :document_id)
  AND g.tsv @@ q
ORDER BY score DESC, g.id
LIMIT :k
"""

DENSE_SQL = """
SELECT page_id, max(sim) AS score FROM (
    SELECT s.page_id, 1 - (s.embedding <=> :vector) AS sim
    FROM passages s JOIN pages g ON g.id = s.page_id JOIN documents d ON d.id = g.document_id
    WHERE d.corpus_id = :corpus_id AND s.model_id = :model_id
      AND (CAST(:document_id AS integer) IS NULL OR g.document_id = :document_id)
    ORDER BY s.embedding <=> :vector
    LIMIT :n_passages
) best GROUP BY page_id ORDER BY score DESC, page_id LIMIT :k
"""


def or_query(question: str) -> str:
    """The question's words joined by ``or`` for ``websearch_to_tsquery``: any word may match, and ranking decides.

    Questions are long; the default AND of every word would leave most of them with no match at all.
    """
    return " or ".join(_WORD.findall(question))


def lexical_search(
    session: Session, *, queries: Sequence[str], corpus_id: int, document_ids: Sequence[int | None], k: int,
    rank: str = "ts_rank", normalization: int = 1, mode: str = "or",
) -> list[list[tuple[int, float]]]:
    """Full-text search per query over the pages' ``tsvector`` (English stemming, GIN index).

    Args:
        rank: ``ts_rank_cd`` (cover density) or ``ts_rank`` (term frequency).
        normalization: PostgreSQL rank normalisation flags (1: divide by 1 + log(document length)).
        mode: ``or`` (any word; see :func:`or_query`) or ``websearch`` (the question as web-search syntax).
    """
    if rank not in ("ts_rank_cd", "ts_rank"):
        raise ValueError(f"unknown rank function {rank!r}")
    sql = text(LEXICAL_SQL.format(rank=rank))
    results = []
    for query, document_id in zip(queries, document_ids, strict=True):
        q = or_query(query) if mode == "or" else query
        rows = session.execute(sql, {"query": q, "norm": normalization, "corpus_id": corpus_id,
                                     "document_id": document_id, "k": k}).all()
        results.append([(int(pid), float(score)) for pid, score in rows])
    return results


def dense_search(
    session: Session, *, vectors: np.ndarray, corpus_id: int, document_ids: Sequence[int | None], k: int,
    model_id: str, n_passages: int = DENSE_PASSAGES, exact: bool = False,
) -> list[list[tuple[int, float]]]:
    """Dense passage search per query vector; a page scores its best passage's cosine similarity (MaxP, Dai &
    Callan 2019). ``vectors`` is ``(n_queries, 384) float32`` with unit rows.

    The HNSW index is scanned iteratively (pgvector ≥ 0.8) so a document or corpus filter does not starve the
    ``n_passages`` nearest passages. ``exact``: the same query with index scans disabled for the rest of the
    transaction, so PostgreSQL reads every passage of the corpus and sorts them (the dense lane's exact scan, which
    :mod:`services.fidelity` compares the index against).
    """
    _dense_settings(session, exact=exact)
    sql = text(DENSE_SQL).bindparams(bindparam("vector", type_=Vector(TEXT_DIM)))
    results = []
    for vector, document_id in zip(vectors, document_ids, strict=True):
        rows = session.execute(sql, {"vector": vector, "corpus_id": corpus_id, "model_id": model_id,
                                     "document_id": document_id, "k": k, "n_passages": n_passages}).all()
        results.append([(int(pid), float(score)) for pid, score in rows])
    return results


def dense_plan_uses_index(session: Session, *, vector: np.ndarray, corpus_id: int, model_id: str) -> bool:
    """Whether PostgreSQL plans :func:`dense_search` of the ``(384,) float32`` ``vector`` over the whole corpus
    through the passages' HNSW index; with few passages it may read and sort them all instead, which is exact."""
    _dense_settings(session, exact=False)
    sql = text("EXPLAIN " + DENSE_SQL).bindparams(bindparam("vector", type_=Vector(TEXT_DIM)))
    plan = session.scalars(sql, {"vector": vector, "corpus_id": corpus_id, "model_id": model_id,
                                 "document_id": None, "k": 1, "n_passages": DENSE_PASSAGES})
    return any("ix_passages_embedding_hnsw" in line for line in plan)


def count_passage_pages(session: Session, *, corpus_id: int, model_id: str) -> int:
    """Pages of the corpus with at least one passage embedded by ``model_id``."""
    return session.execute(text(
        "SELECT count(DISTINCT s.page_id) FROM passages s JOIN pages g ON g.id = s.page_id "
        "JOIN documents d ON d.id = g.document_id WHERE d.corpus_id = :corpus_id AND s.model_id = :model_id"
    ), {"corpus_id": corpus_id, "model_id": model_id}).scalar_one()


def _dense_settings(session: Session, *, exact: bool) -> None:
    """The transaction's settings for the dense query: the HNSW scan's, or none of the index for ``exact``."""
    if exact:
        session.execute(text("SET LOCAL enable_indexscan = off"))
        return
    session.execute(text("SET LOCAL hnsw.iterative_scan = relaxed_order"))
    session.execute(text(f"SET LOCAL hnsw.ef_search = {DENSE_EF_SEARCH}"))
