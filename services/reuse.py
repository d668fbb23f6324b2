"""De-duplication across jobs: the key under which an answer the models made may be given to another question.

Two questions share a key only when everything that shapes the answer is the same: the tenant, the corpus and its
content version, the document filter, the normalised text (:func:`db.jobs.normalize_question`), the job's options,
and the worker's model ids, retrieval and pixel settings. Within one job, duplicates are found at submit time
(``questions.duplicate_of``) and need no key.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging

from db import answers as answers_db
from db import corpus as corpus_db
from db.engine import session_scope
from db.jobs import normalize_question
from db.schema import Job
from models.pipeline import ChunkQuestion, Options
from pageqa.settings import Settings
from services.chunk_run import worker_id

log = logging.getLogger(__name__)

#: Settings that change what a worker answers (the rest change only speed or where data lives).
ANSWER_SETTINGS = {
    "lanes", "lane_weights", "rrf_k", "lexical_rank", "lexical_normalization", "lexical_mode", "ocr",
    "passage_words", "extractive_threshold", "quantize_generator", "retriever_max_pixels", "reranker_max_pixels",
    "generator_min_pixels", "generator_max_pixels", "pool_coarse", "pool_fine", "pool_iters", "exact_search",
    "first_stage_per_token", "first_stage_ef", "pooled_candidates", "exact_candidates", "offline_generator",
    "offline_passages",
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


def reuse_answers(
    settings: Settings, model_ids: dict[str, str], job: Job, options: Options, questions: list[ChunkQuestion]
) -> tuple[dict[int, str], set[int]]:
    """Each question's dedup key (question id -> :func:`dedup_key`), and the ids of the questions that got a copy
    of an earlier answer with the same key (model answers no older than ``dedup_window_hours``; 0 turns reuse
    across jobs off). ``model_ids`` are the resident pipeline's."""
    fingerprint = settings_fingerprint(settings, model_ids=model_ids, options=options)
    with session_scope(settings) as session:
        version = corpus_db.corpus_version(session, corpus_id=job.corpus_id)
        keys = {q.question_id: dedup_key(tenant=job.tenant, corpus_id=job.corpus_id, corpus_version=version,
                                         document_id=q.document_id, question=q.text, fingerprint=fingerprint)
                for q in questions}
        if settings.dedup_window_hours <= 0:
            return keys, set()
        since = dt.datetime.now(dt.UTC) - dt.timedelta(hours=settings.dedup_window_hours)
        sources = answers_db.find_reusable(session, keys=list(keys.values()), since=since)
        reused: set[int] = set()
        for qid, key in keys.items():
            if key in sources and qid not in reused:
                copied = answers_db.copy_answer(session, source_question_id=sources[key], question_ids=[qid],
                                                worker=worker_id())
                reused.update(q for q in copied if q in keys)
    if reused:
        log.info("%s: %d of %d questions answered by reuse", job.id, len(reused), len(questions))
    return keys, reused
