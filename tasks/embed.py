"""Task: index pages with the resident models: OCR for pages without a text layer, passages with dense text
embeddings, and the ColQwen2 multi-vector when the model set has a visual retriever."""

from __future__ import annotations

import logging

from db import corpus as corpus_db
from db.engine import session_scope
from models.images import decode_image
from models.passages import split_passages
from models.retriever import COLPALI_VERSION
from pageqa.settings import Settings, get_settings
from tasks.enqueue import INDEX_PAGES
from worker import resident
from worker.app import app

log = logging.getLogger(__name__)


@app.task(name=INDEX_PAGES)
def index_pages(page_ids: list[int]) -> int:
    """Index the pages with these ids, skipping what is already done for the resident models; returns the pages
    whose text index was (re)built."""
    settings = get_settings()
    pipe = resident.pipeline(settings)
    with session_scope(settings) as session:
        pages = {p.id: (p.text, p.text_source, p.text_indexed_by, p.image) for p in
                 corpus_db.load_pages(session, page_ids=page_ids)}
        need_visual = (
            corpus_db.page_ids_without_embedding_among(session, page_ids=page_ids, model_id=pipe.retriever.model_id)
            if pipe.retriever else []
        )
    text_todo = [pid for pid, (_, _, by, _) in pages.items() if by != pipe.text_encoder.model_id]
    for pid in text_todo:
        _index_text(settings, pid, *pages[pid][:2], pages[pid][3])
    if need_visual:
        _embed_visual(settings, need_visual, [decode_image(pages[pid][3]) for pid in need_visual])
    log.info("indexed %d pages (%d text, %d visual)", len(page_ids), len(text_todo), len(need_visual))
    return len(text_todo)


def _index_text(settings: Settings, page_id: int, text: str, source: str, image: bytes) -> None:
    """OCR the page if it has no text (and OCR is on), then store its passages and their embeddings."""
    pipe = resident.pipeline(settings)
    if source == "none" and settings.ocr:
        result = resident.ocr().read(decode_image(image))
        text, source = result.text, "ocr"
        log.info("OCR page %d: %d lines in %.0f ms", page_id, result.n_lines, result.ms)
    passages = split_passages(text, max_words=settings.passage_words)
    vectors = pipe.text_encoder.encode(passages, batch_size=settings.text_batch_size)
    with session_scope(settings) as session:
        if source == "ocr":
            corpus_db.set_page_text(session, page_id=page_id, text=text, source=source)
        corpus_db.store_passages(
            session, page_id=page_id, model_id=pipe.text_encoder.model_id, texts=passages, vectors=vectors
        )


def _embed_visual(settings: Settings, page_ids: list[int], images) -> None:
    retriever = resident.pipeline(settings).retriever
    vectors = retriever.embed_pages(images, batch_size=settings.embed_batch_size)
    with session_scope(settings) as session:
        corpus_db.store_embeddings(
            session, page_ids=page_ids, vectors=vectors, model_id=retriever.model_id,
            colpali_version=COLPALI_VERSION, max_pixels=retriever.max_pixels,
        )
