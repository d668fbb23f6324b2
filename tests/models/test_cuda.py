"""The model stages on CUDA with the tiny checkpoints: 4-bit NF4 loading, bf16 stages, batched = unbatched, a real
out-of-memory error halved by :func:`models.batching.run_batched`, and ``low_memory`` moving the 4-bit generator
off the GPU and back. Skipped without CUDA; the device run of docs/gpu.md ("Measuring on a GPU") runs them.

Tolerances: bf16 rows of another batch pad and sum in another order, so P(True) moves by more than the 1e-4 of the
fp32 CPU tests (tests/models/test_stages.py). :data:`SCORE_TOL` and :data:`COSINE_MIN` are assumptions until the
first device run; a failure there says by how much they were wrong.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from models.batching import BatchBudget, BatchLog
from models.generator import Qwen2VLGenerator
from models.reranker import MonoQwen2VLReranker
from models.residency import Residency
from models.retriever import ColQwen2Retriever

pytestmark = [pytest.mark.models,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (docs/gpu.md, Measuring on a GPU)")]

CUDA = torch.device("cuda")
BF16 = torch.bfloat16
SCORE_TOL = 1e-2
COSINE_MIN = 0.99
RERANK_PIXELS = 512 * 28 * 28  # the production reranker budget: activations large enough to cap meaningfully


def _image(size: tuple[int, int], seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    img = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(img)
    for _ in range(8):
        x, y = int(rng.integers(0, size[0] - 40)), int(rng.integers(0, size[1] - 40))
        draw.rectangle((x, y, x + 40, y + 40), fill=tuple(int(c) for c in rng.integers(0, 255, 3)))
    return img


IMAGES = [_image((827, 1169), 1), _image((1280, 720), 2), _image((640, 480), 3), _image((300, 700), 4)]
QUERIES = ["What was harvested?", "How many cracks did the bridge inspection find in the north span?", "revenue"]


@pytest.fixture(scope="module")
def generator(settings, tiny_models) -> Qwen2VLGenerator:
    return Qwen2VLGenerator(str(tiny_models.qwen2_vl), device=CUDA, dtype=BF16, quantize=True,
                            min_pixels=settings.generator_min_pixels, max_pixels=settings.generator_max_pixels)


@pytest.fixture(scope="module")
def reranker(tiny_models) -> MonoQwen2VLReranker:
    return MonoQwen2VLReranker(str(tiny_models.qwen2_vl), str(tiny_models.monoqwen2_vl), device=CUDA, dtype=BF16,
                               max_pixels=RERANK_PIXELS)


@pytest.fixture(scope="module")
def retriever(settings, tiny_models) -> ColQwen2Retriever:
    return ColQwen2Retriever(str(tiny_models.colqwen2), device=CUDA, dtype=BF16,
                             max_pixels=settings.retriever_max_pixels)


def test_generator_loads_in_4bit_nf4_with_bf16_compute(generator):
    import bitsandbytes as bnb

    linear4 = [m for m in generator.model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert linear4, "4-bit loading must replace Linear layers"
    assert {m.weight.quant_type for m in linear4} == {"nf4"}
    assert all(m.compute_dtype == BF16 for m in linear4)
    assert all(m.weight.device.type == "cuda" for m in linear4)
    (answer,) = generator.generate([(QUERIES[0], IMAGES[:1])], budget=BatchBudget(1, 10**9), max_new_tokens=4)
    assert isinstance(answer.answer, str) and 0.0 <= answer.confidence <= 1.0


def test_retriever_and_reranker_run_in_bf16_on_cuda(retriever, reranker):
    for model in (retriever.model, reranker.model):
        floats = {p.dtype for p in model.parameters() if p.is_floating_point()}
        assert floats == {BF16} and next(model.parameters()).device.type == "cuda"
    (page,) = retriever.embed_pages(IMAGES[:1], batch_size=1)
    assert np.isfinite(page.astype(np.float32)).all() and page.shape[1] == 128
    scores = reranker.score([(QUERIES[0], IMAGES[0])], budget=BatchBudget(1, 10**9))
    assert 0.0 <= scores[0] <= 1.0


def test_batched_equals_unbatched_on_cuda(retriever, reranker, generator):
    batched = retriever.embed_pages(IMAGES, batch_size=4)  # one left-padded batch of four sizes
    for vectors, img in zip(batched, IMAGES, strict=True):
        (alone,) = retriever.embed_pages([img], batch_size=1)
        assert vectors.shape == alone.shape, "no padding row kept"
        cos = (vectors.astype(np.float32) * alone.astype(np.float32)).sum(axis=1)  # rows are unit vectors
        assert cos.min() >= COSINE_MIN

    pairs = [(q, img) for q in QUERIES for img in IMAGES]
    scores = reranker.score(pairs, budget=BatchBudget(len(pairs), 10**12))
    single = reranker.score(pairs, budget=BatchBudget(1, 10**12))
    assert np.abs(np.subtract(scores, single)).max() <= SCORE_TOL
    for i in range(0, len(pairs), len(IMAGES)):
        a, b = scores[i : i + len(IMAGES)], single[i : i + len(IMAGES)]
        assert np.argsort(a).tolist() == np.argsort(b).tolist(), "the same page order per query"

    items = [(QUERIES[0], IMAGES[:2]), (QUERIES[1], IMAGES[2:]), (QUERIES[2], IMAGES[:1])]
    answers = generator.generate(items, budget=BatchBudget(3, 10**12), max_new_tokens=8)
    alone = [generator.generate([it], budget=BatchBudget(1, 10**12), max_new_tokens=8)[0] for it in items]
    assert [g.answer for g in answers] == [g.answer for g in alone], "greedy answers do not depend on the micro-batch"


def test_a_real_out_of_memory_error_is_halved_and_finishes_with_equal_scores(reranker):
    pairs = [(q, img) for q in QUERIES for img in IMAGES] * 2  # 24 pairs at the production page budget
    budget = BatchBudget(len(pairs), 10**12)
    torch.cuda.empty_cache()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    uncapped = reranker.score(pairs, budget=budget)
    activations = torch.cuda.max_memory_allocated() - base
    total = torch.cuda.get_device_properties(CUDA).total_memory
    torch.cuda.empty_cache()
    batch_log = BatchLog()
    torch.cuda.set_per_process_memory_fraction((base + 0.6 * activations) / total)
    try:
        capped = reranker.score(pairs, budget=budget, batch_log=batch_log)
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
        torch.cuda.empty_cache()
    assert batch_log.halvings.get("rerank", 0) >= 1, f"the cap did not bite: {batch_log.sizes}"
    assert sum(batch_log.sizes["rerank"]) == len(pairs) and max(batch_log.sizes["rerank"]) < len(pairs)
    assert np.abs(np.subtract(capped, uncapped)).max() <= SCORE_TOL


def test_low_memory_moves_the_4bit_generator_onto_the_gpu_and_back(settings, tiny_models):
    import bitsandbytes as bnb

    items = [(QUERIES[1], IMAGES[:2])]
    residency = Residency(CUDA, low_memory=True)
    # As models.pipeline.Pipeline loads it under low_memory: 4-bit (the compute device is CUDA), at home on the CPU.
    gen = Qwen2VLGenerator(str(tiny_models.qwen2_vl), device=residency.home, dtype=BF16, quantize=True,
                           min_pixels=settings.generator_min_pixels, max_pixels=settings.generator_max_pixels)
    ret = ColQwen2Retriever(str(tiny_models.colqwen2), device=residency.home, dtype=BF16,
                            max_pixels=settings.retriever_max_pixels)
    residency.register("generate", gen)
    residency.register("retrieve", ret)

    def where() -> set[str]:
        return {m.weight.device.type for m in gen.model.modules() if isinstance(m, bnb.nn.Linear4bit)}

    assert where() == {"cpu"}
    with residency.active("generate"):
        assert where() == {"cuda"}
        first = gen.generate(items, budget=BatchBudget(1, 10**12), max_new_tokens=8)
    with residency.active("retrieve"):
        assert where() == {"cpu"}, "the generator waits in CPU memory while another stage runs"
        ret.embed_pages(IMAGES[:1], batch_size=1)
    with residency.active("generate"):
        assert where() == {"cuda"}
        again = gen.generate(items, budget=BatchBudget(1, 10**12), max_new_tokens=8)
    assert residency.moves == 3
    assert first == again, "the 4-bit weights survive the round trip through CPU memory"
