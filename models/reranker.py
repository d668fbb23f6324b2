"""Rerank: MonoQwen2-VL pointwise relevance of (query, page image) pairs.

Method and prompt: model card of lightonai/MonoQwen2-VL-v0.1 (a LoRA adapter on Qwen/Qwen2-VL-2B-Instruct). The
image comes first, then the prompt below; the score is P(True) = softmax over the last-token logits of the tokens
"False" and "True".
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Sequence

import torch
from PIL import Image

from models.adapters import load_lora
from models.batching import BatchBudget, BatchLog, image_pixels, run_batched
from models.loading import from_pretrained, plain_text, set_pixel_budget

log = logging.getLogger(__name__)

PROMPT = (
    "Assert the relevance of the previous image document to the following query, answer True or False. "
    "The query is: {query}"
)


class Reranker(abc.ABC):
    """Scores (query, page image) pairs; higher is more relevant."""

    model_id: str

    @abc.abstractmethod
    def score(
        self, pairs: Sequence[tuple[str, Image.Image]], *, budget: BatchBudget, batch_log: BatchLog | None = None
    ) -> list[float]:
        """One relevance score per pair, in input order, in micro-batches within ``budget``."""


class MonoQwen2VLReranker(Reranker):
    """MonoQwen2-VL: base Qwen2-VL with the LoRA adapter loaded through transformers' PEFT integration.

    Args:
        base_id: the base checkpoint (Qwen/Qwen2-VL-2B-Instruct), which also provides the processor.
        adapter_id: the LoRA adapter (lightonai/MonoQwen2-VL-v0.1).
        max_pixels: page image budget in pixels.

    Raises:
        ModelLoadError: a checkpoint cannot be loaded, or a weight of the adapter matches no module of the base
            (:func:`models.adapters.load_lora`).
    """

    def __init__(self, base_id: str, adapter_id: str, *, device: torch.device, dtype: torch.dtype, max_pixels: int):
        from transformers import AutoProcessor, Qwen2VLForConditionalGeneration

        self.model_id, self.device, self.max_pixels = adapter_id, device, max_pixels
        self.model = from_pretrained(Qwen2VLForConditionalGeneration, base_id, dtype=dtype, device_map=str(device))
        load_lora(self.model, adapter_id)  # transformers-4 key names remapped; raises if any LoRA weight is unmatched
        self.model.eval()
        self.processor = from_pretrained(AutoProcessor, base_id)
        self.processor.tokenizer.padding_side = "left"
        set_pixel_budget(self.processor, max_pixels=max_pixels)
        tok = self.processor.tokenizer
        self.true_id, self.false_id = tok.convert_tokens_to_ids("True"), tok.convert_tokens_to_ids("False")

    def place(self, device: torch.device) -> None:
        """Move the model to ``device``; later inputs follow it (see :mod:`models.residency`)."""
        self.model.to(device)
        self.device = device

    def _prompt(self, query: str) -> str:
        messages = [{"role": "user", "content": [
            {"type": "image"}, {"type": "text", "text": PROMPT.format(query=plain_text(query))},
        ]}]
        return self.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    @torch.inference_mode()
    def score(
        self, pairs: Sequence[tuple[str, Image.Image]], *, budget: BatchBudget, batch_log: BatchLog | None = None
    ) -> list[float]:
        """P(True) per (query, image) pair, float in [0, 1].

        Pairs go through in micro-batches packed to ``budget`` (page pixels after the processor's resize), halved
        on a GPU out-of-memory error (:func:`models.batching.run_batched`); each micro-batch is left-padded so
        the last position of every row is its own last token.
        """
        pixels = [image_pixels(img.size, max_pixels=self.max_pixels) for _, img in pairs]
        return run_batched(pairs, self._score, pixels=pixels, budget=budget, stage="rerank", device=self.device,
                           batch_log=batch_log)

    def _score(self, chunk: Sequence[tuple[str, Image.Image]]) -> list[float]:
        inputs = self.processor(
            text=[self._prompt(q) for q, _ in chunk], images=[img for _, img in chunk],
            padding=True, return_tensors="pt",
        ).to(self.device)
        # Only the last position is scored: logits_to_keep=1 spares a (batch, seq, 151,936-token vocab) tensor,
        # 2.5 GB in bf16 for 16 pairs of 512 visual tokens.
        # No KV cache either: one forward pass, nothing to decode after it.
        logits = self.model(**inputs, logits_to_keep=1, use_cache=False).logits[:, -1, :]  # (batch, vocab)
        pair_logits = logits[:, [self.false_id, self.true_id]].float()  # (batch, 2)
        return torch.softmax(pair_logits, dim=-1)[:, 1].cpu().tolist()
