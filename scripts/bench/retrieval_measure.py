"""The retrieval benchmark's measurements on a loaded corpus: the two-stage search one query at a time (latency,
recall@10 and nDCG@10 against the exact MaxSim ground truth, per query variant), the first stage alone (its recall
of the target page), the base queries in chunks (throughput), and the exact scan of the fidelity guard (baseline
latency)."""

from __future__ import annotations

import math
import time

import psycopg
import torch

from db import multivector as mv
from scripts.bench.retrieval_load import MODEL_ID
from scripts.bench.retrieval_report import Result
from scripts.bench.retrieval_variants import VariantResult
from services.fidelity import K, ndcg_at_k, recall_at_k
from services.visual_search import SearchParams, exact_search, first_stage_candidates, two_stage_search

CHUNK = 16


def measure(conns: list[psycopg.Connection], index: mv.VisualIndexRef, qs: list[torch.Tensor], targets: list[int],
            truth: torch.Tensor, page_of: dict[int, int], params: SearchParams, device: torch.device,
            res: Result, variants: list[str]) -> None:
    """Two-stage search one query at a time (latency, recall, nDCG), the first stage alone (its recall of the
    target and of the exact top 10), and the base queries in chunks (throughput), into ``res``: its headline
    figures from the base queries, a :class:`VariantResult` per variant in ``res.variants``.

    ``truth`` is the exact MaxSim of each query against every page, ``(n_queries, n_pages)``; ``page_of`` maps a
    page id to its synthetic page index; ``targets`` are the pages the queries were drawn from; ``variants`` the
    variant of each query ("base" first).
    """
    def end() -> None:
        for c in conns:
            c.rollback()

    order = list(dict.fromkeys(variants))
    figures = {v: VariantResult(v) for v in order}
    # One warm-up query: the first touches cold index pages.
    two_stage_search(conns, index, qs[:1], document_ids=[None], k=10, params=params, device=device)
    end()
    for i, q in enumerate(qs):
        fig = figures[variants[i]]
        t0 = time.perf_counter()
        hits = two_stage_search(conns, index, [q], document_ids=[None], k=10, params=params, device=device,
                                times=fig.stages)[0]
        fig.latency_ms.append((time.perf_counter() - t0) * 1e3)
        end()
        _add_final(fig, truth[i], [page_of[p] for p, _ in hits], targets[i])
    for i, q in enumerate(qs):  # apart from the timed pass, so that it does not warm the cache for it
        first = [page_of[p] for p in first_stage_candidates(conns, index, q, params)]
        end()
        figures[variants[i]].first_recalls.append(recall(truth[i], first))
        figures[variants[i]].first_target.append(targets[i] in first)
        figures[variants[i]].first_rank.append(first.index(targets[i]) + 1 if targets[i] in first else math.inf)
    res.variants = [figures[v] for v in order]
    base = figures["base"]
    res.recall, res.ndcg, res.target_first = base.recall, base.ndcg, base.target_first_rate
    res.latency_ms, res.stages = base.latency_ms, base.stages
    res.chunk_qps = chunk_throughput(conns, index, [q for q, v in zip(qs, variants, strict=True) if v == "base"],
                                     params, device)


def _add_final(fig: VariantResult, truth_row: torch.Tensor, got: list[int], target: int) -> None:
    """One query's figures into ``fig``: the two-stage top 10 ``got`` (page indices, best first) against the exact
    MaxSim scores of every page ``truth_row`` (``(n_pages,)``) and the query's ``target`` page."""
    top = torch.topk(truth_row, 11)
    fig.recalls.append(recall(truth_row, got))
    fig.ndcgs.append(ndcg(truth_row, got))
    fig.target_first.append(bool(got) and got[0] == target)
    fig.target_found.append(target in got)
    fig.exact_target_first.append(int(top.indices[0]) == target)
    fig.tie_spread.append(float((top.values[1] - top.values[10]) / top.values[0]))


def measure_exact(conn: psycopg.Connection, *, corpus_id: int, qs: list[torch.Tensor], truth: torch.Tensor,
                  page_of: dict[int, int], device: torch.device, res: Result) -> None:
    """Each query of ``qs`` through the exact scan: its milliseconds, and whether its top 10 is the ground truth's
    (``truth``, ``(n_queries, n_pages)``), into ``res``."""
    for i, q in enumerate(qs):
        t0 = time.perf_counter()
        hits = exact_search(conn, corpus_id=corpus_id, model_id=MODEL_ID, queries=[q], document_ids=[None],
                            k=10, device=device)
        res.exact_ms.append((time.perf_counter() - t0) * 1e3)
        conn.rollback()
        exact_top = {page_of[p] for p, _ in hits[0]}
        res.exact_agrees &= exact_top == set(torch.topk(truth[i], 10).indices.tolist())


def recall(truth_row: torch.Tensor, got: list[int]) -> float:
    """Share of the exact MaxSim top 10 (``truth_row``: scores of every page) among the pages ``got``."""
    return recall_at_k(got, torch.topk(truth_row, K).indices.tolist())


def ndcg(truth_row: torch.Tensor, got: list[int]) -> float:
    """nDCG@10 of the ranked pages ``got`` with their exact MaxSim scores as gains."""
    return ndcg_at_k(truth_row[got].tolist() if got else [], torch.topk(truth_row, K).values.tolist())


def chunk_throughput(conns: list[psycopg.Connection], index: mv.VisualIndexRef, qs: list[torch.Tensor],
                     params: SearchParams, device: torch.device) -> float:
    """Queries per second when the queries go through the search in chunks of ``CHUNK``."""
    t0 = time.perf_counter()
    for start in range(0, len(qs), CHUNK):
        chunk = qs[start : start + CHUNK]
        two_stage_search(conns, index, chunk, document_ids=[None] * len(chunk), k=10, params=params, device=device)
        for c in conns:
            c.rollback()
    return len(qs) / (time.perf_counter() - t0)
