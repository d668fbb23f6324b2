"""The retrieval stage of a chunk: each lane ranks pages (visual: ColQwen2 MaxSim in the worker; lexical:
PostgreSQL full-text search; dense: pgvector passage search with the resident text encoder), and reciprocal rank
fusion merges them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from db import search
from db.engine import session_scope
from models.fusion import Fused, reciprocal_rank_fusion
from models.pipeline import ChunkQuestion, Options, Pipeline
from pageqa.settings import Settings
from worker import resident


@dataclass(frozen=True)
class Retrieved:
    """Per question: each lane's ranked (page id, lane score) list and the fused candidates, best first."""

    lanes: dict[str, list[tuple[int, float]]]
    fused: list[Fused]


def retrieve(
    settings: Settings, pipe: Pipeline, *, corpus_id: int, questions: Sequence[ChunkQuestion], options: Options
) -> list[Retrieved]:
    """Run the job's lanes for a chunk of questions and fuse them; a lane the model set lacks is skipped."""
    k = options.retrieve_top_k
    lanes = [lane for lane in options.lanes if lane in settings.available_lanes()]
    texts = [q.text for q in questions]
    doc_ids = [q.document_id for q in questions]
    ranked: dict[str, list[list[tuple[int, float]]]] = {}
    if "visual" in lanes:
        index = resident.corpus_index(settings, corpus_id=corpus_id)
        ranked["visual"] = pipe.retrieve_visual(questions, index, top_k=k)
    if "dense" in lanes:
        vectors = pipe.text_encoder.encode(texts, batch_size=settings.text_batch_size)
    with session_scope(settings) as session:
        if "lexical" in lanes:
            ranked["lexical"] = search.lexical_search(
                session, queries=texts, corpus_id=corpus_id, document_ids=doc_ids, k=k,
                rank=settings.lexical_rank, normalization=settings.lexical_normalization, mode=settings.lexical_mode,
            )
        if "dense" in lanes:
            ranked["dense"] = search.dense_search(
                session, vectors=vectors, corpus_id=corpus_id, document_ids=doc_ids, k=k,
                model_id=pipe.text_encoder.model_id,
            )
    out = []
    for i in range(len(questions)):
        per_lane = {lane: ranked[lane][i] for lane in ranked}
        fused = reciprocal_rank_fusion(per_lane, k=settings.rrf_k, weights=settings.lane_weights, top_n=k)
        out.append(Retrieved(per_lane, fused))
    return out
