"""Task: embed pages with the resident ColQwen2 and store their multi-vectors."""

from __future__ import annotations

import logging

from db import corpus as corpus_db
from db.engine import session_scope
from models.images import decode_image
from models.retriever import COLPALI_VERSION
from pageqa.settings import get_settings
from tasks.enqueue import EMBED_PAGES
from worker import resident
from worker.app import app

log = logging.getLogger(__name__)


@app.task(name=EMBED_PAGES)
def embed_pages(page_ids: list[int]) -> int:
    """Embed the pages with these ids (skipping ones already embedded by the resident model); returns rows stored."""
    settings = get_settings()
    retriever = resident.pipeline(settings).retriever
    with session_scope(settings) as session:
        done = set(page_ids) - set(
            corpus_db.page_ids_without_embedding_among(session, page_ids=page_ids, model_id=retriever.model_id)
        )
        todo = [pid for pid in page_ids if pid not in done]
        images = [decode_image(p.image) for p in corpus_db.load_pages(session, page_ids=todo)] if todo else []
    if not todo:
        return 0
    vectors = retriever.embed_pages(images, batch_size=settings.embed_batch_size)
    with session_scope(settings) as session:
        stored = corpus_db.store_embeddings(
            session, page_ids=todo, vectors=vectors, model_id=retriever.model_id,
            colpali_version=COLPALI_VERSION, max_pixels=retriever.max_pixels,
        )
    log.info("embedded %d pages (%d new rows)", len(todo), stored)
    return stored
