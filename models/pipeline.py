"""The answering pipeline for a chunk of questions: retrieve (ColQwen2, MaxSim) → rerank (MonoQwen2-VL) →
generate (Qwen2-VL). Pure model code: page images come through a loader the caller provides."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from PIL import Image

from models.device import compute_dtype, resolve_device
from models.generator import Qwen2VLGenerator
from models.reranker import MonoQwen2VLReranker, Reranker
from models.retriever import ColQwen2Retriever, PackedPages, maxsim_scores
from pageqa.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChunkQuestion:
    """A question to answer; ``document_id`` restricts retrieval to one document."""

    question_id: int
    text: str
    document_id: int | None = None


@dataclass(frozen=True)
class Options:
    """Per-job options: pages kept after retrieval, pages passed to the generator, answer length in tokens."""

    retrieve_top_k: int
    rerank_top_k: int
    max_new_tokens: int


@dataclass(frozen=True)
class Cited:
    """A page kept for an answer: 1-based rank after rerank, MaxSim score, P(True) rerank score."""

    page_id: int
    rank: int
    retrieval_score: float
    rerank_score: float


@dataclass
class ChunkAnswer:
    """The pipeline's output for one question; stage times are the chunk's milliseconds divided evenly."""

    question_id: int
    answer: str
    citations: list[Cited]
    timings_ms: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class CorpusIndex:
    """The searchable pages of one corpus: ids, their documents, and packed multi-vectors."""

    page_ids: list[int]
    document_ids: list[int]
    packed: PackedPages


class Pipeline:
    """The three model stages, loaded once per worker process and kept resident on one device."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.device = resolve_device(settings.device)
        dtype = compute_dtype(self.device)
        ids = settings.model_ids()
        quantize = settings.quantize_generator
        if quantize is None:
            quantize = self.device.type == "cuda"
        self.retriever = ColQwen2Retriever(
            ids["retriever"], device=self.device, dtype=dtype, max_pixels=settings.retriever_max_pixels
        )
        self.reranker: Reranker = MonoQwen2VLReranker(
            ids["reranker_base"], ids["reranker"], device=self.device, dtype=dtype,
            max_pixels=settings.reranker_max_pixels,
        )
        self.generator = Qwen2VLGenerator(
            ids["generator"], device=self.device, dtype=dtype, quantize=quantize,
            min_pixels=settings.generator_min_pixels, max_pixels=settings.generator_max_pixels,
        )

    @property
    def model_ids(self) -> dict[str, str]:
        """The model ids of the three stages, as stored with every answer."""
        return {
            "retriever_model": self.retriever.model_id,
            "reranker_model": self.reranker.model_id,
            "generator_model": self.generator.model_id,
        }

    def retrieve(
        self, questions: Sequence[ChunkQuestion], index: CorpusIndex, *, top_k: int
    ) -> list[list[tuple[int, float]]]:
        """Per question the ``top_k`` (page id, MaxSim score) pairs, best first, within its document filter."""
        q_emb = self.retriever.embed_queries([q.text for q in questions], batch_size=self.settings.query_batch_size)
        scores = maxsim_scores(q_emb, index.packed)  # (n_questions, n_pages)
        doc_ids = torch.tensor(index.document_ids)
        results = []
        for i, q in enumerate(questions):
            row = scores[i]
            if q.document_id is not None:
                row = row.masked_fill(doc_ids != q.document_id, float("-inf"))
            k = min(top_k, int(torch.isfinite(row).sum()))
            best = torch.topk(row, k) if k else None
            results.append([] if best is None else [
                (index.page_ids[j], float(s)) for s, j in zip(best.values.tolist(), best.indices.tolist())
            ])
        return results

    def answer_chunk(
        self, questions: Sequence[ChunkQuestion], index: CorpusIndex, *, options: Options,
        load_images: Callable[[Sequence[int]], dict[int, Image.Image]],
    ) -> list[ChunkAnswer]:
        """Answer a chunk: one batched pass per stage over all its questions.

        ``load_images`` maps page ids to their stored images. A question whose filter leaves no page gets
        "Not answerable" with no citation.
        """
        n = max(len(questions), 1)
        t0 = time.perf_counter()
        candidates = self.retrieve(questions, index, top_k=options.retrieve_top_k)
        t1 = time.perf_counter()
        images = load_images(sorted({pid for cand in candidates for pid, _ in cand}))
        pairs = [(q.text, images[pid]) for q, cand in zip(questions, candidates) for pid, _ in cand]
        flat = iter(self.reranker.score(pairs, batch_size=self.settings.rerank_batch_size))
        kept: list[list[Cited]] = []
        for cand in candidates:
            scored = sorted(((next(flat), pid, s) for pid, s in cand), key=lambda t: -t[0])
            kept.append([Cited(pid, rank, s, r) for rank, (r, pid, s) in enumerate(scored[: options.rerank_top_k], 1)])
        t2 = time.perf_counter()
        items = [(q.text, [images[c.page_id] for c in cites]) for q, cites in zip(questions, kept) if cites]
        generated = iter(self.generator.generate(
            items, batch_size=self.settings.generate_batch_size, max_new_tokens=options.max_new_tokens
        ))
        t3 = time.perf_counter()
        timings = {"retrieve": (t1 - t0) * 1e3 / n, "rerank": (t2 - t1) * 1e3 / n, "generate": (t3 - t2) * 1e3 / n}
        return [
            ChunkAnswer(q.question_id, next(generated) if cites else "Not answerable", cites, dict(timings))
            for q, cites in zip(questions, kept)
        ]
