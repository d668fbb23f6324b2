"""The three model stages on the tiny checkpoints, loaded through the production loading code."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from models.batching import BatchBudget
from models.device import compute_dtype
from models.generator import Qwen2VLGenerator
from models.pipeline import Pipeline
from models.late_interaction import maxsim
from models.retriever import ColQwen2Retriever
from pageqa.errors import ModelLoadError

pytestmark = pytest.mark.models


def _image(size: tuple[int, int], seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    img = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(img)
    for _ in range(6):
        x, y = int(rng.integers(0, size[0] - 20)), int(rng.integers(0, size[1] - 20))
        draw.rectangle((x, y, x + 20, y + 20), fill=tuple(int(c) for c in rng.integers(0, 255, 3)))
    return img


IMAGES = [_image((640, 480), 1), _image((300, 700), 2), _image((900, 300), 3)]
QUERIES = ["What was harvested?", "How many cracks did the bridge inspection find in the north span?", "revenue"]


@pytest.fixture(scope="module")
def pipeline(settings, tiny_models) -> Pipeline:
    return Pipeline(settings)


def test_pipeline_loads_every_stage_from_the_configured_checkpoints(pipeline, tiny_models):
    from colpali_engine.models import ColQwen2
    from transformers import Qwen2VLForConditionalGeneration

    assert isinstance(pipeline.retriever.model, ColQwen2)
    assert isinstance(pipeline.generator.model, Qwen2VLForConditionalGeneration)
    assert pipeline.model_ids == {
        "retriever_model": str(tiny_models.colqwen2),
        "reranker_model": str(tiny_models.monoqwen2_vl),
        "generator_model": str(tiny_models.qwen2_vl),
    }
    assert pipeline.reranker.model.active_adapters() == ["default"]
    assert pipeline.device == torch.device("cpu")
    assert pipeline.generator.quantized is False  # 4-bit only by default on CUDA


def test_page_embeddings_have_no_padding_rows(pipeline):
    retriever = pipeline.retriever
    batched = retriever.embed_pages(IMAGES, batch_size=3)  # one left-padded batch of three sizes
    lengths = [int(retriever.processor.process_images([img])["attention_mask"].sum()) for img in IMAGES]
    assert len(set(lengths)) == 3, "the three images must give different token counts for this test to bite"
    for vectors, single_len, img in zip(batched, lengths, IMAGES, strict=True):
        assert vectors.dtype == np.float16 and vectors.shape == (single_len, 128)
        norms = np.linalg.norm(vectors.astype(np.float32), axis=1)
        assert np.allclose(norms, 1.0, atol=1e-2), "a padding row would have norm 0"
        alone = retriever.embed_pages([img], batch_size=1)[0]
        assert np.allclose(vectors.astype(np.float32), alone.astype(np.float32), atol=2e-2)


def test_query_embeddings_and_maxsim_match_colpali_scorer(pipeline):
    retriever = pipeline.retriever
    queries = retriever.embed_queries(QUERIES, batch_size=3)
    pages = retriever.embed_pages(IMAGES, batch_size=2)
    ours = maxsim(queries, pages, device=torch.device("cpu"), page_block=2)
    theirs = retriever.processor.score_multi_vector(
        [q.float() for q in queries], [torch.from_numpy(p.astype(np.float32)) for p in pages]
    )
    assert ours.shape == (3, 3)
    assert torch.allclose(ours, theirs.float(), atol=1e-3)


def test_reranker_batched_scores_equal_unbatched(pipeline):
    pairs = [(q, img) for q in QUERIES[:2] for img in IMAGES]  # 6 pairs, different prompt and image lengths
    batched = pipeline.reranker.score(pairs, budget=BatchBudget(6, 10**9))
    single = pipeline.reranker.score(pairs, budget=BatchBudget(1, 10**9))
    assert all(0.0 <= s <= 1.0 for s in batched)
    assert np.allclose(batched, single, atol=1e-4)
    assert len(set(np.round(batched, 6))) > 1, "scores should depend on the pair"


def test_generator_batched_answers_equal_unbatched(pipeline):
    items = [(QUERIES[0], IMAGES[:2]), (QUERIES[1], IMAGES[2:]), (QUERIES[2], IMAGES)]
    batched = pipeline.generator.generate(items, budget=BatchBudget(3, 10**9), max_new_tokens=6)
    single = [pipeline.generator.generate([it], budget=BatchBudget(1, 10**9), max_new_tokens=6)[0] for it in items]
    assert [g.answer for g in batched] == [g.answer for g in single]
    assert [g.confidence for g in batched] == pytest.approx([g.confidence for g in single], abs=1e-4)
    assert all(isinstance(a.answer, str) and 0.0 <= a.confidence <= 1.0 for a in batched)


def test_generator_loads_in_4bit_nf4(settings, tiny_models):
    import bitsandbytes as bnb

    gen = Qwen2VLGenerator(
        str(tiny_models.qwen2_vl), device=torch.device("cpu"), dtype=compute_dtype(torch.device("cpu")),
        quantize=True, min_pixels=settings.generator_min_pixels, max_pixels=settings.generator_max_pixels,
    )
    linear4 = [m for m in gen.model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert linear4, "4-bit loading must replace Linear layers"
    assert linear4[0].weight.quant_type == "nf4"
    (answer,) = gen.generate([(QUERIES[0], IMAGES[:1])], budget=BatchBudget(1, 10**9), max_new_tokens=4)
    assert isinstance(answer.answer, str) and 0.0 <= answer.confidence <= 1.0


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    missing = tmp_path / "no-such-model"
    with pytest.raises(ModelLoadError, match="no-such-model"):
        ColQwen2Retriever(str(missing), device=torch.device("cpu"), dtype=torch.float32, max_pixels=10_000)
