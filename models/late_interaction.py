"""Late-interaction scoring, pure: the one MaxSim of pageqa, and the first stage's page score from per-token
nearest neighbours. No database here: :mod:`services.visual_search` reads the vectors and calls these.

MaxSim as in ColBERT (Khattab & Zaharia, 2020) and ColPali (Faysse et al., 2024): for a query of token vectors
q_i and a page of patch vectors d_j, score = Σ_i max_j ⟨q_i, d_j⟩. Production's two-stage search, the exact scan
that serves as its fidelity guard, and the benchmarks' ground truth all score with :func:`maxsim`.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import torch

Hits = list[tuple[int, float]]


def _tensor(vectors: np.ndarray | torch.Tensor) -> torch.Tensor:
    if isinstance(vectors, torch.Tensor):
        return vectors
    with warnings.catch_warnings():
        # Arrays read from PostgreSQL are read-only views of the fetched bytes; they are only read here.
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(vectors)


def maxsim(
    queries: Sequence[torch.Tensor], pages: Sequence[np.ndarray | torch.Tensor], *, device: torch.device,
    page_block: int = 256,
) -> torch.Tensor:
    """Exact MaxSim of every query against every page.

    The rows of a block of pages are concatenated into one ``(Σ n_j, dim)`` matrix and the query tokens into one
    ``(Σ m_i, dim)`` matrix: one matmul per block, then a per-page max (``scatter_reduce``) and a per-query sum
    (``index_add``), with no padding to compute or mask.

    Args:
        queries: per query a ``(m_i, dim)`` tensor (float32 or float16).
        pages: per page a ``(n_j, dim)`` float16 array or tensor (a page's patch or pooled vectors).
        device: where the products run: float16 on CUDA, float32 on the CPU.
        page_block: pages per matmul, bounding memory to ``Σ m_i × Σ n_j`` scores of one block.

    Returns:
        ``(n_queries, n_pages) float32`` CPU tensor of Σ_i max_j ⟨q_i, d_j⟩.
    """
    out = torch.zeros(len(queries), len(pages))
    if not queries or not pages:
        return out
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    q = torch.cat([t.to(dtype=dtype) for t in queries]).to(device)  # (Σ m_i, dim)
    q_owner = torch.repeat_interleave(
        torch.arange(len(queries), device=device), torch.tensor([len(t) for t in queries], device=device)
    )  # (Σ m_i,)
    for start in range(0, len(pages), page_block):
        block = pages[start : start + page_block]
        rows = torch.cat([_tensor(p) for p in block]).to(device=device, dtype=dtype)  # (Σ n_j, dim)
        sim = q @ rows.T  # (Σ m_i, Σ n_j)
        p_owner = torch.repeat_interleave(
            torch.arange(len(block), device=device), torch.tensor([len(p) for p in block], device=device)
        )  # (Σ n_j,)
        best = torch.full((sim.shape[0], len(block)), float("-inf"), device=device, dtype=dtype)
        best.scatter_reduce_(1, p_owner.expand(sim.shape[0], -1), sim, reduce="amax")  # (Σ m_i, n_block)
        scores = torch.zeros(len(queries), len(block), device=device, dtype=torch.float32)
        scores.index_add_(0, q_owner, best.float())  # (n_queries, n_block)
        out[:, start : start + len(block)] = scores.cpu()
    return out


def top_k(page_ids: Sequence[int], scores: torch.Tensor, k: int) -> Hits:
    """The best ``k`` (page id, score) of ``scores (len(page_ids),)``, best first; ties by page id."""
    order = sorted(range(len(page_ids)), key=lambda j: (-float(scores[j]), page_ids[j]))[:k]
    return [(page_ids[j], float(scores[j])) for j in order]


def first_stage_scores(hits: list[tuple[int, int, float]], *, n_tokens: int, limit: int) -> list[int]:
    """The first stage's best ``limit`` page ids from per-token nearest neighbours.

    Args:
        hits: (query token index, page id, inner product) for each neighbour a token reached.
        n_tokens: the query's token count.
        limit: pages kept.

    A page's score is Σ_tokens max(its best hit for the token, the token's weakest hit): a page a token did not
    reach is credited with what the token's last neighbour scored (0 for a token that reached none).
    """
    if not hits:
        return []
    tok = np.fromiter((h[0] for h in hits), dtype=np.int64, count=len(hits))
    pids = np.fromiter((h[1] for h in hits), dtype=np.int64, count=len(hits))
    sims = np.fromiter((h[2] for h in hits), dtype=np.float32, count=len(hits))
    floor = np.zeros(n_tokens, dtype=np.float32)
    reached = np.zeros(n_tokens, dtype=bool)
    reached[tok] = True
    floor[:] = np.inf
    np.minimum.at(floor, tok, sims)
    floor[~reached] = 0.0
    pages, col = np.unique(pids, return_inverse=True)
    best = np.repeat(floor[:, None], len(pages), axis=1)  # (n_tokens, n_pages)
    np.maximum.at(best, (tok, col), sims)
    score = best.sum(axis=0)
    order = np.lexsort((pages, -score))[:limit]
    return pages[order].tolist()
