"""Benchmark of late-interaction retrieval in PostgreSQL on a synthetic ColQwen2-shaped corpus.

    uv run pageqa bench retrieval --pages 10000 --pages 100000

For each corpus size N: a fresh database ``pageqa_bench_<N>`` on the configured server (embedded by default) is
migrated; N synthetic pages (:mod:`scripts.bench.synthetic`) are pooled (:mod:`models.pooling`) and loaded with binary
``COPY`` with the HNSW index dropped, then the index is built. While the pages are generated, the exact MaxSim of
every benchmark query against every page is computed in memory: the ground truth of recall@10 and nDCG@10. Then
the queries run through the two-stage search one at a time (latency) and in chunks of 16 (throughput), and a few
through the exact scan of the fidelity guard (baseline latency). One Markdown table for all sizes goes to
``docs/benchmarks.md`` (a section per command; a rerun replaces its section) and to stdout.
"""

from __future__ import annotations

import logging
import math
import os
import platform
import shlex
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import psycopg
import torch
from sqlalchemy.engine import make_url

from db import multivector as mv
from db.engine import migrate, resolve_database_url
from services.visual_search import (
    SearchParams,
    StageTimes,
    exact_search,
    first_stage_candidates,
    two_stage_search,
)
from models.pooling import PoolingSpec, pool_pages
from models.late_interaction import maxsim
from pageqa.errors import ConfigError
from pageqa.settings import Settings
from scripts.bench.markdown import write_section
from scripts.bench.synthetic import DIM, SyntheticCorpus

log = logging.getLogger(__name__)

DOC_PATH = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
PAGES_PER_DOCUMENT = 50
MODEL_ID = "synthetic-colqwen2"
CHUNK = 16


@dataclass
class Result:
    """Every figure of one corpus size; times in seconds unless named ``_ms``."""

    n_pages: int
    n_queries: int
    n_exact_queries: int
    generate_s: float = 0.0
    pool_s: float = 0.0
    copy_s: float = 0.0
    truth_s: float = 0.0
    index_s: float = 0.0
    recall: float = 0.0
    ndcg: float = 0.0
    target_first: float = 0.0
    latency_ms: list[float] = field(default_factory=list)
    stages: StageTimes = field(default_factory=StageTimes)
    chunk_qps: float = 0.0
    exact_ms: list[float] = field(default_factory=list)
    exact_agrees: bool = True
    bytes_per_page: dict[str, float] = field(default_factory=dict)
    server: str = ""


def run(settings: Settings, *, pages: list[int], queries: int, exact_queries: int, params: SearchParams,
        spec: PoolingSpec, keep: bool) -> str:
    n_connections = settings.search_connections
    """Run the benchmark for each size in ``pages``; returns the Markdown section (also written to the docs)."""
    torch.set_num_threads(os.cpu_count() or 1)
    results = []
    for n in pages:
        nq = min(queries, n)
        results.append(bench_size(settings, n_pages=n, n_queries=nq, n_exact=min(exact_queries, nq),
                                  params=params, spec=spec, keep=keep, n_connections=n_connections))
        log.info("N=%d done", n)
    body = report(results, params=params, spec=spec, n_connections=n_connections)
    write_section(DOC_PATH, " ".join(sys.argv[1:]) or "default", body, tag="bench_retrieval", header=_DOC_HEADER)
    return body


