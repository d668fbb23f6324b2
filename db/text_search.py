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
    model_id: str, n_passages: int = 200,
) -> list[list[tuple[int, float]]]:
    """Dense passage search per query vector; a page scores its best passage's cosine similarity (MaxP, Dai &
    Callan 2019). ``vectors`` is ``(n_queries, 384) float32`` with unit rows.

    The HNSW index is scanned iteratively (pgvector ≥ 0.8) so a document or corpus filter does not starve the
    ``n_passages`` nearest passages.
    """
    session.execute(text("SET LOCAL hnsw.iterative_scan = relaxed_order"))
    session.execute(text("SET LOCAL hnsw.ef_search = 200"))
    sql = text(DENSE_SQL).bindparams(bindparam("vector", type_=Vector(TEXT_DIM)))
    results = []
    for vector, document_id in zip(vectors, document_ids, strict=True):
        rows = session.execute(sql, {"vector": vector, "corpus_id": corpus_id, "model_id": model_id,
                                     "document_id": document_id, "k": k, "n_passages": n_passages}).all()
        results.append([(int(pid), float(score)) for pid, score in rows])
    return results
