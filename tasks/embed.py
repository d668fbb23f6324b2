"""Task: index pages with the resident models (:func:`services.indexing.index_pages`)."""

from __future__ import annotations

from db.engine import TRANSIENT
from pageqa.settings import get_settings
from services import indexing
from worker.app import app
from worker.queue import INDEX_PAGES


@app.task(name=INDEX_PAGES, autoretry_for=TRANSIENT, retry_backoff=2, retry_backoff_max=60, retry_jitter=False,
          max_retries=30)
def index_pages(page_ids: list[int]) -> int:
    """Index the pages with these ids (OCR, passages, multi-vector and pooled tiers); returns the pages whose text
    index was (re)built. A database error (:data:`db.engine.TRANSIENT`) retries the whole task with backoff: the
    work is idempotent."""
    return indexing.index_pages(get_settings(), page_ids)
