"""Visual search: late-interaction page search over the tiers in PostgreSQL: a pgvector first stage, a pooled rescoring of its
candidates, and exact MaxSim on the best of them; plus the exact scan that serves as the fidelity guard.

Stages, for a chunk of queries (each ``(n_tokens, 128)`` float32):

1. **First stage** (PostgreSQL): every query token takes its ``per_token`` nearest coarse pooled vectors from the
   HNSW index. A page's first-stage score is Σ_tokens max(its best hit for the token, the token's weakest hit):
   a page a token did not reach is credited with what the token's ``per_token``-th neighbour scored. The best
   ``pooled_candidates`` pages go on.
2. **Pooled rescoring** (worker): MaxSim of the query against each candidate's fine pooled tier (64 centroids);
   the best ``exact_candidates`` go on.
3. **Exact MaxSim** (worker): the candidates' full multi-vectors are read and scored exactly; the best ``k`` are
   returned with their exact scores.

The design follows the two-stage retrieval of PLAID (Santhanam et al., 2022) and the pooled-first-stage scheme of
the Qdrant and Vespa ColPali guides; pooling is token pooling by clustering (Clavié et al., 2024; see
:mod:`models.pooling`). Filters small enough (a document, a corpus of a few hundred pages) skip the first stage
and score all their pages.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import psycopg
import torch

from db import multivector as mv
from db import visual_search as visual_db
from db.engine import search_connections, session_scope
from models.late_interaction import Hits, first_stage_scores, maxsim, top_k
from models.pooling import PoolingSpec
from pageqa.settings import Settings


@dataclass(frozen=True)
class SearchParams:
    """Knobs of the two-stage search (defaults measured in docs/benchmarks.md).

    Attributes:
        per_token: HNSW neighbours per query token (``LIMIT``).
        ef_search: pgvector ``hnsw.ef_search``.
        pooled_candidates: pages from the first stage rescored with the fine pooled tier.
        exact_candidates: pages whose exact multi-vector is read and scored.
    """

    per_token: int = 200
    ef_search: int = 200
    pooled_candidates: int = 600
    exact_candidates: int = 60

    @classmethod
    def of(cls, settings: Settings) -> SearchParams:
        """The knobs ``settings`` give (``first_stage_per_token``, ``first_stage_ef``, ``pooled_candidates``,
        ``exact_candidates``)."""
        return cls(per_token=settings.first_stage_per_token, ef_search=settings.first_stage_ef,
                   pooled_candidates=settings.pooled_candidates, exact_candidates=settings.exact_candidates)


@dataclass
class StageTimes:
    """Milliseconds spent per stage over one call (for benchmarks and logs)."""

    first_stage_ms: float = 0.0
    pooled_ms: float = 0.0
    exact_ms: float = 0.0


def two_stage_search(
    conn: psycopg.Connection | Sequence[psycopg.Connection], index: mv.VisualIndexRef,
    queries: Sequence[torch.Tensor], *, document_ids: Sequence[int | None], k: int, params: SearchParams,
    device: torch.device, times: StageTimes | None = None,
) -> list[Hits]:
    """Top ``k`` (page id, exact MaxSim score) per query, best first, within each query's document filter.

    Args:
        conn: psycopg connection inside a transaction (``SET LOCAL`` settings apply to it), or several: the
            first stage's tokens and the tier reads are then split over them and run in parallel threads (one
            PostgreSQL backend each), which is what keeps a 2-core machine busy.
        index: the corpus's visual index (its pooling was checked by the caller).
        queries: per query a ``(n_tokens, dim)`` float32 tensor.
        document_ids: per query a document id to search within, or None for the whole corpus.
        device: where MaxSim runs (float16 on CUDA, float32 on the CPU).
    """
    conns = [conn] if isinstance(conn, psycopg.Connection) else list(conn)
    times = times if times is not None else StageTimes()
    t0 = time.perf_counter()
    candidates = _first_stage(conns, index, queries, document_ids, params)
    t1 = time.perf_counter()
    union = sorted({p for c in candidates for p in c})
    fine = _fetch_split(conns, union, lambda c, ids: mv.fetch_fine(c, index, ids))
    shortlists = []
    for q, cands in zip(queries, candidates, strict=True):
        cands = [p for p in cands if p in fine]
        scores = maxsim([q], [fine[p] for p in cands], device=device)[0]
        order = torch.argsort(scores, descending=True)[: params.exact_candidates].tolist()
        shortlists.append([cands[i] for i in order])
    t2 = time.perf_counter()
    exact = _fetch_split(conns, sorted({p for s in shortlists for p in s}),
                         lambda c, ids: mv.fetch_exact(c, model_id=index.model_id, page_ids=ids))
    out = []
    for q, shortlist in zip(queries, shortlists, strict=True):
        out.append(top_k(shortlist, maxsim([q], [exact[p] for p in shortlist], device=device)[0], k))
    t3 = time.perf_counter()
    times.first_stage_ms += (t1 - t0) * 1e3
    times.pooled_ms += (t2 - t1) * 1e3
    times.exact_ms += (t3 - t2) * 1e3
    return out


def exact_search(
    conn: psycopg.Connection, *, corpus_id: int, model_id: str, queries: Sequence[torch.Tensor],
    document_ids: Sequence[int | None], k: int, device: torch.device, batch_pages: int = 256,
) -> list[Hits]:
    """The fidelity guard: exact MaxSim of every query against every embedded page of the corpus, streamed from
    PostgreSQL ``batch_pages`` at a time. Same arguments and result as :func:`two_stage_search`."""
    best: list[dict[int, float]] = [{} for _ in queries]
    for page_ids, doc_ids, vectors in visual_db.scan_exact(conn, corpus_id=corpus_id, model_id=model_id,
                                                            batch_pages=batch_pages):
        scores = maxsim(queries, vectors, device=device)  # (n_q, batch)
        for i, doc in enumerate(document_ids):
            keep = [j for j, d in enumerate(doc_ids) if doc is None or d == doc]
            merged = best[i] | {page_ids[j]: float(scores[i, j]) for j in keep}
            best[i] = dict(sorted(merged.items(), key=lambda kv: (-kv[1], kv[0]))[:k])
    return [sorted(b.items(), key=lambda kv: (-kv[1], kv[0])) for b in best]


def first_stage_candidates(
    conns: Sequence[psycopg.Connection], index: mv.VisualIndexRef, query: torch.Tensor, params: SearchParams
) -> list[int]:
    """The first stage alone for one ``(n_tokens, dim)`` query: its candidate page ids, best first (for
    measuring the first stage's recall)."""
    return _first_stage(list(conns), index, [query], [None], params)[0]


def skips_first_stage(conn: psycopg.Connection, index: mv.VisualIndexRef, params: SearchParams) -> bool:
    """Whether the corpus is small enough to need no index: at most ``pooled_candidates`` pages in it, so every page
    is a candidate and the search scores them all (exactly, when ``exact_candidates`` covers them too)."""
    return visual_db.count_index_pages(conn, index, up_to=params.pooled_candidates + 1) <= params.pooled_candidates


def _fetch_split(
    conns: list[psycopg.Connection], page_ids: list[int], fetch: Callable[[psycopg.Connection, list[int]], dict]
) -> dict[int, np.ndarray]:
    """``fetch`` the page ids in one part per connection, in parallel; the merged result."""
    parts = [page_ids[i :: len(conns)] for i in range(len(conns))]
    if len(conns) == 1 or len(page_ids) < 2:
        return fetch(conns[0], page_ids)
    out: dict[int, np.ndarray] = {}
    for part in _POOL.map(fetch, conns, parts):
        out |= part
    return out


#: Threads that wait on PostgreSQL backends (psycopg releases the GIL while it waits).
_POOL = ThreadPoolExecutor(max_workers=8, thread_name_prefix="pageqa-search")


def _first_stage(
    conns: list[psycopg.Connection], index: mv.VisualIndexRef, queries: Sequence[torch.Tensor],
    document_ids: Sequence[int | None], params: SearchParams,
) -> list[list[int]]:
    """Candidate page ids per query, best first stage score first (at most ``pooled_candidates``)."""
    conn = conns[0]
    docs = sorted({d for d in document_ids if d is not None})
    by_doc = visual_db.pages_of_documents(conn, model_id=index.model_id, document_ids=docs) if docs else {}
    if skips_first_stage(conn, index, params):
        every = visual_db.index_page_ids(conn, index)
        return [every if d is None else by_doc[d] for d in document_ids]
    out: list[list[int] | None] = [
        by_doc[d] if d is not None and len(by_doc[d]) <= params.pooled_candidates else None for d in document_ids
    ]
    tokens = [
        (i, t, vec, document_ids[i])
        for i, q in enumerate(queries) if out[i] is None
        for t, vec in enumerate(q.float().numpy())
    ]
    if not tokens:
        return out  # type: ignore[return-value]
    parts = [tokens[i :: len(conns)] for i in range(len(conns))]
    hits = [
        hit for part in _POOL.map(
            lambda c, toks: visual_db.first_stage_hits(c, index, tokens=toks, per_token=params.per_token,
                                                       ef_search=params.ef_search) if toks else [],
            conns, parts,
        ) for hit in part
    ]
    per_query: dict[int, list[tuple[int, int, float]]] = {}
    for qi, ti, pid, sim in hits:
        per_query.setdefault(qi, []).append((ti, pid, sim))
    for i, q in enumerate(queries):
        if out[i] is None:
            out[i] = first_stage_scores(per_query.get(i, []), n_tokens=q.shape[0], limit=params.pooled_candidates)
    return out  # type: ignore[return-value]


def visual_search(
    settings: Settings, queries: list[torch.Tensor], *, corpus_id: int, document_ids: Sequence[int | None], k: int,
    model_id: str, device: torch.device,
) -> list[list[tuple[int, float]]]:
    """The visual lane for ``(n_tokens, 128) float32`` query multi-vectors: per query the top ``k`` (page id,
    exact MaxSim score), best first, within its document filter. Two-stage search by default; the exact scan when
    ``settings.exact_search`` is set (the fidelity guard) or the corpus has no visual index yet.

    Raises:
        ConfigError: the corpus's pages were pooled with other settings than these.
    """
    with session_scope(settings) as session:
        conn = mv.raw_connection(session)
        index = mv.visual_index(conn, corpus_id=corpus_id, model_id=model_id)
        # No index yet: nothing embedded, or only pages stored before pooling existed, which the scan still reads.
        if settings.exact_search or index is None:
            return exact_search(conn, corpus_id=corpus_id, model_id=model_id, queries=queries,
                                document_ids=document_ids, k=k, device=device)
    mv.check_pooling(index, PoolingSpec.of(settings).name)
    conns = search_connections(settings)
    try:
        return two_stage_search(conns, index, queries, document_ids=document_ids, k=k,
                                params=SearchParams.of(settings), device=device)
    finally:
        for c in conns:
            if not c.broken:
                c.rollback()
