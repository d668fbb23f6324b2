"""Benchmark of late-interaction retrieval in PostgreSQL on a synthetic ColQwen2-shaped corpus.

    uv run pageqa bench retrieval --pages 10000 --pages 100000

For each corpus size N: a fresh database ``pageqa_bench_<N>`` on the configured server (embedded by default) is
migrated; N synthetic pages (:mod:`scripts.bench.synthetic`) are pooled (:mod:`models.pooling`) and loaded with binary
``COPY`` with the HNSW index dropped, then the index is built. While the pages are generated, the exact MaxSim of
every benchmark query against every page is computed in memory: the ground truth of recall@10 and nDCG@10. Then
the queries run through the two-stage search one at a time (latency) and in chunks of 16 (throughput), and a few
through the exact scan of the fidelity guard (baseline latency). One Markdown table for all sizes goes to
``docs/benchmarks.md`` (a section per command; a rerun replaces its section) and to stdout.

The loading and the ground truth are in :mod:`scripts.bench.retrieval_load`, the measurements in
:mod:`scripts.bench.retrieval_measure`, the figures and their Markdown in :mod:`scripts.bench.retrieval_report`.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path

import numpy as np
import psycopg
import torch
from sqlalchemy.engine import make_url

from db import multivector as mv
from db.engine import resolve_database_url
from models.pooling import PoolingSpec
from pageqa.errors import ConfigError
from pageqa.settings import Settings
from scripts.bench.markdown import write_section
from scripts.bench.retrieval_load import (
    MODEL_ID,
    build_index,
    conninfo,
    drop_database,
    fresh_database,
    load_corpus,
    page_index,
)
from scripts.bench.retrieval_measure import (
    chunk_throughput,
    measure,
    measure_exact,
    ndcg,
    recall,
)
from scripts.bench.retrieval_report import (
    DOC_HEADER,
    SWEEP_HEADER,
    Result,
    command_and_date,
    pct,
    report,
)
from scripts.bench.synthetic import SyntheticCorpus
from scripts.bench.synthetic_mixed import MixedCorpus
from services.visual_search import (
    SearchParams,
    StageTimes,
    first_stage_candidates,
    two_stage_search,
)

log = logging.getLogger(__name__)

DOC_PATH = Path(__file__).resolve().parents[2] / "docs" / "benchmarks.md"


def run(settings: Settings, *, pages: list[int], queries: int, exact_queries: int, params: SearchParams,
        spec: PoolingSpec, keep: bool, variant_pages: int = 0, variant_queries: int = 30,
        lookalikes: int = 500) -> str:
    """Run the benchmark for each size in ``pages`` (base pages; ``variant_pages`` pages of each adversarial
    variant are added, ``variant_queries`` queries each); returns the Markdown section (also written to the docs)."""
    n_connections = settings.search_connections
    torch.set_num_threads(os.cpu_count() or 1)
    results = []
    for n in pages:
        nq = min(queries, n)
        corpus = MixedCorpus(SyntheticCorpus(n), variant_pages=variant_pages, lookalikes=lookalikes)
        results.append(bench_size(settings, corpus, n_queries=nq, n_exact=min(exact_queries, nq),
                                  n_variant_queries=min(variant_queries, variant_pages), params=params, spec=spec,
                                  keep=keep, n_connections=n_connections))
        log.info("N=%d done", n)
    body = report(results, params=params, spec=spec, n_connections=n_connections)
    write_section(DOC_PATH, " ".join(sys.argv[1:]) or "default", body, tag="bench_retrieval", header=DOC_HEADER)
    return body


def bench_size(settings: Settings, corpus: MixedCorpus, *, n_queries: int, n_exact: int, n_variant_queries: int,
               params: SearchParams, spec: PoolingSpec, keep: bool, n_connections: int) -> Result:
    """Load ``corpus`` into a fresh database and measure it: ``n_queries`` base queries and ``n_variant_queries``
    per adversarial variant through the two-stage search on ``n_connections`` connections, the first ``n_exact``
    base queries also through the exact scan. With ``keep`` the database stays, and the queries and ground truth
    are saved for :func:`sweep`."""
    n_pages = corpus.base.n_pages
    res = Result(n_pages, n_queries, n_exact, adversarial_pages=corpus.n_pages - n_pages)
    dsn = fresh_database(settings, f"pageqa_bench_{n_pages}")
    device = torch.device("cpu")
    qs, targets, variants = [], [], []
    for variant in ("base", *corpus.variants()):
        q, t = corpus.queries(variant, n_queries if variant == "base" else n_variant_queries)
        qs, targets, variants = qs + q, targets + t, variants + [variant] * len(q)
    with mv.connect(dsn) as conn:
        corpus_id, index, truth = load_corpus(conn, corpus, qs, spec=spec, device=device, res=res)
        build_index(conn, res)
        page_of = page_index(conn, index)  # page id -> synthetic page index
        conn.rollback()
        conns = [conn] + [mv.connect(dsn) for _ in range(n_connections - 1)]
        measure(conns, index, qs, targets, truth, page_of, params, device, res, variants)
        for c in conns[1:]:
            c.close()
        measure_exact(conn, corpus_id=corpus_id, qs=qs[:n_exact], truth=truth, page_of=page_of, device=device,
                      res=res)
    for v in res.variants:
        v.lookalikes = corpus.lookalikes_of(v.variant)
    if keep:  # with the ground truth, so that search settings can be tried again without reloading
        torch.save({"queries": qs, "targets": targets, "truth": truth, "variants": variants},
                   _truth_path(settings, n_pages))
    else:
        drop_database(settings, f"pageqa_bench_{n_pages}")
    return res


def _truth_path(settings: Settings, n_pages: int) -> Path:
    path = settings.home_dir / "bench" / f"retrieval_truth_{n_pages}.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def sweep(settings: Settings, *, n_pages: int, combos: list[SearchParams]) -> str:
    """Try search settings on a corpus kept by ``--keep``: per setting, the first stage's recall of the exact top
    10 among its candidates, the final recall@10, and the latency per query; a Markdown table (also written to
    the docs, in a section per command).

    Raises:
        ConfigError: no corpus of ``n_pages`` was kept.
    """
    path = _truth_path(settings, n_pages)
    if not path.exists():
        raise ConfigError(f"{path}: no kept benchmark corpus of {n_pages} pages; run "
                          f"`pageqa bench retrieval --pages {n_pages} --keep` first")
    saved = torch.load(path)
    qs, truth, targets = saved["queries"], saved["truth"], saved["targets"]
    variants = saved.get("variants", ["base"] * len(qs))  # corpora kept before the variants: base queries only
    url = make_url(resolve_database_url(settings)).set(database=f"pageqa_bench_{n_pages}")
    conns = [mv.connect(conninfo(url)) for _ in range(settings.search_connections)]
    index = mv.visual_index(conns[0], corpus_id=1, model_id=MODEL_ID)
    device = torch.device("cpu")
    page_of = page_index(conns[0], index)
    lines = list(SWEEP_HEADER)
    for params in combos:
        for variant in dict.fromkeys(variants):
            rows = [i for i, v in enumerate(variants) if v == variant]
            lines.append(f"| {variant} " + _sweep_row(conns, index, [qs[i] for i in rows], truth[rows],
                                                      [targets[i] for i in rows], page_of, params, device))
            log.info(lines[-1])
    for c in conns:
        c.close()
    command, date = command_and_date()
    body = (f"`{command}` — {date}, {settings.search_connections} connections, the same machine\n\n"
            + "\n".join(lines) + "\n")
    write_section(DOC_PATH, " ".join(sys.argv[1:]), body, tag="bench_retrieval", header=DOC_HEADER)
    return body


def _sweep_row(conns: list[psycopg.Connection], index: mv.VisualIndexRef, qs: list[torch.Tensor],
               truth: torch.Tensor, targets: list[int], page_of: dict[int, int], params: SearchParams,
               device: torch.device) -> str:
    """One table row from its second column on: ``params`` and what they give over the queries ``qs`` (first-stage
    recall of the exact top 10 and of the ``targets``, recall@10, the target in the top 10, nDCG@10, latency,
    chunk throughput, milliseconds per stage)."""
    first, first_target, final, found, ndcgs, latency, stages = [], [], [], [], [], [], StageTimes()
    two_stage_search(conns, index, qs[:1], document_ids=[None], k=10, params=params, device=device)
    for c in conns:
        c.rollback()
    for i, q in enumerate(qs):
        candidates = [page_of[p] for p in first_stage_candidates(conns, index, q, params)]
        first.append(recall(truth[i], candidates))
        first_target.append(targets[i] in candidates)
        t0 = time.perf_counter()
        hits = two_stage_search(conns, index, [q], document_ids=[None], k=10, params=params, device=device,
                                times=stages)[0]
        latency.append((time.perf_counter() - t0) * 1e3)
        for c in conns:
            c.rollback()
        final.append(recall(truth[i], [page_of[p] for p, _ in hits]))
        found.append(targets[i] in [page_of[p] for p, _ in hits])
        ndcgs.append(ndcg(truth[i], [page_of[p] for p, _ in hits]))
    qps = chunk_throughput(conns, index, qs, params, device)
    n = len(qs)
    return (
        f"| {len(qs)} | {params.per_token} | {params.ef_search} | {params.pooled_candidates} | "
        f"{params.exact_candidates} | "
        f"{np.mean(first):.3f} / {np.mean(first_target):.3f} | {np.mean(final):.3f} / {np.mean(found):.3f} | "
        f"{np.mean(ndcgs):.4f} | {pct(latency, 50):.0f} / "
        f"{pct(latency, 95):.0f} | {qps:.1f} | {stages.first_stage_ms / n:.1f} / {stages.pooled_ms / n:.1f} / "
        f"{stages.exact_ms / n:.1f} |"
    )
