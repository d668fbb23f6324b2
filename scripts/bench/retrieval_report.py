"""What ``pageqa bench retrieval`` reports: the figures of one corpus size, and the Markdown section that shows them
for all sizes (command, machine, settings, the table against the goals, and the time spent per phase)."""

from __future__ import annotations

import os
import platform
import shlex
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import torch

from models.pooling import PoolingSpec
from scripts.bench.retrieval_variants import GOALS, VariantResult, shortfall_notes, variant_table
from services.visual_search import SearchParams, StageTimes


@dataclass
class Result:
    """Every figure of one corpus size; times in seconds unless named ``_ms``."""

    n_pages: int
    n_queries: int
    n_exact_queries: int
    adversarial_pages: int = 0
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
    variants: list[VariantResult] = field(default_factory=list)

    @property
    def total_pages(self) -> int:
        """Base pages and the adversarial variants' pages."""
        return self.n_pages + self.adversarial_pages

    def variant(self, name: str) -> VariantResult | None:
        """The figures of query variant ``name``, if measured."""
        return next((v for v in self.variants if v.variant == name), None)


def pct(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0–100) of ``values``; NaN when there are none."""
    return float(np.percentile(values, q)) if values else float("nan")


def command_and_date() -> tuple[str, str]:
    """The ``pageqa`` command line this process runs, shell-quoted, and the current time in UTC to the minute."""
    command = shlex.join(["uv", "run", "pageqa", *sys.argv[1:]])
    return command, datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")


def report(results: list[Result], *, params: SearchParams, spec: PoolingSpec, n_connections: int) -> str:
    """The Markdown section: command, machine, settings, the table, and the time spent per phase."""
    command, date = command_and_date()
    cols = [f"N = {r.n_pages:,}" for r in results]
    return (
        f"`{command}` — {date}\n\n"
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB, no GPU; PostgreSQL "
        f"{results[0].server if results else ''}; torch {torch.__version__} "
        f"({torch.get_num_threads()} threads).\n\n"
        f"Settings: pooling `{spec.name}`; per_token={params.per_token}, ef_search={params.ef_search}, "
        f"pooled_candidates={params.pooled_candidates}, exact_candidates={params.exact_candidates}, "
        f"search_connections={n_connections}; HNSW m=16, "
        "ef_construction=64 (pgvector defaults), built with the server's settings (above).\n\n"
        + "\n".join(_figures(results, cols)) + "\n\n" + "\n".join(_phases(results, cols)) + "\n"
        + _variants_section(results, params)
    )


def _variants_section(results: list[Result], params: SearchParams) -> str:
    """The per-variant table and the notes on variants short of their goal; empty when only base queries ran."""
    if not any(len(r.variants) > 1 for r in results):
        return ""
    sizes = [(r.n_pages, r.variants) for r in results]
    notes = shortfall_notes(sizes, params)
    return (
        "\nPer query variant (needle and near-duplicate pages: `scripts/bench/synthetic_variants.py`; the base "
        "row is the base queries of the table above; first-stage figures from the first stage run alone, "
        "after the timed queries):\n\n" + "\n".join(variant_table(sizes, params)) + "\n"
        + ("\nShort of the goal:\n\n" + "\n".join(notes) + "\n" if notes else "")
    )


def _figures(results: list[Result], cols: list[str]) -> list[str]:
    """Table lines: each headline figure against its goal at 100k pages, a column per corpus size."""
    rows = [
        ("recall@10 against the exact MaxSim top 10", "≥ 0.95", [f"{r.recall:.3f}" for r in results]),
        *[(f"recall@10 of {name} queries (below)", f"≥ {GOALS[name]:.2f}", [
            f"{v.recall:.3f}" if (v := r.variant(name)) else "–" for r in results])
          for name in ("needle", "near-duplicate") if any(r.variant(name) for r in results)],
        ("nDCG@10 against exact MaxSim scores", "≥ 0.97", [f"{r.ndcg:.4f}" for r in results]),
        ("query latency, one at a time, p50 / p95", "≤ 50 / 150 ms",
         [f"{pct(r.latency_ms, 50):.0f} / {pct(r.latency_ms, 95):.0f} ms" for r in results]),
        ("throughput, chunks of 16 queries", "≥ 50 q/s", [f"{r.chunk_qps:.1f} q/s" for r in results]),
        ("storage per page, all tiers and indexes", "≤ 300 KB",
         [f"{sum(r.bytes_per_page.values()) / 1000:.0f} KB" for r in results]),
        ("bulk load (binary COPY), pages/s", "≥ 300", [f"{r.total_pages / r.copy_s:.0f}" for r in results]),
        ("exact-scan baseline, one query, p50", "reported",
         [f"{pct(r.exact_ms, 50):,.0f} ms (n={len(r.exact_ms)})" for r in results]),
        ("speed-up of two-stage over exact scan (p50)", "", [
            f"{pct(r.exact_ms, 50) / pct(r.latency_ms, 50):.0f}×" for r in results]),
    ]
    lines = ["| figure | goal at 100k pages | " + " | ".join(cols) + " |", "|---|---|" + "---|" * len(cols)]
    return lines + [f"| {name} | {goal} | " + " | ".join(vals) + " |" for name, goal, vals in rows]


def _phases(results: list[Result], cols: list[str]) -> list[str]:
    """Table lines: query counts, the search's stages, storage per tier and the seconds of each loading phase."""
    n_q = [max(r.n_queries, 1) for r in results]
    return ["| phase | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)] + [
        "| pages: base + adversarial (needle, near-duplicate) | " + " | ".join(
            f"{r.n_pages:,} + {r.adversarial_pages:,}" for r in results) + " |",
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


SWEEP_HEADER = [
    ("| queries | n | per_token | ef_search | pooled | exact | first-stage recall of the exact top 10 / of the "
     "target | recall@10 / target in the top 10 | nDCG@10 | p50 / p95 ms | chunks of 16, q/s | stages ms "
     "(first / pooled / exact) |"),
    "|---|---|---|---|---|---|---|---|---|---|---|---|",
]

DOC_HEADER = """# Benchmarks

## Late-interaction retrieval in PostgreSQL

`scripts/bench/retrieval.py` (`pageqa bench retrieval`) loads a synthetic ColQwen2-shaped corpus
(`scripts/bench/synthetic.py`: 700–770 unit patch vectors of 128 dims per page, topics shared across pages, 15–35 %
near-duplicate background patches; queries of 15–25 tokens drawn near one target page's patches plus noise) into a
fresh database with binary `COPY`, builds the HNSW index after the load, and searches it with the same two-stage
search the worker uses (`services/visual_search.py`) and with the exact scan (`PAGEQA_EXACT_SEARCH`, the fidelity
guard). Ground truth is the exact MaxSim of every query against every page, computed in memory while the pages are
generated. `pageqa bench retrieval-sweep` tries other search settings on a corpus kept with `--keep`.

Adversarial variants (`scripts/bench/synthetic_variants.py`, `scripts/bench/synthetic_mixed.py`) follow the base
pages of every size: `--variant-pages` pages of each (default 1,000), `--variant-queries` queries each (default
30), each variant a row of its own with the goal recall@10 ≥ 0.90. They stand for the cases where a pooled first
stage is known to fail on real ColQwen2 embeddings (LanceDB's needle-in-a-haystack test on Document Haystack:
full MaxSim hit@20 95.5 %, hierarchical pooling ÷4 91.6 %, a mean-pooled first stage with a MaxSim rerank of its
top 100 7.3 %):

* **needle**: jittered copies (cosine ≈ 0.98 between look-alikes) of a template page, `--lookalikes` pages per
  template (default 500), except for the evidence: a rectangle of 2–5 % of the patches on the page's 28-column
  patch grid (a line or two of inserted text) around a topic of the base corpus. 80 % of a query's tokens are
  drawn near the evidence, 20 % near the template's content.
* **near-duplicate**: runs of 8–64 consecutive pages, jittered copies of the run's template with 5–15 % of its
  content patches changed in each page (cosine ≈ 0.7 to the patch replaced). 60 % of a query's tokens are drawn
  near the target's changed patches, 40 % near the run's shared content.

Templates have topic directions of their own, so base queries do not meet the look-alike groups and base figures
stay comparable with runs before the variants. The variants have a fixed size rather than a share of N: what
makes them hard is a look-alike group against the search's candidate cuts (600 pooled, 60 exact), and 2,000
pages cost little more to load; the 60 extra queries add to the in-memory ground truth (about +10 min at 100k
pages on 2 cores; `--variant-pages 0` leaves them out). Besides recall@10, their rows say whether the first stage
kept the target among its candidates and at what rank, whether it reached the final top 10, and how close ranks
2–11 of the exact top 10 lie (in a look-alike group they are near-ties).

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
* **MUVERA fixed-dimensional encodings** (Dhulipala et al., NeurIPS 2024) were tried as the first stage for issue 18
  and dropped: one vector per page (SimHash buckets, bucket means with empty buckets filled from the nearest patch
  for pages, bucket sums for queries, a random ±1 projection per bucket, repetitions concatenated), so that one
  HNSW search per query would replace one per token and, with a better-ranked list, fewer candidates would need
  their tiers read. It does not rank well enough on these pages. In a throwaway experiment (not in the repository)
  on 5,000 base pages of `scripts/bench/synthetic.py` plus 1,000 needle and 1,000 near-duplicate pages, with 100
  base, 60 needle and 60 near-duplicate queries, both first stages used exact nearest neighbours (no HNSW loss for
  either; the per-token stage scored with `first_stage_scores`, the pooled tiers from `pool_pages`) and the ground
  truth was exact MaxSim. The encodings fit `halfvec` HNSW's 4,000 dimensions. Share of the exact top 10 within
  the first stage's top N (base queries) / share of needle targets within it:

  | first stage (dims) | N = 50 | 100 | 200 | 300 | 600 |
  |---|---|---|---|---|---|
  | per token, `per_token` 200 (the default) | 0.81 / 0.83 | 0.92 / 0.97 | 0.98 / 0.98 | 1.00 / 1.00 | 1.00 / 1.00 |
  | per token, `per_token` 100 | 0.64 / 0.85 | 0.81 / 0.93 | 0.93 / 0.93 | 0.98 / 0.95 | 1.00 / 0.95 |
  | FDE k_sim 4, d_proj 16, 10 reps (2,560) | 0.52 / 0.58 | 0.65 / 0.82 | 0.76 / 0.93 | 0.81 / 0.95 | 0.90 / 0.98 |
  | FDE k_sim 4, d_proj 16, 15 reps (3,840) | 0.65 / 0.57 | 0.78 / 0.88 | 0.87 / 0.97 | 0.90 / 0.98 | 0.95 / 1.00 |
  | FDE k_sim 5, d_proj 8, 15 reps (3,840) | 0.55 / 0.72 | 0.66 / 0.90 | 0.77 / 0.97 | 0.82 / 0.97 | 0.91 / 0.98 |
  | FDE k_sim 3, d_proj 32, 15 reps (3,840) | 0.68 / 0.25 | 0.82 / 0.73 | 0.91 / 0.95 | 0.94 / 0.97 | 0.97 / 1.00 |
  | FDE k_sim 4, d_proj 32, 7 reps (3,584) | 0.56 / 0.58 | 0.69 / 0.87 | 0.80 / 0.95 | 0.86 / 0.98 | 0.93 / 1.00 |
  | FDE k_sim 2, no projection, 7 reps (3,584) | 0.69 / 0.13 | 0.82 / 0.57 | 0.92 / 0.78 | 0.95 / 0.98 | 0.98 / 1.00 |
  | FDE of the 64 fine centroids, k_sim 4, d_proj 16, 15 reps | 0.53 / 0.78 | 0.66 / 0.92 | 0.75 / 0.98 | 0.80 / 0.98 | 0.88 / 0.98 |

  The per-token stage is ahead at every N on the base row, and ahead or level on the needle row. The
  near-duplicate queries barely separate the stages: from N = 100 on, every first stage kept every target and the
  whole exact top 10 (at N = 50, 0.96–0.99 of the top 10 and 0.97–1.00 of the targets). With the fine rescoring
  and the exact stage after it, recall@10 for base / needle / near-duplicate queries was:
  * per token, 600 → 60 (the defaults): 0.999 / 0.998 / 0.998;
  * per token, 300 → 40: 0.991 / 0.987 / 0.922;
  * the FDE with the best base figures (k_sim 2, no projection, 7 reps), 600 → 60: 0.982 / 0.968 / 0.998;
  * the same FDE, 300 → 40: 0.952 / 0.922 / 0.922;
  * the same FDE, 200 → 40: 0.922 / 0.878 / 0.922.

  An FDE first stage would therefore need at least as many pooled candidates as the per-token one, so the tier
  reads would not shrink, and those reads are most of a query's time at 100k pages (run 10). What it would save
  is the per-token HNSW searches (23–65 ms a query in runs 9–10), at some loss of recall. More dimensions helped
  (k_sim 4, d_proj 16: 0.76 → 0.87 within 200 from 10 to 15 reps), but `halfvec` HNSW stops at 4,000 dimensions.
  A `bit` FDE under a Hamming HNSW index, which allows more dimensions, was not tried.

  The same experiment bounds the exact cut. The near-duplicate rows fall to 0.922 with 40 exact candidates and to
  0.842 with 30, whatever the first stage, because a near-duplicate run has up to 64 nearly tied pages. Encoding
  cost about 3.5 ms a page on one core (k_sim 4, d_proj 16, 10 reps, torch, scatter-add per bucket).

Each section below is one command's output, rewritten when the same command runs again.
"""
