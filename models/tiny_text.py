"""A tiny, randomly initialised causal LM with a chat template, standing in for the offline set's bundled LLMs
(:mod:`models.bundled`) in tests: a ``Qwen2ForCausalLM`` (the class Qwen2.5-Coder-0.5B-Instruct loads as) of about
0.1 M parameters with the tiny tokenizer (:mod:`models.tiny_tokenizer`), loaded through the same
:class:`models.text_generator.TextGenerator` code. Its answers are meaningless; shapes, padding and decoding are
those of the real model."""

from __future__ import annotations

from pathlib import Path

from models.tiny_tokenizer import build_tokenizer


def make_tiny_text_llm(out: Path, *, seed: int = 0) -> Path:
    """Write the tiny LLM and its tokenizer into ``out`` (``from_pretrained``-loadable); returns ``out``."""
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    tokenizer = build_tokenizer()
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    config = Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, max_position_embeddings=4096, eos_token_id=eos, tie_word_embeddings=True,
        dtype="float32",
    )  # fmt: skip
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config).eval()
    model.generation_config = GenerationConfig(eos_token_id=eos, do_sample=False)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
