"""Fidelity of the production search on a stored corpus: the same question texts through the search the worker
runs and through its exact scan, and how far the two agree.

* Model sets with a visual lane (``real``, ``tiny``): the two-stage search of
  :func:`services.visual_search.visual_search` with the settings' :class:`SearchParams`, against the exact MaxSim
  scan of every page (``PAGEQA_EXACT_SEARCH``, the fidelity guard).
* The ``offline`` set, which has only text lanes: the dense lane's pgvector HNSW passage search against the same
  query with index scans disabled, which reads every passage vector of the corpus
  (:func:`db.text_search.dense_search`). The lexical lane has no approximate index to check.

Per question: recall@10 (the share of the exact top 10 in the search's top 10) and nDCG@10 with the exact scores as
gains (Järvelin & Kekäläinen, ACM TOIS 2002), and the milliseconds of each call, one question at a time, through
the production function as the worker calls it (a session, the index lookup, the search). The search's scores are
exact (MaxSim on the full multi-vectors in its last stage; the passage vectors' cosine), so they are the gains of
the pages it returns.

The questions are the distinct texts of a question file (:mod:`services.question_file`; a row's document is not
applied: the whole corpus is searched) or of the tenant's past jobs on the corpus, newest first. They are embedded
once with the model set's query encoder, as :func:`services.retrieval.retrieve` does.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import torch

from db import corpus as corpus_db
from db import jobs as jobs_db
from db import multivector as mv
from db import text_search
from db import visual_search as visual_db
from db.engine import session_scope
from models.device import compute_dtype, resolve_device
from models.loading import model_ids
from models.pooling import PoolingSpec
from models.retriever import load_retriever
from pageqa.errors import ConfigError, InputError
from pageqa.settings import Settings
from services.question_file import open_question_file
from services.visual_search import SearchParams, skips_first_stage, visual_search

#: Depth of the comparison: recall@K and nDCG@K.
K = 10

Q = TypeVar("Q")


@dataclass
class Fidelity:
    """What ``pageqa bench fidelity`` measured on one corpus.

    Attributes:
        lane: ``visual`` (the two-stage late-interaction search) or ``dense`` (the HNSW passage search).
        model_id: the retriever (visual) or text encoder (dense) whose vectors were searched.
        questions: where the question texts came from, in words.
        n_pages: pages the exact scan scores (with a multi-vector, or with passages, of ``model_id``).
        n_index_pages: visual: pages in the first stage's index (pages stored before pooling existed are not);
            dense: ``n_pages``.
        first_stage: whether the approximate index is searched at all. Visual: the index holds more pages than
            ``pooled_candidates`` (otherwise every page is a candidate); dense: PostgreSQL plans the HNSW scan
            (otherwise it reads and sorts every passage). Without it agreement is by construction.
        search: the search settings, ``name: value`` in order.
        recall, ndcg: per question, recall@10 and nDCG@10 of the search against the exact scan, in [0, 1].
        search_ms, exact_ms: per question, milliseconds of the production search and of the exact scan.
    """

    corpus: str
    tenant: str
    model_set: str
    lane: str
    model_id: str
    n_pages: int
    n_index_pages: int
    first_stage: bool = False
    questions: str = ""
    search: dict[str, object] = field(default_factory=dict)
    recall: list[float] = field(default_factory=list)
    ndcg: list[float] = field(default_factory=list)
    search_ms: list[float] = field(default_factory=list)
    exact_ms: list[float] = field(default_factory=list)


def recall_at_k(got: Sequence[int], exact: Sequence[int], k: int = K) -> float:
    """Share of the exact top ``k`` (``exact``: page ids, best first) among the first ``k`` of ``got``, in [0, 1].
    A corpus of fewer than ``k`` pages has all of them as its exact top ``k``.

    Raises:
        ValueError: ``exact`` is empty.
    """
    want = set(exact[:k])
    if not want:
        raise ValueError("the exact top k is empty")
    return len(want & set(got[:k])) / len(want)


def ndcg_at_k(gains: Sequence[float], ideal: Sequence[float], k: int = K) -> float:
    """nDCG@k with graded gains (Järvelin & Kekäläinen, ACM TOIS 2002): the DCG of ``gains``, the exact score of
    each page returned, in rank order, over the DCG of ``ideal``, the exact top ``k``'s scores, best first.
    DCG = Σ_r gain_r / log2(r + 1) over 1-based ranks r ≤ k. 1.0 when the exact top ``k`` comes back in order."""
    def dcg(values: Sequence[float]) -> float:
        return sum(g / math.log2(r + 2) for r, g in enumerate(values[:k]))

    return dcg(gains) / dcg(ideal)


def figures(got: Sequence[Sequence[tuple[int, float]]], want: Sequence[Sequence[tuple[int, float]]],
            k: int = K) -> tuple[list[float], list[float]]:
    """Per question, recall@k and nDCG@k of the ranked (page id, exact score) lists ``got`` against the exact
    scan's ``want``."""
    recall = [recall_at_k([p for p, _ in g], [p for p, _ in w], k) for g, w in zip(got, want, strict=True)]
    ndcg = [ndcg_at_k([s for _, s in g], [s for _, s in w], k) for g, w in zip(got, want, strict=True)]
    return recall, ndcg


