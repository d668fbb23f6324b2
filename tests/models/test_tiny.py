"""The tiny model set (models/tiny.py): building, tokenizer, and the load/inference paths pageqa relies on."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers / huggingface_hub are imported

import torch  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

from models import tiny as tiny_mod  # noqa: E402
from models.tiny import MARKER, TinyModelSet, make_tiny, tiny_model_set  # noqa: E402
from models.tiny_tokenizer import SPECIAL_TOKENS  # noqa: E402

pytestmark = pytest.mark.models

WEIGHT_FILES = (
    "qwen2_vl/model.safetensors", "colqwen2/model.safetensors", "monoqwen2_vl/adapter_model.safetensors",
    "colqwen2_lora/adapter_model.safetensors", "monoqwen2_vl_legacy/adapter_model.safetensors",
    "colqwen2_lora_legacy/adapter_model.safetensors",
)  # fmt: skip


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> TinyModelSet:
    return make_tiny(tmp_path_factory.mktemp("tiny") / "set", seed=0)


@pytest.fixture(scope="module")
def processor(tiny):
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(tiny.qwen2_vl)


@pytest.fixture(scope="module")
def base_model(tiny):
    from transformers import Qwen2VLForConditionalGeneration

    return Qwen2VLForConditionalGeneration.from_pretrained(tiny.qwen2_vl).eval()


def _image(size: tuple[int, int], color: str) -> Image.Image:
    img = Image.new("RGB", size, "white")
    ImageDraw.Draw(img).rectangle((5, 5, size[0] // 2, size[1] // 2), fill=color)
    return img


def _prompt(processor, question: str) -> str:
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
    return processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


def _digests(root: Path) -> dict[str, str]:
    return {name: hashlib.sha256((root / name).read_bytes()).hexdigest() for name in WEIGHT_FILES}


# --- building -------------------------------------------------------------------------------------------------


def test_set_is_complete_and_second_call_does_not_rebuild(tiny):
    marker = json.loads((tiny.root / MARKER).read_text())
    assert marker["seed"] == 0 and marker["format_version"] == tiny_mod.FORMAT_VERSION
    for name in (*WEIGHT_FILES, "qwen2_vl/generation_config.json", "colqwen2/processor_config.json"):
        assert (tiny.root / name).is_file(), name
    adapter = json.loads((tiny.monoqwen2_vl / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == str(tiny.qwen2_vl)
    assert tiny_model_set(tiny.root) == tiny

    stamps = {p: (tiny.root / p).stat().st_mtime_ns for p in (MARKER, *WEIGHT_FILES)}
    assert make_tiny(tiny.root, seed=0) == tiny
    assert {p: (tiny.root / p).stat().st_mtime_ns for p in stamps} == stamps
    assert [p.name for p in tiny.root.parent.iterdir()] == [tiny.root.name]  # no temporary siblings left


def test_tiny_model_set_names_what_is_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="make-tiny") as err:
        tiny_model_set(tmp_path / "nowhere")
    assert str(tmp_path / "nowhere" / MARKER) in str(err.value)
    half = tmp_path / "half"
    (half / "qwen2_vl").mkdir(parents=True)
    (half / MARKER).write_text("{}")
    with pytest.raises(FileNotFoundError, match="colqwen2"):
        tiny_model_set(half)


def test_failed_build_leaves_nothing_that_looks_complete(tmp_path, monkeypatch):
    root = tmp_path / "set"
    root.mkdir()
    (root / "junk.txt").write_text("left by an older, interrupted build")

    def boom(*args, **kwargs):
        raise RuntimeError("simulated crash")

    monkeypatch.setattr(tiny_mod, "_save_lora", boom)
    with pytest.raises(RuntimeError, match="simulated crash"):
        make_tiny(root)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["set"]  # temporary directory removed
    assert (root / "junk.txt").exists() and not (root / MARKER).exists()
    with pytest.raises(FileNotFoundError):
        tiny_model_set(root)

    monkeypatch.undo()
    tiny = make_tiny(root)
    assert not (root / "junk.txt").exists() and tiny_model_set(root) == tiny


def test_deterministic_given_seed(tiny, tmp_path):
    again = make_tiny(tmp_path / "again", seed=0)
    assert _digests(again.root) == _digests(tiny.root)

    other = make_tiny(tmp_path / "again", seed=1)  # another seed: rebuilt in place
    assert json.loads((other.root / MARKER).read_text())["seed"] == 1
    changed = _digests(other.root)
    assert all(changed[name] != digest for name, digest in _digests(tiny.root).items())

    stamp = (other.root / MARKER).stat().st_mtime_ns
    make_tiny(other.root, seed=1, overwrite=True)
    assert (other.root / MARKER).stat().st_mtime_ns != stamp
    assert _digests(other.root) == changed


# --- tokenizer ------------------------------------------------------------------------------------------------


def test_true_and_false_are_single_tokens(tiny, processor):
    from colpali_engine.models import ColQwen2Processor

    for tokenizer in (processor.tokenizer, ColQwen2Processor.from_pretrained(tiny.colqwen2).tokenizer):
        ids = tokenizer.convert_tokens_to_ids(["True", "False"])
        assert None not in ids and tokenizer.unk_token_id not in ids and ids[0] != ids[1]
        assert [tokenizer.encode(w, add_special_tokens=False) for w in ("True", "False")] == [[ids[0]], [ids[1]]]
        assert 1000 <= len(tokenizer) <= 2100
        assert tokenizer.decode(tokenizer.encode("Not answerable: life expectancy 71.5")) == (
            "Not answerable: life expectancy 71.5"
        )


def test_special_tokens_match_qwen2_vl(tiny, processor, base_model):
    tokenizer, config = processor.tokenizer, base_model.config
    ids = tokenizer.convert_tokens_to_ids(list(SPECIAL_TOKENS))
    first = len(tokenizer) - len(SPECIAL_TOKENS)  # after the ordinary vocabulary, in Qwen2-VL's order
    assert ids == list(range(first, len(tokenizer)))
    for token, token_id in zip(SPECIAL_TOKENS, ids, strict=True):
        assert tokenizer.encode(f"a{token}b", add_special_tokens=False)[1] == token_id
    assert (tokenizer.eos_token, tokenizer.pad_token, tokenizer.bos_token) == ("<|im_end|>", "<|endoftext|>", None)
    assert config.text_config.vocab_size == len(tokenizer)
    tid = tokenizer.convert_tokens_to_ids
    assert (config.image_token_id, config.video_token_id) == (tid("<|image_pad|>"), tid("<|video_pad|>"))
    assert (config.vision_start_token_id, config.vision_end_token_id) == (
        tid("<|vision_start|>"),
        tid("<|vision_end|>"),
    )
    assert processor.image_token_id == config.image_token_id
    generation = base_model.generation_config
    assert generation.eos_token_id == [tid("<|im_end|>"), tid("<|endoftext|>")]
    assert generation.pad_token_id == tid("<|endoftext|>")


def test_chat_template_is_qwen2_vl_instruct(processor):
    text = _prompt(processor, "Is it True?")
    assert text == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
        "<|vision_start|><|image_pad|><|vision_end|>Is it True?<|im_end|>\n<|im_start|>assistant\n"
    )
    own_system = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    assert processor.apply_chat_template(own_system, tokenize=False) == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
    )


# --- models ---------------------------------------------------------------------------------------------------


def test_colqwen2_gives_normalised_128_dim_rows(tiny):
    from colpali_engine.models import ColQwen2, ColQwen2Processor

    model = ColQwen2.from_pretrained(tiny.colqwen2, torch_dtype=torch.float32).eval()
    processor = ColQwen2Processor.from_pretrained(tiny.colqwen2)
    images = processor.process_images(
        [_image((300, 200), "red"), _image((120, 500), "blue"), _image((64, 64), "green")]
    )
    queries = processor.process_queries(["What is the life expectancy of France in 1990?", "GDP"])
    grid = images["image_grid_thw"]
    assert processor.get_image_mask(images).sum(1).tolist() == (grid.prod(1) // 4).tolist()

    with torch.no_grad():
        outputs = [model(**images), model(**queries)]
    for batch, emb in zip((images, queries), outputs, strict=True):
        mask = batch["attention_mask"].bool()
        assert emb.shape == (*mask.shape, 128)
        assert not mask.all() and mask[:, -1].all()  # left padding, marked in the attention mask
        norms = emb.norm(dim=-1)
        assert torch.allclose(norms[mask], torch.ones(()), atol=1e-4)
        assert torch.equal(norms[~mask], torch.zeros_like(norms[~mask]))
    scores = processor.score_multi_vector(list(outputs[1]), list(outputs[0]), device="cpu")
    assert scores.shape == (2, 3) and torch.isfinite(scores).all()


def test_qwen2_vl_generates_from_left_padded_image_batch(processor, base_model):
    texts = [_prompt(processor, "What is the life expectancy of Japan?"), _prompt(processor, "True?")]
    images = [_image((300, 200), "red"), _image((100, 400), "blue")]
    batch = processor(text=texts, images=images, padding=True, padding_side="left", return_tensors="pt")
    mask = batch["attention_mask"]
    assert mask[:, -1].all() and not mask[:, 0].all()

    with torch.no_grad():
        out = base_model.generate(**batch, max_new_tokens=4, do_sample=False)
        batched_last = base_model(**batch).logits[:, -1]
        for i in range(2):  # left padding must not change the result of a prompt
            alone = processor(text=[texts[i]], images=[images[i]], return_tensors="pt")
            assert torch.allclose(base_model(**alone).logits[0, -1], batched_last[i], atol=1e-4)
    new = out[:, batch["input_ids"].shape[1] :]
    assert torch.equal(out[:, : batch["input_ids"].shape[1]], batch["input_ids"])
    assert 1 <= new.shape[1] <= 4
    assert len(processor.batch_decode(new, skip_special_tokens=True)) == 2


def test_lora_adapter_loads_and_changes_logits(tiny, processor, base_model):
    from peft import PeftModel
    from transformers import Qwen2VLForConditionalGeneration

    batch = processor(text=[_prompt(processor, "Is this page relevant?")], images=[_image((200, 300), "red")],
                      return_tensors="pt")  # fmt: skip
    with torch.no_grad():
        base = base_model(**batch).logits[0, -1]
        integrated = Qwen2VLForConditionalGeneration.from_pretrained(tiny.qwen2_vl).eval()
        integrated.load_adapter(str(tiny.monoqwen2_vl))
        with_adapter = integrated(**batch).logits[0, -1]
        wrapped = PeftModel.from_pretrained(Qwen2VLForConditionalGeneration.from_pretrained(tiny.qwen2_vl),
                                            str(tiny.monoqwen2_vl)).eval()  # fmt: skip
        with_peft = wrapped(**batch).logits[0, -1]
    assert (with_adapter - base).abs().max() > 1e-2
    assert torch.allclose(with_adapter, with_peft, atol=1e-5)
    lora_modules = {name for name, _ in wrapped.named_modules() if name.endswith("lora_A")}
    assert len(lora_modules) == 2 * 4 and all(".language_model." in name for name in lora_modules)
    true_false = processor.tokenizer.convert_tokens_to_ids(["True", "False"])
    p_true = torch.softmax(with_adapter[true_false], dim=-1)[0]
    assert 0.0 < p_true.item() < 1.0


def test_qwen2_vl_loads_in_4bit_nf4_on_cpu(tiny, processor):
    pytest.importorskip("bitsandbytes")
    from transformers import BitsAndBytesConfig, Qwen2VLForConditionalGeneration

    quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16,
                               bnb_4bit_use_double_quant=True)  # fmt: skip
    model = Qwen2VLForConditionalGeneration.from_pretrained(
        tiny.qwen2_vl, quantization_config=quant, device_map="cpu", dtype=torch.bfloat16
    )
    assert type(model.model.language_model.layers[0].self_attn.q_proj).__name__ == "Linear4bit"
    batch = processor(text=[_prompt(processor, "Why?")], images=[_image((200, 100), "red")], return_tensors="pt")
    out = model.generate(**batch, max_new_tokens=3, do_sample=False)
    assert out.shape[0] == 1 and out.shape[1] > batch["input_ids"].shape[1]
