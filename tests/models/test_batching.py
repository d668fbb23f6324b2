"""Micro-batching: packing to a pixel budget, the out-of-memory fallback on the real tiny stages, low_memory
residency, and the worker's page image cache."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from models.batching import BatchBudget, BatchLog, image_pixels, pack
from models.images import ImageCache
from models.pipeline import Pipeline
from models.residency import Residency

IMAGES = [Image.new("RGB", (640, 480), (200, 30, 30)), Image.new("RGB", (300, 700), (30, 160, 30)),
          Image.new("RGB", (900, 300), (30, 30, 200))]
QUERIES = ["What was harvested?", "How many cracks did the bridge inspection find in the north span?", "revenue"]


def test_pack_respects_count_and_pixels_and_keeps_order():
    pixels = [100, 100, 300, 50, 50, 50, 900, 10]
    batches = pack(pixels, BatchBudget(max_items=3, max_pixels=400))
    assert [list(b) for b in batches] == [[0, 1], [2, 3, 4], [5], [6], [7]]
    # the oversized item runs alone; every item appears once, in order
    assert [i for b in batches for i in b] == list(range(len(pixels)))
    assert all(len(b) <= 3 and (sum(pixels[i] for i in b) <= 400 or len(b) == 1) for b in batches)
    assert pack([], BatchBudget(4, 100)) == []


def test_budget_halves_down_to_one_item():
    b = BatchBudget(5, 1000).halved()
    assert (b.max_items, b.max_pixels) == (2, 500)
    assert BatchBudget(1, 1).halved() == BatchBudget(1, 1)


def test_image_pixels_follow_the_processor_bounds():
    assert image_pixels((100, 50), max_pixels=10_000) == 5_000
    assert image_pixels((1000, 1000), max_pixels=10_000) == 10_000
    assert image_pixels((10, 10), max_pixels=10_000, min_pixels=3_136) == 3_136


def test_page_image_cache_evicts_least_recently_used_by_bytes():
    loads: list[list[int]] = []

    def load(ids):
        loads.append(list(ids))
        return {i: Image.new("RGB", (10, 10)) for i in ids}  # 300 bytes each

    cache = ImageCache(max_bytes=1000)  # room for three
    assert set(cache.get_many([1, 2, 3], load)) == {1, 2, 3}
    cache.get_many([1], load)  # 1 becomes the most recently used
    cache.get_many([4], load)  # evicts 2, the least recently used
    assert loads == [[1, 2, 3], [4]]
    assert len(cache) == 3 and cache.bytes == 900
    cache.get_many([1, 2, 3, 4], load)
    assert loads[-1] == [2], "only the evicted page is loaded again"
    assert (cache.hits, cache.misses) == (0 + 1 + 0 + 3, 3 + 0 + 1 + 1)


def test_low_memory_places_only_the_active_stage():
    class Stage:
        def __init__(self):
            self.device, self.placed = torch.device("cpu"), []

        def place(self, device):
            self.device = device
            self.placed.append(device)

    r = Residency(torch.device("cpu"), low_memory=True)
    stages = {name: Stage() for name in ("retrieve", "rerank", "generate")}
    for name, stage in stages.items():
        r.register(name, stage)
    assert r.resident == set()
    with r.active("rerank"):
        assert r.resident == {"rerank"}
    with r.active("rerank"):  # already there: no move
        pass
    with r.active("generate"):
        assert r.resident == {"generate"}
    assert r.moves == 2
    assert stages["rerank"].placed == [torch.device("cpu"), torch.device("cpu")]  # onto the device, then off
    assert stages["retrieve"].placed == []

    always = Residency(torch.device("cpu"), low_memory=False)
    always.register("rerank", Stage())
    with always.active("rerank"):
        pass
    assert always.moves == 0 and always.resident == {"rerank"}


@pytest.fixture(scope="module")
def pipeline(settings, tiny_models) -> Pipeline:
    return Pipeline(settings)


def _inject_oom(model: torch.nn.Module, *, above: int, calls: list[int]):
    """Make ``model`` raise a CUDA out-of-memory error on batches larger than ``above`` (what an L4 does when a
    micro-batch's activations do not fit); returns a function that restores it."""
    forward = model.forward

    def failing(*args, **kwargs):
        tokens = kwargs.get("input_ids")
        batch = (tokens if tokens is not None else kwargs["inputs_embeds"]).shape[0]
        calls.append(batch)
        if batch > above:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (injected by the test)")
        return forward(*args, **kwargs)

    model.forward = failing
    return lambda: setattr(model, "forward", forward)


@pytest.mark.models
def test_reranker_out_of_memory_halves_micro_batches_and_keeps_scores(pipeline):
    pairs = [(q, img) for q in QUERIES for img in IMAGES]  # 9 pairs
    expected = pipeline.reranker.score(pairs, budget=BatchBudget(1, 10**9))
    calls: list[int] = []
    restore = _inject_oom(pipeline.reranker.model, above=2, calls=calls)
    try:
        log = BatchLog()
        scores = pipeline.reranker.score(pairs, budget=BatchBudget(8, 10**9), batch_log=log)
    finally:
        restore()
    assert np.allclose(scores, expected, atol=1e-4)
    assert calls[:3] == [8, 4, 2], "8 failed, 4 failed, then 2 fit"
    assert log.halvings == {"rerank": 2}
    assert sum(log.sizes["rerank"]) == 9 and max(log.sizes["rerank"]) == 2
    assert log.as_record()["oom_halvings"] == {"rerank": 2}


@pytest.mark.models
def test_generator_out_of_memory_halves_micro_batches_and_keeps_answers(pipeline):
    items = [(QUERIES[0], IMAGES[:2]), (QUERIES[1], IMAGES[2:]), (QUERIES[2], IMAGES)]
    expected = pipeline.generator.generate(items, budget=BatchBudget(3, 10**9), max_new_tokens=6)
    calls: list[int] = []
    # the inner Qwen2VLModel: generate() checks its kwargs against the outer forward's signature
    restore = _inject_oom(pipeline.generator.model.model, above=1, calls=calls)
    try:
        log = BatchLog()
        answers = pipeline.generator.generate(items, budget=BatchBudget(3, 10**9), max_new_tokens=6, batch_log=log)
    finally:
        restore()
    assert [g.answer for g in answers] == [g.answer for g in expected]
    assert [g.confidence for g in answers] == pytest.approx([g.confidence for g in expected], abs=1e-4)
    assert log.sizes["generate"] == [1, 1, 1] and log.halvings == {"generate": 1}


@pytest.mark.models
def test_out_of_memory_on_a_single_item_is_raised(pipeline):
    calls: list[int] = []
    restore = _inject_oom(pipeline.reranker.model, above=0, calls=calls)
    try:
        with pytest.raises(torch.OutOfMemoryError):
            pipeline.reranker.score([(QUERIES[0], IMAGES[0]), (QUERIES[1], IMAGES[1])], budget=BatchBudget(2, 10**9))
    finally:
        restore()
    assert calls == [2, 1], "halved once, then the single pair's error is the chunk's error"


@pytest.mark.models
def test_pixel_budget_sets_the_rerank_micro_batches(pipeline, settings):
    pairs = [(QUERIES[0], img) for img in IMAGES]
    px = [image_pixels(img.size, max_pixels=settings.reranker_max_pixels) for img in IMAGES]
    log = BatchLog()
    pipeline.reranker.score(pairs, budget=BatchBudget(16, px[0] + px[1]), batch_log=log)
    assert log.sizes["rerank"] == [2, 1]
