"""LoRA adapters in both key layouts (transformers 4.x, as the real ones were saved, and 5.x) land on the model and
change its outputs; an adapter with a weight that matches no module fails loudly (models/adapters.py)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw
from safetensors.torch import load_file, save_file

from models.adapters import load_lora
from models.batching import BatchBudget
from models.reranker import MonoQwen2VLReranker
from models.retriever import ColQwen2Retriever
from pageqa.errors import ModelLoadError

pytestmark = pytest.mark.models

CPU, F32 = torch.device("cpu"), torch.float32
MAX_PIXELS = 16 * 28 * 28
LEGACY_LAYER_1 = "base_model.model.model.layers.1"
QUERIES = ["What is the life expectancy of France in 1990?", "GDP", "Which bridge span had cracks?"]


def _image(size: tuple[int, int], seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    img = Image.new("RGB", size, "white")
    for _ in range(5):
        x, y = int(rng.integers(0, size[0] - 20)), int(rng.integers(0, size[1] - 20))
        ImageDraw.Draw(img).rectangle((x, y, x + 20, y + 20), fill=tuple(int(c) for c in rng.integers(0, 255, 3)))
    return img


IMAGES = [_image((300, 200), 1), _image((120, 400), 2), _image((200, 200), 3)]
PAIRS = [(q, img) for q in QUERIES for img in IMAGES]


def _reranker(tiny, adapter) -> MonoQwen2VLReranker:
    return MonoQwen2VLReranker(str(tiny.qwen2_vl), str(adapter), device=CPU, dtype=F32, max_pixels=MAX_PIXELS)


def _retriever(path) -> ColQwen2Retriever:
    return ColQwen2Retriever(str(path), device=CPU, dtype=F32, max_pixels=MAX_PIXELS)


def _scores(reranker: MonoQwen2VLReranker) -> torch.Tensor:
    return torch.tensor(reranker.score(PAIRS, budget=BatchBudget(max_items=9, max_pixels=10**7)))


def _embeddings(retriever: ColQwen2Retriever) -> list[torch.Tensor]:
    pages = [torch.from_numpy(v.astype(np.float32)) for v in retriever.embed_pages(IMAGES, batch_size=3)]
    return pages + retriever.embed_queries(QUERIES, batch_size=3)


def _lora_weights(model) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters() if ".lora_" in name}


def test_tiny_legacy_adapters_hold_the_same_tensors_under_transformers_4_names(tiny_models):
    for current, legacy, new_prefix in (
        (tiny_models.monoqwen2_vl, tiny_models.monoqwen2_vl_legacy, "base_model.model.model.language_model."),
        (tiny_models.colqwen2_lora, tiny_models.colqwen2_lora_legacy, "base_model.model.language_model."),
    ):
        new, old = (load_file(p / "adapter_model.safetensors") for p in (current, legacy))
        assert len(old) == len(new) and not any("language_model" in k for k in old)
        layers = [k for k in new if k.startswith(new_prefix + "layers.")]
        assert len(layers) >= 16
        for key, tensor in new.items():
            old_key = key.replace(new_prefix, "base_model.model.model.", 1)
            assert torch.equal(old[old_key], tensor), key
    custom = [k for k in load_file(tiny_models.colqwen2_lora_legacy / "adapter_model.safetensors") if "custom" in k]
    assert custom == [f"base_model.model.custom_text_proj.lora_{ab}.weight" for ab in "AB"]


def test_plain_load_adapter_misses_legacy_colqwen2_keys(tiny_models):
    """Why load_lora exists: transformers' own load of the legacy ColQwen2 adapter reports its layer keys as
    unexpected and leaves those LoRA weights unloaded (colpali-engine issue #424). If this starts failing, upstream
    remaps the old names itself; load_lora is then a second check rather than the fix."""
    from colpali_engine.models import ColQwen2

    model = ColQwen2.from_pretrained(str(tiny_models.colqwen2), dtype=F32)
    info = model.load_adapter(str(tiny_models.colqwen2_lora_legacy))
    assert any(k.startswith("model.layers.") for k in info.unexpected_keys)
    assert any(k.startswith("language_model.layers.") for k in info.missing_keys)


def test_reranker_adapters_in_both_layouts_give_the_same_scores_unlike_the_base(tiny_models):
    current = _reranker(tiny_models, tiny_models.monoqwen2_vl)
    with_adapter = _scores(current)
    current.model.disable_adapters()
    bare = _scores(current)
    legacy = _reranker(tiny_models, tiny_models.monoqwen2_vl_legacy)
    assert torch.equal(_scores(legacy), with_adapter)
    assert (with_adapter - bare).abs().max() > 1e-3
    assert torch.all((with_adapter > 0) & (with_adapter < 1))
    assert _lora_weights(legacy.model).keys() == _lora_weights(current.model).keys() != set()
    for name, weight in _lora_weights(legacy.model).items():
        assert torch.equal(weight, _lora_weights(current.model)[name]), name


def test_retriever_loads_adapter_directories_in_both_layouts_unlike_the_base(tiny_models):
    bare = _embeddings(_retriever(tiny_models.colqwen2))
    current = _retriever(tiny_models.colqwen2_lora)
    legacy = _retriever(tiny_models.colqwen2_lora_legacy)
    assert current.model.active_adapters() == ["default"] == legacy.model.active_adapters()
    lora = _lora_weights(current.model)
    saved = load_file(tiny_models.colqwen2_lora / "adapter_model.safetensors")
    assert len(lora) == len(saved) == 2 * (2 * 7 + 1)  # A and B on 7 projections of 2 layers and custom_text_proj
    assert lora.keys() == _lora_weights(legacy.model).keys()
    with_adapter, from_legacy = _embeddings(current), _embeddings(legacy)
    for a, b, base in zip(with_adapter, from_legacy, bare, strict=True):
        assert a.shape == b.shape == base.shape
        assert torch.equal(a, b)
    assert max((a - base).abs().max().item() for a, base in zip(with_adapter, bare, strict=True)) > 1e-2


def _edited_copy(src, dst, edit) -> str:
    shutil.copytree(src, dst)
    weights = load_file(src / "adapter_model.safetensors")
    save_file(edit(weights), dst / "adapter_model.safetensors", metadata={"format": "pt"})
    return str(dst)


def test_adapter_key_that_matches_no_module_fails_loudly(tiny_models, tmp_path):
    def add_stray(weights):
        stray = "base_model.model.model.layers.0.self_attn.qq_proj.lora_A.weight"
        return weights | {stray: weights["base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"].clone()}

    broken = _edited_copy(tiny_models.monoqwen2_vl_legacy, tmp_path / "stray", add_stray)
    with pytest.raises(ModelLoadError, match=r"1 keys that match no module") as err:
        _reranker(tiny_models, broken)
    assert broken in str(err.value) and "self_attn.qq_proj.lora_A.weight" in str(err.value)

    broken = _edited_copy(tiny_models.colqwen2_lora_legacy, tmp_path / "stray_col", add_stray)
    with pytest.raises(ModelLoadError, match="qq_proj"):
        _retriever(broken)


def test_adapter_missing_a_lora_weight_fails_loudly(tiny_models, tmp_path):
    from transformers import Qwen2VLForConditionalGeneration

    def drop_one(weights):
        return {k: v for k, v in weights.items() if k != f"{LEGACY_LAYER_1}.self_attn.v_proj.lora_B.weight"}

    broken = _edited_copy(tiny_models.monoqwen2_vl_legacy, tmp_path / "short", drop_one)
    model = Qwen2VLForConditionalGeneration.from_pretrained(str(tiny_models.qwen2_vl), dtype=F32)
    with pytest.raises(ModelLoadError, match=r"1 LoRA weights that the file does not hold") as err:
        load_lora(model, broken)
    assert "layers.1.self_attn.v_proj.lora_B" in str(err.value) and broken in str(err.value)


def test_adapter_in_bfloat16_model_takes_the_model_dtype(tiny_models):
    from transformers import Qwen2VLForConditionalGeneration

    model = Qwen2VLForConditionalGeneration.from_pretrained(str(tiny_models.qwen2_vl), dtype=torch.bfloat16)
    load_lora(model, str(tiny_models.monoqwen2_vl_legacy))
    saved = load_file(tiny_models.monoqwen2_vl / "adapter_model.safetensors")
    name = "model.language_model.layers.0.self_attn.q_proj.lora_B.default.weight"
    loaded = dict(model.named_parameters())[name]
    assert loaded.dtype == torch.bfloat16
    key = "base_model.model.model.language_model.layers.0.self_attn.q_proj.lora_B.weight"
    assert torch.equal(loaded, saved[key].to(torch.bfloat16))


def test_remap_legacy_keys_finds_each_key_its_transformers_5_module():
    from models.adapters import remap_legacy_keys

    p = "base_model.model."
    generation = {"model.language_model.layers.0.self_attn.q_proj", "model.visual.blocks.0.attn.qkv", "lm_head",
                  "model", "model.language_model", "model.language_model.embed_tokens"}  # fmt: skip
    keys = [f"{p}model.layers.0.self_attn.q_proj.lora_A.weight", f"{p}visual.blocks.0.attn.qkv.lora_B.weight",
            f"{p}lm_head.weight", f"{p}model.embed_tokens.token_adapter.trainable_tokens_delta",
            f"{p}model.language_model.layers.0.self_attn.q_proj.lora_B.weight"]  # fmt: skip
    renamed, unmatched = remap_legacy_keys(keys, generation)
    assert unmatched == []
    assert list(renamed.values()) == [
        f"{p}model.language_model.layers.0.self_attn.q_proj.lora_A.weight",
        f"{p}model.visual.blocks.0.attn.qkv.lora_B.weight",
        f"{p}lm_head.weight",  # a modules_to_save module keeps its name
        f"{p}model.language_model.embed_tokens.token_adapter.trainable_tokens_delta",
        f"{p}model.language_model.layers.0.self_attn.q_proj.lora_B.weight",  # already transformers 5: unchanged
    ]
    colqwen2 = {"language_model.layers.1.mlp.up_proj", "custom_text_proj", "visual.blocks.0.attn.qkv"}
    keys = [f"{p}model.layers.1.mlp.up_proj.lora_A.weight", f"{p}custom_text_proj.lora_B.weight",
            f"{p}visual.blocks.0.attn.qkv.lora_A.weight", f"{p}model.layers.1.mlp.upp.lora_A.weight", "up.weight"]
    renamed, unmatched = remap_legacy_keys(keys, colqwen2)
    assert list(renamed.values())[:3] == [f"{p}language_model.layers.1.mlp.up_proj.lora_A.weight", *keys[1:3]]
    assert unmatched == keys[3:]  # a module of no name, and a key without peft's prefix
