"""Token pooling of page multi-vectors for the first stage and the candidate rescoring of late-interaction search.

Method: Clavié, Chaffin & Adams, "Reducing the Footprint of Multi-Vector Retrieval with Minimal Performance Impact
via Token Pooling" (2024), which clusters a document's token vectors and keeps one mean per cluster (colpali-engine
ships the hierarchical variant as ``HierarchicalTokenPooler``). pageqa uses spherical k-means, batched over pages
in torch so that pooling keeps up with embedding on the worker's device; the first-stage tier follows the
"pooled first stage, exact MaxSim rerank" scheme of Qdrant's and Vespa's ColPali guides.

Each page gets two pooled tiers from its ``(n, 128)`` patch vectors:

* ``coarse`` (default 16 vectors): rows of the pgvector HNSW index, the first stage.
* ``fine`` (default 64 vectors): fetched for a few hundred candidates and scored with MaxSim to choose the pages
  whose full multi-vector is read for the exact score.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from pageqa.settings import Settings

#: Version of the pooling code; part of :attr:`PoolingSpec.name`, so tiers from different code never mix.
POOLING_VERSION = 1


@dataclass(frozen=True)
class PoolingSpec:
    """How the pooled tiers of a page are made: ``coarse`` and ``fine`` clusters per page, ``iters`` k-means steps.

    Pages with fewer patch vectors than clusters keep one cluster per vector.
    """

    coarse: int = 16
    fine: int = 64
    iters: int = 8

    @classmethod
    def of(cls, settings: Settings) -> PoolingSpec:
        """The spec ``settings`` give (``pool_coarse``, ``pool_fine``, ``pool_iters``)."""
        return cls(coarse=settings.pool_coarse, fine=settings.pool_fine, iters=settings.pool_iters)

    @property
    def name(self) -> str:
        """The spec as stored with every page's tiers, e.g. ``kmeans-v1:16/64:8``."""
        return f"kmeans-v{POOLING_VERSION}:{self.coarse}/{self.fine}:{self.iters}"


@dataclass(frozen=True)
class PooledPage:
    """The pooled tiers of one page: ``coarse (k_c, dim)`` and ``fine (k_f, dim)`` unit vectors, float16."""

    coarse: np.ndarray
    fine: np.ndarray


def kmeans_pool(vectors: torch.Tensor, mask: torch.Tensor, k: int, *, iters: int) -> torch.Tensor:
    """Spherical k-means per page, batched.

    Args:
        vectors: ``(n_pages, max_tokens, dim)`` float tensor of unit patch vectors, zero on padding rows.
        mask: ``(n_pages, max_tokens)`` bool, True on real rows; every page needs at least ``k`` real rows.
        k: clusters per page.
        iters: assignment/update steps. Initial centroids are ``k`` evenly spaced real rows, so the result is
            deterministic for a given input.

    Returns:
        ``(n_pages, k, dim)`` float32 unit centroids (a cluster that loses all its rows keeps its last centroid).
    """
    x = vectors.float()
    n_real = mask.sum(dim=1, keepdim=True)  # (n_pages, 1)
    start = (torch.arange(k, device=x.device)[None, :] * n_real) // k  # (n_pages, k) evenly spaced rows
    # Real rows come first in every page (padding is at the end), so these indices are real rows.
    centroids = torch.gather(x, 1, start[..., None].expand(-1, -1, x.shape[2]))
    valid = mask[..., None].to(x.dtype)
    for _ in range(iters):
        assign = torch.einsum("pjd,pkd->pjk", x, centroids).argmax(dim=-1)  # (n_pages, max_tokens)
        onehot = torch.nn.functional.one_hot(assign, k).to(x.dtype) * valid  # (n_pages, max_tokens, k)
        sums = torch.einsum("pjk,pjd->pkd", onehot, x)
        counts = onehot.sum(dim=1)[..., None]  # (n_pages, k, 1)
        centroids = torch.where(counts > 0, torch.nn.functional.normalize(sums, dim=-1), centroids)
    return centroids


def pool_pages(
    pages: Sequence[np.ndarray], spec: PoolingSpec, *, device: torch.device | str = "cpu", batch_pages: int = 64
) -> list[PooledPage]:
    """Both pooled tiers of each page.

    Args:
        pages: per page a ``(n_i, dim)`` float16 or float32 multi-vector, padding rows already stripped.
        spec: cluster counts and k-means steps.
        device: where k-means runs (the worker's device).
        batch_pages: pages per batched k-means; memory is about ``batch_pages × max_tokens × fine`` floats.

    Returns:
        One :class:`PooledPage` per input page, in order.
    """
    out: list[PooledPage | None] = [None] * len(pages)
    for start in range(0, len(pages), batch_pages):
        batch = [torch.from_numpy(np.asarray(p, dtype=np.float32)) for p in pages[start : start + batch_pages]]
        # Pages with fewer rows than clusters are pooled alone with k = their row count.
        for idx, k_coarse, k_fine in _groups_by_k(batch, spec):
            padded = torch.nn.utils.rnn.pad_sequence([batch[i] for i in idx], batch_first=True).to(device)
            lengths = torch.tensor([batch[i].shape[0] for i in idx], device=device)
            mask = torch.arange(padded.shape[1], device=device)[None, :] < lengths[:, None]
            padded = torch.nn.functional.normalize(padded, dim=-1) * mask[..., None]
            coarse = kmeans_pool(padded, mask, k_coarse, iters=spec.iters).cpu().numpy().astype(np.float16)
            fine = kmeans_pool(padded, mask, k_fine, iters=spec.iters).cpu().numpy().astype(np.float16)
            for j, i in enumerate(idx):
                out[start + i] = PooledPage(coarse[j], fine[j])
    return out  # type: ignore[return-value]


def _groups_by_k(batch: list[torch.Tensor], spec: PoolingSpec) -> list[tuple[list[int], int, int]]:
    """Indices of ``batch`` grouped by their (coarse, fine) cluster counts, which shrink for short pages."""
    groups: dict[tuple[int, int], list[int]] = {}
    for i, t in enumerate(batch):
        n = t.shape[0]
        groups.setdefault((min(spec.coarse, n), min(spec.fine, n)), []).append(i)
    return [(idx, kc, kf) for (kc, kf), idx in groups.items()]