def bench_size(settings: Settings, *, n_pages: int, n_queries: int, n_exact: int, params: SearchParams,
               spec: PoolingSpec, keep: bool, n_connections: int) -> Result:
    """Load one synthetic corpus of ``n_pages`` into a fresh database and measure it."""
    res = Result(n_pages, n_queries, n_exact)
    conninfo = _fresh_database(settings, f"pageqa_bench_{n_pages}")
    device = torch.device("cpu")
    corpus = SyntheticCorpus(n_pages)
    qs, targets = corpus.queries(n_queries)
    truth = torch.empty(n_queries, n_pages)
    with mv.connect(conninfo) as conn:
        corpus_id, doc_ids = _documents(conn, n_pages)
        index = mv.ensure_visual_index(conn, corpus_id=corpus_id, model_id=MODEL_ID, pooling=spec.name, dim=DIM)
        mv.drop_first_stage_index(conn)
        conn.commit()
        for start in corpus.batches():
            t0 = time.perf_counter()
            vectors, _ = corpus.batch(start)
            t1 = time.perf_counter()
            pooled = pool_pages(vectors, spec)
            t2 = time.perf_counter()
            truth[:, start : start + len(vectors)] = maxsim(qs, vectors, device=device, page_block=32)
            t3 = time.perf_counter()
            page_ids = _pages(conn, doc_ids, start, len(vectors))
            tiers = [
                mv.PageTiers(pid, doc_ids[(start + i) // PAGES_PER_DOCUMENT], v, p.coarse, p.fine)
                for i, (pid, v, p) in enumerate(zip(page_ids, vectors, pooled, strict=True))
            ]
            mv.store_tiers(conn, index, tiers, colpali_version="synthetic", max_pixels=0)
            conn.commit()
            t4 = time.perf_counter()
            res.generate_s += t1 - t0
            res.pool_s += t2 - t1
            res.truth_s += t3 - t2
            res.copy_s += t4 - t3
            log.info("N=%d: %d pages loaded (copy %.0f pages/s)", n_pages, start + len(vectors),
                     (start + len(vectors)) / res.copy_s)
        t0 = time.perf_counter()
        mv.build_first_stage_index(conn, maintenance_work_mem="4GB", workers=1)
        conn.commit()
        res.index_s = time.perf_counter() - t0
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE page_embeddings")
        conn.execute("VACUUM ANALYZE page_pool_vectors")
        conn.autocommit = False
        res.bytes_per_page = {
            table: conn.execute("SELECT pg_total_relation_size(%s)", (table,)).fetchone()[0] / n_pages
            for table in ("page_embeddings", "page_pool_vectors", "visual_indexes")
        }
        res.server = _server_settings(conn)
        page_of = _page_index(conn, index)  # page id -> synthetic page index
        conn.rollback()
        conns = [conn] + [mv.connect(conninfo) for _ in range(n_connections - 1)]
        _measure(conns, index, qs, targets, truth, page_of, params, device, res)
        for c in conns[1:]:
            c.close()
        for i, q in enumerate(qs[:n_exact]):
            t0 = time.perf_counter()
            hits = exact_search(conn, corpus_id=corpus_id, model_id=MODEL_ID, queries=[q], document_ids=[None],
                                k=10, device=device)
            res.exact_ms.append((time.perf_counter() - t0) * 1e3)
            conn.rollback()
            exact_top = {page_of[p] for p, _ in hits[0]}
            res.exact_agrees &= exact_top == set(torch.topk(truth[i], 10).indices.tolist())
    if keep:  # with the ground truth, so that search settings can be tried again without reloading
        torch.save({"queries": qs, "targets": targets, "truth": truth}, _truth_path(settings, n_pages))
    else:
        _drop_database(settings, f"pageqa_bench_{n_pages}")
    return res


def _truth_path(settings: Settings, n_pages: int) -> Path:
    path = settings.home_dir / "bench" / f"retrieval_truth_{n_pages}.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _measure(conns, index, qs, targets, truth, page_of, params, device, res: Result) -> None:
    """Two-stage search one query at a time (latency, recall, nDCG) and in chunks (throughput)."""
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
        recalls.append(_recall(truth[i], got))
        ndcgs.append(_ndcg(truth[i], got))
        firsts.append(bool(got) and got[0] == targets[i])
    res.recall, res.ndcg, res.target_first = map(float, (np.mean(recalls), np.mean(ndcgs), np.mean(firsts)))
    res.chunk_qps = _chunk_throughput(conns, index, qs, params, device)


def _recall(truth_row: torch.Tensor, got: list[int]) -> float:
    """Share of the exact MaxSim top 10 (``truth_row``: scores of every page) among the pages ``got``."""
    return len(set(got) & set(torch.topk(truth_row, 10).indices.tolist())) / 10


def _ndcg(truth_row: torch.Tensor, got: list[int]) -> float:
    """nDCG@10 of the ranked pages ``got`` with their exact MaxSim scores as gains."""
    dcg = sum(g / math.log2(r + 2) for r, g in enumerate(truth_row[got].tolist() if got else []))
    idcg = sum(g / math.log2(r + 2) for r, g in enumerate(torch.topk(truth_row, 10).values.tolist()))
    return dcg / idcg


def _chunk_throughput(conns, index, qs, params, device) -> float:
    """Queries per second when the queries go through the search in chunks of ``CHUNK``."""
    t0 = time.perf_counter()
    for start in range(0, len(qs), CHUNK):
        chunk = qs[start : start + CHUNK]
        two_stage_search(conns, index, chunk, document_ids=[None] * len(chunk), k=10, params=params, device=device)
        for c in conns:
            c.rollback()
    return len(qs) / (time.perf_counter() - t0)


def _fresh_database(settings: Settings, name: str) -> str:
    """Create database ``name`` (dropping an earlier one), migrate it; its psycopg conninfo."""
    url = make_url(resolve_database_url(settings))
    _drop_database(settings, name)
    with psycopg.connect(_conninfo(url), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    bench_url = url.set(database=name)
    migrate(settings.model_copy(update={"database_url": bench_url.render_as_string(hide_password=False)}))
    return _conninfo(bench_url)


def _drop_database(settings: Settings, name: str) -> None:
    url = make_url(resolve_database_url(settings))
    with psycopg.connect(_conninfo(url), autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _conninfo(url) -> str:
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def _documents(conn: psycopg.Connection, n_pages: int) -> tuple[int, list[int]]:
    """A corpus with one document per ``PAGES_PER_DOCUMENT`` pages; (corpus id, document ids in order)."""
    corpus_id = conn.execute("INSERT INTO corpora (name) VALUES ('synthetic') RETURNING id").fetchone()[0]
    n_docs = -(-n_pages // PAGES_PER_DOCUMENT)
    doc_ids = [r[0] for r in conn.execute(
        "INSERT INTO documents (corpus_id, sha256, title, source, kind, page_count, size_bytes) "
        "SELECT %s, md5(i::text) || md5(i::text), 'synthetic ' || i, 'synthetic-' || i || '.pdf', 'pdf', %s, 0 "
        "FROM generate_series(1, %s::int) i ORDER BY i RETURNING id",
        (corpus_id, PAGES_PER_DOCUMENT, n_docs),
    )]
    return corpus_id, doc_ids


def _pages(conn: psycopg.Connection, doc_ids: list[int], start: int, n: int) -> list[int]:
    """Page rows (no image, no text) for synthetic pages ``start … start + n - 1``; their ids in order."""
    return [r[0] for r in conn.execute(
        "INSERT INTO pages (document_id, page_number, width, height, image_format, image, text, text_source) "
        "SELECT (%s::int[])[i / %s + 1], i %% %s + 1, 0, 0, 'none', '', '', 'none' "
        "FROM generate_series(%s::int, %s::int) i ORDER BY i RETURNING id",
        (doc_ids, PAGES_PER_DOCUMENT, PAGES_PER_DOCUMENT, start, start + n - 1),
    )]


def _page_index(conn: psycopg.Connection, index: mv.VisualIndexRef) -> dict[int, int]:
    """Page id -> 0-based synthetic page index (pages were inserted in order)."""
    ids = sorted(r[0] for r in conn.execute(
        "SELECT page_id FROM page_embeddings WHERE visual_index_id = %s", (index.id,)
    ))
    return {pid: i for i, pid in enumerate(ids)}


def _server_settings(conn: psycopg.Connection) -> str:
    """The server settings that matter for these figures, as one line."""
    shows = [f"{name}={conn.execute(f'SHOW {name}').fetchone()[0]}" for name in ("shared_buffers", "max_wal_size")]
    version = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()[0]
    return ", ".join(shows) + f", pgvector {version}"


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def report(results: list[Result], *, params: SearchParams, spec: PoolingSpec, n_connections: int) -> str:
    """The Markdown section: command, machine, settings, the table, and the time spent per phase."""
    command = shlex.join(["uv", "run", "pageqa", *sys.argv[1:]])
    date = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    cols = [f"N = {r.n_pages:,}" for r in results]
    rows = [
        ("recall@10 against the exact MaxSim top 10", "≥ 0.95", [f"{r.recall:.3f}" for r in results]),
        ("nDCG@10 against exact MaxSim scores", "≥ 0.97", [f"{r.ndcg:.4f}" for r in results]),
        ("query latency, one at a time, p50 / p95", "≤ 50 / 150 ms",
         [f"{_pct(r.latency_ms, 50):.0f} / {_pct(r.latency_ms, 95):.0f} ms" for r in results]),
        ("throughput, chunks of 16 queries", "≥ 50 q/s", [f"{r.chunk_qps:.1f} q/s" for r in results]),
        ("storage per page, all tiers and indexes", "≤ 300 KB",
         [f"{sum(r.bytes_per_page.values()) / 1000:.0f} KB" for r in results]),
        ("bulk load (binary COPY), pages/s", "≥ 300", [f"{r.n_pages / r.copy_s:.0f}" for r in results]),
        ("exact-scan baseline, one query, p50", "reported",
         [f"{_pct(r.exact_ms, 50):,.0f} ms (n={len(r.exact_ms)})" for r in results]),
        ("speed-up of two-stage over exact scan (p50)", "", [
            f"{_pct(r.exact_ms, 50) / _pct(r.latency_ms, 50):.0f}×" for r in results]),
    ]
    lines = ["| figure | goal at 100k pages | " + " | ".join(cols) + " |", "|---|---|" + "---|" * len(cols)]
    lines += [f"| {name} | {goal} | " + " | ".join(vals) + " |" for name, goal, vals in rows]
    detail = ["| phase | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    n_q = [max(r.n_queries, 1) for r in results]
    detail += [
        "| queries (exact-scan queries) | " + " | ".join(f"{r.n_queries} ({r.n_exact_queries})" for r in results) + " |",
        "| target page ranked first | " + " | ".join(f"{r.target_first:.3f}" for r in results) + " |",
        "| first stage / pooled rescoring / exact MaxSim, mean ms per query | " + " | ".join(
            f"{r.stages.first_stage_ms / n:.1f} / {r.stages.pooled_ms / n:.1f} / {r.stages.exact_ms / n:.1f}"
            for r, n in zip(results, n_q, strict=True)) + " |",
        "| exact scan top 10 = ground truth top 10 | " + " | ".join(
            "yes" if r.exact_agrees else "NO" for r in results) + " |",
        "| bytes per page: exact + fine tier / coarse rows + HNSW | " + " | ".join(
            f"{r.bytes_per_page['page_embeddings'] / 1000:.1f} KB / {r.bytes_per_page['page_pool_vectors'] / 1000:.1f} KB"
            for r in results) + " |",
        "| synthetic generation, s | " + " | ".join(f"{r.generate_s:.0f}" for r in results) + " |",
        "| pooling (k-means, CPU), s | " + " | ".join(f"{r.pool_s:.0f}" for r in results) + " |",
        "| binary COPY, s | " + " | ".join(f"{r.copy_s:.0f}" for r in results) + " |",
        "| HNSW build, s | " + " | ".join(f"{r.index_s:.0f}" for r in results) + " |",
        "| ground truth (exact MaxSim in memory), s | " + " | ".join(f"{r.truth_s:.0f}" for r in results) + " |",
    ]
    return (
        f"`{command}` — {date}\n\n"
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB, no GPU; PostgreSQL "
        f"{results[0].server if results else ''}; torch {torch.__version__} "
        f"({torch.get_num_threads()} threads).\n\n"
        f"Settings: pooling `{spec.name}`; per_token={params.per_token}, ef_search={params.ef_search}, "
        f"pooled_candidates={params.pooled_candidates}, exact_candidates={params.exact_candidates}, "
        f"search_connections={n_connections}; HNSW m=16, "
        "ef_construction=64 (pgvector defaults), built with maintenance_work_mem=4GB.\n\n"
        + "\n".join(lines) + "\n\n" + "\n".join(detail) + "\n"
    )


_DOC_HEADER = """# Benchmarks

## Late-interaction retrieval in PostgreSQL

`scripts/bench/retrieval.py` (`pageqa bench retrieval`) loads a synthetic ColQwen2-shaped corpus
(`scripts/bench/synthetic.py`: 700–770 unit patch vectors of 128 dims per page, topics shared across pages, 15–35 %
near-duplicate background patches; queries of 15–25 tokens drawn near one target page's patches plus noise) into a
fresh database with binary `COPY`, builds the HNSW index after the load, and searches it with the same two-stage
search the worker uses (`services/visual_search.py`) and with the exact scan (`PAGEQA_EXACT_SEARCH`, the fidelity
guard). Ground truth is the exact MaxSim of every query against every page, computed in memory while the pages are
generated. `pageqa bench retrieval-sweep` tries other search settings on a corpus kept with `--keep`.

How the search works, and why:

* **Tiers.** Exact float16 multi-vector (~188 KB a page, out of line and uncompressed: float16 noise does not
  compress); a fine pooled tier of 64 k-means centroids (16 KB); 16 coarse k-means centroids per page as
  `halfvec(128)` rows under a pgvector HNSW index (inner product). Pooling is token pooling by clustering (Clavié et
  al., 2024); spherical k-means batched over pages in torch, so it runs on the worker's GPU next to ColQwen2.
* **First stage** (PostgreSQL): each query token takes its `per_token` nearest coarse vectors through the HNSW index
  (one statement, `CROSS JOIN LATERAL` over the tokens, iterative scan for filters). A page scores Σ over tokens of
  its best hit, or the token's weakest hit where the token did not reach it.
* **Pooled rescoring** (worker): MaxSim against the fine tier of the best `pooled_candidates` pages.
* **Exact MaxSim** (worker): the best `exact_candidates` pages are read in full and scored exactly; their exact
  scores are what the lane returns.
* A binary-quantised patch tier (sign bits, 12 KB a page) was tried first in a throwaway experiment and dropped:
  on this CPU, unpacking bits to floats for a few hundred candidates cost more than reading the fine float16 tier.
* The HNSW index holds 16 rows per page (1.6 M at 100k pages); more rows per page would make the first stage
  better and the build and every search slower.

Each section below is one command's output, rewritten when the same command runs again.
"""


def sweep(settings: Settings, *, n_pages: int, combos: list[SearchParams]) -> str:
    """Try search settings on a corpus kept by ``--keep``: per setting, the first stage's recall of the exact top
    10 among its candidates, the final recall@10, and the latency per query; a Markdown table (also written to
    the docs, in a section per command)."""
    path = _truth_path(settings, n_pages)
    if not path.exists():
        raise ConfigError(f"{path}: no kept benchmark corpus of {n_pages} pages; run "
                          f"`pageqa bench retrieval --pages {n_pages} --keep` first")
    saved = torch.load(path)
    qs, truth = saved["queries"], saved["truth"]
    url = make_url(resolve_database_url(settings)).set(database=f"pageqa_bench_{n_pages}")
    conns = [mv.connect(_conninfo(url)) for _ in range(settings.search_connections)]
    device = torch.device("cpu")
    index = mv.visual_index(conns[0], corpus_id=1, model_id=MODEL_ID)
    page_of = _page_index(conns[0], index)
    lines = [
        ("| per_token | ef_search | pooled | exact | first-stage recall | recall@10 | nDCG@10 | p50 / p95 ms | "
         "chunks of 16, q/s | stages ms (first / pooled / exact) |"),
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for params in combos:
        first, final, ndcg, latency, stages = [], [], [], [], StageTimes()
        two_stage_search(conns, index, qs[:1], document_ids=[None], k=10, params=params, device=device)
        for c in conns:
            c.rollback()
        for i, q in enumerate(qs):
            first.append(_recall(truth[i], [page_of[p] for p in first_stage_candidates(conns, index, q, params)]))
            t0 = time.perf_counter()
            hits = two_stage_search(conns, index, [q], document_ids=[None], k=10, params=params, device=device,
                                    times=stages)[0]
            latency.append((time.perf_counter() - t0) * 1e3)
            for c in conns:
                c.rollback()
            final.append(_recall(truth[i], [page_of[p] for p, _ in hits]))
            ndcg.append(_ndcg(truth[i], [page_of[p] for p, _ in hits]))
        qps = _chunk_throughput(conns, index, qs, params, device)
        n = len(qs)
        lines.append(
            f"| {params.per_token} | {params.ef_search} | {params.pooled_candidates} | {params.exact_candidates} | "
            f"{np.mean(first):.3f} | {np.mean(final):.3f} | {np.mean(ndcg):.4f} | {_pct(latency, 50):.0f} / "
            f"{_pct(latency, 95):.0f} | {qps:.1f} | {stages.first_stage_ms / n:.1f} / {stages.pooled_ms / n:.1f} / "
            f"{stages.exact_ms / n:.1f} |"
        )
        log.info(lines[-1])
    for c in conns:
        c.close()
    command = shlex.join(["uv", "run", "pageqa", *sys.argv[1:]])
    date = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    body = (f"`{command}` — {date}, {len(qs)} queries, {settings.search_connections} connections, the same "
            f"machine\n\n" + "\n".join(lines) + "\n")
    write_section(DOC_PATH, " ".join(sys.argv[1:]), body, tag="bench_retrieval", header=_DOC_HEADER)
    return body
