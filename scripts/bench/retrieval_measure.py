"""The retrieval benchmark's measurements on a loaded corpus: the two-stage search one query at a time (latency,
recall@10 and nDCG@10 against the exact MaxSim ground truth) and in chunks (throughput), and the exact scan of the
fidelity guard (baseline latency)."""

from __future__ import annotations

import time

import numpy as np
import psycopg
import torch

from db import multivector as mv
from scripts.bench.retrieval_load import MODEL_ID
from scripts.bench.retrieval_report import Result
from services.fidelity import K, ndcg_at_k, recall_at_k
from services.visual_search import SearchParams, exact_search, two_stage_search

CHUNK = 16


def measure(conns: list[psycopg.Connection], index: mv.VisualIndexRef, qs: list[torch.Tensor], targets: list[int],
            truth: torch.Tensor, page_of: dict[int, int], params: SearchParams, device: torch.device,
            res: Result) -> None:
    """Two-stage search one query at a time (latency, recall, nDCG) and in chunks (throughput), into ``res``.

    ``truth`` is the exact MaxSim of each query against every page, ``(n_queries, n_pages)``; ``page_of`` maps a
    page id to its synthetic page index; ``targets`` are the pages the queries were drawn from.
    """
    def end() -> None:
        for c in conns:
            c.rollback()

    recalls, ndcgs, firsts = [], [], []
    # One warm-up query: the first touches cold index pages.
    two_stage_search(conns, index, qs[:1], document_ids=[None], k=10, params=params, device=device)
    end()
    for i, q in enumerate(qs):
        t0 = time.perf_counter()
        hits = two_stage_search(conns, index, [q], document_ids=[None], k=10, params=params, device=device,
                                times=res.stages)[0]
        res.latency_ms.append((time.perf_counter() - t0) * 1e3)
        end()
        got = [page_of[p] for p, _ in hits]
        recalls.append(recall(truth[i], got))
        ndcgs.append(ndcg(truth[i], got))
        firsts.append(bool(got) and got[0] == targets[i])
    res.recall, res.ndcg, res.target_first = map(float, (np.mean(recalls), np.mean(ndcgs), np.mean(firsts)))
    res.chunk_qps = chunk_throughput(conns, index, qs, params, device)


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
