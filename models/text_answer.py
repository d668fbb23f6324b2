"""The offline model set's answer stage with an LLM: each question's best passages of its top pages, read by a
small instruct LLM (:class:`models.text_generator.TextGenerator`).

A question reads its ``n_passages`` best passages (the dense lane's passages, :func:`models.passages.split_passages`,
ranked by the text encoder's cosine with the question) among the top pages, shown in page rank order and, within a
page, in reading order. Passages rather than whole pages keep the prompt to ~400 tokens, a few seconds on 2 cores.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from models.batching import BatchBudget, BatchLog
from models.bundled import BUNDLED, locate
from models.extractive import PageText
from models.passages import split_passages
from models.text_encoder import TextEncoder
from models.confidence import Generated
from models.text_generator import TextGenerator
from pageqa.errors import ModelLoadError
from pageqa.settings import Settings

log = logging.getLogger(__name__)


def load_text_generator(settings: Settings, *, device: torch.device) -> TextGenerator:
    """The LLM that ``settings.offline_generator`` names: a bundled GGUF checkpoint (:mod:`models.bundled`), joined
    under ``PAGEQA_HOME/models/gguf`` when it comes in parts, or a local checkpoint directory.

    Raises:
        ModelLoadError: neither a bundled name nor a directory, or the checkpoint cannot be read.
    """
    name = settings.offline_generator
    if settings.generator_threads:
        torch.set_num_threads(settings.generator_threads)
    if name in BUNDLED:
        path, gguf_file = locate(name, settings.home_dir / "models" / "gguf")
        return TextGenerator(str(path), gguf_file=gguf_file, model_id=BUNDLED[name].model_id, device=device)
    if not Path(name).is_dir():
        raise ModelLoadError(f"PAGEQA_OFFLINE_GENERATOR={name!r} is neither 'extractive', a bundled LLM "
                             f"({', '.join(BUNDLED)}) nor a checkpoint directory")
    return TextGenerator(name, gguf_file=None, model_id=name, device=device)


def best_passages(question_vector: np.ndarray, passages: Sequence[tuple[int, int, str]], vectors: np.ndarray,
                  n: int) -> list[str]:
    """The ``n`` passages with the highest cosine to the question, in (page rank, position) order.

    ``passages``: (page rank, position on the page, text) per passage; ``vectors``: ``(n_passages, dim)`` unit
    rows of the same passages; ``question_vector``: ``(dim,)`` unit. Ties go to the earlier passage.
    """
    if not passages:
        return []
    scores = vectors @ question_vector  # (n_passages,)
    top = np.argsort(-scores, kind="stable")[:n].tolist()
    return [passages[i][2] for i in sorted(top, key=lambda i: passages[i][:2])]


class PassageAnswerer:
    """Answers each question from its best passages with a :class:`TextGenerator`.

    Args:
        generator: the LLM.
        encoder: the text encoder ranking passages (unit-norm embeddings).
        n_passages: passages per question.
        passage_words: words per passage (the dense lane's ``passage_words``).
    """

    def __init__(self, generator: TextGenerator, encoder: TextEncoder, *, n_passages: int, passage_words: int):
        self.generator, self.encoder = generator, encoder
        self.n_passages, self.passage_words = n_passages, passage_words

    @property
    def model_id(self) -> str:
        """The LLM's id, as stored with every answer."""
        return self.generator.model_id

    def select(self, questions: Sequence[str], pages: Sequence[Sequence[PageText]]) -> list[list[str]]:
        """Per question, its passages for the prompt (:func:`best_passages`); ``pages[i]`` in rank order.

        The questions and every distinct passage of the chunk go through one ``encode()`` call.
        """
        per_question = [[(rank, pos, text) for rank, p in enumerate(page_list)
                         for pos, text in enumerate(split_passages(p.text, max_words=self.passage_words))]
                        for page_list in pages]
        texts = list(dict.fromkeys([*questions, *(t for ps in per_question for _, _, t in ps)]))
        row = {t: i for i, t in enumerate(texts)}
        vectors = self.encoder.encode(texts)  # (n_texts, dim), unit rows
        return [best_passages(vectors[row[q]], ps, vectors[[row[t] for _, _, t in ps]], self.n_passages)
                for q, ps in zip(questions, per_question, strict=True)]

    def answer(self, questions: Sequence[str], pages: Sequence[Sequence[PageText]], *, budget: BatchBudget,
               max_new_tokens: int, batch_log: BatchLog | None = None) -> list[Generated]:
        """One :class:`Generated` per question, in order (see :meth:`TextGenerator.generate`)."""
        chosen = self.select(questions, pages)
        return self.generator.generate(list(zip(questions, chosen, strict=True)), budget=budget,
                                       max_new_tokens=max_new_tokens, batch_log=batch_log)
