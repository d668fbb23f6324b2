"""Measurements of ``pageqa bench gpu``: the production stage classes (:mod:`models.retriever`,
:mod:`models.reranker`, :mod:`models.generator`) under :class:`models.residency.Residency`, driven through their
micro-batching (:func:`models.batching.run_batched`) at the settings' default budgets.

Memory figures come from PyTorch's CUDA caching allocator (``memory_allocated``, ``max_memory_allocated``); on the
CPU there is no such counter and they are None ("n/a (CPU)" in the table), never estimated.
"""

from __future__ import annotations

import gc
import logging
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw

from models.batching import BatchBudget, BatchLog
from models.device import compute_dtype
from models.loading import fit_to_processor
from models.residency import Residency
from pageqa.settings import Settings
from scripts.bench.gpu_models import Checkpoints

log = logging.getLogger(__name__)

GIB = 2**30
NEW_TOKENS = 64
#: Width / height of the synthetic pages: ISO A4 portrait (210 × 297 mm) and a 16:9 slide.
ASPECTS = {"A4": 210 / 297, "slide": 16 / 9}
QUESTION = "What was the total revenue of the northern region in the third quarter, and how did it compare?"


def pages(n: int, *, max_pixels: int, seed: int = 0) -> list[Image.Image]:
    """``n`` synthetic page images, A4 and slide alternately, each of ``max_pixels`` pixels (the stored page
    budget, ``page_max_pixels``): dark text-like bars and a coloured block on white."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        aspect = ASPECTS["A4" if i % 2 == 0 else "slide"]
        w, h = int(math.sqrt(max_pixels * aspect)), int(math.sqrt(max_pixels / aspect))
        img = Image.new("RGB", (w, h), "white")
        draw = ImageDraw.Draw(img)
        for y in range(h // 12, h - h // 12, max(12, h // 40)):
            draw.rectangle((w // 12, y, w // 12 + int(rng.integers(w // 4, w * 5 // 6)), y + max(4, h // 150)),
                           fill=(30, 30, 30))
        x, y = int(rng.integers(0, w // 2)), int(rng.integers(0, h // 2))
        draw.rectangle((x, y, x + w // 4, y + h // 5), fill=tuple(int(c) for c in rng.integers(0, 255, 3)))
        out.append(img)
    return out


@dataclass
class Stages:
    """The three loaded stages under one residency, with what loading each cost."""

    residency: Residency
    retriever: Any
    reranker: Any
    generator: Any
    load: dict[str, dict] = field(default_factory=dict)


def load(paths: Checkpoints, settings: Settings, device: torch.device, *, low_memory: bool) -> Stages:
    """Load the three stages as :class:`models.pipeline.Pipeline` does (same classes, same arguments, the generator
    in NF4 on CUDA), without its text encoder, which needs the hub.

    Each stage's ``load`` entry: ``seconds``, ``footprint_gib`` (``get_memory_footprint``: parameters and buffers
    wherever they are) and ``resident_gib`` (CUDA memory allocated by the load; None on the CPU).
    """
    from models.generator import Qwen2VLGenerator
    from models.reranker import MonoQwen2VLReranker
    from models.retriever import ColQwen2Retriever

    import colpali_engine.models  # noqa: F401 - imported before the clock starts: the first load would pay for
    import peft  # noqa: F401 - importing the libraries (5 s on 2 CPU cores), not for reading the checkpoint

    residency = Residency(device, low_memory=low_memory)
    home, dtype = residency.home, compute_dtype(device)
    s = settings
    quantize = device.type == "cuda" if s.quantize_generator is None else s.quantize_generator
    makers: dict[str, Callable[[], Any]] = {
        "retrieve": lambda: ColQwen2Retriever(str(paths.retriever), device=home, dtype=dtype,
                                              max_pixels=s.retriever_max_pixels),
        "rerank": lambda: MonoQwen2VLReranker(str(paths.reranker_base), str(paths.reranker), device=home,
                                              dtype=dtype, max_pixels=s.reranker_max_pixels),
        "generate": lambda: Qwen2VLGenerator(str(paths.generator), device=home, dtype=dtype, quantize=quantize,
                                             min_pixels=s.generator_min_pixels, max_pixels=s.generator_max_pixels),
    }
    if quantize:
        import bitsandbytes  # noqa: F401 - likewise
    loaded, info = {}, {}
    for name, make in makers.items():
        before = _allocated(device)
        t0 = time.perf_counter()
        loaded[name] = make()
        _sync(device)
        seconds = time.perf_counter() - t0
        after = _allocated(device)
        info[name] = {"seconds": seconds, "footprint_gib": loaded[name].model.get_memory_footprint() / GIB,
                      "resident_gib": None if before is None else (after - before) / GIB, "quantized": name ==
                      "generate" and quantize}
        residency.register(name, loaded[name])
    return Stages(residency, loaded["retrieve"], loaded["rerank"], loaded["generate"], info)


def unload(stages: Stages, device: torch.device) -> None:
    """Drop the stages' models and give their CUDA memory back to the driver."""
    stages.residency.stages.clear()
    stages.retriever = stages.reranker = stages.generator = None
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


