"""The confidence of a generated answer: the generator's own probability of it, per token."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Generated:
    """An answer and its confidence in [0, 1] (:func:`answer_confidence`)."""

    answer: str
    confidence: float


def answer_confidence(logits: Sequence[torch.Tensor], tokens: torch.Tensor, stop_ids: Sequence[int]) -> list[float]:
    """Per sequence, the geometric mean of the model's probabilities of the tokens it generated, in [0, 1].

    ``logits``: one ``(batch, vocab)`` tensor per generated position, the raw scores before any logits processor
    (``generate(..., output_logits=True)``); ``tokens``: ``(batch, n_new)`` int64, the generated ids. A sequence
    counts its tokens up to and including its first stop token (end of turn or padding after it), so the padding
    of sequences that ended earlier is left out. Greedy decoding picks the most probable token, so this is the
    model's own probability of the answer it gave, per token (a length-normalised sequence likelihood).
    """
    logprobs = torch.stack([torch.log_softmax(step.float().cpu(), dim=-1) for step in logits], dim=1)  # (b, n, V)
    tokens = tokens.cpu()
    chosen = logprobs.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)  # (batch, n_new)
    is_stop = torch.isin(tokens, torch.tensor(list(stop_ids), dtype=tokens.dtype))
    keep = (is_stop.long().cumsum(dim=1) - is_stop.long()) == 0  # up to and including the first stop token
    mean = (chosen * keep).sum(dim=1) / keep.sum(dim=1).clamp(min=1)
    return [float(x) for x in torch.exp(mean)]


def generated_answers(out, prompt_len: int, tokenizer, stop_ids: Sequence[int]) -> list[Generated]:
    """The answers of a greedy ``generate(..., output_logits=True, return_dict_in_generate=True)`` output, each
    with its :func:`answer_confidence`: the tokens after the ``prompt_len`` prompt positions of ``out.sequences``
    (``(batch, prompt_len + n_new)`` int64), decoded by ``tokenizer`` without special tokens and stripped."""
    new_tokens = out.sequences[:, prompt_len:]  # (batch, ≤ max_new_tokens)
    texts = tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
    confidences = answer_confidence(out.logits, new_tokens, stop_ids)
    return [Generated(t.strip(), c) for t, c in zip(texts, confidences, strict=True)]


def stop_token_ids(tokenizer, generation_config) -> list[int]:
    """The ids that end a generated answer: the tokenizer's end and padding tokens and the generation config's
    end tokens (an int or a list)."""
    ids: set[int] = set()
    for value in (tokenizer.eos_token_id, tokenizer.pad_token_id, generation_config.eos_token_id):
        if isinstance(value, (list, tuple)):
            ids.update(int(v) for v in value)
        elif value is not None:
            ids.add(int(value))
    return sorted(ids)
