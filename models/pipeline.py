"""The answering pipeline for a chunk of questions, after retrieval: rerank (MonoQwen2-VL) → generate (Qwen2-VL),
or, in the offline model set, fused ranking → extractive answer. Pure model code: pages come through loaders the
caller provides, and the retrieval lanes that need the database run in ``services.retrieval``."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from PIL import Image

from models.batching import BatchBudget, BatchLog
from models.device import compute_dtype, resolve_device
from models.fusion import Fused
from models.images import ImageCache
from models.loading import fit_to_processor, model_ids
from models.residency import Residency
from models.retriever import load_retriever
from pageqa.domain import NOT_ANSWERABLE
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
    """Per-job options: lanes to fuse, pages kept after fusion, pages passed on to the answer stage, answer
    length in tokens."""

    lanes: tuple[str, ...]
    retrieve_top_k: int
    rerank_top_k: int
    max_new_tokens: int


@dataclass(frozen=True)
class Cited:
    """A page kept for an answer: 1-based rank after rerank, fused retrieval score, rerank score, lanes."""

    page_id: int
    rank: int
    retrieval_score: float
    rerank_score: float
    lanes: tuple[str, ...] = ()


@dataclass
class ChunkAnswer:
    """The pipeline's output for one question; ``kind`` is generated, extractive or none (no page found).

    ``confidence``: the generator's own probability of its answer in [0, 1] (the geometric mean of its generated
    tokens' probabilities, :func:`models.confidence.answer_confidence`); None for extractive answers and for
    questions without a page."""

    question_id: int
    answer: str
    citations: list[Cited]
    kind: str
    evidence_page_id: int | None = None  # extractive answers: the page the passage was taken from
    timings_ms: dict[str, float] = field(default_factory=dict)
    confidence: float | None = None


class Pipeline:
    """The model stages of one model set, loaded once per worker process and kept resident on one device.

    ``real`` and ``tiny``: ColQwen2 retriever, MonoQwen2-VL reranker, Qwen2-VL generator, plus the dense text
    encoder. ``offline``: the text encoder and the answerer ``settings.offline_generator`` names: a small LLM over
    the best passages (:mod:`models.text_answer`) or extractive passages. With ``settings.low_memory``
    only the running stage's model is on the GPU (:class:`models.residency.Residency`); stages run inside
    ``pipeline.residency.active(name)`` with the names ``retrieve``, ``rerank`` and ``generate``.
    """

    def __init__(self, settings: Settings):
        from models.extractive import ExtractiveAnswerer
        from models.text_encoder import TextEncoder

        self.settings = settings
        self.device = resolve_device(settings.device)
        # Page images fitted to the reranker's and the generator's budgets, kept across chunks: fitting a full page
        # costs more CPU than the tiny models' forward pass, and a job's questions keep meeting the same pages.
        self.fitted = ImageCache(settings.image_cache_mb * 1024 * 1024 // 2)
        self.residency = Residency(self.device, low_memory=settings.low_memory)
        home, dtype = self.residency.home, compute_dtype(self.device)
        ids = model_ids(settings)
        self.text_encoder = TextEncoder(ids["text"], device=str(self.device))
        self.reranker = self.generator = self.extractive = self.text_answerer = None
        self.retriever = load_retriever(settings, device=home, dtype=dtype)
        if self.retriever is not None:
            self.residency.register("retrieve", self.retriever)
        if ids["reranker"]:
            from models.reranker import MonoQwen2VLReranker

            self.reranker = MonoQwen2VLReranker(
                ids["reranker_base"], ids["reranker"], device=home, dtype=dtype,
                max_pixels=settings.reranker_max_pixels,
            )
            self.residency.register("rerank", self.reranker)
        if ids["generator"]:
            from models.generator import Qwen2VLGenerator

            quantize = settings.quantize_generator
            self.generator = Qwen2VLGenerator(
                ids["generator"], device=home, dtype=dtype,
                quantize=self.device.type == "cuda" if quantize is None else quantize,
                min_pixels=settings.generator_min_pixels, max_pixels=settings.generator_max_pixels,
            )
            self.residency.register("generate", self.generator)
        elif settings.offline_generator == "extractive":
            self.extractive = ExtractiveAnswerer(self.text_encoder, threshold=settings.extractive_threshold)
        else:
            from models.text_answer import PassageAnswerer, load_text_generator

            self.text_answerer = PassageAnswerer(
                load_text_generator(settings, device=home), self.text_encoder,
                n_passages=settings.offline_passages, passage_words=settings.passage_words,
            )
            self.residency.register("generate", self.text_answerer.generator)

    @property
    def model_ids(self) -> dict[str, str]:
        """The model ids of the stages, as stored with every answer."""
        return {
            "retriever_model": self.retriever.model_id if self.retriever else f"text:{self.text_encoder.model_id}",
            "reranker_model": self.reranker.model_id if self.reranker else "none",
            "generator_model": (self.generator or self.text_answerer).model_id
            if self.generator or self.text_answerer else f"extractive:{self.text_encoder.model_id}",
        }

    def answer_chunk(
        self, questions: Sequence[ChunkQuestion], candidates: Sequence[Sequence[Fused]], *, options: Options,
        load_images: Callable[[Sequence[int]], dict[int, Image.Image]],
        load_texts: Callable[[Sequence[int]], dict[int, str]], batch_log: BatchLog | None = None,
    ) -> list[ChunkAnswer]:
        """Rerank each question's fused candidates and answer from the top ``rerank_top_k`` pages.

        Each stage makes one batched call for the whole chunk: every (question, page) pair of the chunk is
        reranked in micro-batches packed to ``rerank_batch_pixels``, and every question is answered in
        micro-batches packed to ``generate_batch_pixels`` (:mod:`models.batching`; sizes go to ``batch_log``). A
        question with no candidate gets "Not answerable" and no citation.

        Each answer's ``timings_ms`` (``rerank``, ``generate``) are the chunk's milliseconds per stage divided by
        its questions: a mean over the chunk, since a batched call has no per-question time.

        Raises:
            Exception: whatever ``batch_log.check`` raises before a micro-batch to stop the chunk (the answering
                task's :class:`services.guard.ChunkStopped`: time budget or shutdown).
        """
        n = max(len(questions), 1)
        t0 = time.perf_counter()
        images: dict[int, Image.Image] = {}  # full page images loaded in this chunk, shared by the stages
        kept = self._rerank(questions, candidates, options, load_images, images, batch_log)
        t1 = time.perf_counter()
        answers, kind = self._answer(questions, kept, options, load_images, load_texts, images, batch_log)
        t2 = time.perf_counter()
        timings = {"rerank": (t1 - t0) * 1e3 / n, "generate": (t2 - t1) * 1e3 / n}
        return [
            ChunkAnswer(q.question_id, answer, cites, kind if cites else "none", evidence, dict(timings), confidence)
            for q, cites, (answer, evidence, confidence) in zip(questions, kept, answers, strict=True)
        ]

    def _rerank(self, questions, candidates, options, load_images, images, batch_log) -> list[list[Cited]]:
        if self.reranker is None:  # keep the fused order; the fused score stands in for the rerank score
            return [[Cited(f.page_id, r, f.score, f.score, tuple(f.lanes))
                     for r, f in enumerate(cand[: options.rerank_top_k], 1)] for cand in candidates]
        page_ids = sorted({f.page_id for cand in candidates for f in cand})
        fitted = self._fit("rerank", self.reranker.processor, page_ids, load_images, images)
        pairs = [(q.text, fitted[f.page_id]) for q, cand in zip(questions, candidates) for f in cand]
        budget = BatchBudget(self.settings.rerank_batch_size, self.settings.rerank_batch_pixels)
        with self.residency.active("rerank"):
            flat = iter(self.reranker.score(pairs, budget=budget, batch_log=batch_log))
        kept = []
        for cand in candidates:
            scored = sorted(((next(flat), f) for f in cand), key=lambda t: (-t[0], t[1].page_id))
            kept.append([Cited(f.page_id, r, f.score, s, tuple(f.lanes))
                         for r, (s, f) in enumerate(scored[: options.rerank_top_k], 1)])
        return kept

    def _fit(self, stage: str, processor, page_ids, load_images, images) -> dict[int, Image.Image]:
        """The pages' images fitted to ``processor``'s budget, by page id, from :attr:`fitted`; a page not there is
        loaded (into ``images``, shared by the stages of the chunk) and fitted once."""

        def fit(keys):
            missing = [pid for _, pid in keys if pid not in images]
            if missing:
                images.update(load_images(missing))
            return {key: fit_to_processor(processor, images[key[1]]) for key in keys}

        got = self.fitted.get_many([(stage, pid) for pid in page_ids], fit)
        return {pid: got[(stage, pid)] for pid in page_ids}

    def _answer(
        self, questions, kept, options, load_images, load_texts, images, batch_log
    ) -> tuple[list[tuple[str, int | None, float | None]], str]:
        pending = [i for i, cites in enumerate(kept) if cites]
        answers: list[tuple[str, int | None, float | None]] = [(NOT_ANSWERABLE, None, None)] * len(questions)
        page_ids = sorted({c.page_id for i in pending for c in kept[i]})
        budget = BatchBudget(self.settings.generate_batch_size, self.settings.generate_batch_pixels)
        if self.generator is not None:
            fitted = self._fit("generate", self.generator.processor, page_ids, load_images, images)
            with self.residency.active("generate"):
                out = [(g.answer, None, g.confidence) for g in self.generator.generate(
                    [(questions[i].text, [fitted[c.page_id] for c in kept[i]]) for i in pending],
                    budget=budget, max_new_tokens=options.max_new_tokens, batch_log=batch_log,
                )]
            kind = "generated"
        else:
            from models.extractive import PageText

            texts = load_texts(page_ids)
            asked = [questions[i].text for i in pending]
            pages = [[PageText(c.page_id, texts[c.page_id]) for c in kept[i]] for i in pending]
            if self.text_answerer is not None:
                with self.residency.active("generate"):
                    out = [(g.answer, None, g.confidence) for g in self.text_answerer.answer(
                        asked, pages, budget=budget, max_new_tokens=options.max_new_tokens, batch_log=batch_log)]
                kind = "generated"
            else:
                out = [(e.answer, e.page_id, None) for e in self.extractive.answer(asked, pages)]
                kind = "extractive"
        for i, answer in zip(pending, out, strict=True):
            answers[i] = answer
        return answers, kind
