"""Micro-batches for the image stages: packed to a pixel budget, halved on a GPU out-of-memory error.

Activation memory of a Qwen2-VL forward pass grows with the number of visual tokens in the batch (one per 28 × 28
pixels, model card of Qwen/Qwen2-VL-7B-Instruct), so a micro-batch is bounded by the pixels of its page images as
well as by a count. The numbers behind the defaults are in docs/gpu.md.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import torch

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class BatchBudget:
    """Bounds of one micro-batch: at most ``max_items`` items and ``max_pixels`` image pixels (an item over the
    pixel budget on its own still runs, alone)."""

    max_items: int
    max_pixels: int

    def halved(self) -> BatchBudget:
        """The budget after an out-of-memory error: both bounds halved, never below one item."""
        return BatchBudget(max(1, self.max_items // 2), max(1, self.max_pixels // 2))


@dataclass
class BatchLog:
    """What a stage did with its items: micro-batch sizes in order, and how often the budget was halved.

    ``check``, when set, is called before every micro-batch and may raise to stop the work there: the answering
    task checks its time budget and a worker shutdown with it (:mod:`services.guard`).
    """

    sizes: dict[str, list[int]] = field(default_factory=dict)
    halvings: dict[str, int] = field(default_factory=dict)
    check: Callable[[], None] | None = None

    def before_batch(self) -> None:
        """Run :attr:`check`, if any; what it raises propagates out of the stage."""
        if self.check is not None:
            self.check()

    def as_record(self) -> dict:
        """The JSON stored in ``chunk_runs.batch_sizes``: sizes per stage, plus ``oom_halvings`` when any."""
        out: dict = {stage: list(sizes) for stage, sizes in self.sizes.items()}
        if any(self.halvings.values()):
            out["oom_halvings"] = {k: v for k, v in self.halvings.items() if v}
        return out


def pack(pixels: Sequence[int], budget: BatchBudget) -> list[range]:
    """Split items ``0..len(pixels)-1`` into consecutive micro-batches within ``budget``.

    Args:
        pixels: image pixels of each item (width × height after the processor's resize, summed over its images).

    Returns:
        Index ranges in order; together they cover every item once.
    """
    out: list[range] = []
    start, used = 0, 0
    for i, px in enumerate(pixels):
        if i > start and (i - start >= budget.max_items or used + px > budget.max_pixels):
            out.append(range(start, i))
            start, used = i, 0
        used += px
    if start < len(pixels):
        out.append(range(start, len(pixels)))
    return out


def run_batched(
    items: Sequence[T], run: Callable[[Sequence[T]], list[R]], *, pixels: Sequence[int], budget: BatchBudget,
    stage: str, device: torch.device, batch_log: BatchLog | None = None,
) -> list[R]:
    """``run`` over micro-batches of ``items``; results concatenated in input order.

    On ``torch.OutOfMemoryError`` the CUDA cache is emptied, the budget halved and the items from the failed
    micro-batch on are packed again, so a chunk finishes with smaller batches instead of failing. Results do not
    depend on the batch sizes (left padding; checked in tests within 1e-4).

    Raises:
        torch.OutOfMemoryError: a micro-batch of one item does not fit.
        Exception: whatever ``batch_log.check`` raises before a micro-batch.
    """
    results: list[R] = []
    sizes = batch_log.sizes.setdefault(stage, []) if batch_log is not None else []
    done = 0
    while done < len(items):
        base = done
        for batch in pack(pixels[base:], budget):
            lo, hi = base + batch.start, base + batch.stop
            if batch_log is not None:
                batch_log.before_batch()
            try:
                out = run(items[lo:hi])
            except torch.OutOfMemoryError:
                if hi - lo == 1:
                    raise
                if device.type == "cuda":
                    torch.cuda.empty_cache()
                budget = budget.halved()
                if batch_log is not None:
                    batch_log.halvings[stage] = batch_log.halvings.get(stage, 0) + 1
                log.warning("%s: out of GPU memory on %d items; retrying with at most %d items, %d pixels",
                            stage, hi - lo, budget.max_items, budget.max_pixels)
                break
            results.extend(out)
            sizes.append(hi - lo)
            done = hi
    return results


def image_pixels(size: tuple[int, int], *, max_pixels: int, min_pixels: int = 0) -> int:
    """Pixels a Qwen2-VL processor keeps of a ``(width, height)`` image under its budget: the area clamped to
    ``min_pixels``..``max_pixels`` (its resize keeps the aspect ratio within those bounds)."""
    return min(max(size[0] * size[1], min_pixels), max_pixels)
