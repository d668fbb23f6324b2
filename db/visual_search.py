"""The visual lane inside PostgreSQL: the queries of the late-interaction search stages over the tiers that
:mod:`db.multivector` stores: the first stage's nearest coarse pooled vectors through the HNSW index, the pages of
filters small enough to skip it, and the exact scan of the fidelity guard. The pooled and exact tiers of the
candidates are read with :func:`db.multivector.fetch_fine` and :func:`db.multivector.fetch_exact`.

Every function here takes a psycopg 3 connection (:func:`db.multivector.raw_connection` gets the one under a
SQLAlchemy session), so that a search runs in the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import psycopg
from pgvector import HalfVector

from db.multivector import VisualIndexRef

FIRST_STAGE_SQL = """
SELECT t.qi, t.ti, h.page_id, h.sim
FROM unnest(%(qi)s::int[], %(ti)s::int[], %(vec)s::halfvec[], %(doc)s::int[]) AS t(qi, ti, q, doc)
CROSS JOIN LATERAL (
    SELECT p.page_id, -(p.vector <#> t.q) AS sim
    FROM page_pool_vectors p
    WHERE p.visual_index_id = %(index_id)s AND (t.doc IS NULL OR p.document_id = t.doc)
    ORDER BY p.vector <#> t.q
    LIMIT %(k)s
) h
"""


def first_stage_hits(
    conn: psycopg.Connection, index: VisualIndexRef, *, tokens: Sequence[tuple[int, int, np.ndarray, int | None]],
    per_token: int, ef_search: int,
) -> list[tuple[int, int, int, float]]:
    """Nearest coarse pooled vectors of each query token, through the HNSW index (inner product).

    Args:
        tokens: (query number, token number, ``(dim,)`` float32 vector, document filter or None) per token.
        per_token: neighbours kept per token (``LIMIT``).
        ef_search: ``hnsw.ef_search`` (at least ``per_token`` is used). Iterative scans (``relaxed_order``) keep
            a corpus or document filter from starving the result. Sequential scans are disabled for the
            transaction so that the planner cannot trade the index for a full scan and sort.

    Returns:
        (query number, token number, page id, inner product) rows.
    """
    conn.execute(f"SET LOCAL hnsw.ef_search = {max(int(ef_search), int(per_token))}")
    conn.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
    # With a LIMIT that is large next to a small table, the planner prefers scanning and sorting the whole table
    # (measured: 350 ms instead of 29 ms per query at 10k pages, LIMIT 200); the first stage is the index.
    conn.execute("SET LOCAL enable_seqscan = off")
    params = {
        "qi": [t[0] for t in tokens], "ti": [t[1] for t in tokens],
        "vec": [HalfVector(t[2]) for t in tokens], "doc": [t[3] for t in tokens],
        "index_id": index.id, "k": int(per_token),
    }
    return conn.execute(FIRST_STAGE_SQL, params, binary=True).fetchall()


def pages_of_documents(
    conn: psycopg.Connection, *, model_id: str, document_ids: Sequence[int]
) -> dict[int, list[int]]:
    """Embedded page ids per document id (for filters small enough to score without the first stage)."""
    rows = conn.execute(
        "SELECT g.document_id, e.page_id FROM page_embeddings e JOIN pages g ON g.id = e.page_id "
        "WHERE e.model_id = %s AND g.document_id = ANY(%s)",
        (model_id, list(document_ids)),
    )
    out: dict[int, list[int]] = {d: [] for d in document_ids}
    for did, pid in rows:
        out[did].append(pid)
    return out


def count_index_pages(conn: psycopg.Connection, index: VisualIndexRef, *, up_to: int) -> int:
    """Pages with pooled tiers in the index, counted up to ``up_to`` (cheap at any corpus size)."""
    return conn.execute(
        "SELECT count(*) FROM (SELECT 1 FROM page_embeddings WHERE visual_index_id = %s LIMIT %s) s",
        (index.id, up_to),
    ).fetchone()[0]


def index_page_ids(conn: psycopg.Connection, index: VisualIndexRef) -> list[int]:
    """Every page id in the index (for corpora small enough to skip the first stage)."""
    return [r[0] for r in conn.execute("SELECT page_id FROM page_embeddings WHERE visual_index_id = %s", (index.id,))]


def count_embedded_pages(conn: psycopg.Connection, *, corpus_id: int, model_id: str) -> int:
    """Pages of the corpus with a multi-vector of ``model_id``: what :func:`scan_exact` reads."""
    return conn.execute(
        "SELECT count(*) FROM page_embeddings e JOIN pages g ON g.id = e.page_id "
        "JOIN documents d ON d.id = g.document_id WHERE d.corpus_id = %s AND e.model_id = %s",
        (corpus_id, model_id),
    ).fetchone()[0]


def scan_exact(
    conn: psycopg.Connection, *, corpus_id: int, model_id: str, batch_pages: int = 256
) -> Iterator[tuple[list[int], list[int], list[np.ndarray]]]:
    """Every embedded page of the corpus in batches of (page ids, document ids, ``(n_i, dim) float16`` arrays),
    read through a server-side cursor so memory stays at one batch: the exact scan of the fidelity guard."""
    with conn.cursor(name="pageqa_exact_scan", binary=True) as cur:
        cur.itersize = batch_pages
        cur.execute(
            "SELECT e.page_id, g.document_id, e.n_vectors, e.dim, e.vectors FROM page_embeddings e "
            "JOIN pages g ON g.id = e.page_id JOIN documents d ON d.id = g.document_id "
            "WHERE d.corpus_id = %s AND e.model_id = %s",
            (corpus_id, model_id),
        )
        while rows := cur.fetchmany(batch_pages):
            yield (
                [r[0] for r in rows], [r[1] for r in rows],
                [np.frombuffer(r[4], dtype=np.float16).reshape(r[2], r[3]) for r in rows],
            )
