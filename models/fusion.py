"""Reciprocal rank fusion of retrieval lanes (Cormack, Clarke & Büttcher, "Reciprocal Rank Fusion outperforms
Condorcet and individual Rank Learning Methods", SIGIR 2009): score(d) = Σ_lane w_lane / (k + rank_lane(d)),
with 1-based ranks and k = 60 as in the paper."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Fused:
    """A page after fusion: its RRF score and, per lane that found it, its 1-based rank in that lane."""

    page_id: int
    score: float
    lane_ranks: dict[str, int]

    @property
    def lanes(self) -> list[str]:
        """The lanes that found this page, in name order."""
        return sorted(self.lane_ranks)


def reciprocal_rank_fusion(
    ranked: Mapping[str, Sequence[tuple[int, float]]], *, k: int = 60, weights: Mapping[str, float] | None = None,
    top_n: int | None = None,
) -> list[Fused]:
    """Fuse per-lane ranked lists of (page id, score) into one list, best first (ties broken by page id).

    Args:
        ranked: lane name → that lane's pages, best first; the lane scores themselves are not used, only ranks.
        k: the RRF constant (60 in the paper); larger values flatten the head of each list.
        weights: lane name → weight (default 1.0 each).
        top_n: keep this many (all when None).
    """
    weights = weights or {}
    scores: dict[int, float] = {}
    lane_ranks: dict[int, dict[str, int]] = {}
    for lane, pages in ranked.items():
        w = float(weights.get(lane, 1.0))
        for rank, (page_id, _score) in enumerate(pages, 1):
            if lane in lane_ranks.get(page_id, {}):
                continue  # a lane lists each page once; keep its best rank
            scores[page_id] = scores.get(page_id, 0.0) + w / (k + rank)
            lane_ranks.setdefault(page_id, {})[lane] = rank
    fused = sorted(scores, key=lambda pid: (-scores[pid], pid))
    if top_n is not None:
        fused = fused[:top_n]
    return [Fused(pid, scores[pid], lane_ranks[pid]) for pid in fused]