def measure_fidelity(
    settings: Settings, *, corpus: str, tenant: str = "default", questions: Path | None = None, limit: int = 100,
) -> Fidelity:
    """Run up to ``limit`` distinct question texts (from the file ``questions``, else the tenant's past questions
    on the corpus) through the production search and the exact scan of the tenant's ``corpus``; see the module.

    Raises:
        NotFoundError: the tenant has no such corpus.
        ConfigError: nothing of the corpus is embedded for the model set's search (no visual index, no passages),
            its pages were pooled with other settings, or it has no past questions and no file was given.
        InputError: the question file cannot be read or holds no valid question.
        ModelLoadError: the query encoder cannot be loaded.
    """
    with session_scope(settings) as session:
        corpus_id = corpus_db.get_corpus(session, name=corpus, tenant=tenant).id
    device = resolve_device(settings.device)
    if model_ids(settings)["retriever"] is not None:
        fid = _visual_corpus(settings, corpus, tenant, corpus_id)
        texts, fid.questions = question_texts(settings, corpus_id=corpus_id, tenant=tenant, path=questions,
                                              limit=limit)
        _run_visual(settings, fid, corpus_id, texts, device)
    else:
        from models.text_encoder import TextEncoder

        encoder = TextEncoder(model_ids(settings)["text"], device=str(device))
        fid = _dense_corpus(settings, corpus, tenant, corpus_id, encoder.model_id)
        texts, fid.questions = question_texts(settings, corpus_id=corpus_id, tenant=tenant, path=questions,
                                              limit=limit)
        _run_dense(settings, fid, corpus_id, encoder.encode(texts, batch_size=settings.text_batch_size))
    return fid


def question_texts(settings: Settings, *, corpus_id: int, tenant: str, path: Path | None,
                   limit: int) -> tuple[list[str], str]:
    """Up to ``limit`` distinct question texts, in the order met, and where they came from, in words: the valid
    rows of the question file ``path``, or without it the tenant's past questions on the corpus, newest first.

    Raises:
        InputError: the file cannot be read or has no valid question before ``limit`` distinct ones.
        ConfigError: no file, and the tenant asked nothing on the corpus yet.
    """
    if path is None:
        with session_scope(settings) as session:
            texts = jobs_db.recent_question_texts(session, corpus_id=corpus_id, tenant=tenant, limit=limit)
        if not texts:
            raise ConfigError(f"tenant {tenant!r} has asked no question on this corpus yet: give a question file")
        return texts, f"{len(texts)} distinct texts of the tenant's past jobs on the corpus, newest first"
    rows = open_question_file(path)
    texts = _first_distinct((row.question for row in rows), limit)
    if not texts:
        raise InputError("the question file holds no valid question", source=str(path))
    skipped = f"; {rows.errors.count} invalid rows skipped" if rows.errors.count else ""
    return texts, f"{len(texts)} distinct texts of {path.name}{skipped}"


def _first_distinct(items: Iterable[str], limit: int) -> list[str]:
    """The first ``limit`` distinct items, in the order met; stops reading there."""
    out: dict[str, None] = {}
    for item in items:
        out.setdefault(item)
        if len(out) >= limit:
            break
    return list(out)


