"""Checkpoints for ``pageqa bench gpu``: random weights of the published architectures (``real``) or the tiny set
(``tiny``), written to local disk so that the bench loads them back through the production ``from_pretrained``
path, the NF4 ``BitsAndBytesConfig`` and the LoRA adapter included.

Real size: the ``config.json`` of Qwen/Qwen2-VL-2B-Instruct (ColQwen2 and the MonoQwen2-VL base) and of
Qwen/Qwen2-VL-7B-Instruct (the generator), as counted in :mod:`scripts.bench.gpu_plan`. The weights are random and
the tokenizer is the tiny byte-level BPE of :mod:`models.tiny_tokenizer` (the hub's tokenizer cannot be fetched on a
machine without network); the embedding keeps the published vocabulary size, so parameter counts, weight bytes and
the compute per token are those of the real models. Outputs are meaningless; speed and memory are not.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from scripts.bench.gpu_plan import TEXT_2B, TEXT_7B, VISION

log = logging.getLogger(__name__)

MARKER = "bench-gpu.json"
#: LoRA shape of the real-size reranker adapter; the adapter is a few MB whatever its rank, so its cost is noise.
LORA_RANK = 8


@dataclass(frozen=True)
class Checkpoints:
    """Local checkpoint directories, one per production model id (see :func:`models.loading.model_ids`)."""

    retriever: Path
    reranker_base: Path
    reranker: Path
    generator: Path


def build(root: Path, *, size: str, device: torch.device) -> Checkpoints:
    """The checkpoints of ``size`` (``real`` or ``tiny``) under ``root``, built unless a finished build is there.

    ``device`` is where real-size weights are drawn before saving (a GPU draws 8 B random numbers in seconds, a CPU
    in minutes).

    Raises:
        OSError: ``root`` cannot be written (a real-size set is about 25 GB: 2 × 4.4 GB bf16 2B models and a
            16.6 GB bf16 7B one).
    """
    if size == "tiny":
        from models.tiny import make_tiny

        tiny = make_tiny(root / "tiny")
        return Checkpoints(tiny.colqwen2, tiny.qwen2_vl, tiny.monoqwen2_vl, tiny.qwen2_vl)
    real = root / "real"
    out = Checkpoints(real / "colqwen2", real / "qwen2_vl_2b", real / "monoqwen2_vl", real / "qwen2_vl_7b")
    if not (real / MARKER).exists():
        _build_real(out, device=device)
        (real / MARKER).write_text(json.dumps({"stands_in_for": _STANDS_IN_FOR}, indent=2) + "\n")
    return out


_STANDS_IN_FOR = {"colqwen2": "vidore/colqwen2-v1.0", "qwen2_vl_2b": "Qwen/Qwen2-VL-2B-Instruct",
                  "monoqwen2_vl": "lightonai/MonoQwen2-VL-v0.1", "qwen2_vl_7b": "Qwen/Qwen2-VL-7B-Instruct"}


@contextmanager
def _drawing_on(device: torch.device) -> Iterator[None]:
    """New modules get bf16 parameters on ``device``: the saved dtype of the published checkpoints, and half the
    time and memory of drawing fp32 weights first."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.device(device):
            yield
    finally:
        torch.set_default_dtype(previous)


def _build_real(out: Checkpoints, *, device: torch.device) -> None:
    """Draw and save the three real-size models and the LoRA adapter."""
    from colpali_engine.models import ColQwen2, ColQwen2Processor
    from transformers import GenerationConfig, Qwen2VLForConditionalGeneration, Qwen2VLProcessor

    from models.tiny_tokenizer import build_tokenizer

    tokenizer = build_tokenizer()
    gen = _generation_config(tokenizer, GenerationConfig)
    for path, text, tie in ((out.reranker_base, TEXT_2B, True), (out.generator, TEXT_7B, False)):
        torch.manual_seed(0)
        with _drawing_on(device):
            model = Qwen2VLForConditionalGeneration(_config(tokenizer, text, tie=tie)).eval()
        model.generation_config = gen
        log.info("saving %s", path)
        model.save_pretrained(path)
        Qwen2VLProcessor(**_processor_parts(tokenizer)).save_pretrained(path)
        if path == out.reranker_base:
            _save_lora(model, out.reranker, base=path)
        del model
        _free(device)
    torch.manual_seed(1)
    with _drawing_on(device):
        colqwen2 = ColQwen2(_config(tokenizer, TEXT_2B, tie=True)).eval()
    colqwen2.save_pretrained(out.retriever)
    ColQwen2Processor(**_processor_parts(tokenizer)).save_pretrained(out.retriever)
    del colqwen2
    _free(device)


def _free(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _config(tokenizer: Any, text: dict, *, tie: bool) -> Any:
    """A Qwen2VLConfig of the published architecture with the special-token ids of ``tokenizer``."""
    from transformers import Qwen2VLConfig

    tid = tokenizer.convert_tokens_to_ids
    text_config = {**text, "rope_parameters": {"rope_type": "default", "rope_theta": 1e6, "mrope_section": [16, 24, 24]},
                   "max_position_embeddings": 32768, "rms_norm_eps": 1e-6, "use_sliding_window": False,
                   "bos_token_id": tid("<|endoftext|>"), "eos_token_id": tid("<|im_end|>"), "dtype": "bfloat16"}
    return Qwen2VLConfig(
        text_config=text_config, vision_config={**VISION, "hidden_size": text["hidden_size"]},
        image_token_id=tid("<|image_pad|>"), video_token_id=tid("<|video_pad|>"),
        vision_start_token_id=tid("<|vision_start|>"), vision_end_token_id=tid("<|vision_end|>"),
        tie_word_embeddings=tie, dtype="bfloat16",
    )


def _generation_config(tokenizer: Any, cls: Any) -> Any:
    end, im_end = tokenizer.convert_tokens_to_ids("<|endoftext|>"), tokenizer.convert_tokens_to_ids("<|im_end|>")
    return cls(bos_token_id=end, eos_token_id=[im_end, end], pad_token_id=end, do_sample=False)


def _processor_parts(tokenizer: Any) -> dict[str, Any]:
    """Processor parts at the published default pixel budget; the stages set their own budget on load."""
    from transformers import Qwen2VLImageProcessor, Qwen2VLVideoProcessor

    from models.tiny_tokenizer import CHAT_TEMPLATE

    budget = {"min_pixels": 56 * 56, "max_pixels": 28 * 28 * 1280}
    return {"image_processor": Qwen2VLImageProcessor(**budget), "video_processor": Qwen2VLVideoProcessor(**budget),
            "tokenizer": tokenizer, "chat_template": CHAT_TEMPLATE}


def _save_lora(model: Any, out: Path, *, base: Path) -> None:
    """A LoRA adapter with random non-zero B (peft's zero init would make it a no-op) on ``model``'s attention."""
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(r=LORA_RANK, lora_alpha=2 * LORA_RANK, lora_dropout=0.0,
                      target_modules=["q_proj", "k_proj", "v_proj", "o_proj"], task_type="CAUSAL_LM")
    peft_model = get_peft_model(model, lora)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, 0.02)
    peft_model.peft_config["default"].base_model_name_or_path = str(base)
    peft_model.save_pretrained(out, save_embedding_layers=False)
