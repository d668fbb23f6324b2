"""The retrieval stage of a chunk of questions: each lane ranks pages (visual: ColQwen2 late interaction, a pgvector first
stage and exact MaxSim on its candidates, or the exact scan when ``PAGEQA_EXACT_SEARCH`` is set; lexical:
PostgreSQL full-text search; dense: pgvector passage search with the resident text encoder), and reciprocal rank
fusion merges them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from db import text_search
from db.engine import session_scope
from models.batching import BatchLog
from models.fusion import Fused, reciprocal_rank_fusion
from models.pipeline import ChunkQuestion, Options, Pipeline
from pageqa.settings import Settings
from services.visual_search import visual_search


@dataclass(frozen=True)
class Retrieved:
    """Per question: each lane's ranked (page id, lane score) list and the fused candidates, best first."""

    lanes: dict[str, list[tuple[int, float]]]
    fused: list[Fused]


def retrieve(
    settings: Settings, pipe: Pipeline, *, corpus_id: int, questions: Sequence[ChunkQuestion], options: Options,
    batch_log: BatchLog | None = None,
) -> list[Retrieved]:
    """Run the job's lanes for a chunk of questions and fuse them; a lane the model set lacks is skipped. The
    chunk's queries are encoded together (``query_batch_size`` per pass) and searched together."""
    k = options.retrieve_top_k
    lanes = [lane for lane in options.lanes if lane in settings.available_lanes()]
    texts = [q.text for q in questions]
    doc_ids = [q.document_id for q in questions]
    ranked: dict[str, list[list[tuple[int, float]]]] = {}
    if "visual" in lanes:
        with pipe.residency.active("retrieve"):
            q_emb = pipe.retriever.embed_queries(texts, batch_size=settings.query_batch_size, batch_log=batch_log)
        ranked["visual"] = visual_search(settings, q_emb, corpus_id=corpus_id, document_ids=doc_ids, k=k,
                                         model_id=pipe.retriever.model_id, device=pipe.device)
    if "dense" in lanes:
        vectors = pipe.text_encoder.encode(texts, batch_size=settings.text_batch_size)
    with session_scope(settings) as session:
        if "lexical" in lanes:
            ranked["lexical"] = text_search.lexical_search(
                session, queries=texts, corpus_id=corpus_id, document_ids=doc_ids, k=k,
                rank=settings.lexical_rank, normalization=settings.lexical_normalization, mode=settings.lexical_mode,
            )
        if "dense" in lanes:
            ranked["dense"] = text_search.dense_search(
                session, vectors=vectors, corpus_id=corpus_id, document_ids=doc_ids, k=k,
                model_id=pipe.text_encoder.model_id,
            )
    out = []
    for i in range(len(questions)):
        per_lane = {lane: ranked[lane][i] for lane in ranked}
        fused = reciprocal_rank_fusion(per_lane, k=settings.rrf_k, weights=settings.lane_weights, top_n=k)
        out.append(Retrieved(per_lane, fused))
    return out
