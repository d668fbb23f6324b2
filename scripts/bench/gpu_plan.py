"""The GPU memory plan of one worker: weights of the three models (parameters counted exactly, on PyTorch's meta
device, from the published architectures) and upper estimates of each stage's activations under the pixel and
micro-batch budgets of the settings.

    uv run python -m scripts.bench.gpu_plan

Architectures: the ``config.json`` of Qwen/Qwen2-VL-2B-Instruct (the base of vidore/colqwen2-v1.0 and of
lightonai/MonoQwen2-VL-v0.1) and of Qwen/Qwen2-VL-7B-Instruct. No weights are read. NF4 with double
quantisation stores 4 bits per weight plus one 8-bit absmax per 64 weights and one fp32 per 256 absmax values
(Dettmers et al., "QLoRA", 2023): 0.5 + 1/64 + 4/(64 × 256) bytes a weight. transformers keeps ``lm_head``,
embeddings, norms and biases in bf16.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from pageqa.settings import Settings

GIB = 2**30
NF4_BYTES = 0.5 + 1 / 64 + 4 / (64 * 256)
VISION = {"depth": 32, "embed_dim": 1280, "num_heads": 16, "mlp_ratio": 4, "in_channels": 3, "patch_size": 14,
              "spatial_merge_size": 2, "temporal_patch_size": 2}
TEXT_2B = {"vocab_size": 151936, "hidden_size": 1536, "intermediate_size": 8960, "num_hidden_layers": 28,
               "num_attention_heads": 12, "num_key_value_heads": 2}
TEXT_7B = {"vocab_size": 152064, "hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28,
               "num_attention_heads": 28, "num_key_value_heads": 4}
PIXELS_PER_TOKEN = 28 * 28  # one LLM visual token per 28 × 28 pixels (2 × 2 merged 14-pixel patches)


@dataclass(frozen=True)
class Weights:
    """Parameter counts of one model: Linear weights that 4-bit loading quantises, and everything else."""

    quantisable: int
    other: int

    def bytes(self, *, nf4: bool) -> float:
        """Bytes on the GPU: bf16 everywhere, or NF4 for the quantisable Linear weights."""
        return self.quantisable * (NF4_BYTES if nf4 else 2) + self.other * 2


def count(text: dict, *, tie: bool, extra_linear: tuple[int, int] | None = None) -> Weights:
    """Instantiate a Qwen2-VL of this text architecture on the meta device and count its parameters."""
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

    config = Qwen2VLConfig(text_config={**text, "rope_parameters": {
        "rope_type": "default", "rope_theta": 1e6, "mrope_section": [16, 24, 24]}},
        vision_config={**VISION, "hidden_size": text["hidden_size"]}, tie_word_embeddings=tie)
    with torch.device("meta"):
        model = Qwen2VLForConditionalGeneration(config)
    quantisable = other = 0
    for name, module in model.named_modules():
        for pname, p in module.named_parameters(recurse=False):
            if isinstance(module, torch.nn.Linear) and pname == "weight" and not name.endswith("lm_head"):
                quantisable += p.numel()
            else:
                other += p.numel()
    if tie:  # a tied lm_head shares the embedding's storage
        other -= model.lm_head.weight.numel()
    if extra_linear:
        other += extra_linear[0] * extra_linear[1]
    return Weights(quantisable, other)


def kv_bytes_per_token(text: dict) -> int:
    """bf16 key + value cache per token over all layers."""
    head_dim = text["hidden_size"] // text["num_attention_heads"]
    return 2 * text["num_hidden_layers"] * text["num_key_value_heads"] * head_dim * 2


def plan(settings: Settings) -> str:
    """The Markdown tables of docs/gpu.md for these settings."""
    colqwen = count(TEXT_2B, tie=True, extra_linear=(1536, 128))  # + ColQwen2's custom_text_proj to 128 dims
    mono = count(TEXT_2B, tie=True)
    qwen7 = count(TEXT_7B, tie=False)
    w = {"ColQwen2 (bf16)": colqwen.bytes(nf4=False), "MonoQwen2-VL (bf16; the LoRA adapter adds a few MB)": mono.bytes(nf4=False),
         "Qwen2-VL-7B (NF4 + double quant)": qwen7.bytes(nf4=True)}
    lines = ["| model | parameters | weights on the GPU |", "|---|---:|---:|"]
    for (name, b), m in zip(w.items(), (colqwen, mono, qwen7), strict=True):
        lines.append(f"| {name} | {(m.quantisable + m.other) / 1e9:.2f} B | {b / GIB:.2f} GiB |")
    lines.append(f"| **all three resident** | | **{sum(w.values()) / GIB:.2f} GiB** |")

    s = settings
    rr_tokens = s.rerank_batch_pixels // PIXELS_PER_TOKEN + 64 * s.rerank_batch_size  # + prompt tokens
    gen_tokens = s.generate_batch_pixels // PIXELS_PER_TOKEN + (96 + s.max_new_tokens) * s.generate_batch_size
    emb_tokens = s.embed_batch_size * s.retriever_max_pixels // PIXELS_PER_TOKEN
    act = {
        "retrieve: page embedding (ingest)": _prefill(TEXT_2B, emb_tokens),
        "rerank: one micro-batch, no KV cache": _prefill(TEXT_2B, rr_tokens),
        "generate: one micro-batch, prefill + KV cache": _prefill(TEXT_7B, gen_tokens)
        + gen_tokens * kv_bytes_per_token(TEXT_7B),
    }
    lines += ["", "| stage activations (upper estimate) | tokens in the micro-batch | bytes |", "|---|---:|---:|"]
    for (name, b), tokens in zip(act.items(), (emb_tokens, rr_tokens, gen_tokens), strict=True):
        lines.append(f"| {name} | {tokens:,} | {b / GIB:.2f} GiB |")
    context = 0.6 * GIB  # CUDA context + cuBLAS workspace, the usual 500–700 MB on an Ampere/Ada card
    peak = sum(w.values()) + max(act.values()) + context
    low = max(w.values()) + max(act.values()) + context
    lines += ["", (f"Peak, all resident: {sum(w.values()) / GIB:.2f} weights + {max(act.values()) / GIB:.2f} largest "
              f"stage + {context / GIB:.1f} CUDA context = **{peak / GIB:.1f} GiB** of the L4's 22.5 GiB (23,034 MiB)."),
              (f"Peak with `low_memory`: {max(w.values()) / GIB:.2f} largest model + {max(act.values()) / GIB:.2f} "
              f"+ {context / GIB:.1f} = **{low / GIB:.1f} GiB**.")]
    return "\n".join(lines) + "\n"


def _prefill(text: dict, tokens: int) -> float:
    """Largest transient of a prefill pass, one layer at a time: the MLP's gate, up and product tensors (bf16) over
    every token, plus the vision tower's MLP over the 4 patches behind each visual token (embed_dim 1280 × 4)."""
    llm = 3 * tokens * text["intermediate_size"] * 2
    vision = 3 * 4 * tokens * VISION["embed_dim"] * VISION["mlp_ratio"] * 2
    return max(llm, vision) + tokens * text["hidden_size"] * 2 * 2  # + residual stream in and out


if __name__ == "__main__":
    print(plan(Settings()))
