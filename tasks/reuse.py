"""De-duplication across jobs: the key under which an answer the models made may be given to another question.

Two questions share a key only when everything that shapes the answer is the same: the tenant, the corpus and its
content version, the document filter, the normalised text (:func:`db.jobs.normalize_question`), the job's options,
and the worker's model ids, retrieval and pixel settings. Within one job, duplicates are found at submit time
(``questions.duplicate_of``) and need no key.
"""

from __future__ import annotations

import hashlib
import json

from db.jobs import normalize_question
from models.pipeline import Options
from pageqa.settings import Settings

#: Settings that change what a worker answers (the rest change only speed or where data lives).
ANSWER_SETTINGS = {
    "lanes", "lane_weights", "rrf_k", "lexical_rank", "lexical_normalization", "lexical_mode", "ocr",
    "passage_words", "extractive_threshold", "quantize_generator", "retriever_max_pixels", "reranker_max_pixels",
    "generator_min_pixels", "generator_max_pixels", "pool_coarse", "pool_fine", "pool_iters", "exact_search",
    "first_stage_per_token", "first_stage_ef", "pooled_candidates", "exact_candidates",
}


def settings_fingerprint(settings: Settings, *, model_ids: dict[str, str], options: Options) -> str:
    """JSON of the answer-shaping settings, the stages' model ids and the job's options (sorted keys)."""
    return json.dumps(
        {"settings": settings.model_dump(mode="json", include=ANSWER_SETTINGS), "models": model_ids,
         "options": {"lanes": list(options.lanes), "retrieve_top_k": options.retrieve_top_k,
                     "rerank_top_k": options.rerank_top_k, "max_new_tokens": options.max_new_tokens}},
        sort_keys=True,
    )


def dedup_key(
    *, tenant: str, corpus_id: int, corpus_version: str, document_id: int | None, question: str, fingerprint: str
) -> str:
    """sha256 hex digest (64 characters) of the question's reuse scope and normalised text."""
    payload = json.dumps([tenant, corpus_id, corpus_version, document_id, normalize_question(question), fingerprint])
    return hashlib.sha256(payload.encode()).hexdigest()
