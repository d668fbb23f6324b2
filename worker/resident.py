"""What a worker process keeps resident: the model pipeline (loaded once) and each corpus's packed page
multi-vectors (reloaded only when the corpus's embeddings change)."""

from __future__ import annotations

import logging
import threading

from db import corpus as corpus_db
from db.engine import session_scope
from models.pipeline import CorpusIndex, Pipeline
from models.retriever import PackedPages
from pageqa.settings import Settings

log = logging.getLogger(__name__)

_lock = threading.Lock()
_pipeline: Pipeline | None = None
_indexes: dict[tuple[int, str], tuple[tuple[int, int], CorpusIndex]] = {}
_ocr = None


def ocr():
    """The process's OCR engine (rapidocr), created on first use: only pages without a text layer need it."""
    global _ocr
    with _lock:
        if _ocr is None:
            from models.ocr import PageOCR

            _ocr = PageOCR()
        return _ocr


def pipeline(settings: Settings) -> Pipeline:
    """The process's pipeline, loaded on first use (``worker_init`` loads it before the first task)."""
    global _pipeline
    with _lock:
        if _pipeline is None:
            _pipeline = Pipeline(settings)
            log.info("models resident on %s: %s", _pipeline.device, _pipeline.model_ids)
        return _pipeline


def corpus_index(settings: Settings, *, corpus_id: int) -> CorpusIndex:
    """The corpus's packed multi-vectors for the resident retriever; re-read when pages were added or removed."""
    pipe = pipeline(settings)
    if pipe.retriever is None:
        raise RuntimeError("this model set has no visual retriever")
    model_id = pipe.retriever.model_id
    key = (corpus_id, model_id)
    with session_scope(settings) as session:
        version = corpus_db.embeddings_version(session, corpus_id=corpus_id, model_id=model_id)
        cached = _indexes.get(key)
        if cached is not None and cached[0] == version:
            return cached[1]
        emb = corpus_db.load_corpus_embeddings(session, corpus_id=corpus_id, model_id=model_id)
    packed = PackedPages.pack(emb.vectors, device=pipe.device, dtype=_score_dtype(pipe))
    index = CorpusIndex(emb.page_ids, emb.document_ids, packed)
    _indexes[key] = (emb.version, index)
    log.info("corpus %d: %d pages resident for MaxSim", corpus_id, len(emb.page_ids))
    return index


def _score_dtype(pipe: Pipeline):
    import torch

    return torch.float16 if pipe.device.type == "cuda" else torch.float32