def _visual_corpus(settings: Settings, corpus: str, tenant: str, corpus_id: int) -> Fidelity:
    """The corpus's visual index checked (it exists, with pages and the settings' pooling) and counted."""
    model_id = model_ids(settings)["retriever"]
    params, pooling = SearchParams.of(settings), PoolingSpec.of(settings).name
    with session_scope(settings) as session:
        conn = mv.raw_connection(session)
        index = mv.visual_index(conn, corpus_id=corpus_id, model_id=model_id)
        n_pages = visual_db.count_embedded_pages(conn, corpus_id=corpus_id, model_id=model_id)
        if index is None or n_pages == 0:
            raise ConfigError(f"corpus {corpus!r} has no page embedded by {model_id} (model set {settings.models}), "
                              "so there is no visual index to measure; ingest documents and let a worker index them")
        mv.check_pooling(index, pooling)
        n_index = visual_db.count_index_pages(conn, index, up_to=n_pages + 1)
        first_stage = not skips_first_stage(conn, index, params)
    return Fidelity(corpus, tenant, settings.models, "visual", model_id, n_pages, n_index, first_stage, search={
        "pooling": pooling, "per_token": params.per_token, "ef_search": params.ef_search,
        "pooled_candidates": params.pooled_candidates, "exact_candidates": params.exact_candidates,
        "search_connections": settings.search_connections})


def _run_visual(settings: Settings, fid: Fidelity, corpus_id: int, texts: list[str], device: torch.device) -> None:
    """Embed ``texts`` with the model set's ColQwen2 and compare its two-stage search with the exact scan."""
    retriever = load_retriever(settings, device=device, dtype=compute_dtype(device))
    queries = retriever.embed_queries(texts, batch_size=settings.query_batch_size)  # each (n_tokens, 128) float32
    del retriever  # not needed past here: its memory goes back before the scans

    def search(exact: bool) -> Callable[[torch.Tensor], list[tuple[int, float]]]:
        chosen = settings.model_copy(update={"exact_search": exact})
        return lambda q: visual_search(chosen, [q], corpus_id=corpus_id, document_ids=[None], k=K,
                                       model_id=fid.model_id, device=device)[0]

    _compare(fid, queries, search(False), search(True))


def _dense_corpus(settings: Settings, corpus: str, tenant: str, corpus_id: int, model_id: str) -> Fidelity:
    """The corpus's passages of ``model_id`` checked (there are some) and their pages counted."""
    with session_scope(settings) as session:
        n_pages = text_search.count_passage_pages(session, corpus_id=corpus_id, model_id=model_id)
    if n_pages == 0:
        raise ConfigError(f"corpus {corpus!r} has no passage embedded by {model_id}, so the dense lane has nothing "
                          "to search; ingest documents and let a worker index them")
    return Fidelity(corpus, tenant, settings.models, "dense", model_id, n_pages, n_pages, search={
        "passages per query": text_search.DENSE_PASSAGES, "hnsw.ef_search": text_search.DENSE_EF_SEARCH,
        "page score": "best passage (MaxP)"})


def _run_dense(settings: Settings, fid: Fidelity, corpus_id: int, vectors) -> None:
    """Compare the dense lane's HNSW search of the ``(n, 384) float32`` query ``vectors`` with its exact scan."""
    with session_scope(settings) as session:
        fid.first_stage = text_search.dense_plan_uses_index(session, vector=vectors[0], corpus_id=corpus_id,
                                                            model_id=fid.model_id)

    def search(exact: bool) -> Callable[[object], list[tuple[int, float]]]:
        def one(vector) -> list[tuple[int, float]]:
            with session_scope(settings) as session:
                return text_search.dense_search(session, vectors=vector[None], corpus_id=corpus_id,
                                                document_ids=[None], k=K, model_id=fid.model_id, exact=exact)[0]
        return one

    _compare(fid, list(vectors), search(False), search(True))


def _compare(fid: Fidelity, queries: Sequence[Q], search: Callable[[Q], list[tuple[int, float]]],
             exact: Callable[[Q], list[tuple[int, float]]]) -> None:
    """Each query through ``search`` then ``exact``, one at a time and timed, into ``fid``. One untimed search
    first: the first call opens connections and reads cold index pages."""
    search(queries[0])
    got, fid.search_ms = _timed(search, queries)
    want, fid.exact_ms = _timed(exact, queries)
    fid.recall, fid.ndcg = figures(got, want)


def _timed(fn: Callable[[Q], list[tuple[int, float]]], queries: Sequence[Q]) -> tuple[list, list[float]]:
    """``fn`` of each query, and the milliseconds each call took."""
    results, ms = [], []
    for q in queries:
        t0 = time.perf_counter()
        results.append(fn(q))
        ms.append((time.perf_counter() - t0) * 1e3)
    return results, ms