@dataclass(frozen=True)
class Work:
    """One bench's inputs: pages to embed, queries, (query, page) pairs and (question, pages) items."""

    pages: list[Image.Image]
    queries: list[str]
    pairs: list[tuple[str, Image.Image]]
    items: list[tuple[str, list[Image.Image]]]

    @classmethod
    def make(cls, *, n_pages: int, n_questions: int, settings: Settings) -> Work:
        """Every question meets 4 pages in rerank and its ``rerank_top_k`` first pages in generation."""
        imgs = pages(n_pages, max_pixels=settings.page_max_pixels)
        queries = [f"{QUESTION} (#{i})" for i in range(n_questions)]
        pick = [[imgs[(i + j) % n_pages] for j in range(4)] for i in range(n_questions)]
        pairs = [(q, img) for q, group in zip(queries, pick, strict=True) for img in group]
        items = [(q, group[: settings.rerank_top_k]) for q, group in zip(queries, pick, strict=True)]
        return cls(imgs, queries, pairs, items)


def measure(stages: Stages, work: Work, settings: Settings, device: torch.device) -> dict[str, dict]:
    """One pass of each stage over ``work`` at the default micro-batch sizes, after a warm-up on one default
    micro-batch: kernels, cuBLAS workspaces and oneDNN primitives are set up per shape on first use and do not
    belong to the steady state (a one-item warm-up left the first timed pass of a small real-size set 10x slower on
    the CPU).

    Returns:
        Per stage (``embed``, ``query``, ``rerank``, ``generate``): ``seconds``, ``items``, the stage's rate,
        ``peak_gib`` (None on the CPU), ``move_s`` (the ``low_memory`` move before the stage, 0 when none),
        ``batch_sizes``, and the outputs ``scores`` / ``answers`` (generated token ids) for the equality checks; or ``error`` when a
        micro-batch of one item ran out of CUDA memory.
    """
    s, out = settings, {}
    pairs, items = prepared(stages, work)
    rr_budget = BatchBudget(s.rerank_batch_size, s.rerank_batch_pixels)
    gen_budget = BatchBudget(s.generate_batch_size, s.generate_batch_pixels)
    runs: dict[str, tuple[str, Callable[[Any, BatchLog | None], Any], Callable[[], Any], int]] = {
        "embed": ("retrieve", lambda w, b: stages.retriever.embed_pages(w, batch_size=s.embed_batch_size),
                  lambda: work.pages, len(work.pages)),
        "query": ("retrieve", lambda w, b: stages.retriever.embed_queries(w, batch_size=s.query_batch_size,
                                                                          batch_log=b), lambda: work.queries,
                  len(work.queries)),
        "rerank": ("rerank", lambda w, b: stages.reranker.score(w, budget=rr_budget, batch_log=b), lambda: pairs,
                   len(pairs)),
        "generate": ("generate", lambda w, b: stages.generator.generate(w, budget=gen_budget,
                                                                        max_new_tokens=NEW_TOKENS, batch_log=b),
                     lambda: items, len(items)),
    }
    warm = {"embed": s.embed_batch_size, "query": s.query_batch_size, "rerank": s.rerank_batch_size,
            "generate": s.generate_batch_size}
    for name, (stage, fn, inputs, n) in runs.items():
        t0 = time.perf_counter()
        batch_log = BatchLog()
        try:
            with stages.residency.active(stage), counting_tokens(stages.generator) as generated:
                _sync(device)
                move_s = time.perf_counter() - t0
                fn(inputs()[: warm[name]], None)
                generated.rows.clear()
                result, seconds, peak = timed(device, lambda fn=fn, inputs=inputs, b=batch_log: fn(inputs(), b))
        except torch.OutOfMemoryError as exc:  # embed_pages has no halving; one item over the cap ends any stage
            out[name] = {"items": n, "error": str(exc).splitlines()[0], "batch_sizes": batch_log.sizes}
            continue
        sizes = batch_log.sizes or {"embed": [len(work.pages[i : i + s.embed_batch_size])
                                              for i in range(0, n, s.embed_batch_size)]}  # embed_pages keeps no log
        entry = {"seconds": seconds, "items": n, "rate": n / seconds, "peak_gib": peak, "move_s": move_s,
                 "batch_sizes": sizes}
        if name == "rerank":
            entry["scores"] = result
        if name == "generate":
            entry["answers"] = generated.rows
            entry["new_tokens"] = generated.tokens
            entry["tokens_per_s"] = generated.tokens / seconds
        out[name] = entry
    if "seconds" in out["query"]:
        out["query"]["ms_per_query"] = 1e3 * out["query"]["seconds"] / out["query"]["items"]
    return out


