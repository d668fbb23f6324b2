"""Task: index pages with the resident models: OCR for pages without a text layer, passages with dense text
embeddings, and the ColQwen2 multi-vector when the model set has a visual retriever."""

from __future__ import annotations

import logging

from db import corpus as corpus_db
from db.engine import session_scope
from db.schema import Page
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
        pages = corpus_db.load_pages(session, page_ids=page_ids)
        need_visual = set(
            corpus_db.page_ids_without_embedding_among(session, page_ids=page_ids, model_id=pipe.retriever.model_id)
            if pipe.retriever else []
        )
    text_todo = [p for p in pages if p.text_indexed_by != pipe.text_encoder.model_id]
    for page in text_todo:
        _index_text(settings, page)
    visual_todo = [p for p in pages if p.id in need_visual]
    if visual_todo:
        _embed_visual(settings, visual_todo)
    log.info("indexed %d pages (%d text, %d visual)", len(pages), len(text_todo), len(visual_todo))
    return len(text_todo)


def _index_text(settings: Settings, page: Page) -> None:
    """OCR the page if it has no text layer (and OCR is on), then store its passages and their embeddings."""
    encoder = resident.pipeline(settings).text_encoder
    text, source = page.text, page.text_source
    if source == "none" and settings.ocr:
        result = resident.ocr().read(decode_image(page.image))
        text, source = result.text, "ocr"
        log.info("OCR page %d: %d lines in %.0f ms", page.id, result.n_lines, result.ms)
    passages = split_passages(text, max_words=settings.passage_words)
    vectors = encoder.encode(passages, batch_size=settings.text_batch_size)  # (n_passages, 384) float32
    with session_scope(settings) as session:
        if source == "ocr":
            corpus_db.set_page_text(session, page_id=page.id, text=text, source=source)
        corpus_db.store_passages(session, page_id=page.id, model_id=encoder.model_id, texts=passages, vectors=vectors)


def _embed_visual(settings: Settings, pages: list[Page]) -> None:
    retriever = resident.pipeline(settings).retriever
    vectors = retriever.embed_pages([decode_image(p.image) for p in pages], batch_size=settings.embed_batch_size)
    with session_scope(settings) as session:
        corpus_db.store_embeddings(
            session, page_ids=[p.id for p in pages], vectors=vectors, model_id=retriever.model_id,
            colpali_version=COLPALI_VERSION, max_pixels=retriever.max_pixels,
        )
