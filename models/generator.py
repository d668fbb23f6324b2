"""Generate: answers from Qwen2-VL-Instruct over the top reranked page images.

Model card of Qwen/Qwen2-VL-7B-Instruct (chat template, multi-image input, batched generation with left padding);
on CUDA it is loaded in 4-bit NF4 with double quantisation and bf16 compute (Dettmers et al., "QLoRA", 2023) through
transformers' ``BitsAndBytesConfig``.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence

import torch
from PIL import Image

from models.batching import BatchBudget, BatchLog, image_pixels, run_batched
from models.confidence import Generated, generated_answers, stop_token_ids
from models.loading import from_pretrained, plain_text, set_pixel_budget
from models.prompting import answer_instruction

log = logging.getLogger(__name__)



def quantization_config():
    """4-bit NF4, double quantisation, bf16 compute: the QLoRA recipe that fits Qwen2-VL-7B in ~6 GB."""
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16,
    )


class Qwen2VLGenerator:
    """Qwen2-VL-Instruct answering from page images.

    Args:
        model_id: hub id or local directory (default Qwen/Qwen2-VL-7B-Instruct).
        quantize: load in 4-bit NF4 through bitsandbytes (the default on CUDA).
        min_pixels, max_pixels: per-image pixel budget given to the processor (aspect ratio kept).
    """

    def __init__(
        self, model_id: str, *, device: torch.device, dtype: torch.dtype, quantize: bool,
        min_pixels: int, max_pixels: int,
    ):
        from transformers import AutoProcessor, Qwen2VLForConditionalGeneration

        self.model_id, self.device, self.quantized = model_id, device, quantize
        self.min_pixels, self.max_pixels = min_pixels, max_pixels
        extra = {"quantization_config": quantization_config()} if quantize else {}
        self.model = from_pretrained(
            Qwen2VLForConditionalGeneration, model_id, dtype=dtype, device_map={"": str(device)}, **extra
        ).eval()
        self.processor = from_pretrained(AutoProcessor, model_id)
        self.processor.tokenizer.padding_side = "left"
        set_pixel_budget(self.processor, max_pixels=max_pixels, min_pixels=min_pixels)

    def place(self, device: torch.device) -> None:
        """Move the model to ``device``; later inputs follow it (see :mod:`models.residency`)."""
        self.model.to(device)
        self.device = device

    def _prompt(self, question: str, n_images: int) -> str:
        content = [{"type": "image"} for _ in range(n_images)]
        content.append({"type": "text", "text": answer_instruction(plain_text(question), noun="pages", where="shown above")})
        messages = [{"role": "user", "content": content}]
        return self.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    @torch.inference_mode()
    def generate(
        self, items: Sequence[tuple[str, Sequence[Image.Image]]], *, budget: BatchBudget, max_new_tokens: int,
        batch_log: BatchLog | None = None,
    ) -> list[Generated]:
        """One answer and its confidence (:func:`models.confidence.answer_confidence`) per (question, page images)
        item, greedy decoding, ``max_new_tokens`` tokens at most.

        Items go through in micro-batches packed to ``budget`` (the pixels of all their pages after the
        processor's resize), left-padded, halved on a GPU out-of-memory error
        (:func:`models.batching.run_batched`).
        """
        pixels = [sum(image_pixels(img.size, max_pixels=self.max_pixels, min_pixels=self.min_pixels)
                      for img in imgs) for _, imgs in items]
        run = functools.partial(self._generate, max_new_tokens=max_new_tokens)
        return run_batched(items, run, pixels=pixels, budget=budget, stage="generate", device=self.device,
                           batch_log=batch_log)

    def _generate(self, chunk: Sequence[tuple[str, Sequence[Image.Image]]], max_new_tokens: int) -> list[Generated]:
        images = [img for _, imgs in chunk for img in imgs]
        inputs = self.processor(
            text=[self._prompt(q, len(imgs)) for q, imgs in chunk], images=images or None,
            padding=True, return_tensors="pt",
        ).to(self.device)
        out = self.model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False, output_logits=True,
                                  return_dict_in_generate=True)
        stops = stop_token_ids(self.processor.tokenizer, self.model.generation_config)
        return generated_answers(out, inputs["input_ids"].shape[1], self.processor, stops)