@dataclass
class Generated:
    """What ``generate`` produced while counted: one row of new token ids per question (up to and including its
    end-of-sequence token, without the padding after it), in call order."""

    rows: list[list[int]] = field(default_factory=list)

    @property
    def tokens(self) -> int:
        """New tokens over all rows."""
        return sum(map(len, self.rows))


@contextmanager
def counting_tokens(generator: Any) -> Iterator[Generated]:
    """Record the token ids ``generator.model.generate`` produces meanwhile. Greedy answers are compared, and
    tokens counted, on these ids rather than on the decoded text: random real-size weights emit ids past the tiny
    tokenizer's vocabulary, which decode to empty strings that would all look equal."""
    model, seen = generator.model, Generated()
    real = model.generate
    pad = model.generation_config.pad_token_id

    def generate(*args: Any, **kwargs: Any) -> Any:
        out = real(*args, **kwargs)
        ids = out if isinstance(out, torch.Tensor) else out.sequences  # return_dict_in_generate gives an output
        new = ids[:, kwargs["input_ids"].shape[1] :].cpu()  # (batch, ≤ max_new_tokens)
        seen.rows.extend([int(t) for t in row if t != pad] for row in new)
        return out

    model.generate = generate
    try:
        yield seen
    finally:
        del model.generate  # the instance attribute goes; the class's method shows again


def prepared(stages: Stages, work: Work) -> tuple[list, list]:
    """``work``'s pairs and items with every page resized once to the reranker's and the generator's budget, as
    the pipeline's image cache holds them across chunks."""
    rr = fitted(stages.reranker.processor, {id(img): img for _, img in work.pairs})
    gen = fitted(stages.generator.processor, {id(img): img for _, imgs in work.items for img in imgs})
    return [(q, rr[id(img)]) for q, img in work.pairs], [(q, [gen[id(img)] for img in imgs]) for q, imgs in work.items]


def fitted(processor: Any, images: dict[int, Image.Image]) -> dict[int, Image.Image]:
    """Each page resized once to ``processor``'s budget (:func:`models.loading.fit_to_processor`)."""
    return {key: fit_to_processor(processor, img) for key, img in images.items()}


def timed(device: torch.device, fn: Callable[[], Any]) -> tuple[Any, float, float | None]:
    """``fn()``, its wall seconds (CUDA synchronised) and the peak CUDA memory allocated meanwhile in GiB (None on
    the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    result = fn()
    _sync(device)
    seconds = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated(device) / GIB if device.type == "cuda" else None
    return result, seconds, peak


def _allocated(device: torch.device) -> int | None:
    return torch.cuda.memory_allocated(device) if device.type == "cuda" else None


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
