"""What ``pageqa bench retrieval`` reports per query variant (base, needle, near-duplicate; see
:mod:`scripts.bench.synthetic_variants`): the figures of one variant on one corpus, the table of all of them, and
for each variant short of its goal a note that says by how much and at which stage the pages were lost."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from services.visual_search import SearchParams, StageTimes

#: recall@10 against the exact MaxSim top 10 that each variant should reach.
GOALS = {"base": 0.95, "needle": 0.90, "near-duplicate": 0.90}


@dataclass
class VariantResult:
    """One query variant on one corpus: per-query figures (in query order) and times in milliseconds.

    Attributes:
        recalls: share of the exact MaxSim top 10 in the two-stage top 10.
        ndcgs: nDCG@10 with exact MaxSim scores as gains.
        target_first / target_found: the target page is the two-stage top 1 / in its top 10.
        first_target: the target page is among the first stage's ``pooled_candidates``.
        first_recalls: share of the exact top 10 among the first stage's candidates.
        first_rank: the target's 1-based rank among the first stage's candidates (inf where it is not one).
        exact_target_first: the exact MaxSim top 1 is the target (the variant's queries find their page).
        tie_spread: (exact score of rank 2 - rank 11) / rank 1: how far apart the rest of the top 10 lie.
    """

    variant: str
    lookalikes: str = "–"
    recalls: list[float] = field(default_factory=list)
    ndcgs: list[float] = field(default_factory=list)
    target_first: list[bool] = field(default_factory=list)
    target_found: list[bool] = field(default_factory=list)
    first_target: list[bool] = field(default_factory=list)
    first_recalls: list[float] = field(default_factory=list)
    first_rank: list[float] = field(default_factory=list)
    exact_target_first: list[bool] = field(default_factory=list)
    tie_spread: list[float] = field(default_factory=list)
    latency_ms: list[float] = field(default_factory=list)
    stages: StageTimes = field(default_factory=StageTimes)

    @property
    def n(self) -> int:
        """Queries measured."""
        return len(self.recalls)

    @property
    def recall(self) -> float:
        """Mean recall@10."""
        return _mean(self.recalls)

    @property
    def ndcg(self) -> float:
        """Mean nDCG@10."""
        return _mean(self.ndcgs)

    @property
    def target_first_rate(self) -> float:
        """Share of queries whose target is the two-stage top 1."""
        return _mean(self.target_first)


def _mean(values: list) -> float:
    return float(np.mean(values)) if values else float("nan")


def _ranks(ranks: list[float]) -> str:
    """Median and 90th percentile of ranks, "–" past the candidates."""
    if not ranks:
        return "–"
    return " / ".join("–" if np.isinf(r) else f"{r:.0f}" for r in np.percentile(ranks, [50, 90],
                                                                                 method="inverted_cdf"))


def variant_table(sizes: list[tuple[int, list[VariantResult]]], params: SearchParams) -> list[str]:
    """Table lines: a row per variant and corpus size (``sizes``: base pages and that corpus's variants)."""
    lines = [
        f"| variant | N | look-alike pages per group | queries | recall@10 (goal) | met | target in the first "
        f"stage's {params.pooled_candidates} | its first-stage rank, median / p90 | exact top 10 in the first "
        "stage | target in the top 10 / ranked first | exact top 1 = target | exact ranks 2–11 within | p50 / p95 ms "
        "| stages ms (first / pooled / exact) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for n_pages, variants in sizes:
        for v in variants:
            goal = GOALS[v.variant]
            lat = np.percentile(v.latency_ms, [50, 95]) if v.latency_ms else [float("nan")] * 2
            lines.append(
                f"| {v.variant} | {n_pages:,} | {v.lookalikes} | {v.n} | {v.recall:.3f} (≥ {goal:.2f}) | "
                f"{'yes' if v.recall >= goal else 'no'} | {_mean(v.first_target):.3f} | {_ranks(v.first_rank)} | "
                f"{_mean(v.first_recalls):.3f} | {_mean(v.target_found):.3f} / {v.target_first_rate:.3f} | "
                f"{_mean(v.exact_target_first):.3f} | {100 * _mean(v.tie_spread):.1f} % of the top score | "
                f"{lat[0]:.0f} / {lat[1]:.0f} | {v.stages.first_stage_ms / max(v.n, 1):.1f} / "
                f"{v.stages.pooled_ms / max(v.n, 1):.1f} / {v.stages.exact_ms / max(v.n, 1):.1f} |"
            )
    return lines


def shortfall_notes(sizes: list[tuple[int, list[VariantResult]]], params: SearchParams) -> list[str]:
    """A sentence per variant and size whose recall@10 is short of its goal: by how much, and where the exact
    top 10 and the target were lost (first stage, pooled rescoring) or whether the two-stage top 10 differs only
    among near-tied pages."""
    notes = []
    for n_pages, variants in sizes:
        for v in variants:
            goal = GOALS[v.variant]
            if not v.n or v.recall >= goal:
                continue
            first, found = _mean(v.first_target), _mean(v.target_found)
            notes.append(
                f"* **{v.variant}, N = {n_pages:,}**: recall@10 {v.recall:.3f}, {goal - v.recall:.3f} short of "
                f"{goal:.2f}. The first stage's {params.pooled_candidates} candidates held the target for "
                f"{100 * first:.0f} % of the queries and {100 * _mean(v.first_recalls):.0f} % of the exact top 10; "
                f"the target reached the final top 10 for {100 * found:.0f} %, so the pooled rescoring (best "
                f"{params.exact_candidates} of the candidates by the fine tier) lost it for "
                f"{100 * max(first - found, 0):.0f} %. Ranks 2–11 of the exact top 10 lie within "
                f"{100 * _mean(v.tie_spread):.1f} % of the top score"
                + (" (look-alike pages, nearly tied: the last ranks of the top 10 turn on small differences the "
                   "pooled tiers blur)." if _mean(v.tie_spread) < 0.05 else ".")
            )
    return notes
