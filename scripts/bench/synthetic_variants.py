"""Adversarial pages for the synthetic corpus (:mod:`scripts.bench.synthetic`): the cases where a pooled first stage
is known to fail on real ColQwen2 embeddings (LanceDB's needle-in-a-haystack test on the Document Haystack set:
full MaxSim hit@20 95.5 %, a mean-pooled first stage with a MaxSim rerank of its top 100 7.3 %).

* **needle**: every page is a copy of a shared *template* (a page generated like a base page, from topics of its
  own) whose patches are jittered (cosine ≈ 0.99 to the template's) except for the *evidence*: a rectangle of 2–5 %
  of the page's patches on its 28-column patch grid (a line or two of inserted text) around one topic of the base
  corpus, moved for this page (cosine ≈ 0.7 to it, like any content patch). ``lookalikes`` pages share each
  template. A needle query takes 80 % of its tokens near the evidence and 20 % near the template's content.
* **near-duplicate**: runs of 8–64 consecutive pages (one report's near-identical pages) are jittered copies of the
  run's own template, each page with 5–15 % of the template's content patches changed (cosine ≈ 0.7 to the patch
  it replaces: another number in the same cell). A query takes 60 % of its tokens near the target page's changed
  patches and 40 % near the run's shared content.

Templates use topic directions of their own (not the base corpus's), so base queries do not meet the look-alike
groups; the needle evidence uses the base corpus's topics, so base pages compete with it. Everything is
deterministic from the corpus seed: templates and run lengths from the seed, each batch's pages from the batch's
own seed, so any batch can be rebuilt alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from scripts.bench.synthetic import DIM, SyntheticCorpus, _directions

GRID_WIDTH = 28  # patches per row of a page's patch grid
EVIDENCE_SHARE = (0.02, 0.05)  # a needle page's evidence, share of its patches
NEEDLE_CONTEXT = 0.2  # share of a needle query's tokens drawn near the template
RUN_PAGES = (8, 64)  # pages per near-duplicate run
CHANGED_SHARE = (0.05, 0.15)  # a near-duplicate page's changed patches, share of its patches
RUN_OWN_TOKENS = 0.6  # share of a near-duplicate query's tokens drawn near the page's changed patches
TEMPLATE_TOPICS = 64  # topic directions of the templates
JITTER = 0.15 / DIM**0.5  # per-dimension noise on a copied template patch (cosine ≈ 0.99)
_SALT = {"needle": 1, "near-duplicate": 2}


@dataclass(frozen=True)
class Pages:
    """Consecutive pages with their structure.

    Attributes:
        pages: per page a ``(n_i, 128) float16`` multi-vector of unit vectors.
        own: per page a ``(n_i,) bool`` mask of the patches only it has (base: its content patches; needle: its
            evidence; near-duplicate: its changed patches); queries about the page are drawn near them.
        shared: per page a ``(n_i,) bool`` mask of the content patches it shares with its look-alikes (the
            template's or the run's; all False on base pages).
        group: per page its look-alike group (needle: template, near-duplicate: run; -1 on base pages).
    """

    pages: list[np.ndarray]
    own: list[np.ndarray]
    shared: list[np.ndarray]
    group: list[int]


@dataclass(frozen=True)
class VariantPages:
    """``n_pages`` pages of ``variant`` ("needle" or "near-duplicate") for a corpus of seed ``seed`` whose base
    pages have ``base_topics`` topic directions; ``lookalikes`` pages per needle template."""

    variant: str
    n_pages: int
    seed: int = 0
    base_topics: int = 64
    lookalikes: int = 500

    @property
    def templates(self) -> int:
        """Needle templates: one per ``lookalikes`` pages (each template's pages are every ``templates``-th)."""
        return max(1, -(-self.n_pages // self.lookalikes))

    def group_of(self, j: int) -> int:
        """The look-alike group of page ``j`` (0-based in these pages): its template or run."""
        if self.variant == "needle":
            return j % self.templates
        return int(np.searchsorted(_run_ends(self.seed, self.n_pages), j, side="right"))

    def group_sizes(self) -> np.ndarray:
        """``(n_groups,) int`` pages per look-alike group."""
        if self.variant == "needle":
            return np.bincount(np.arange(self.n_pages) % self.templates)
        return np.diff(_run_ends(self.seed, self.n_pages), prepend=0)

    def pages(self, start: int, n: int) -> Pages:
        """Pages ``start … start + n - 1`` (0-based in these pages), from a generator of their own seed."""
        salt = _SALT[self.variant]
        g = torch.Generator().manual_seed(_seed(self.seed, salt, start))
        groups = [self.group_of(j) for j in range(start, start + n)]
        unique = sorted(set(groups))
        stack = torch.stack([_template(self.seed, salt, grp)[0] for grp in unique])  # (n_groups, 770, dim)
        # Whole-batch tensor ops: per-page ones on a 770 × 128 page cost more in thread start-up than in work.
        x = stack[torch.tensor([unique.index(grp) for grp in groups])] + JITTER * torch.randn(n, 770, DIM, generator=g)
        out = Pages([], [], [], groups)
        for i, grp in enumerate(groups):
            _, length, content = _template(self.seed, salt, grp)
            page = x[i, :length]  # a view: the evidence or the changes are written into x
            own = _evidence(page, g, self.base_topics, self.seed) if self.variant == "needle" else _changes(
                page, content, g)
            out.own.append(own)
            out.shared.append(content & ~own)
        x = torch.nn.functional.normalize(x, dim=-1).to(torch.float16)
        out.pages.extend(x[i, : len(own)].numpy() for i, own in enumerate(out.own))
        return out


def _evidence(x: torch.Tensor, g: torch.Generator, base_topics: int, seed: int) -> np.ndarray:
    """Write a needle's evidence into ``x`` (``(n, 128)`` float32, in place): a rectangle of 2–5 % of the patches
    on the page's grid around one base-corpus topic, moved for this page. Returns its ``(n,) bool`` mask."""
    n = x.shape[0]
    lo, hi = (int(np.ceil(EVIDENCE_SHARE[0] * n)), int(EVIDENCE_SHARE[1] * n))
    area = int(torch.randint(lo, hi + 1, (1,), generator=g))
    height = max(int(torch.randint(1, 4, (1,), generator=g)), -(-area // GRID_WIDTH))
    width = -(-area // height)
    width -= height * width > hi  # at most 5 %
    row = int(torch.randint(0, n // GRID_WIDTH - height + 1, (1,), generator=g))
    col = int(torch.randint(0, GRID_WIDTH - width + 1, (1,), generator=g))
    idx = ((row + torch.arange(height))[:, None] * GRID_WIDTH + col + torch.arange(width)[None, :]).flatten()
    topics, _ = _directions(seed, base_topics)
    topic = topics[int(torch.randint(0, base_topics, (1,), generator=g))]
    variant = topic + 0.6 / DIM**0.5 * torch.randn(DIM, generator=g)
    x[idx] = variant + 0.9 / DIM**0.5 * torch.randn(len(idx), DIM, generator=g)
    mask = np.zeros(n, dtype=bool)
    mask[idx.numpy()] = True
    return mask


def _changes(x: torch.Tensor, content: np.ndarray, g: torch.Generator) -> np.ndarray:
    """Change 5–15 % of the patches of ``x`` (``(n, 128)`` float32, in place), chosen among the template's
    ``content`` patches: each moved to cosine ≈ 0.7 of what it was. Returns their ``(n,) bool`` mask."""
    n = x.shape[0]
    share = CHANGED_SHARE[0] + (CHANGED_SHARE[1] - CHANGED_SHARE[0]) * float(torch.rand(1, generator=g))
    candidates = np.flatnonzero(content)
    order = torch.randperm(len(candidates), generator=g).numpy()
    count = min(max(round(share * n), int(np.ceil(CHANGED_SHARE[0] * n))), int(CHANGED_SHARE[1] * n))
    idx = torch.from_numpy(candidates[order[:count]])
    x[idx] = torch.nn.functional.normalize(x[idx], dim=-1) + 1.0 / DIM**0.5 * torch.randn(len(idx), DIM, generator=g)
    mask = np.zeros(n, dtype=bool)
    mask[idx.numpy()] = True
    return mask


def draw_query(page: Pages, i: int, rng: np.random.Generator, *, own_share: float) -> torch.Tensor:
    """A query about page ``i`` of ``page``: ``(15–25, 128) float32`` unit token vectors, ``own_share`` of them near
    the page's own patches and the rest near its shared ones, each a patch plus noise of the same norm."""
    m = int(rng.integers(15, 26))
    n_own = m if not page.shared[i].any() else int(round(own_share * m))
    own = page.pages[i][page.own[i]].astype(np.float32)
    shared = page.pages[i][page.shared[i]].astype(np.float32)
    rows = [own[rng.integers(0, len(own), n_own)]]
    if m > n_own:
        rows.append(shared[rng.integers(0, len(shared), m - n_own)])
    q = np.concatenate(rows) + rng.standard_normal((m, DIM)).astype(np.float32) / DIM**0.5
    return torch.nn.functional.normalize(torch.from_numpy(q), dim=-1)


def own_share(variant: str) -> float:
    """Share of a query's tokens drawn near the target page's own patches, per variant."""
    return {"needle": 1 - NEEDLE_CONTEXT, "near-duplicate": RUN_OWN_TOKENS}.get(variant, 1.0)


def _seed(seed: int, salt: int, key: int) -> int:
    """A 63-bit generator seed for ``key`` (a batch start, or -1 for the templates) of variant ``salt``, apart from
    the base corpus's seeds."""
    a, b = np.random.SeedSequence([seed, salt, key + 1]).generate_state(2)
    return (int(a) << 31) ^ int(b)


@lru_cache(maxsize=256)
def _template(seed: int, salt: int, group: int) -> tuple[torch.Tensor, int, np.ndarray]:
    """Template ``group`` of a variant: a page generated like a base page from the variant's own topics; its unit
    vectors as a ``(770, 128) float32`` tensor (zero past its length), its length ``n`` and its ``(n,) bool``
    content mask."""
    own = SyntheticCorpus(group + 1, seed=_seed(seed, salt, -1) % 2**31, batch_pages=1, n_topics=TEMPLATE_TOPICS)
    pages, content = own.batch(group)
    padded = torch.zeros(770, DIM)
    padded[: len(pages[0])] = torch.from_numpy(pages[0]).float()
    return padded, len(pages[0]), content[0]


@lru_cache(maxsize=8)
def _run_ends(seed: int, n_pages: int) -> np.ndarray:
    """``(n_runs,) int`` exclusive end of each near-duplicate run (lengths 8–64 from the seed; the last one cut at
    ``n_pages``)."""
    rng = np.random.default_rng([seed, _SALT["near-duplicate"]])
    lengths = rng.integers(RUN_PAGES[0], RUN_PAGES[1] + 1, size=n_pages // RUN_PAGES[0] + 1)
    ends = np.cumsum(lengths)
    return np.minimum(ends[: int(np.searchsorted(ends, n_pages)) + 1], n_pages)
