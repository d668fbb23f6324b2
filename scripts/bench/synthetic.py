"""A synthetic ColQwen2-shaped corpus for retrieval benchmarks and tests: pages of 700–770 unit patch vectors in
128 dims, and queries of 15–25 token vectors drawn near one target page.

Structure, meant to make MaxSim rankings as hard to approximate as real ones:

* ``n_topics`` topic directions (default one per 20 pages) shared across pages; each page draws 3–6 topics and
  moves each a little (its own variant of the topic);
* a page's content patches vary around its topic variants (cosine to the variant ≈ 0.7);
* 15–35 % of a page's patches are near-duplicate "background" patches (margins, white space) around 8 directions
  shared by every page;
* a query token is a content patch of the target page plus noise of the same norm (cosine ≈ 0.7 to its patch).

Pages are generated in batches, each from its own seed, so any batch can be rebuilt alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

DIM = 128
N_BACKGROUND = 8


@dataclass(frozen=True)
class SyntheticCorpus:
    """``n_pages`` pages generated in batches of ``batch_pages`` from ``seed``."""

    n_pages: int
    seed: int = 0
    batch_pages: int = 500
    n_topics: int | None = None

    @property
    def topics(self) -> int:
        """Topic directions shared across pages."""
        return self.n_topics or max(64, self.n_pages // 20)

    def batches(self) -> range:
        """Start page index of each batch."""
        return range(0, self.n_pages, self.batch_pages)

    def batch(self, start: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Pages ``start …`` of one batch: per page a ``(n_i, 128) float16`` multi-vector of unit vectors and a
        ``(n_i,) bool`` mask of its content (non-background) patches."""
        n = min(self.batch_pages, self.n_pages - start)
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + start + 1)
        topics, background = _directions(self.seed, self.topics)
        lengths = torch.randint(700, 771, (n,), generator=g)
        n_topics = torch.randint(3, 7, (n,), generator=g)
        chosen = torch.randint(0, self.topics, (n, 6), generator=g)
        variants = topics[chosen] + 0.6 / DIM**0.5 * torch.randn(n, 6, DIM, generator=g)  # (n, 6, dim)
        slot = (torch.rand(n, 770, generator=g) * n_topics[:, None]).long()  # topic slot of each patch
        x = torch.gather(variants, 1, slot[..., None].expand(-1, -1, DIM))
        x = x + 0.9 / DIM**0.5 * torch.randn(n, 770, DIM, generator=g)
        share = 0.15 + 0.2 * torch.rand(n, 1, generator=g)
        is_bg = torch.rand(n, 770, generator=g) < share
        bg = background[torch.randint(0, N_BACKGROUND, (n, 770), generator=g)]
        bg = bg + 0.15 / DIM**0.5 * torch.randn(n, 770, DIM, generator=g)
        x = torch.nn.functional.normalize(torch.where(is_bg[..., None], bg, x), dim=-1).to(torch.float16)
        pages = [x[i, : lengths[i]].numpy() for i in range(n)]
        content = [(~is_bg[i, : lengths[i]]).numpy() for i in range(n)]
        return pages, content

    def queries(self, n_queries: int, *, seed: int = 1, from_batches: int = 8) -> tuple[list[torch.Tensor], list[int]]:
        """``n_queries`` queries, each ``(15–25, 128) float32`` unit token vectors near a target page's content
        patches, and the targets' page indices. Targets come from ``from_batches`` batches spread over the corpus
        (only those are generated)."""
        rng = np.random.default_rng(seed)
        starts = list(self.batches())
        picked = sorted({starts[int(i)] for i in np.linspace(0, len(starts) - 1, min(from_batches, len(starts)))})
        per_batch = np.array_split(np.arange(n_queries), len(picked))
        queries, targets = [], []
        for start, share in zip(picked, per_batch, strict=True):
            pages, content = self.batch(start)
            for _ in share:
                i = int(rng.integers(len(pages)))
                patches = pages[i][content[i]].astype(np.float32)
                m = int(rng.integers(15, 26))
                q = patches[rng.integers(0, len(patches), m)] + rng.standard_normal((m, DIM)).astype(np.float32) / DIM**0.5
                queries.append(torch.nn.functional.normalize(torch.from_numpy(q), dim=-1))
                targets.append(start + i)
        return queries, targets


@lru_cache(maxsize=4)
def _directions(seed: int, n_topics: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The corpus's topic directions ``(n_topics, 128)`` and background directions ``(8, 128)``, unit float32."""
    g = torch.Generator().manual_seed(seed)
    topics = torch.nn.functional.normalize(torch.randn(n_topics, DIM, generator=g), dim=-1)
    background = torch.nn.functional.normalize(torch.randn(N_BACKGROUND, DIM, generator=g), dim=-1)
    return topics, background
