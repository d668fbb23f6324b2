"""The retrieval benchmark's corpus: the base synthetic pages (:class:`scripts.bench.synthetic.SyntheticCorpus`,
unchanged) followed by blocks of adversarial pages (:mod:`scripts.bench.synthetic_variants`), with queries per
variant. Page ``j`` of the corpus is base page ``j`` for ``j < base.n_pages``, then needle pages, then
near-duplicate pages; each block is cut into batches of ``base.batch_pages``, each generated from its own seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from scripts.bench.synthetic import SyntheticCorpus
from scripts.bench.synthetic_variants import Pages, VariantPages, draw_query, own_share

VARIANTS = ("base", "needle", "near-duplicate")
ADVERSARIAL = VARIANTS[1:]


@dataclass(frozen=True)
class MixedCorpus:
    """``base`` followed by ``variant_pages`` pages of each adversarial variant (none when 0); ``lookalikes`` pages
    share each needle template."""

    base: SyntheticCorpus
    variant_pages: int = 0
    lookalikes: int = 500

    @property
    def n_pages(self) -> int:
        """Pages of every block."""
        return self.base.n_pages + len(self.variants()) * self.variant_pages

    def variants(self) -> tuple[str, ...]:
        """The adversarial variants present."""
        return ADVERSARIAL if self.variant_pages else ()

    def block(self, variant: str) -> tuple[int, VariantPages | None]:
        """The first corpus page of ``variant``'s block and its page generator (None for the base block)."""
        if variant == "base":
            return 0, None
        first = self.base.n_pages + self.variants().index(variant) * self.variant_pages
        return first, VariantPages(variant, self.variant_pages, seed=self.base.seed, base_topics=self.base.topics,
                                   lookalikes=self.lookalikes)

    def batches(self) -> list[int]:
        """Start page (in the corpus) of each batch; no batch crosses a block."""
        out = list(self.base.batches())
        for variant in self.variants():
            first, _ = self.block(variant)
            out += list(range(first, first + self.variant_pages, self.base.batch_pages))
        return out

    def variant_of(self, page: int) -> str:
        """The block corpus page ``page`` belongs to."""
        if page < self.base.n_pages:
            return "base"
        return self.variants()[(page - self.base.n_pages) // self.variant_pages]

    def detail(self, start: int) -> Pages:
        """The batch starting at corpus page ``start``, with its structure."""
        variant = self.variant_of(start)
        if variant == "base":
            pages, content = self.base.batch(start)
            return Pages(pages, content, [np.zeros_like(c) for c in content], [-1] * len(pages))
        first, gen = self.block(variant)
        return gen.pages(start - first, min(self.base.batch_pages, first + self.variant_pages - start))

    def batch(self, start: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Like :meth:`SyntheticCorpus.batch`: the batch's ``(n_i, 128) float16`` pages and ``(n_i,) bool`` masks
        of their own patches (a base page's content patches)."""
        d = self.detail(start)
        return d.pages, d.own

    def queries(self, variant: str, n_queries: int, *, seed: int = 1,
                from_batches: int = 8) -> tuple[list[torch.Tensor], list[int]]:
        """``n_queries`` queries about pages of ``variant`` (``(15–25, 128) float32`` unit token vectors each) and
        their target corpus pages, from ``from_batches`` batches spread over the block. Base queries are
        :meth:`SyntheticCorpus.queries`'s, so base figures stay comparable with runs before the variants."""
        if variant == "base":
            return self.base.queries(n_queries, seed=seed, from_batches=from_batches)
        first, _ = self.block(variant)
        starts = list(range(first, first + self.variant_pages, self.base.batch_pages))
        rng = np.random.default_rng([seed, VARIANTS.index(variant)])
        picked = sorted({starts[int(i)] for i in np.linspace(0, len(starts) - 1, min(from_batches, len(starts)))})
        queries, targets = [], []
        for start, share in zip(picked, np.array_split(np.arange(n_queries), len(picked)), strict=True):
            batch = self.detail(start)
            for _ in share:
                i = int(rng.integers(len(batch.pages)))
                queries.append(draw_query(batch, i, rng, own_share=own_share(variant)))
                targets.append(start + i)
        return queries, targets

    def lookalikes_of(self, variant: str) -> str:
        """Pages per look-alike group of ``variant``, for reports ("–" for base pages)."""
        if variant == "base":
            return "–"
        sizes = self.block(variant)[1].group_sizes()
        return f"{sizes.min()}–{sizes.max()}" if sizes.min() != sizes.max() else f"{sizes.min()}"
